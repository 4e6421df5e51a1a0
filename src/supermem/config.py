"""Typed, frozen run configuration.

Field names are the CLI flags (``train_size`` <-> ``--train-size``) and the keys of
the saved ``config.json``. Each field's ``help`` metadata is its CLI help text.
Defaults are the paper's (PAPER.md, "The task and the model") except where noted.
Validation lives in ``TrainConfig.__post_init__`` and raises ``ConfigError`` with a
message a user can act on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A setting is out of range or inconsistent; the message names it."""


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


# Names of the model variants and engines, filled in by their registries
# (supermem.toy.model.MODELS, supermem.toy.engines.ENGINES) when they are imported, so
# that a config validates them without importing the code behind them.
REGISTERED: dict[str, list[str]] = {"model": [], "engine": []}


def register(kind: str, name: str) -> None:
    """Declare a model variant (kind "model") or engine (kind "engine") name valid."""
    if name not in REGISTERED[kind]:
        REGISTERED[kind].append(name)


INIT_CHOICES = ("xavier_normal", "xavier_uniform", "xavier_normal_colab")
DECAY_MODE_CHOICES = ("decoupled", "decoupled_unscaled", "l2")
DECAY_PARAMS_CHOICES = ("Wb", "W")
DTYPE_CHOICES = ("float32", "float64")
EMPTY_CHOICES = ("resample", "zero")
POINT_NORM_CHOICES = ("unit", "raw")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
SNAPSHOT_SCHEDULE_CHOICES = ("log", "linear")
LOSS_CHOICES = ("mse", "l1")
LR_SCHEDULE_CHOICES = ("cosine", "constant", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one trained toy model (and nothing that does not)."""

    features: int = _f(10_000, "input dimension n (number of features)")
    sparsity: float = _f(0.999, "sparsity S: each feature is 0 with probability S")
    hidden: int = _f(2, "hidden dimension m")
    train_size: int = _f(100, "number of training points T")
    test_size: int = _f(10_000, "number of fresh test points used for the test loss")
    model: str = _f(
        "tied",
        "model variant (supermem.toy.model.MODELS): tied, the paper's h = W x, "
        "x' = ReLU(W^T h + b); untied, a separate decoder W_dec; relu_hidden, h = ReLU(W x)",
    )
    loss: str = _f(
        "mse",
        "training loss per point, summed over features and averaged over points: mse, "
        "(x - x')^2, the paper's; l1, |x - x'| (engines reference and fast, CPU)",
        choices=LOSS_CHOICES,
    )
    init: str = _f(
        "xavier_normal",
        "initialisation of W (m x n): xavier_normal, std sqrt(2/(n+m)); "
        "xavier_uniform, U(-a, a) with a = sqrt(6/(n+m)); xavier_normal_colab, std "
        "sqrt(2/(m(n+10))), the 'Toy Models' colab's xavier_normal_ on an (inst=10, n, m) "
        "tensor (docs/CORE.md)",
        choices=INIT_CHOICES,
    )
    empty: str = _f(
        "resample",
        "points drawn with no nonzero feature: resample (condition on >= 1 nonzero, so "
        "every point can be rescaled to unit norm) or zero (keep the zero vector)",
        choices=EMPTY_CHOICES,
    )
    point_norm: str = _f(
        "unit",
        "scale of each data point: unit (rescaled to unit L2 norm after sampling, the "
        "paper's) or raw (left as drawn, features uniform on [0, 1], as in the 'Toy "
        "Models' paper and colab)",
        choices=POINT_NORM_CHOICES,
    )
    steps: int = _f(50_000, "number of full-batch AdamW steps")
    lr: float = _f(1e-3, "peak learning rate")
    warmup: int | None = _f(
        None,
        "linear warm-up steps before the schedule's decay (lr_schedule); default 5%% of "
        "steps (the paper's 2,500 of 50,000)",
    )
    lr_schedule: str = _f(
        "cosine",
        "learning rate after the warm-up: cosine (decay to zero, the paper's), linear "
        "(decay to zero) or constant (held at lr, never annealed)",
        choices=LR_SCHEDULE_CHOICES,
    )
    weight_decay: float = _f(1e-2, "AdamW weight decay")
    decay_mode: str = _f(
        "decoupled",
        "how weight decay acts: decoupled (torch AdamW: p -= lr_t wd p), decoupled_unscaled "
        "(Loshchilov & Hutter's form: p -= (lr_t / lr) wd p, the schedule multiplier only) "
        "or l2 (wd/2 |p|^2 added to the loss, i.e. wd p to the gradient, plain Adam)",
        choices=DECAY_MODE_CHOICES,
    )
    decay_params: str = _f(
        "Wb",
        "parameters weight decay acts on: Wb (W and b) or W (W only)",
        choices=DECAY_PARAMS_CHOICES,
    )
    adam_eps: float = _f(1e-8, "Adam epsilon (added to sqrt of the second moment)")
    adam_beta2: float = _f(0.999, "Adam beta2 (second-moment decay)")
    dtype: str = _f(
        "float32",
        "parameter and gradient precision: float32, or float64 (reference engine only: "
        "engine auto then picks it; the fast engines compute in float32)",
        choices=DTYPE_CHOICES,
    )
    init_bias: float = _f(0.0, "initial value of every entry of b (the paper: 0)")
    repeat_points: int = _f(
        0,
        "K: how many distinct training points are repeated (the first K of the set); T "
        "stays the number of distinct points",
    )
    repeat_count: int = _f(
        1,
        "R: how many times each repeated point appears; the loss is the mean over all "
        "T + K(R-1) rows, computed with row weights, never copies",
    )
    seed: int = _f(0, "init seed (restart k uses the k-th seed derived from it)")
    data_seed: int = _f(0, "data seed (training and test sets)")
    restarts: int = _f(1, "init seeds trained per model; the lowest training loss is kept")
    snapshots: int = _f(24, "number of training steps at which W and b are saved")
    snapshot_schedule: str = _f(
        "log",
        "spacing of the snapshot steps: log (step 0, the last step, and log-spaced steps "
        "between: early training in detail) or linear (evenly spaced from 0 to the last "
        "step: every phase of training alike, for animations and dynamics)",
        choices=SNAPSHOT_SCHEDULE_CHOICES,
    )
    engine: str = _f(
        "auto",
        "loss/gradient engine: auto (picks from a measured cost model), reference, fast, "
        "tree, chunked, fast_variants or cuda (NVIDIA GPU, needs Triton) (docs/ENGINES.md)",
    )
    device: str = _f(
        "auto", "torch device: auto (cuda if present), cpu or cuda", choices=DEVICE_CHOICES
    )
    init_from: str | None = _f(None, "start from a saved run's W and b (fresh optimiser state)")

    def __post_init__(self) -> None:
        if self.warmup is None and isinstance(self.steps, int) and not isinstance(self.steps, bool):
            object.__setattr__(self, "warmup", default_warmup(self.steps))
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", "float") and isinstance(v, bool):
                raise ConfigError(f"{f.name} must be a number, got {v!r}")
            if f.type == "float":
                if not isinstance(v, int | float) or not math.isfinite(v):
                    raise ConfigError(f"{f.name} must be a finite number, got {v!r}")
            if f.type == "int" and not isinstance(v, int):
                raise ConfigError(f"{f.name} must be an integer, got {v!r}")
            if f.type == "str" and not isinstance(v, str):
                raise ConfigError(f"{f.name} must be a string, got {v!r}")
            if f.type == "int | None" and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(f"{f.name} must be an integer, got {v!r}")
            if f.type == "str | None" and not (v is None or isinstance(v, str)):
                raise ConfigError(f"{f.name} must be a path or None, got {v!r}")
            choices = f.metadata.get("choices")
            if choices and v not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {v!r}")
        _check(self.features >= 1, f"features (n) must be >= 1, got {self.features}")
        _check(self.hidden >= 1, f"hidden (m) must be >= 1, got {self.hidden}")
        _check(self.train_size >= 1, f"train_size (T) must be >= 1, got {self.train_size}")
        _check(self.test_size >= 1, f"test_size must be >= 1, got {self.test_size}")
        _check(0 <= self.sparsity < 1, f"sparsity (S) must be in [0, 1), got {self.sparsity}")
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")
        _check(0 <= self.adam_beta2 < 1, f"adam_beta2 must be in [0, 1), got {self.adam_beta2}")
        _check(
            self.dtype == "float32" or self.engine in ("auto", "reference"),
            f"dtype {self.dtype} needs engine reference (or auto); engine {self.engine} "
            "computes in float32",
        )
        _check(
            self.loss == "mse" or self.engine in ("auto", "reference", "fast"),
            f"loss {self.loss} needs engine reference or fast (or auto); engine {self.engine} "
            "computes only mse",
        )
        warmup = self.warmup
        assert warmup is not None  # resolved above
        _check(warmup >= 0, f"warmup must be >= 0, got {warmup}")
        _check(
            warmup <= self.steps,
            f"warmup ({self.warmup}) is longer than the run (steps={self.steps})",
        )
        _check(self.restarts >= 1, f"restarts must be >= 1, got {self.restarts}")
        _check(
            self.init_from is None or self.restarts == 1,
            f"restarts {self.restarts} with init_from would train identical copies: use restarts 1",
        )
        _check(
            0 <= self.repeat_points <= self.train_size,
            f"repeat_points must be in [0, train_size={self.train_size}], got {self.repeat_points}",
        )
        _check(self.repeat_count >= 1, f"repeat_count must be >= 1, got {self.repeat_count}")
        _check(
            self.repeat_count == 1 or self.repeat_points >= 1,
            f"repeat_count {self.repeat_count} repeats nothing: set repeat_points >= 1",
        )
        _check(self.snapshots >= 0, f"snapshots must be >= 0, got {self.snapshots}")
        _check(self.seed >= 0 and self.data_seed >= 0, "seeds must be >= 0")
        _check(
            self.model in REGISTERED["model"],
            f"model must be one of {', '.join(REGISTERED['model'])}; got {self.model!r}",
        )
        _check(
            self.engine == "auto" or self.engine in REGISTERED["engine"],
            f"engine must be auto or one of {', '.join(REGISTERED['engine'])}; got {self.engine!r}",
        )

    # -- round trip -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


WARMUP_FRACTION = 0.05  # the paper's 2,500 warm-up steps of 50,000


def default_warmup(steps: int) -> int:
    """The warm-up a config gets when none is given: 5% of the run, rounded."""
    return int(round(WARMUP_FRACTION * steps))


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def make_config(**overrides: Any) -> TrainConfig:
    """Build a config from the defaults with some fields replaced (used by tests and recipes)."""
    return TrainConfig.from_dict(overrides)
