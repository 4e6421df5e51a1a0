"""The sweeps' cost model: a run's estimated seconds (``run_seconds``), calibrated on a
sweep's finished runs and the checkpoints of its runs in flight, and ``plan``: what
``run_sweep`` would do now and how long it would take. Reads only; creates nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.executors import Job, threads_per_worker
from supermem.sweeps.index import PARTIAL, RUNS, config_key, damaged, done_keys, failed_keys, scan
from supermem.sweeps.spec import SweepSpec, by_key, groups
from supermem.toy import checkpoint
from supermem.toy.engines import ENGINES, get_engine, named_engine, resolve_device
from supermem.toy.engines import cost as engine_cost
from supermem.toy.engines.cuda import hidden_lanes
from supermem.toy.memory import expected_nnz
from supermem.toy.model import get_model

__all__ = ["SweepPlan", "hms", "job_seconds", "plan", "resumed_steps", "run_seconds", "total"]

# Cost model: seconds(run) = OVERHEAD_S + steps * STEP_S + PARAM_S * param_steps
# (+ TREE_STEP_S * steps * restarts on the tree engine) + c * units, param_steps and units
# as in _param_steps and _units.
# Until this sweep dir has finished runs to calibrate from, c is the engine's default:
# "fast" (also what "auto" picks on CPU) fitted on the quick demo's groups (a fresh clone
# of 23368fa, 1 process on 2 cores: 1m15s and 5m04s for its two specs, the second with the
# tree kernels' first compile), less STEP_S and PARAM_S; "tree" the same c, its units
# scaled by the engines' model (see its entry); "reference" from its ~2 s step at
# T = n = 10^4, m = 2 (PAPER.md). STEP_S is the per-step Python and optimiser-call
# overhead, PARAM_S the per-parameter work, both from benchmarks/bench_step_terms.py (free
# cores, 1 thread). c depends on the regime (the fast engine skips blocks of features whose
# ReLU is off, which pays more as training goes on and at S = 0.999) and on the host, so a
# default is rough: the paper-scale demo's small T took 58 min of wall on one host (2
# workers) and 2 h 18 min on another (its batches 4 h 17 min of training), priced 3 h. A
# sweep's own runs, or its first checkpoint, calibrate c.
# The fast engine's generic kernel (m not 2 or 3) costs in proportion to m + 1, not m (a per-
# element cost that does not grow with m, about one hidden dimension's worth), each
# counting GENERIC_M m = 2 units. Fitted on the fig5 quick sweep (1 thread per worker, T >= 990):
# per step per T*n, m = 1, 3, 4, 6, 8 cost 1.34, 2.54, 3.13, 4.48, 5.68 ns, i.e. (m + 1) *
# (0.63 +- 0.02) ns, against 0.70 ns (2 units) for the m = 2 kernel; so GENERIC_M = 1.8
DEFAULT_CORES = 2  # the default c's machine: one process, 2 threads.
SECONDS_PER_UNIT = {
    "fast": 3.0e-10,
    # the engines' cost model prices a tree step against a fast one (``_units``), so the
    # tree takes fast's c; what a tree step costs beyond that model is TREE_STEP_S. The
    # 7.6e-10 once fitted on the quick demo (its kernels' first compile inside) priced the
    # paper scale's tree runs 5.5x over their measured time where fast's were 1.7x over
    # (this machine's T = 4,200 to 50,000 runs; docs/SWEEPS.md, "Time estimates")
    "tree": 3.0e-10,
    "chunked": 1e-8,
    # one H200, m = 2, 3, T = 10^5..10^6 (benchmarks/bench_cuda.py, 2026-12-04): 6.0-7.2e-13;
    # 2e-12 at T = 10^4, where the launches' fixed cost shows
    "cuda": 7e-13,
    "reference": 1e-8,
    # untied / relu_hidden: 1.13-1.19x tied "fast" in seconds, measured side by side
    # (n = 1,000, S = 0.99, m = 2, 1 thread each: 2,000 steps at T = 2,600, 500 at 10,000);
    # the earlier 5e-9 (one T = 2,600 sweep under load) was ~20x too high
    # (1.16x fast's 3.0e-10; it stayed 3e-10 when fast was refitted from 2.5e-10)
    "fast_variants": 3.5e-10,
}
GENERIC_M = 1.8
STEP_S = 5e-4
# The work per parameter of every instance per step, whatever T: the optimiser's update,
# the gradients' buffers, the bias terms. At the paper's n = 10,000 with 16 instances it is
# ~11 ms a step (12 ms with STEP_S), more than the dense pass below T ~ 100
# (benchmarks/bench_step_terms.py; docs/SWEEPS.md, "Time estimates"). Not counted for
# the cuda engine.
PARAM_S = 2.3e-8
# A tree run's seconds per instance per step beyond the engines' model (work of its step
# that model, fitted at n = 10,000, does not see and which shows at n = 1,000: kernel calls,
# the features' order, the finiteness and rebuild checks): fitted so that this machine's
# quick-scale tree runs are priced as its fast runs are (1.3x and 0.9x of fast's
# over-pricing, two folders of 46 one-instance tree runs; 0.9x and 0.6x without it), which
# moves the paper scale's by 2%. Per instance: a batch may pay it less (its calls are shared)
TREE_STEP_S = 6e-4
OVERHEAD_S = 0.5


def _units(c: TrainConfig, engine: str | None = None) -> float:
    """Work of one run in m = 2 fast-kernel units: steps * restarts * T * n * m, where the
    fast engine's generic kernel (m not in UNROLLED_M) counts (m + 1) * GENERIC_M for m. A run
    that the tree engine trains (``--engine tree``, or ``auto`` where the engines' cost
    model picks it) counts that times the predicted tree / fast step-cost ratio (1 where
    that model is not fitted, m > 3). The l1 loss runs on the fast engine's kernels (the
    tree engine computes mse only). ``engine``: the one a finished run recorded; else the
    one ``train`` would take (``engine_used``)."""
    name = engine or engine_used(c)
    generic = name in _FAST_KERNELS and c.hidden not in engine_cost.UNROLLED_M
    width = (c.hidden + 1) * GENERIC_M if generic else c.hidden
    if name == "cuda":  # its kernels run on W padded to hidden_lanes(m) rows
        width = hidden_lanes(c.hidden)
    units = float(c.steps) * c.restarts * c.train_size * c.features * width
    if name == "tree":
        shape = _shape(c)
        ratio = engine_cost.tree_step(*shape) / engine_cost.fast_step(*shape)
        units *= ratio if math.isfinite(ratio) else 1.0
    return units


_FAST_KERNELS = ("fast", "tree", "fast_variants")  # the dense pass: the fast engine's kernels


def _param_steps(c: TrainConfig, engine: str | None = None) -> float:
    """What one run's per-parameter work is paid on: steps * restarts * n * (m + 1) (the
    tied model's parameters, W and b); 0 on a GPU (``engine``: the one a finished run
    recorded; else the config's, ``auto`` and its device resolved here)."""
    on_gpu = engine == "cuda" if engine else c.engine == "cuda" or _device(c).type == "cuda"
    return 0.0 if on_gpu else float(c.steps) * c.restarts * c.features * (c.hidden + 1)


