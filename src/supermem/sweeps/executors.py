"""Where a sweep's groups of configs get trained: in this process, or in worker processes.

An ``Executor`` takes jobs (a job is a group of same-shape configs plus the sweep dir)
and yields ``(job, outcome)`` pairs as they finish, in any order. The outcome is what
``run_group(job)`` returned, or the exception that stopped it from returning (a dead
worker process, say). ``run_group`` trains the group with one ``train_many`` call and
saves every result as its own run dir *in the worker*, so killing the parent loses
at most the runs in flight. ``ray_executor.RayExecutor`` runs the same jobs as Ray tasks.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import shutil
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.index import FAILED, PARTIAL, RUNS, config_key, record
from supermem.sweeps.store import (
    RunExistsError,
    _json,
    init_weights,
    provenance,
    save_run,
    write_atomic,
)
from supermem.toy import checkpoint
from supermem.toy.engines.base import set_numba_threads

# The trainer module, looked up at call time so tests can monkeypatch train_many.
train_mod = importlib.import_module("supermem.toy.train")


@dataclass(frozen=True)
class Job:
    """Configs trained together (they differ only in train.INSTANCE_FIELDS)."""

    configs: tuple[TrainConfig, ...]
    out: str  # the sweep directory


@dataclass(frozen=True)
class Outcome:
    """One config's result as the parent needs it: an index row (see sweeps.index.record)."""

    key: str
    status: str  # ok | diverged | failed | exists (the run dir appeared meanwhile)
    row: dict[str, Any]


CHECKPOINT_EVERY = 600.0  # seconds between a group's checkpoints, in OUT/partial/<key>/


def run_group(job: Job) -> list[Outcome]:
    """Train one group and save each result; a crash becomes a failure record per config.

    The group checkpoints into ``OUT/partial/`` as it trains, so a sweep stopped (or a
    worker killed) mid-run resumes that run where it was, with the same numbers; the
    checkpoint is removed once every result is saved. One left by another grouping of
    configs is discarded."""
    out = Path(job.out)
    ck = out / PARTIAL / config_key(job.configs[0])
    t0 = time.perf_counter()
    try:
        try:
            checkpoint.info(ck, list(job.configs))
        except ConfigError:
            checkpoint.remove(ck)
        init = init_weights(job.configs[0])
        with _training(), _reporting(job) as on_check:
            results = train_mod.train_many(
                list(job.configs), progress=False, init=init, checkpoint=ck,
                checkpoint_every=CHECKPOINT_EVERY, threads=elastic_threads, on_check=on_check,
            )  # fmt: skip
    except Exception as e:  # isolate: this group fails, the sweep goes on
        err = f"{type(e).__name__}: {e}"
        tb = traceback.format_exc()
        return [write_failure(out, c, err, tb, time.perf_counter() - t0) for c in job.configs]
    outcomes = []
    for r in results:
        key = config_key(r.config)
        try:
            path = save_run(r, out / RUNS / key)
            status = "diverged" if r.diverged else "ok"
        except RunExistsError:  # the dir appeared meanwhile (sweeps lock OUT; a manual save)
            path, status = out / RUNS / key, "exists"
        except Exception as e:  # e.g. disk full: record it, keep going
            err = f"saving failed: {type(e).__name__}: {e}"
            outcomes.append(write_failure(out, r.config, err, traceback.format_exc(), r.seconds))
            continue
        shutil.rmtree(out / FAILED / key, ignore_errors=True)  # an earlier crash is superseded
        outcomes.append(Outcome(key, status, record(path)))
    checkpoint.remove(ck)
    return outcomes


def write_failure(out: Path, cfg: TrainConfig, error: str, tb: str, seconds: float) -> Outcome:
    """Write ``OUT/failed/<key>/`` (config.json, metrics.json with status failed)."""
    key = config_key(cfg)
    mets = {"status": "failed", "error": error, "traceback": tb, "seconds": seconds}

    def write(tmp: Path) -> None:
        _json(tmp / "config.json", {**cfg.to_dict(), **provenance()})
        _json(tmp / "metrics.json", mets)

    path = write_atomic(out / FAILED / key, write, overwrite=True)
    return Outcome(key, "failed", record(path))


