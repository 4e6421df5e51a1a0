"""Full-batch AdamW training of many same-shape models at once.

``train(cfg)`` trains one model (``cfg.restarts`` init seeds as instances, the lowest
*training* loss kept, as in the paper's small-m runs). ``train_many(cfgs)`` trains
several configs that differ only in seeds together, in one leading ``inst`` dimension:
the loss is summed over instances and AdamW is elementwise, so nothing couples them.

Divergence (a non-finite loss) is recorded per instance with the first step it
happened at; the run is then reported as diverged, never as a result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from supermem.config import ConfigError, TrainConfig
from supermem.provenance import cpu_features, cpu_target, git_commit
from supermem.toy import checkpoint as ckpt
from supermem.toy import data as data_mod
from supermem.toy import losses
from supermem.toy.data import SparseData
from supermem.toy.engines import get_engine, named_engine, resolve_device
from supermem.toy.engines.base import Engine
from supermem.toy.engines.weighted import WeightedData, WeightedEngine
from supermem.toy.memory import check_memory, expected_nnz
from supermem.toy.model import Params, get_model

# Fields allowed to differ between configs trained together as instances.
INSTANCE_FIELDS = ("seed", "data_seed")
ADAMW_BETAS = (0.9, 0.999)  # beta2 (and eps) come from the config: adam_beta2, adam_eps
CHECK_EVERY = 100  # steps between finiteness checks and progress updates (one sync each)


def warmup_then_cosine_to_zero(step: int, steps: int, warmup: int, peak: float) -> float:
    """Learning rate used for optimiser step ``step`` (0-based) of ``steps``.

    Linear warm-up peak*(step+1)/warmup for step < warmup (so step warmup-1 is at peak),
    then peak * (1 + cos(pi * (step - warmup) / (steps - warmup))) / 2, which is peak at
    step == warmup and reaches 0 at step == steps (one past the last step taken).
    """
    return lr_at(step, steps, warmup, peak, "cosine")


def lr_at(step: int, steps: int, warmup: int, peak: float, schedule: str) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``steps``: the linear
    warm-up of ``warmup_then_cosine_to_zero``, then by ``schedule`` (TrainConfig.lr_schedule)
    cosine or linear from peak at step == warmup to 0 at step == steps, or constant at peak.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min((step - warmup) / max(steps - warmup, 1), 1.0)
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "linear":
        return peak * (1.0 - frac)
    if schedule == "constant":
        return peak
    raise ValueError(f"unknown lr schedule {schedule!r}")


def snapshot_steps(steps: int, k: int, schedule: str = "log") -> np.ndarray:
    """Up to k distinct steps in [0, steps]: 0 and steps first, then ``schedule``-spaced
    between (log: 1, ..., steps log-spaced; linear: evenly spaced, rounded)."""
    if k <= 2:
        return np.array([0, steps][:k], dtype=np.int64)
    if schedule == "linear":
        return np.unique(np.round(np.linspace(0, steps, k)).astype(np.int64))
    if schedule != "log":
        raise ConfigError(f"snapshot_schedule must be one of log, linear; got {schedule!r}")
    grid = np.unique(np.round(np.logspace(0, math.log10(steps), max(k - 1, 1))).astype(np.int64))
    return np.unique(np.concatenate([[0], grid, [steps]]))


def init_seed(seed: int, restart: int) -> int:
    """The torch seed of restart ``restart`` of init seed ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, restart]).generate_state(1)[0])


