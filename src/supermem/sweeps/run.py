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

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from supermem.config import TrainConfig
from supermem.sweeps.cost import hms, job_seconds
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
    bar = tqdm(total=len(todo), unit="run", desc=spec.name, disable=not progress)
    try:
        for job, result in executor.imap_unordered(run_group, jobs):
            if isinstance(result, BaseException):  # the worker died before it could record
                err = f"worker died: {type(result).__name__}: {result}"
                result = [_write_failure(out, c, err, "", 0.0) for c in job.configs]
            upsert(out, [o.row for o in result])
            for o in result:
                summary.add(o)
            bar.update(len(result))
            bar.set_postfix(failed=len(summary.failed), diverged=len(summary.diverged))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: end the jobs in flight, do not wait on them
        if own:
            executor.terminate()
        raise
    finally:
        bar.close()
        if own:
            executor.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _set_aside(out: Path, path: Path, err: Exception, wanted: dict[str, TrainConfig]) -> str:
    """Move a damaged run dir or crash record out of the way; one line saying so."""
    dest = set_aside(out, path)
    again = ", training it again" if path.name in wanted else ""
    return f"{err}; moved {path.parent.name}/{path.name} to {dest}{again}"