class Executor(ABC):
    """Runs ``fn(job)`` for each job; yields ``(job, result or exception)`` as each finishes.

    ``workers``: how many jobs run at once; above 1, sweeps submit the longest jobs first.
    """

    workers: int = 1
    # a shared double: the runs' worth of steps the jobs in flight have trained since they
    # started (``run_group`` adds to it, for the sweep's progress bar); None: not reported
    progress: Any = None

    @abstractmethod
    def imap_unordered(self, fn: Callable, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]: ...

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release workers (no-op by default)."""

    def terminate(self) -> None:
        """Interrupted: end the jobs in flight rather than wait for them (default: close)."""
        self.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.terminate()
        self.close()


class _Counter:
    """A float with a lock, as ``multiprocessing.Value("d")`` has, for one process."""

    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


class SerialExecutor(Executor):
    """In this process, one job at a time, with torch's default thread count."""

    def __init__(self) -> None:
        self.progress = _Counter()

    def imap_unordered(self, fn, jobs):
        global _PROGRESS
        for job in jobs:
            before, _PROGRESS = _PROGRESS, self.progress
            try:
                got = fn(job)
            except Exception as e:
                got = e
            finally:
                _PROGRESS = before
            yield job, got


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Cores split evenly so ``workers`` processes do not oversubscribe the machine."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


# In a LocalExecutor worker: (the count of groups training now in all its workers, the
# cores, the worker's own threads), for ``elastic_threads``; None elsewhere.
_SHARED: tuple[Any, int, int] | None = None


# In a sweep's worker (or a SerialExecutor's process while it runs a job): the executor's
# ``progress``, for ``_reporting``; None elsewhere.
_PROGRESS: Any = None


def limit_threads(n: int, busy: Any = None, cores: int = 0, progress: Any = None) -> None:
    """Worker initializer: cap torch's (and numba's, if present) intra-op threads at n;
    ``busy`` (a shared counter) and ``cores``: see ``elastic_threads``; ``progress``: the
    executor's (``Executor.progress``)."""
    global _SHARED, _PROGRESS
    _SHARED = None if busy is None else (busy, cores, n)
    _PROGRESS = progress
    import torch

    torch.set_num_threads(n)
    set_numba_threads(n)


def elastic_threads() -> int | None:
    """In a LocalExecutor worker, the threads its group may use now: the cores shared by
    the groups training at this moment (a worker left alone gets them all, so the last big
    group of a sweep does not train on one core beside idle ones); None elsewhere. Only
    engines whose results do not depend on threads follow it (``Engine.elastic``)."""
    if _SHARED is None:
        return None
    busy, cores, _ = _SHARED
    return max(1, cores // max(1, busy.value))


@contextmanager
def _training() -> Iterator[None]:
    """Count this worker's group as training (``elastic_threads``) while in the block;
    after it, the worker's numba threads are its own again (the next group may be on an
    engine that does not adjust them)."""
    if _SHARED is None:
        yield
        return
    busy, _, own = _SHARED
    with busy.get_lock():
        busy.value += 1
    try:
        yield
    finally:
        with busy.get_lock():
            busy.value -= 1
        set_numba_threads(own)


@contextmanager
def _reporting(job: Job) -> Iterator[Callable[[int], None] | None]:
    """The hook ``train_many`` calls with the steps trained so far (first the step it
    starts from): while in the block, it adds the runs' worth of the steps trained since
    then to ``_PROGRESS`` (the group's runs times the share of their steps); after it, it
    takes that back, as the sweep counts the finished runs whole. None: nothing reads it."""
    shared = _PROGRESS
    if shared is None:
        yield None
        return
    runs, steps = len(job.configs), job.configs[0].steps
    start: int | None = None
    added = 0.0

    def on_check(step: int) -> None:
        nonlocal start, added
        start = step if start is None else start
        now = runs * (step - start) / steps
        with shared.get_lock():
            shared.value += now - added
        added = now

    try:
        yield on_check
    finally:
        with shared.get_lock():
            shared.value -= added


class LocalExecutor(Executor):
    """``workers`` spawned processes, each with cores // workers threads (at least 1), and
    those of workers left without a group (``elastic_threads``) for the others.

    Spawn, not fork: forking a parent that already started torch's thread pools can
    deadlock, and spawned workers start from a clean interpreter on every platform.
    """

    def __init__(self, workers: int, elastic: bool = True):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        ctx = multiprocessing.get_context("spawn")
        # groups training now, over all the workers (elastic=False: each keeps its threads)
        self.busy = ctx.Value("i", 0) if elastic else None
        self.progress = ctx.Value("d", 0.0)
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=limit_threads,
            initargs=(threads_per_worker(workers), self.busy, os.cpu_count() or 1, self.progress),
        )

    def imap_unordered(self, fn, jobs):
        pending = {self.pool.submit(fn, job): job for job in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                err = fut.exception()
                yield job, err if err is not None else fut.result()

    def terminate(self) -> None:
        """End the workers now, not after their groups: what they were writing stays a
        hidden temp dir (removed by the next sweep), their checkpoints stay for it to
        resume. A terminal's Ctrl-C reaches them anyway; a SIGTERM to the parent alone
        (``kill``, a batch scheduler) used to leave them training for nobody."""
        for p in list((getattr(self.pool, "_processes", None) or {}).values()):  # no API (3.11)
            if p.is_alive():
                p.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