def _shape(c: TrainConfig) -> tuple[int, int, int, int, float]:
    """(instances, T, n, m, nonzeros per point): what the engines' cost model reads."""
    return (c.restarts, c.train_size, c.features, c.hidden, expected_nnz(c, 1))


def run_seconds(cfg: TrainConfig, c: float | None = None) -> float:
    """Estimated wall seconds of one run on 2 CPU cores (c: seconds per unit, or default)."""
    name = engine_used(cfg)  # the engine that trains it (auto and float64 resolved), once
    if c is None:  # its default
        c = SECONDS_PER_UNIT.get(name, 1e-8)
    fixed = PARAM_S * _param_steps(cfg) + _tree_extra(cfg, name)
    return OVERHEAD_S + cfg.steps * STEP_S + fixed + c * _units(cfg, name)


def _tree_extra(c: TrainConfig, name: str) -> float:
    """TREE_STEP_S per instance-step where the engine ``name`` is the tree, else 0."""
    return TREE_STEP_S * c.steps * c.restarts if name == "tree" else 0.0


def _fixed_work(c: TrainConfig, engine: str | None = None) -> float:
    """A run's seconds of work that do not grow with T: its parameters' (``PARAM_S``) and
    the tree's extra (``engine``: the one a finished run recorded; else the config's
    device and the engine ``train`` would take decide)."""
    return PARAM_S * _param_steps(c, engine) + _tree_extra(c, engine or engine_used(c))