@dataclass
class InstanceResult:
    """The outcome of one trained instance (one init seed of one config)."""

    config: TrainConfig
    init_seed: int
    params: dict[str, np.ndarray]  # W (m, n), b (n); untied also W_dec (m, n)
    train_loss: float
    test_loss: float
    diverged_step: int | None
    snapshot_steps: np.ndarray  # (k,)
    snapshots: dict[str, np.ndarray]  # W (k, m, n), b (k, n); untied W_dec (k, m, n)
    loss_steps: np.ndarray  # (h,)
    loss_history: np.ndarray  # (h,) engine (float32) training loss before each update
    X_train: SparseData
    seconds: float = 0.0
    restart_train_losses: list[float] = field(default_factory=list)
    restart_seeds: list[int] = field(default_factory=list)
    engine: str = ""  # the engine that trained it (what ``auto`` resolved to)
    resumed: list[int] = field(default_factory=list)  # steps it resumed at from checkpoints
    segment_commits: list[str | None] = field(default_factory=list)  # when resumed: the git
    # commit of each segment's source (the numbers equal one run's where the engine is the same)
    segment_cpu_targets: list[str | None] = field(default_factory=list)  # when resumed: the
    # CPU target of each segment (the numbers equal one run's only on the same target
    segment_cpu_features: list[str | None] = field(default_factory=list)  # and features)
    threads: float | None = None  # CPU threads the steps used (seconds-weighted mean over
    # segments); None off the CPU or where a resumed segment did not record them

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None


def make_optimizer(c: TrainConfig, p: dict[str, torch.Tensor]) -> torch.optim.Optimizer:
    """Adam(W) over ``p`` as ``c`` asks: decay mode, decayed parameters, eps and beta2.

    decoupled: torch AdamW, p -= lr_t * wd * p. decoupled_unscaled: AdamW with wd / lr,
    so the decay per step is (lr_t / lr) * wd (Loshchilov & Hutter's schedule multiplier,
    not the learning rate). l2: torch Adam with weight_decay, which adds wd * p to the
    gradient, the gradient of wd/2 |p|^2 in the loss, before Adam's normalisation.
    """
    wd = {"decoupled": c.weight_decay, "decoupled_unscaled": c.weight_decay / c.lr}
    wd["l2"] = c.weight_decay
    groups = [
        {"params": [v], "weight_decay": wd[c.decay_mode] if k in c.decay_params else 0.0}
        for k, v in p.items()
    ]
    cls = torch.optim.Adam if c.decay_mode == "l2" else torch.optim.AdamW
    return cls(groups, lr=c.lr, betas=(ADAMW_BETAS[0], c.adam_beta2), eps=c.adam_eps)


