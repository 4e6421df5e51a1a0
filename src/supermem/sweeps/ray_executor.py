"""Sweeps on a Ray cluster: ``RayExecutor`` runs each job's ``run_group`` as a Ray task.

Ray is optional (``pip install supermem[ray]``): this module imports it only when an
executor is made. The sweep itself does not change: the same jobs, content keys, resume
and index. The driver (the process calling ``run_sweep``) alone writes the SQLite index
from the ``Outcome``s the tasks send back. Where the run dirs get written:

- shared file system (default): the task writes ``OUT/runs/<key>/`` atomically, exactly
  as a local worker does (``store.write_atomic``), so OUT must be mounted at the same
  path on every node. A probe dir the driver makes in ``OUT/runs/`` proves it: a task
  that cannot see it raises ``NotSharedError`` instead of writing runs to a disk the
  driver never reads.
- ``shared_fs=False``: the task trains into a temporary dir on its node and sends every
  file back; the driver writes them into OUT atomically (no shared file system needed).

Either way a run dir appears only when complete. Each task asks Ray for ``threads`` CPUs
and trains with that many threads; with the same thread count a run's files equal the
local executor's byte for byte (tested).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from supermem.sweeps.executors import Executor, Job, Outcome, limit_threads, write_failure
from supermem.sweeps.index import FAILED, RUNS, config_key, record
from supermem.sweeps.store import RunExistsError, write_atomic

WAIT_S = 1.0  # ray.wait timeout: how often the driver wakes to notice Ctrl-C
CANCEL_S = 5.0  # how long interrupted tasks get to clean up before they are killed


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or no Ray cluster answers at the address."""


class NotSharedError(RuntimeError):
    """A Ray worker cannot see OUT: the cluster has no shared file system there."""