def engine_used(c: TrainConfig) -> str:
    """The engine that would train ``c`` alone here, resolved as ``train`` resolves it
    (float64 on the reference engine, ``auto`` by ``get_engine``; a batch of several
    instances can tip ``auto``'s pick near the crossover, which this does not see)."""
    name = named_engine(c)
    if name != "auto":
        return name
    device = _device(c)
    if device.type == "cuda":  # planned, not run: no shape given, so no self-check runs
        if c.model == "tied" and c.loss == "mse":
            return "cuda"  # auto's pick where Triton is installed; the GPU engine priced
        return get_engine("auto", get_model(c.model), device, loss=c.loss).name
    return get_engine("auto", get_model(c.model), device, shape=_shape(c), loss=c.loss).name


def _device(c: TrainConfig) -> torch.device:
    """The device ``c`` trains on; ``cuda`` as asked even where this machine has none (a plan
    may be for a cluster's GPUs)."""
    return torch.device("cuda") if c.device == "cuda" else resolve_device(c.device)


def _kind(c: TrainConfig, engine: str | None = None) -> tuple[str, str, str, str]:
    """What decides a run's seconds per unit beyond its units: the engine that trains it
    (``engine``: the one a finished run recorded; else ``auto`` resolved, since one sweep's
    T axis can cross from ``fast`` to ``tree``), dtype, model, loss."""
    return (engine or engine_used(c), c.dtype, c.model, c.loss)


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
        acc[0] += spent * (used or threads)  # a kind's total is floored, not each run
        acc[1] += _units(c, engine) * done
        acc[2] += 1
        acc[3] += done < 1

    for s, c, r in zip(secs, cfgs, rows):
        # `seconds` times the training loop only; OVERHEAD_S (data, metrics, saving) is
        # separate, and a call's per-step overhead is paid once for all the runs it trains
        engine = r["metrics"].get("engine")
        spent = (s - c.steps * STEP_S) / share[s] - _fixed_work(c, engine)
        add(c, engine, spent, r["metrics"].get("threads"), 1.0)
    for d in dirs:
        finished = done_keys(d) if d.is_dir() else set()
        for f in _in_flight(d):
            if {config_key(c) for c in f.configs} <= finished:  # left behind by a stop
                continue
            used = f.thread_seconds / f.seconds if f.thread_seconds else None
            for c in f.configs:
                done = f.step / c.steps
                spent = (f.seconds - f.step * STEP_S) / len(f.configs)
                add(c, f.engine, spent - _fixed_work(c, f.engine) * done, used, done)
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
    # number of workers finishes it sooner, unless it takes up cores others freed
    longest_seconds: float = 0.0
    # the groups scheduled on the workers as run_sweep runs them (``_schedule``); None:
    # not simulated (the wall estimate is then the spread, at least the longest group)
    schedule_seconds: float | None = None

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
        Where ``plan`` scheduled the groups (``schedule_seconds``), that instead: the
        same prices, with the order, the worker count and freed cores taken up.
        """
        if self.schedule_seconds is not None:
            return self.schedule_seconds
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
            f"estimated {hms(est)} with {self.workers} worker(s) (cost model {how})"
        )


def plan(
    spec: SweepSpec,
    out: str | os.PathLike,
    workers: int = 1,
    siblings: tuple[Path, ...] = (),
    batch: bool = True,
    elastic: bool = True,
) -> SweepPlan:
    """Count done / to-do runs and estimate time. Reads only; creates nothing.
    ``batch``: as ``run_sweep``'s (which groups resume from checkpoints). ``elastic``:
    whether the workers take up freed cores (``LocalExecutor``'s default; not Ray's).

    The cost model is calibrated per kind of to-do run (``_kind``: engine, dtype, model,
    loss) on ``out``'s finished runs of that kind; a kind with none there on the runs of
    that kind in ``siblings`` (other sweep dirs, e.g. a recipe's); a kind with none
    anywhere is priced on the engine's default."""
    out = Path(out)
    todo_cfgs = by_key(spec.configs())
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
    group_dense = [0.0] * len(todo_groups)  # of it, the c * units part (scales with threads)
    for k, cfg, kind in zip(map(config_key, todo), todo, kinds):
        c = cal.get(kind, (None,))[0]
        left = 1 - resume.get(k, 0) / cfg.steps
        # a group's per-step overhead is paid once for all its runs (one train_many call)
        shared = cfg.steps * STEP_S if group_secs[group_of[k]] else 0.0
        whole = run_seconds(cfg, c)
        one = OVERHEAD_S + (whole - OVERHEAD_S - shared) * left
        dense = (whole - _fixed_seconds(cfg)) * left
        secs += one
        if c is None:
            default_secs += one
            # the default c is for DEFAULT_CORES threads; the fixed part does not scale
            group_secs[group_of[k]] += one - dense + dense * DEFAULT_CORES / threads
            group_dense[group_of[k]] += dense * DEFAULT_CORES / threads
        else:
            cal_c, cal_units = cal_c + c * _units(cfg) * left, cal_units + _units(cfg) * left
            group_secs[group_of[k]] += one
            group_dense[group_of[k]] += dense
    # the order run_sweep submits them in: longest first (by the default model) on several
    # workers; a group on an elastic engine takes the cores the others leave
    order = list(range(len(todo_groups)))
    if workers > 1:  # run_sweep's sort, by the same key
        jobs = [Job(tuple(g), str(out)) for g in todo_groups]
        order.sort(key=lambda i: job_seconds(jobs[i]), reverse=True)
    engine = dict(zip(map(config_key, todo), (kind[0] for kind in kinds)))  # resolved above
    flex = [_elastic(engine[config_key(todo_groups[i][0])]) and elastic for i in order]
    fixed = [group_secs[i] - group_dense[i] for i in order]
    sched = _schedule(fixed, [group_dense[i] for i in order], flex, workers)
    retry = len(failed_keys(out) & {config_key(cfg) for cfg in todo})
    n_bad = len({p.name for p in bad} & {config_key(cfg) for cfg in todo})
    return SweepPlan(
        len(todo_cfgs), len(done), len(todo), retry, secs,
        cal_c / cal_units if cal_units else None, sum(n for _, n, _, _ in cal.values()),
        workers, n_bad, len(resume), default_secs if cal else None,
        sum(n for _, n, _, theirs in cal.values() if theirs),
        sum(flying for _, _, flying, _ in cal.values()), max(group_secs, default=0.0), sched,
    )  # fmt: skip


def _fixed_seconds(cfg: TrainConfig) -> float:
    """The part of ``run_seconds`` that does not scale with the CPU threads: the run's
    overhead, per-step overhead and per-parameter work (the tree's per-step extra)."""
    return OVERHEAD_S + cfg.steps * STEP_S + _fixed_work(cfg)


def _elastic(name: str) -> bool:
    """Whether the engine ``name`` takes up freed cores (``Engine.elastic``)."""
    engine = ENGINES.get(name)
    return engine is not None and engine.elastic


def _schedule(fixed: list[float], dense: list[float], elastic: list[bool], workers: int) -> float:
    """Wall seconds of training groups in this order on ``workers`` processes, each taking
    the next group when it is free. Group i takes ``fixed[i] + dense[i]`` seconds on one
    worker's ``threads_per_worker(workers)`` threads, of which ``dense`` scales with
    threads (linearly, as the calibration takes it); an ``elastic`` group trains on
    ``max(1, cores // groups training)`` threads (``executors.elastic_threads``), so the
    last groups of a sweep take the cores the others freed."""
    cores = os.cpu_count() or 1
    own = threads_per_worker(workers, cores)
    queue = list(zip(fixed, dense, elastic))
    active: list[list] = []  # [fraction left, fixed, dense, elastic]
    wall = 0.0
    while queue or active:
        while queue and len(active) < workers:
            active.append([1.0, *queue.pop(0)])
        k = max(1, cores // len(active))
        # each group's seconds, whole, at the threads it has now
        whole = [g[1] + g[2] * own / (k if g[3] else own) for g in active]
        dt = min(g[0] * w for g, w in zip(active, whole))
        wall += dt
        for g, w in zip(active, whole):
            g[0] = g[0] - dt / w if w > 0 else 0.0
        active = [g for g in active if g[0] > 1e-9]
    return wall


def total(plans: list[SweepPlan]) -> str:
    """One line for sweeps that run one after another (a recipe's): their runs, and the
    sum of their wall estimates."""
    done, todo = sum(p.done for p in plans), sum(p.todo for p in plans)
    wall = hms(sum(p.wall_seconds for p in plans))
    workers = max((p.workers for p in plans), default=1)  # a one-group sweep starts one
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


def job_seconds(job: Job) -> float:
    """Estimated serial seconds of one job (the default cost model: only its rank matters)."""
    return sum(run_seconds(c) for c in job.configs)


def hms(s: float) -> str:
    s = int(round(s))
    return (
        f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
    )
