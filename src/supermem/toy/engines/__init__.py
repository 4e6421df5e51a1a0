"""Engines: registry of loss/gradient implementations, and ``auto`` selection."""

from __future__ import annotations

import warnings

import torch

from supermem.config import ConfigError, register
from supermem.toy.engines import cost
from supermem.toy.engines.base import Engine
from supermem.toy.engines.chunked import ChunkedEngine
from supermem.toy.engines.cuda import SELF_CHECK_TOL, CudaEngine, self_check
from supermem.toy.engines.cuda import available as cuda_available
from supermem.toy.engines.fast import FastEngine
from supermem.toy.engines.reference import ReferenceEngine
from supermem.toy.engines.tree import TreeEngine
from supermem.toy.engines.variants import FastVariantsEngine

ENGINES: dict[str, type[Engine]] = {
    e.name: e
    for e in (
        ReferenceEngine,
        FastEngine,
        ChunkedEngine,
        TreeEngine,
        FastVariantsEngine,
        CudaEngine,
    )
}
for _name in ENGINES:
    register("engine", _name)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA device")
    return torch.device(device)


def named_engine(cfg) -> str:
    """The engine a config asks for before ``auto`` is resolved: float64 runs on the
    reference engine (the fast engines compute in float32), else ``cfg.engine``."""
    return "reference" if cfg.dtype == "float64" else cfg.engine


def get_engine(
    name: str,
    model,
    device: torch.device,
    shape: tuple[int, int, int, int, float] | None = None,
    loss: str = "mse",
) -> Engine:
    """The engine called ``name``. ``auto``: on CPU, of fast and tree the one the measured
    cost model (``cost.pick``) finds cheaper for ``shape`` = (inst, T, n, m, nonzeros per
    point), fast when no shape is given; on CUDA the cuda engine for the tied model where
    Triton is installed (measured 9-30x faster than the chunked code on an H200:
    docs/ENGINES.md), else fast (its chunked code). The untied and
    relu_hidden models get the tree where the cost model picks it, else
    ``fast_variants``; the reference engine is for a model (or device) no faster engine
    supports. A ``loss`` other than mse
    (TrainConfig.loss) is computed by the reference engine and, for the tied model on
    CPU, by the fast one (``FastEngine.OBJECTIVES``), which ``auto`` then takes."""
    if loss != "mse":
        if name not in ("auto", "reference", "fast"):
            raise ConfigError(
                f"engine {name} computes only loss mse; loss {loss} needs reference or fast"
            )
        fast = FastEngine(objective=loss)
        if name != "reference" and loss in FastEngine.OBJECTIVES and fast.supports(model, device):
            return fast
        if name == "fast":
            raise ConfigError(f"engine fast computes loss {loss} for the tied model on CPU only")
        return ReferenceEngine(objective=loss)
    if name == "reference":
        return ReferenceEngine(objective=loss)
    if name == "auto":
        cands = ["fast", "fast_variants", "reference"]
        if shape is not None and torch.device(device).type == "cpu":
            cands.insert(0, cost.pick(*shape))
        if torch.device(device).type == "cuda":
            cands.insert(0, "cuda")  # where Triton is installed (CudaEngine.supports)
        for cand in cands:
            if cand in ENGINES and ENGINES[cand]().supports(model, device):
                if cand == "cuda" and shape is not None and (why := _cuda_fails(device, shape[3])):
                    warnings.warn(  # its kernels are wrong here: the next candidate
                        f"the cuda engine failed its self-check on {device} ({why}); "
                        "training on the chunked code",
                        stacklevel=2,
                    )
                    continue
                return ENGINES[cand]()
    engine = ENGINES[name]()
    if name == "cuda" and not cuda_available(device):
        raise ConfigError(
            f"engine cuda needs --device cuda and Triton installed; device is {device}"
        )
    if not engine.supports(model, device):
        raise ConfigError(f"engine {name} does not support model {model.name} on {device}")
    if name == "cuda" and shape is not None and (why := _cuda_fails(device, shape[3])):
        raise ConfigError(
            f"engine cuda failed its self-check on {device} at m={shape[3]} ({why}; "
            "docs/ENGINES.md); use --engine fast"
        )
    return engine


def _cuda_fails(device, m: int) -> str:
    """Why the cuda engine fails its self-check at hidden size m (cuda.self_check), or ""
    where it passes."""
    try:
        err = self_check(device, m)
    except Exception as e:  # noqa: BLE001 - kernels that cannot run are not used
        return f"its kernels did not run: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if err <= SELF_CHECK_TOL:
        return ""
    if err == float("inf"):
        return "its loss or gradients were not finite"
    return f"its loss or gradients were {err:.1e} of their scale off the reference engine"
