"""Resumable sweeps: a grid of TrainConfigs trained into one directory, each run once.

A ``SweepSpec`` is fixed settings plus axes; its grid is the product of the axes.
Every config is keyed by its content hash (``config_key``), and ``OUT/runs/<key>/``
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

import itertools
import os
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.executors import (
    Executor,
    Job,
    LocalExecutor,
    Outcome,
    SerialExecutor,
    run_group,
    threads_per_worker,
)
from supermem.sweeps.executors import write_failure as _write_failure
from supermem.sweeps.index import (
    PARTIAL,
    RUNS,
    SweepBusyError,
    config_key,
    damaged,
    done_keys,
    ensure_index,
    failed_keys,
    floats_as_floats,
    load_sweep,
    rebuild_index,
    remove_partial,
    scan,
    set_aside,
    sweep_frame,
    sweep_lock,
    upsert,
    write_spec,
)
from supermem.toy import checkpoint
from supermem.toy.engines import cost as engine_cost
from supermem.toy.engines import get_engine, resolve_device
from supermem.toy.engines.cuda import hidden_lanes
from supermem.toy.memory import expected_nnz
from supermem.toy.model import get_model
from supermem.toy.train import INSTANCE_FIELDS

__all__ = [
    "SweepPlan",
    "SweepBusyError",
    "SweepSpec",
    "SweepSummary",
    "config_key",
    "load_sweep",
    "plan",
    "rebuild_index",
    "run_sweep",
    "sweep_frame",
]

GROUP_SIZE = 8  # instances per train_many call: batched enough to pay, small enough to flow
_FIELDS = {f.name: f for f in fields(TrainConfig)}


@dataclass(frozen=True)
class SweepSpec:
    """A named grid: ``fixed`` TrainConfig fields plus ``axes`` (field -> list of values)."""

    name: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]

    def __post_init__(self) -> None:
        for part in ("fixed", "axes"):
            table = getattr(self, part)
            if not isinstance(table, dict):
                raise ConfigError(f"sweep {part} must be a table, got {table!r}")
            unknown = sorted(set(table) - set(_FIELDS))
            if unknown:
                raise ConfigError(
                    f"sweep {part}: unknown TrainConfig field(s) {', '.join(unknown)}"
                )
        both = sorted(set(self.fixed) & set(self.axes))
        if both:
            raise ConfigError(f"sweep field(s) {', '.join(both)} are both fixed and an axis")
        for k, vals in self.axes.items():
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"sweep axis {k} must be a non-empty list, got {vals!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        unknown = sorted(set(d) - {"name", "fixed", "axes"})
        if unknown:
            raise ConfigError(
                f"sweep spec: unknown key(s) {', '.join(unknown)} (name, fixed, axes)"
            )
        fixed, axes = d.get("fixed", {}), d.get("axes", {})
        for part, table in (("fixed", fixed), ("axes", axes)):
            if not isinstance(table, dict):
                raise ConfigError(f"sweep {part} must be a table, got {table!r}")
        return cls(str(d.get("name", "sweep")), dict(fixed), dict(axes))

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> SweepSpec:
        """Top-level ``name`` (default: the file's stem), a ``[fixed]`` and an ``[axes]`` table."""
        import tomllib

        path = Path(path)
        with path.open("rb") as fh:
            d = tomllib.load(fh)
        return cls.from_dict({"name": path.stem, **d})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fixed": dict(self.fixed), "axes": dict(self.axes)}

    def with_fixed(self, changes: dict[str, Any]) -> SweepSpec:
        """The grid with ``changes`` (TrainConfig field -> value) fixed in every config, in
        place of what the spec fixes; an axis of the spec is refused (select its values
        with ``restrict`` instead)."""
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {', '.join(unknown)}")
        axes = sorted(set(changes) & set(self.axes))
        if axes:
            raise ConfigError(
                f"{', '.join(axes)} is an axis of sweep {self.name}, not a fixed field; "
                "select its values instead"
            )
        return replace(self, fixed={**self.fixed, **changes})

    def restrict(self, field: str, values: list[str]) -> SweepSpec | None:
        """The part of the grid whose ``field`` is one of ``values`` (strings, as typed on
        a command line: numbers compare as numbers, so 1800 matches 1800 and 1.8e3), or
        None if no config has such a value. Run keys depend on configs only, so the part's
        runs are the whole grid's: a later run of the whole spec trains only the rest."""
        if field not in _FIELDS:
            raise ConfigError(f"unknown TrainConfig field {field!r}")
        if field in self.axes:
            kept = [x for x in self.axes[field] if any(_same(x, v) for v in values)]
            return replace(self, axes={**self.axes, field: kept}) if kept else None
        # fixed or at its default: the value each config resolves to (warmup follows steps)
        hits = {any(_same(getattr(c, field), v) for v in values) for c in self.configs()}
        if len(hits) > 1:
            raise ConfigError(
                f"{field} varies with the axes of sweep {self.name} "
                f"({', '.join(self.axes)}); select on an axis instead"
            )
        return self if hits == {True} else None

    def configs(self) -> list[TrainConfig]:
        """The grid in axis order (last axis varies fastest); ConfigError names a bad value."""
        out = []
        for combo in itertools.product(*self.axes.values()):
            point = dict(zip(self.axes, combo))
            d = floats_as_floats({**self.fixed, **point})
            try:
                out.append(TrainConfig.from_dict(d))
            except ConfigError as e:
                where = ", ".join(f"{k}={v!r}" for k, v in point.items())
                raise ConfigError(
                    f"sweep {self.name}{f' at {where}' if where else ''}: {e}"
                ) from None
        return out


def _same(x: Any, typed: str) -> bool:
    """Whether a spec value equals a value typed as text (numbers as numbers)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            return float(typed) == float(x)
        except ValueError:
            return False
    return str(x) == typed


def _unique(cfgs: list[TrainConfig]) -> dict[str, TrainConfig]:
    return {config_key(c): c for c in cfgs}  # a repeated axis value names the same run


# -- planning -------------------------------------------------------------------------
# Cost model: seconds(run) = OVERHEAD_S + steps * STEP_S + c * units, units as in _units.
# Until this sweep dir has finished runs to calibrate from, c is the engine's default:
# "fast" (also what "auto" picks on CPU) calibrated on the quick demo (26 runs, 5m05s on
# 2 cores, fits both of its specs within 10%); "reference" from its ~2 s step at
# T = n = 10^4, m = 2 (PAPER.md). STEP_S is the per-step optimiser and Python overhead.
# The fast engine's generic kernel (m not 2 or 3) costs in proportion to m + 1, not m (a per-
# element cost that does not grow with m, about one hidden dimension's worth), each
# counting GENERIC_M m = 2 units. Fitted on the fig5 quick sweep (1 thread per worker, T >= 990):
# per step per T*n, m = 1, 3, 4, 6, 8 cost 1.34, 2.54, 3.13, 4.48, 5.68 ns, i.e. (m + 1) *
# (0.63 +- 0.02) ns, against 0.70 ns (2 units) for the m = 2 kernel; so GENERIC_M = 1.8
DEFAULT_CORES = 2  # the default c's machine: one process, 2 threads.
SECONDS_PER_UNIT = {
    "fast": 2.5e-10,
    "auto": 2.5e-10,
    "tree": 2.5e-10,
    "chunked": 1e-8,
    # one H200, m = 2, 3, T = 10^5..10^6 (benchmarks/bench_cuda.py, 2026-12-04): 6.0-7.2e-13;
    # 2e-12 at T = 10^4, where the launches' fixed cost shows
    "cuda": 7e-13,
    "reference": 1e-8,
    # untied / relu_hidden: 1.13-1.19x tied "fast" in seconds, measured side by side
    # (n = 1,000, S = 0.99, m = 2, 1 thread each: 2,000 steps at T = 2,600, 500 at 10,000);
    # the earlier 5e-9 (one T = 2,600 sweep under load) was ~20x too high
    "fast_variants": 3e-10,
}
GENERIC_M = 1.8
DEFAULT_CORES = 2  # the default c's machine: one process, 2 threads
STEP_S = 3e-4
OVERHEAD_S = 0.5


def _units(c: TrainConfig) -> float:
    """Work of one run in m = 2 fast-kernel units: steps * restarts * T * n * m, where the
    fast engine's generic kernel (m not in UNROLLED_M) counts (m + 1) * GENERIC_M for m. A run
    that the tree engine trains (``--engine tree``, or ``auto`` where the engines' cost
    model picks it) counts that times the predicted tree / fast step-cost ratio. The l1
    loss runs on the fast engine's kernels (the tree engine computes mse only)."""
    fast_kernels = ("fast", "auto", "tree", "fast_variants")  # the dense pass: fast's kernels
    generic = c.engine in fast_kernels and c.hidden not in engine_cost.UNROLLED_M
    width = (c.hidden + 1) * GENERIC_M if generic else c.hidden
    if c.engine == "cuda":  # its kernels run on W padded to hidden_lanes(m) rows
        width = hidden_lanes(c.hidden)
    units = float(c.steps) * c.restarts * c.train_size * c.features * width
    if c.engine == "tree" or _tree_picked(c):
        shape = _shape(c)
        units *= engine_cost.tree_step(*shape) / engine_cost.fast_step(*shape)
    return units


def _shape(c: TrainConfig) -> tuple[int, int, int, int, float]:
    """(instances, T, n, m, nonzeros per point): what the engines' cost model reads."""
    return (c.restarts, c.train_size, c.features, c.hidden, expected_nnz(c, 1))


def _tree_picked(c: TrainConfig) -> bool:
    """Whether ``auto`` trains this run on the tree engine (by the engines' cost model)."""
    return c.engine == "auto" and c.loss == "mse" and engine_cost.pick(*_shape(c)) == "tree"


def run_seconds(cfg: TrainConfig, c: float | None = None) -> float:
    """Estimated wall seconds of one run on 2 CPU cores (c: seconds per unit, or default)."""
    if c is None:
        c = SECONDS_PER_UNIT.get(cfg.engine, 1e-8)
        if cfg.engine == "auto" and cfg.model != "tied" and not _tree_picked(cfg):
            c = SECONDS_PER_UNIT["fast_variants"]  # what auto takes for these models
    return OVERHEAD_S + cfg.steps * STEP_S + c * _units(cfg)


def _engine_used(c: TrainConfig) -> str:
    """The engine that would train ``c`` alone here, resolved as ``train`` resolves it
    (float64 on the reference engine, ``auto`` by ``get_engine``; a batch of several
    instances can tip ``auto``'s pick near the crossover, which this does not see)."""
    name = "reference" if c.dtype == "float64" else c.engine
    if name != "auto":
        return name
    device = resolve_device(c.device)
    return get_engine("auto", get_model(c.model), device, shape=_shape(c), loss=c.loss).name


def _kind(c: TrainConfig, engine: str | None = None) -> tuple[str, str, str, str]:
    """What decides a run's seconds per unit beyond its units: the engine that trains it
    (``engine``: the one a finished run recorded; else ``auto`` resolved, since one sweep's
    T axis can cross from ``fast`` to ``tree``), dtype, model, loss."""
    return (engine or _engine_used(c), c.dtype, c.model, c.loss)


def _calibrate(
    dirs: list[Path], skip: set[Path], threads: int
) -> dict[tuple, tuple[float, int, int]]:
    """{kind (see ``_kind``): (seconds per unit on one thread, runs used, of them in
    flight)} from the ok runs
    in ``dirs`` but ``skip`` (damaged ones), and from the checkpoints of the groups still
    in flight there (``OUT/partial/``: the steps trained so far); a kind with neither is
    absent (its default applies). Each run's c is scaled to one thread by the CPU threads
    its metrics.json (or checkpoint) records (speed taken as linear in threads), or by
    ``threads`` where it records none (trained off the CPU, or before runs recorded them)."""
    keys = set(TrainConfig.__dataclass_fields__)
    rows, cfgs = [], []
    for d in dirs:
        for r in scan(d, skip) if d.is_dir() else []:
            if r["status"] == "ok":
                rows.append(r)
                cfgs.append(TrainConfig(**{k: v for k, v in r["config"].items() if k in keys}))
    # runs trained in one train_many call share one wall time: split it between them
    secs = [r["metrics"].get("seconds", 0.0) for r in rows]
    share = {s: secs.count(s) for s in secs}
    # per kind: [seconds on one thread, units, runs, of them in flight]
    by_kind: dict[tuple, list[float]] = {}

    def add(c: TrainConfig, engine: str | None, spent: float, used: float | None, done: float):
        acc = by_kind.setdefault(_kind(c, engine), [0.0, 0.0, 0, 0])
        acc[0] += spent * (used or threads)
        acc[1] += _units(c) * done
        acc[2] += 1
        acc[3] += done < 1

    for s, c, r in zip(secs, cfgs, rows):
        # `seconds` times the training loop only; OVERHEAD_S (data, metrics, saving) is
        # separate, and a call's per-step overhead is paid once for all the runs it trains
        add(c, r["metrics"].get("engine"), (s - c.steps * STEP_S) / share[s],
            r["metrics"].get("threads"), 1.0)  # fmt: skip
    for d in dirs:
        finished = done_keys(d) if d.is_dir() else set()
        for f in _in_flight(d):
            if {config_key(c) for c in f.configs} <= finished:  # left behind by a stop
                continue
            used = f.thread_seconds / f.seconds if f.thread_seconds else None
            for c in f.configs:
                spent = (f.seconds - f.step * STEP_S) / len(f.configs)
                add(c, f.engine, spent, used, f.step / c.steps)
    return {k: (max(a[0] / a[1], 1e-13), int(a[2]), int(a[3])) for k, a in by_kind.items()}


class _Flight(NamedTuple):
    """What a checkpoint in ``OUT/partial/`` says of its group's training so far."""

    configs: list[TrainConfig]
    step: int
    seconds: float
    engine: str
    thread_seconds: float | None


def _in_flight(out: Path) -> list[_Flight]:
    """The readable checkpoints in ``OUT/partial/`` with at least one step trained
    (reads only)."""
    part = out / PARTIAL
    # a checkpoint caught between its two renames is a hidden .<key>.old-* (peek reads it)
    keys = {p.name[1:].split(".old-")[0] if p.name.startswith(".") else p.name
            for p in part.iterdir()} if part.is_dir() else set()  # fmt: skip
    found = []
    for key in sorted(keys):
        meta = checkpoint.peek_meta(part / key)
        if meta is None:
            continue
        try:
            th = meta.get("thread_seconds")
            got = _Flight(
                [TrainConfig.from_dict(c) for c in meta["configs"]],
                int(meta["step"]),
                float(meta["seconds"]),
                str(meta["engine"]),
                None if th is None else float(th),
            )
        except (ConfigError, KeyError, TypeError, ValueError):
            continue
        if got.step > 0 and got.seconds > 0:
            found.append(got)
    return found


@dataclass(frozen=True)
class SweepPlan:
    """What ``run_sweep(spec, out)`` would do now; ``seconds`` is the serial estimate
    (one process, DEFAULT_CORES threads for the default c), ``wall_seconds`` the wall time."""

    total: int  # distinct configs in the spec
    done: int  # already finished in out (never retrained)
    todo: int  # to train, including `retry`
    retry: int  # of todo, those with a crash record from an earlier call
    seconds: float
    # the calibrated c on one worker's threads (several kinds calibrated: their mean
    # weighted by the to-do runs' units); None: the engine defaults of SECONDS_PER_UNIT
    seconds_per_unit: float | None
    calibrated_from: int  # ok runs the cost model was fitted on (0: documented default)
    workers: int = 1
    damaged: int = 0  # of todo, run dirs found damaged (moved aside and retrained)
    resuming: int = 0  # of todo, runs a checkpoint in OUT/partial/ takes part of the way
    # of seconds, the part priced on the default c (runs of a kind nothing calibrates);
    # None: all of it if calibrated_from is 0, else none
    default_seconds: float | None = None
    sibling_runs: int = 0  # of calibrated_from, runs of the other sweeps (siblings)
    in_flight_runs: int = 0  # of calibrated_from, runs part-trained (their checkpoints)
    # the wall seconds of the longest group (runs trained in one call, on one worker): no
    # number of workers finishes sooner
    longest_seconds: float = 0.0

    @property
    def from_siblings(self) -> bool:
        """Whether the other sweeps' runs calibrated part of the estimate."""
        return self.sibling_runs > 0

    @property
    def wall_seconds(self) -> float:
        """Estimated wall time with ``workers`` processes on this machine's cores.

        Calibrated c is per unit on one worker's threads (``plan`` scales each run's to
        them from the threads it recorded): divide by the worker count. The
        default c is for one process using DEFAULT_CORES cores; K workers get
        ``threads_per_worker(K)`` each, and speed is taken as linear in threads. Never
        less than the longest group (``longest_seconds``), which one worker trains alone.
        """
        default = self.default_seconds
        if default is None:
            default = 0.0 if self.calibrated_from else self.seconds
        threads = self.workers * threads_per_worker(self.workers)
        spread = (self.seconds - default) / self.workers + default * DEFAULT_CORES / threads
        return max(spread, self.longest_seconds)

    def __str__(self) -> str:
        est = self.wall_seconds
        how = f"calibrated on {self.calibrated_from} runs" if self.calibrated_from else "default"
        if self.sibling_runs and self.sibling_runs == self.calibrated_from:
            how += " of the other sweeps, same engine"
        elif self.sibling_runs:
            how += f" ({self.sibling_runs} of them the other sweeps', same engine)"
        if self.in_flight_runs:
            how += f"; {self.in_flight_runs} of them part-trained, from their checkpoints"
        if self.calibrated_from and self.default_seconds:
            how += "; runs of an engine with none calibrated on the default"
        bad = f", {self.damaged} damaged" if self.damaged else ""
        bad += f", {self.resuming} resuming from checkpoints" if self.resuming else ""
        return (
            f"{self.total} runs: {self.done} done, {self.todo} to do ({self.retry} retried{bad}); "
            f"estimated {_hms(est)} with {self.workers} worker(s) (cost model {how})"
        )


def plan(
    spec: SweepSpec,
    out: str | os.PathLike,
    workers: int = 1,
    siblings: tuple[Path, ...] = (),
    batch: bool = True,
) -> SweepPlan:
    """Count done / to-do runs and estimate time. Reads only; creates nothing.
    ``batch``: as ``run_sweep``'s (which groups resume from checkpoints).

    The cost model is calibrated per kind of to-do run (``_kind``: engine, dtype, model,
    loss) on ``out``'s finished runs of that kind; a kind with none there on the runs of
    that kind in ``siblings`` (other sweep dirs, e.g. a recipe's); a kind with none
    anywhere is priced on the engine's default."""
    out = Path(out)
    todo_cfgs = _unique(spec.configs())
    bad = set(damaged(out)) if out.is_dir() else set()
    done = (done_keys(out) - {p.name for p in bad if p.parent.name == RUNS}) & set(todo_cfgs)
    todo = [cfg for k, cfg in todo_cfgs.items() if k not in done]
    todo_groups = groups(todo, batch)
    # run_sweep starts no more processes than groups; the spare cores go to their threads
    workers = max(1, min(workers, len(todo_groups)))
    threads = threads_per_worker(workers)  # each worker's, as the runs will have them
    own = _calibrate([out], bad, threads)
    others = [Path(d) for d in siblings if Path(d) != out and Path(d).is_dir()]
    sib = _calibrate(others, {p for d in others for p in damaged(d)}, threads) if others else {}
    # per kind: c from this sweep's own runs of that kind, else from its siblings' runs of
    # that kind, else the engine's default; a calibrated c per thread, on a worker's threads
    kinds = [_kind(cfg) for cfg in todo]
    cal: dict[tuple, tuple[float, int, int, bool]] = {}
    for kind in set(kinds):
        if kind in own or kind in sib:
            c1, n, flying = own[kind] if kind in own else sib[kind]
            cal[kind] = (c1 / threads, n, flying, kind not in own)
    resume = resumed_steps(out, todo, batch)
    secs = default_secs = cal_c = cal_units = 0.0
    group_of = {config_key(c): i for i, g in enumerate(todo_groups) for c in g}
    group_secs = [0.0] * len(todo_groups)  # on one worker
    for k, cfg, kind in zip(map(config_key, todo), todo, kinds):
        c = cal.get(kind, (None,))[0]
        left = 1 - resume.get(k, 0) / cfg.steps
        # a group's per-step overhead is paid once for all its runs (one train_many call)
        shared = cfg.steps * STEP_S if group_secs[group_of[k]] else 0.0
        one = OVERHEAD_S + (run_seconds(cfg, c) - OVERHEAD_S - shared) * left
        secs += one
        if c is None:
            default_secs += one
            group_secs[group_of[k]] += one * DEFAULT_CORES / threads
        else:
            cal_c, cal_units = cal_c + c * _units(cfg) * left, cal_units + _units(cfg) * left
            group_secs[group_of[k]] += one
    retry = len(failed_keys(out) & {config_key(cfg) for cfg in todo})
    n_bad = len({p.name for p in bad} & {config_key(cfg) for cfg in todo})
    return SweepPlan(
        len(todo_cfgs), len(done), len(todo), retry, secs,
        cal_c / cal_units if cal_units else None, sum(n for _, n, _, _ in cal.values()),
        workers, n_bad, len(resume), default_secs if cal else None,
        sum(n for _, n, _, theirs in cal.values() if theirs),
        sum(flying for _, _, flying, _ in cal.values()), max(group_secs, default=0.0),
    )  # fmt: skip


def total(plans: list[SweepPlan]) -> str:
    """One line for sweeps that run one after another (a recipe's): their runs, and the
    sum of their wall estimates."""
    done, todo = sum(p.done for p in plans), sum(p.todo for p in plans)
    wall = _hms(sum(p.wall_seconds for p in plans))
    workers = plans[0].workers if plans else 1
    return (
        f"{sum(p.total for p in plans)} runs: {done} done, {todo} to do; estimated {wall} "
        f"with {workers} worker(s), the {len(plans)} sweeps one after another"
    )


def resumed_steps(out: Path, cfgs: list[TrainConfig], batch: bool = True) -> dict[str, int]:
    """Steps already trained, by config key, of those of ``cfgs`` (a sweep's to-do list)
    whose group left a checkpoint in ``OUT/partial/``: the groups ``run_sweep`` would form
    (``groups(cfgs, batch)``), each resumed only from a checkpoint of exactly its configs
    (``executors.run_group`` discards any other). Reads only."""
    steps: dict[str, int] = {}
    for g in groups(cfgs, batch):
        got = checkpoint.peek(out / PARTIAL / config_key(g[0]))
        if got is not None and checkpoint.same_configs(got[1], g):
            steps.update(dict.fromkeys(map(config_key, g), got[0]))
    return steps


def _hms(s: float) -> str:
    s = int(round(s))
    return (
        f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
    )


# -- running --------------------------------------------------------------------------
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
            f"ok, {len(self.diverged)} diverged, {len(self.failed)} failed in {_hms(self.seconds)}"
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


def job_seconds(job: Job) -> float:
    """Estimated serial seconds of one job (the default cost model: only its rank matters)."""
    return sum(run_seconds(c) for c in job.configs)


def groups(cfgs: list[TrainConfig], batch: bool = True, size: int = GROUP_SIZE) -> list[list]:
    """Configs that differ only in INSTANCE_FIELDS, in chunks of <= size (batch=False: 1)."""
    if not batch:
        return [[c] for c in cfgs]
    shapes: dict[TrainConfig, list[TrainConfig]] = {}
    for c in cfgs:
        shapes.setdefault(c.replace(**{f: 0 for f in INSTANCE_FIELDS}), []).append(c)
    return [g[i : i + size] for g in shapes.values() for i in range(0, len(g), size)]


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
    wanted = _unique(spec.configs())  # validate before creating anything
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