# A local Ray instance (no --address) serves this machine only: Ray then binds its
# services to the loopback address instead of the machine's network address. Read by
# Ray when it is first imported; a cluster's nodes are started with `ray start`, which
# this does not touch.
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray(local: bool = False) -> Any:
    """The ``ray`` module, or RayUnavailableError saying how to install it. ``local``:
    for a Ray instance started here, bound to 127.0.0.1 (see LOCAL_ONLY)."""
    if local:
        for k, v in LOCAL_ONLY.items():
            os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(
            f"--executor ray needs Ray ({e}); pip install 'supermem[ray]'"
        ) from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable HOST:PORT: ``ray.init`` retries one for many minutes."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailableError(f"Ray address {address!r} is not HOST:PORT (or ray://HOST:PORT)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise RayUnavailableError(f"no Ray cluster answers at {address}: {why}") from None


def train_group(fn: Callable, job: Job, threads: int, cwd: str, probe: str | None) -> Any:
    """The Ray task: ``fn(job)`` with ``threads`` threads, on the shared OUT (``probe`` is
    the name of the driver's probe dir in OUT/runs) or, with ``probe`` None, in a temporary
    dir whose files go back to the driver as ``[(outcome, {file name: bytes}), ...]``."""
    limit_threads(threads)
    if os.path.isdir(cwd):  # relative paths in configs (init_from) resolve as on the driver
        os.chdir(cwd)
    if probe is not None:
        if not (Path(job.out) / RUNS / probe).is_dir():
            raise NotSharedError(
                f"{job.out} is not on a file system shared with node {socket.gethostname()}; "
                "mount it at the same path on every node, or do not ask for a shared one"
            )
        return fn(job)
    with tempfile.TemporaryDirectory(prefix="supermem-ray-") as tmp:
        outcomes = fn(Job(job.configs, tmp))
        return [(o, _read_files(Path(o.row["path"]))) for o in outcomes]


def _read_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


class RayExecutor(Executor):
    """Jobs as Ray tasks of ``threads`` CPUs each, on a local Ray instance or a cluster.

    ``address``: None starts a local Ray instance (``num_cpus`` CPUs, default all); a
    HOST:PORT (or ``auto``) joins a running cluster. If this process already called
    ``ray.init``, that connection is used and left open. ``workers``: at most that many
    tasks at once (default: all jobs are submitted; the cluster runs one per ``threads``
    CPUs). ``retries``: how often Ray reruns a task whose worker died (0: the driver
    records its runs as failed, and the next sweep retries them, as locally). Use it as a
    context manager: leaving it cancels tasks in flight and stops a local instance.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        threads: int = 1,
        workers: int | None = None,
        shared_fs: bool = True,
        retries: int = 0,
        num_cpus: int | None = None,
    ):
        if threads < 1 or (workers is not None and workers < 1) or retries < 0:
            raise ValueError(
                f"need threads, workers >= 1, retries >= 0; got {threads}, {workers}, {retries}"
            )
        if address is not None:
            check_address(address)
        self.ray = ray = import_ray(local=address is None)
        self.own = not ray.is_initialized()
        if self.own:
            try:
                ray.init(
                    address=address or "local",
                    num_cpus=num_cpus if address is None else None,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError) as e:  # e.g. a Ray version mismatch
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                raise RayUnavailableError(
                    f"cannot join a Ray cluster at {address}: {why}"
                ) from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.threads, self.cap, self.shared_fs = threads, workers, shared_fs
        self.workers = workers or max(1, cpus // threads)
        self.task = ray.remote(train_group).options(num_cpus=threads, max_retries=retries)
        self.pending: dict[Any, Job] = {}
        self.probes: dict[str, Path] = {}  # OUT (absolute) -> its probe dir

    def imap_unordered(self, fn: Callable, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        queue = list(jobs)[::-1]  # pop() from the end keeps the submission order
        cap = self.cap or len(queue)
        try:
            while queue or self.pending:
                while queue and len(self.pending) < cap:
                    job = queue.pop()
                    self.pending[self.submit(fn, job)] = job
                done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    job = self.pending.pop(ref)
                    yield job, self.collect(ref, job)
        finally:
            self.cancel()

    def submit(self, fn: Callable, job: Job) -> Any:
        probe = None
        if self.shared_fs:
            job = Job(job.configs, os.path.abspath(job.out))
            if job.out not in self.probes:  # hidden, .tmp-: readers skip it, sweeps clean it
                path = Path(job.out) / RUNS / f".ray-{uuid.uuid4().hex[:8]}.tmp-probe"
                path.mkdir(parents=True)
                self.probes[job.out] = path
            probe = self.probes[job.out].name
        return self.task.remote(fn, job, self.threads, os.getcwd(), probe)

    def collect(self, ref: Any, job: Job) -> Any:
        """The task's outcomes as the driver sees them, or the exception that stopped it."""
        try:
            got = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # raised inside the task
            if isinstance(e.cause, NotSharedError):
                raise NotSharedError(str(e.cause)) from None
            return e.cause if isinstance(e.cause, Exception) else e
        except self.ray.exceptions.RayError as e:  # the worker or its node died
            return e
        out = Path(job.out)
        if self.shared_fs:  # the task saw OUT as an absolute path; the index keeps ours
            return [
                Outcome(o.key, o.status, {**o.row, "path": str(out / _kind(o) / o.key)})
                for o in got
            ]
        cfgs = {config_key(c): c for c in job.configs}
        return [land(out, o, files, cfgs[o.key]) for o, files in got]

    def cancel(self) -> None:
        """Interrupt the tasks in flight (they delete their temp dirs), then kill laggards."""
        refs = list(self.pending)
        self.pending.clear()
        for force in (False, True):
            for ref in refs:
                try:
                    self.ray.cancel(ref, force=force)
                except Exception:  # finished meanwhile, or its worker is already gone
                    pass
            refs = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_S)[1] if refs else []
        for path in self.probes.values():
            shutil.rmtree(path, ignore_errors=True)
        self.probes.clear()

    def close(self) -> None:
        if self.pending or self.probes:
            self.cancel()
        if self.own and self.ray.is_initialized():
            self.ray.shutdown()


def _kind(o: Outcome) -> str:
    return FAILED if o.status == "failed" else RUNS


def land(out: Path, o: Outcome, files: dict[str, bytes], cfg) -> Outcome:
    """Write a run dir (or crash record) sent back by a task into OUT, atomically."""

    def write(tmp: Path) -> None:
        for name, data in files.items():
            (tmp / name).write_bytes(data)

    dest = out / _kind(o) / o.key
    try:
        if o.status == "failed":
            return Outcome(o.key, o.status, record(write_atomic(dest, write, overwrite=True)))
        try:
            write_atomic(dest, write)
            status = o.status
        except RunExistsError:  # the dir appeared meanwhile, as in run_group
            status = "exists"
    except Exception as e:  # e.g. disk full on the driver: record it, keep going
        err = f"saving failed: {type(e).__name__}: {e}"
        return write_failure(out, cfg, err, "", 0.0)
    shutil.rmtree(out / FAILED / o.key, ignore_errors=True)  # an earlier crash is superseded
    return Outcome(o.key, status, record(dest))