def _history_steps(steps: int, k: int = 600) -> np.ndarray:
    lin = np.linspace(0, steps - 1, k // 2)
    log = np.logspace(0, math.log10(max(steps - 1, 1)), k // 2)
    return np.unique(np.round(np.concatenate([lin, log])).astype(np.int64).clip(0, steps - 1))


def _check_batch(cfgs: list[TrainConfig]) -> None:
    base = cfgs[0].replace(**{f: 0 for f in INSTANCE_FIELDS})
    for c in cfgs[1:]:
        if c.replace(**{f: 0 for f in INSTANCE_FIELDS}) != base:
            raise ConfigError(f"configs trained together may differ only in {INSTANCE_FIELDS}")


def _initial_params(cfgs, model, seeds: list[int], init: dict | None) -> Params:
    """Fresh parameters per seed, or copies of ``init`` (W (m, n), b (n), and the model's
    other parameters, e.g. W_dec (m, n)) for each instance."""
    c = cfgs[0]
    if c.init_from is None:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        p = model.init(c.hidden, c.features, c.init, gens)
        p["b"] += c.init_bias  # --init-bias (the paper: b starts at 0)
        return p
    if init is None:
        raise ConfigError(
            f"init_from {c.init_from} is set but its weights were not passed "
            "(supermem.train loads them; supermem.toy.train.train takes init=)"
        )
    missing = [k for k in model.params if k not in init]
    if missing:
        raise ConfigError(
            f"init_from run {c.init_from} has no {', '.join(missing)} for model {model.name}"
        )
    p = {k: torch.as_tensor(np.asarray(init[k])) for k in model.params}
    if p["W"].shape != (c.hidden, c.features):
        raise ConfigError(
            f"init_from run has W of shape {tuple(p['W'].shape)}, "
            f"config needs ({c.hidden}, {c.features})"
        )
    return {k: v[None].repeat(len(seeds), *([1] * v.dim())).clone() for k, v in p.items()}


def _datasets(
    cfgs: list[TrainConfig], owners: list[int], data: tuple[SparseData, SparseData] | None
) -> tuple[SparseData, SparseData]:
    """(training, test) sets with one instance per entry of ``owners`` (its config's)."""
    if data is not None:
        train, test = data
        if train.inst != len(cfgs) or test.inst != len(cfgs) or train.T != cfgs[0].train_size:
            raise ConfigError(
                f"data= needs {len(cfgs)} instances of T={cfgs[0].train_size} training points "
                f"and {len(cfgs)} test instances; got {train.inst} x {train.T} and {test.inst}"
            )
        parts = [(train.instance(i), test.instance(i)) for i in range(len(cfgs))]
    else:
        by_seed: dict[int, tuple[SparseData, SparseData]] = {}
        for cfg in cfgs:
            if cfg.data_seed not in by_seed:
                by_seed[cfg.data_seed] = data_mod.train_test(cfg)
        parts = [by_seed[cfg.data_seed] for cfg in cfgs]
    return (
        SparseData.stack([parts[o][0] for o in owners]),
        SparseData.stack([parts[o][1] for o in owners]),
    )


def train_many(
    cfgs: list[TrainConfig],
    progress: bool = True,
    init: dict | None = None,
    data: tuple[SparseData, SparseData] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 600.0,
    threads: Callable[[], int | None] | None = None,
    on_check: Callable[[int], None] | None = None,
) -> list[InstanceResult]:
    """Train every restart of every config together; one result per config (best restart).

    ``init``: the starting W (m, n) and b (n) when the configs set ``init_from``
    (``supermem.train_many`` reads them from that run directory).
    ``data``: (training, test) sets with one instance per config (T = train_size), used
    instead of the sets each config's data_seed draws: e.g. chosen subsets of one pool
    (``supermem.real.counterfactual``).
    ``checkpoint``: a directory. If it holds a checkpoint of these configs, training
    resumes from it, with the same numbers as never stopping; every ``checkpoint_every``
    seconds (at a finiteness check; 0: at every one) the state is written there
    (``supermem.toy.checkpoint``). The caller removes it once the results are saved. A
    checkpoint of other configs raises ConfigError.
    ``threads``: asked before the first step and at every finiteness check, the CPU
    threads the next steps may use (None: as they are), for engines whose results do not
    depend on it (``Engine.elastic``): a sweep's worker takes the cores others freed.
    ``on_check``: called with the steps trained so far, first with the step training
    starts from (0, or a checkpoint's), then at every finiteness check (a sweep's
    progress bar).
    """
    _check_batch(cfgs)
    c = cfgs[0]
    device = resolve_device(c.device)
    model = get_model(c.model)
    owners = [i for i, _ in enumerate(cfgs) for _ in range(c.restarts)]  # instance -> config
    nnz_row = expected_nnz(c, 1)
    engine_name = named_engine(c)
    found = (
        ckpt.info(checkpoint, cfgs) if engine_name == "auto" and checkpoint is not None else None
    )
    if found is not None:  # under auto, resume on the engine that began the run
        engine_name = found.engine
    shape = (len(owners), c.train_size, c.features, c.hidden, nnz_row)
    engine = get_engine(engine_name, model, device, shape=shape, loss=c.loss)
    seeds = [init_seed(cfg.seed, k) for cfg in cfgs for k in range(c.restarts)]
    check_memory(c, len(owners), engine.name, device=device.type)  # before anything is drawn

    X_train, X_test = _datasets(cfgs, owners, data)
    if X_train.weights is not None:  # repeated points: row weights over any engine
        engine = WeightedEngine(engine)
    train_data = engine.prepare(X_train, device)
    dtype = getattr(torch, c.dtype)
    if dtype != torch.float32:  # only the reference engine (a dense tensor) gets here
        to = lambda x: x.to(dtype)  # noqa: E731
        train_data = train_data.map(to) if isinstance(train_data, WeightedData) else to(train_data)

    p = {
        k: v.to(device, dtype).requires_grad_(True)
        for k, v in _initial_params(cfgs, model, seeds, init).items()
    }
    opt = make_optimizer(c, p)
    snap_at = set(snapshot_steps(c.steps, c.snapshots, c.snapshot_schedule).tolist())
    snaps: dict[str, list[torch.Tensor]] = {k: [] for k in p}
    snap_taken: list[int] = []
    warmup = c.warmup
    assert warmup is not None  # TrainConfig resolves it
    history = torch.empty(c.steps, len(owners), device=device)
    diverged = np.full(len(owners), -1)
    start, earlier_seconds, resumed = 0, 0.0, list[int]()
    earlier_thread_seconds: float | None = 0.0
    commits = [git_commit()]  # this segment's source, read before it can change on disk
    targets: list[str | None] = [cpu_target()]  # and the CPU its kernels are compiled for
    features: list[str | None] = [cpu_features()]
    ck = ckpt.load(checkpoint, cfgs) if checkpoint is not None else None
    if ck is not None:
        if ck.engine != engine.name:
            raise ConfigError(f"checkpoint {checkpoint} was trained by engine {ck.engine}")
        with torch.no_grad():
            for k in p:
                p[k].copy_(ck.params[k])
        opt.load_state_dict({**opt.state_dict(), "state": ck.optimizer})
        history[: ck.step] = ck.history
        snap_taken = list(ck.snap_taken)
        for k in snaps:
            snaps[k] = list(ck.snapshots[k].unbind(0)) if snap_taken else []
        diverged[:] = ck.diverged
        engine.restore(train_data, ck.engine_state)
        start, earlier_seconds, resumed = ck.step, ck.seconds, [*ck.resumed, ck.step]
        earlier_thread_seconds = ck.thread_seconds
        commits = [*ck.commits, commits[0]]
        targets, features = [*ck.targets, targets[0]], [*ck.features, features[0]]
    elastic = _Threads(engine, device, threads)
    t0 = saved_at = time.perf_counter()
    elastic.start(t0)
    if on_check is not None:
        on_check(start)
    bar = tqdm(
        total=c.steps,
        initial=start,
        disable=not progress,
        desc=f"T={c.train_size} m={c.hidden}",
        unit="step",
        leave=False,
    )
    for step in range(start, c.steps):
        if step in snap_at:
            snap_taken.append(step)
            for k in p:
                snaps[k].append(p[k].detach().cpu().clone())
        for group in opt.param_groups:
            group["lr"] = lr_at(step, c.steps, warmup, c.lr, c.lr_schedule)
        loss, grads = engine.loss_and_grads(
            model, {k: v.detach() for k, v in p.items()}, train_data
        )
        history[step] = loss
        for k in p:
            p[k].grad = grads[k]
        opt.step()
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == c.steps:
            lo = step + 1 - ((step % CHECK_EVERY) + 1)
            window = history[lo : step + 1]
            bad = ~torch.isfinite(window)
            for i in torch.nonzero(bad.any(0)).flatten().tolist():
                if diverged[i] < 0:
                    diverged[i] = lo + int(torch.nonzero(bad[:, i])[0])
            bar.update(window.shape[0])
            bar.set_postfix(loss=f"{window[-1].float().mean().item():.4g}")
            if (diverged >= 0).all():
                break
            now = time.perf_counter()
            elastic.check(now)
            if on_check is not None:
                on_check(step + 1)
            if checkpoint is not None and now - saved_at >= checkpoint_every:
                if step + 1 < c.steps:
                    now_state = ckpt.Checkpoint(
                        step + 1, engine.name, earlier_seconds + now - t0,
                        {k: v.detach() for k, v in p.items()}, opt.state_dict()["state"],
                        history, snap_taken, {k: torch.stack(v) for k, v in snaps.items() if v},
                        diverged, engine.state(train_data), resumed, commits,
                        elastic.total(earlier_thread_seconds), targets, features,
                    )  # fmt: skip
                    ckpt.save(checkpoint, cfgs, now_state)
                saved_at = time.perf_counter()
    bar.close()
    if c.steps in snap_at and (diverged < 0).any():
        snap_taken.append(c.steps)
        for k in p:
            snaps[k].append(p[k].detach().cpu().clone())

    final = {k: v.detach() for k, v in p.items()}
    with torch.no_grad():
        train_loss = losses.exact_loss(model, final, X_train, loss=c.loss)
        test_loss = losses.exact_loss(model, final, X_test, loss=c.loss)
    params_np = {k: v.cpu().numpy() for k, v in final.items()}
    # a parameter that became non-finite counts as divergence at the step the loss showed it
    for i in range(len(owners)):
        if diverged[i] < 0 and not all(np.isfinite(v[i]).all() for v in params_np.values()):
            diverged[i] = c.steps
    hsteps = _history_steps(c.steps)
    hist = history.cpu().numpy()
    end = time.perf_counter()
    seconds = earlier_seconds + end - t0
    elastic.check(end, ask=False)
    thread_seconds = elastic.total(earlier_thread_seconds)

    results = []
    for ci, cfg in enumerate(cfgs):
        mine = [i for i, o in enumerate(owners) if o == ci]
        tl = [float(train_loss[i]) if diverged[i] < 0 else math.inf for i in mine]
        best = mine[int(np.argmin(tl))]
        results.append(
            InstanceResult(
                config=cfg,
                init_seed=seeds[best],
                params={k: v[best] for k, v in params_np.items()},
                train_loss=float(train_loss[best]),
                test_loss=float(test_loss[best]),
                diverged_step=None if diverged[best] < 0 else int(diverged[best]),
                snapshot_steps=np.asarray(snap_taken, dtype=np.int64),
                snapshots={k: torch.stack(v)[:, best].numpy() for k, v in snaps.items()}
                if snap_taken
                else {k: np.zeros((0, *v.shape[1:]), np.float32) for k, v in params_np.items()},
                loss_steps=hsteps,
                loss_history=hist[hsteps, best],
                X_train=X_train.instance(best),
                seconds=seconds,
                restart_train_losses=[float(train_loss[i]) for i in mine],
                restart_seeds=[seeds[i] for i in mine],
                engine=engine.name,
                resumed=resumed,
                segment_commits=commits if resumed else [],
                segment_cpu_targets=targets if resumed else [],
                segment_cpu_features=features if resumed else [],
                threads=None if thread_seconds is None or not seconds else thread_seconds / seconds,
            )
        )
    return results


class _Threads:
    """A training call's CPU threads: asks ``ask`` for more or fewer (elastic engines) and
    sums seconds times threads, from ``start`` to the last ``check``."""

    def __init__(self, engine: Engine, device: torch.device, ask: Callable[[], int | None] | None):
        self.engine, self.device, self.ask = engine, device, ask
        self.spent: float | None = 0.0  # thread-seconds so far; None off the CPU
        self.last = 0.0
        self.now: int | None = None  # the threads since ``last``

    def _adjust(self) -> None:
        want = self.ask() if self.ask is not None and self.engine.elastic else None
        if want is not None:
            self.engine.set_threads(want)
        self.now = self.engine.threads(self.device)

    def start(self, t: float) -> None:
        self.last = t
        self._adjust()

    def check(self, t: float, ask: bool = True) -> None:
        if self.now is None or self.spent is None:
            self.spent = None
        else:
            self.spent += self.now * (t - self.last)
        self.last = t
        if ask:
            self._adjust()

    def total(self, earlier: float | None) -> float | None:
        """Thread-seconds of the earlier segments (None: unknown) and this one so far."""
        return None if earlier is None or self.spent is None else earlier + self.spent


def train(cfg: TrainConfig, progress: bool = True, init: dict | None = None) -> InstanceResult:
    """Train one model (its restarts as instances) and return the best restart."""
    return train_many([cfg], progress=progress, init=init)[0]
