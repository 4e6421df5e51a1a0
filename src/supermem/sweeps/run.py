"""Resumable sweeps: a grid of TrainConfigs (``sweeps.spec``) trained into one directory,
each run once. Every config is keyed by its content hash (``config_key``), and ``OUT/runs/<key>/``
is written atomically, so running a sweep again (after a crash, a SIGKILL, or with a
bigger spec) trains only what is missing. The on-disk layout and the SQLite index are
in ``sweeps.index``; where the training happens is in ``executors``. Semantics:

- a diverged run is a result (status "diverged" in ``runs/``) and is never retried;
- a crashed group (an exception) leaves ``failed/<key>/`` records and is retried by the
  next ``run_sweep`` call; the sweep itself goes on either way;
- a damaged run dir (a truncated or unparseable file, see ``checks``) is never reused:
  ``run_sweep`` moves it to ``damaged/``, says so in one line, and trains it again.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from supermem.config import TrainConfig
from supermem.sweeps.cost import hms, job_seconds, resumed_steps
from supermem.sweeps.executors import (
    Executor,
    Job,
    LocalExecutor,
    Outcome,
    SerialExecutor,
    run_group,
)
from supermem.sweeps.executors import write_failure as _write_failure
from supermem.sweeps.index import (
    config_key,
    damaged,
    done_keys,
    ensure_index,
    remove_partial,
    set_aside,
    sweep_lock,
    upsert,
    write_spec,
)
from supermem.sweeps.spec import SweepSpec, by_key, groups

__all__ = ["SweepSummary", "run_sweep"]


@dataclass
class SweepSummary:
    """What one ``run_sweep`` call did. ``keys`` are the spec's runs, in grid order."""

    out: Path
    keys: list[str]
    skipped: int  # finished before this call
    ok: int = 0
    diverged: list[tuple[str, int | None]] = field(default_factory=list)  # (key, step)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, error)
    damaged: list[str] = field(default_factory=list)  # damaged dirs found, moved aside: why
    seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        return [f"{k}: diverged at step {s}" for k, s in self.diverged] + [
            f"{k}: failed: {e}" for k, e in self.failed
        ]

    def __str__(self) -> str:
        head = (
            f"{self.out}: {len(self.keys)} runs; {self.skipped} already done, {self.ok} trained "
            f"ok, {len(self.diverged)} diverged, {len(self.failed)} failed in {hms(self.seconds)}"
        )
        if self.damaged:
            head += f"; {len(self.damaged)} damaged dir(s) moved to {self.out / 'damaged'}"
        return "\n".join([head, *("  " + f for f in self.failures)])

    def add(self, o: Outcome) -> None:
        if o.status == "failed":
            self.failed.append((o.key, o.row["error"]))
        elif o.status == "diverged":
            self.diverged.append((o.key, o.row["metrics"].get("diverged_step")))
        else:  # ok, or "exists": the run dir appeared meanwhile (e.g. another process's run)
            self.ok += 1


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    workers: int = 1,
    executor: Executor | None = None,
    progress: bool = True,
    batch: bool = True,
) -> SweepSummary:
    """Train every config of ``spec`` not yet finished in ``out``; see the module docstring.

    One sweep at a time per ``out``: SweepBusyError if another process is running one.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    wanted = by_key(spec.configs())  # validate before creating anything
    out.mkdir(parents=True, exist_ok=True)
    with sweep_lock(out):
        return _run_locked(spec, out, wanted, workers, executor, progress, batch)


def _run_locked(
    spec: SweepSpec,
    out: Path,
    wanted: dict[str, TrainConfig],
    workers: int,
    executor: Executor | None,
    progress: bool,
    batch: bool,
) -> SweepSummary:
    remove_partial(out)  # safe: the lock says no other sweep has runs in flight here
    notes = [_set_aside(out, path, err, wanted) for path, err in damaged(out).items()]
    write_spec(out, spec.to_dict())
    rebuilt = ensure_index(out)
    for line in notes + ([rebuilt] if rebuilt else []):
        print(f"supermem: {line}", file=sys.stderr)
    done = done_keys(out)
    todo = [c for k, c in wanted.items() if k not in done]
    summary = SweepSummary(out, list(wanted), skipped=len(wanted) - len(todo), damaged=notes)
    jobs = [Job(tuple(g), str(out)) for g in groups(todo, batch)]
    own = executor is None
    if executor is None:  # no more processes than jobs: the spare cores go to their threads
        k = min(workers, len(jobs))
        executor = LocalExecutor(k) if k > 1 else SerialExecutor()
    if executor.workers > 1:  # longest first, so no worker is left alone with a big job
        jobs.sort(key=job_seconds, reverse=True)
    t0 = time.perf_counter()
    bar: _Bar | None = None
    try:
        if executor.progress is not None:  # what an executor used before still counted
            with executor.progress.get_lock():
                executor.progress.value = 0.0
        resumed = resumed_steps(out, todo, batch)
        share = {j: sum(resumed.get(config_key(c), 0) / c.steps for c in j.configs) for j in jobs}
        bar = _Bar(
            tqdm(total=len(todo), unit="run", desc=spec.name, disable=not progress),
            share,
            executor.progress,
        )
        for job, result in executor.imap_unordered(run_group, jobs):
            if isinstance(result, BaseException):  # the worker died before it could record
                err = f"worker died: {type(result).__name__}: {result}"
                result = [_write_failure(out, c, err, "", 0.0) for c in job.configs]
            upsert(out, [o.row for o in result])
            for o in result:
                summary.add(o)
            bar.finished(job, len(result), failed=len(summary.failed),
                         diverged=len(summary.diverged))  # fmt: skip
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: end the jobs in flight, do not wait on them
        if own:
            executor.terminate()
        raise
    finally:
        if bar is not None:
            bar.close()
        if own:
            executor.close()
    summary.seconds = time.perf_counter() - t0
    return summary


class _Bar:
    """A sweep's progress bar in runs: the finished ones, plus the part of the others
    trained, in steps: before this call (``resumed``: runs' worth per job, from their
    checkpoints) and since (the executor's ``progress``, which its workers add to at every
    finiteness check), redrawn every ``every`` seconds from a thread. Never goes back."""

    def __init__(self, bar: Any, resumed: dict[Job, float], shared: Any, every: float = 1.0):
        self.bar, self.resumed, self.shared = bar, dict(resumed), shared
        self.runs = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.show()
        if not bar.disable and shared is not None:
            self.thread = threading.Thread(target=self._poll, args=(every,), daemon=True)
            self.thread.start()

    def _poll(self, every: float) -> None:
        while not self.stop.wait(every):
            self.show()

    def show(self, force: bool = False) -> None:
        with self.lock:
            flying = 0.0 if self.shared is None else self.shared.value
            n = self.runs + sum(self.resumed.values()) + flying
            n = max(self.bar.n, min(n, self.bar.total))  # a job's share moves to runs
            n = int(n) if n == int(n) else math.floor(n * 100) / 100  # not 20/20 too soon
            if n != self.bar.n or force:  # a log file gets a line per change, not per poll
                self.bar.n = n
                self.bar.refresh()

    def finished(self, job: Job, runs: int, **postfix: int) -> None:
        with self.lock:
            self.runs += runs
            self.resumed.pop(job, None)
            self.bar.set_postfix(postfix, refresh=False)
        self.show(force=True)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self.bar.close()


def _set_aside(out: Path, path: Path, err: Exception, wanted: dict[str, TrainConfig]) -> str:
    """Move a damaged run dir or crash record out of the way; one line saying so."""
    dest = set_aside(out, path)
    again = ", training it again" if path.name in wanted else ""
    return f"{err}; moved {path.parent.name}/{path.name} to {dest}{again}"
