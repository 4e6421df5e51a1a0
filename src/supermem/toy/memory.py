"""Peak memory of a training call, estimated before anything is allocated or written.

``check_memory`` refuses (ConfigError, one line naming the sizes) a call whose estimate
exceeds the memory this machine has available, so that ``supermem train --train-size
1e12`` ends in a clear message instead of a NumPy MemoryError half-way. The estimate
counts the arrays that scale with the data (the sparse sets, each engine's working
arrays, snapshots, the loss history, what is saved) plus a fixed interpreter baseline;
docs/ENGINES.md compares it with measured peak RSS.
"""

from __future__ import annotations

import math
import os

from supermem.config import ConfigError, TrainConfig
from supermem.toy.engines.cuda import blocks, hidden_lanes, segments
from supermem.toy.engines.tree import NPART

BASELINE = 400 * 2**20  # Python, torch, numba and their compiled code (measured ~350 MB)


def expected_nnz(cfg: TrainConfig, rows: int) -> float:
    """Expected nonzeros of ``rows`` points (zero-truncated when empty == 'resample')."""
    n, density = cfg.features, 1.0 - cfg.sparsity
    k = n * density
    if cfg.empty == "resample" and density < 1:
        k /= -math.expm1(n * math.log1p(-density)) if density > 0 else 1.0
    return rows * max(k, 1.0 if cfg.empty == "resample" else 0.0)


def estimate(cfg: TrainConfig, inst: int, engine: str) -> dict[str, float]:
    """Bytes by part for ``inst`` instances of ``cfg`` trained with ``engine``."""
    T, n, m = cfg.train_size, cfg.features, cfg.hidden
    R = inst * T
    csr = 8.0  # bytes per nonzero: int32 index + float32 value
    nnz, nnz_test = expected_nnz(cfg, R), expected_nnz(cfg, inst * cfg.test_size)
    parts = {
        "training set": csr * nnz + 8.0 * R,
        "test set": csr * nnz_test + 8.0 * inst * cfg.test_size,
        "history and snapshots": 4.0 * inst * (cfg.steps + 2 * cfg.snapshots * (m + 1) * n),
        # the saved run: H (T, m), three per-point dims, the data again (safetensors)
        "saved arrays": (4.0 * m + 12.0) * T + csr * nnz / inst,
    }
    if engine == "reference":
        parts["engine"] = 4.0 * R * n * 4  # dense x, x', their difference, its gradient
    elif engine == "chunked":
        parts["engine"] = 4.0 * 2**22 * 4 + csr * nnz
    elif engine in ("fast", "fast_variants"):
        # CSR (int64 row pointers) + CSC copies; per-block partials (64 blocks at most)
        blocks = min(64, max(1, n // 256))
        parts["engine"] = 2 * (csr * nnz + 8.0 * R) + 4.0 * R * blocks * (m + 1) + 24.0 * R * m
        if engine == "fast_variants":  # + each instance's points as a scipy CSR matrix
            parts["engine"] += csr * nnz + 4.0 * R
    elif engine == "cuda":
        # host side, before the upload: CSR, its row ELL (K ~ the busiest row, taken as
        # twice the mean + 8) and the CSC copy; the device holds its own memory
        parts["engine"] = 2 * (csr * nnz + 8.0 * R) + 8.0 * R * _ell_width(nnz, R) + 16.0 * nnz
    else:  # tree: CSR in tree order, tree nodes, per-part point buffers, step arrays
        nodes = 2.0 * R / 8
        parts["engine"] = (
            csr * nnz
            + 8.0 * R
            + 8.0 * nodes * (3 * m + m * m)
            + 8.0 * NPART * nodes * (m * m + m)
            + 8.0 * NPART * R * m
            + R * (3 * 4.0 * m + 8.0 + 8.0)
        )
    parts["interpreter"] = BASELINE
    return parts


def _ell_width(nnz: float, rows: int) -> float:
    """The cuda engine's row ELL width (the busiest row's nonzeros), taken as twice the
    mean + 8."""
    return 2.0 * nnz / rows + 8.0


def available_bytes() -> int | None:
    """Memory available to a new allocation (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(x: float) -> str:
    return f"{x / 2**30:.3g} GB"


def estimate_device(cfg: TrainConfig, inst: int, engine: str) -> dict[str, float]:
    """Bytes by part on a CUDA device for ``inst`` instances of ``cfg`` trained there with
    ``engine`` (what lives on the GPU: the prepared training set and the engine's working
    arrays, parameters, optimiser state, loss history, the exact loss's chunks)."""
    T, n, m = cfg.train_size, cfg.features, cfg.hidden
    R = inst * T
    nnz = expected_nnz(cfg, R)
    parts = {
        "parameters and optimiser": 4.0 * inst * (m + 1) * n * 4,
        "loss history": 4.0 * inst * cfg.steps,
        "exact loss chunks": 8.0 * 2**22 * 3,  # losses.exact_loss: float64 chunks
    }
    if engine == "cuda":
        nseg = segments(T, n, blocks("cols", m))[0]
        parts["training set"] = 8.0 * R * _ell_width(nnz, R) + 20.0 * nnz + 8.0 * inst * n
        mp = hidden_lanes(m)  # W, h, gh and the column partials are padded to MP hidden lanes
        parts["engine"] = 12.0 * R * mp + 4.0 * R + 4.0 * inst * nseg * (mp + 1) * n
    elif engine == "reference":
        parts["training set"] = 4.0 * R * n
        parts["engine"] = 4.0 * R * n * 4
    else:  # fast / chunked / tree on CUDA all run the chunked code
        parts["training set"] = 12.0 * nnz
        parts["engine"] = 4.0 * 2**24 * 5  # about five (inst, C, n) chunk tensors
    return parts


def check_memory(
    cfg: TrainConfig,
    inst: int,
    engine: str,
    available: int | None = None,
    device: str = "cpu",
    device_available: int | None = None,
) -> None:
    """Raise ConfigError if the estimated peak exceeds the available memory; on a CUDA
    ``device``, also if the device part exceeds the device's free memory."""
    avail = available_bytes() if available is None else available
    _refuse(cfg, inst, engine, estimate(cfg, inst, engine), avail, "")
    if device == "cuda":
        if device_available is None:
            import torch

            device_available = int(torch.cuda.mem_get_info()[0])
        parts = estimate_device(cfg, inst, engine)
        _refuse(cfg, inst, engine, parts, device_available, "GPU ")


def _refuse(cfg, inst: int, engine: str, parts: dict, avail: int | None, where: str) -> None:
    total = sum(parts.values())
    if avail is not None and total > avail:
        big = max((k for k in parts if k != "interpreter"), key=parts.__getitem__)
        raise ConfigError(
            f"not enough {where}memory: this run needs ~{_gb(total)} (T={cfg.train_size:,}, "
            f"n={cfg.features:,}, m={cfg.hidden}, {inst} instance(s), engine {engine}; "
            f"largest part: {big} ~{_gb(parts[big])}), and {_gb(avail)} is available"
        )
