"""The fast exact engine for the tied model: Numba on CPU, chunked PyTorch on CUDA.

Same loss and gradients as the reference engine (tested), without the T x n output.
With p_tj = W_j . h_t + b_j and h_t = W x_t, per instance

    L = (1/T) sum_t [ sum_j relu(p_tj)^2 - 2 sum_{j in nz(x_t)} relu(p_tj) x_tj + ||x_t||^2 ]
    g_tj = dL/dp_tj = (2/T) (relu(p_tj) - x_tj) 1[p_tj > 0]

so the work splits into a dense part over all (t, j) pairs that needs only h (T, m) and
W (m, n), and a sparse correction over the nonzeros of x. The dense part runs over
(feature block, point tile) pairs. Optionally (``SKIP``) a pair whose Cauchy-Schwarz
bound shows every p_tj <= 0 is skipped (exact), with features sorted by the angle of W_j
and points by the angle of h_t so blocks and tiles are coherent. It is off by default:
measured, it costs ~10% at the initial state and gains ~1% after 300 steps
(docs/ENGINES.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
import torch

from supermem.toy.data import SparseData
from supermem.toy.engines import _numba_kernels as K
from supermem.toy.engines.base import Engine
from supermem.toy.engines.chunked import ChunkedEngine
from supermem.toy.model import TiedReLUOutput


@dataclass(frozen=True)
class CpuData:
    """A data set as the Numba kernels read it: CSR, plus CSC of the block-diagonal matrix.

    indptr (R+1,) int64, indices (nnz,) int32, values (nnz,) float32: rows, R = inst*T.
    cptr (inst*n+1,) int64, crows (nnz,) int32, cvals (nnz,) float32: column i*n + j is
    feature j of instance i, its rows in increasing order (all three empty when built with
    csc=False, as the tree engine does: it reads only rows).
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    cptr: np.ndarray
    crows: np.ndarray
    cvals: np.ndarray
    inst: int
    T: int
    n: int

    @classmethod
    def from_sparse(cls, d: SparseData, csc: bool = True) -> CpuData:
        """csc=False leaves the CSC arrays empty, for engines that read only rows (tree)."""
        assert d.weights is None, "weighted rows: wrap the engine in WeightedEngine"
        csr = d.indptr.astype(np.int64), d.indices.astype(np.int32), d.values.astype(np.float32)
        if not csc:
            e = np.zeros(0, np.int64)
            return cls(*csr, e, e.astype(np.int32), e.astype(np.float32), d.inst, d.T, d.n)
        rows = np.repeat(np.arange(d.inst * d.T), np.diff(d.indptr))
        cols = (rows // d.T) * d.n + d.indices  # block-diagonal: instance i's own columns
        m = sp.csc_matrix((d.values, (rows, cols)), shape=(d.inst * d.T, d.inst * d.n))
        m.sort_indices()
        cscs = m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32)
        return cls(*csr, *cscs, d.inst, d.T, d.n)


# Below this many items of work a kernel runs on one thread: a parallel region costs a
# wake-up of the other thread, a whole scheduler time slice when the cores are shared
# (measured ~6 ms per region under load vs 0.1 ms of work; docs/ENGINES.md).
SERIAL_BELOW = 1_000_000


@contextmanager
def _threads(work: int):
    """Run the enclosed kernels on one thread if ``work`` is small. Results do not depend
    on the thread count (see _numba_kernels), only the time does."""
    old = numba.get_num_threads()
    numba.set_num_threads(1 if work < SERIAL_BELOW else old)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def angle_order(V: np.ndarray) -> np.ndarray:
    """V (inst, k, m) -> (inst, k) stable argsort of each row vector's angle.

    Angle in the plane of the first two hidden coordinates (the value itself when m = 1):
    neighbours in this order point the same way, which is what the skip bound needs.
    Any order is exact; the order only makes skipping more or less frequent.
    """
    key = V[..., 0] if V.shape[-1] == 1 else np.arctan2(V[..., 1], V[..., 0])
    return np.argsort(key, axis=1, kind="stable")


def cpu_loss_and_grads(
    W: np.ndarray, b: np.ndarray, d: CpuData, fb: int, tp: int, skip: bool, l1: bool = False
):
    """W (inst, m, n), b (inst, n) float32 -> loss (inst,) f64, gW (inst, m, n), gb (inst, n).
    ``l1``: the loss |x - x'| summed over features (TrainConfig.loss l1), else mse."""
    inst, m, n = W.shape
    T = d.T
    c2 = np.float32(1.0 / T) if l1 else np.float32(2.0 / T)  # the slope's constant
    sparse_work = len(d.indices) * m + inst * (T + n)
    h = np.empty((inst * T, m), np.float32)
    with _threads(sparse_work):
        K.hidden(d.indptr, d.indices, d.values, W, T, h)
    if skip:  # features and points in angle order (without skipping: as they come)
        fperm = angle_order(W.transpose(0, 2, 1))  # (inst, n)
        pperm = angle_order(h.reshape(inst, T, m))  # (inst, T)
        Ws = np.ascontiguousarray(np.take_along_axis(W, fperm[:, None, :], axis=2))
        bs = np.ascontiguousarray(np.take_along_axis(b, fperm, axis=1))
        hs = np.ascontiguousarray(np.take_along_axis(h.reshape(inst, T, m), pperm[:, :, None], 1))
    else:
        Ws, bs, hs = W, b, h.reshape(inst, T, m)
    ntiles = -(-T // tp)
    centre = np.zeros((inst, ntiles, m))
    radius = np.zeros((inst, ntiles))
    if skip:
        with _threads(inst * T * m):
            K.tile_balls(hs, tp, centre, radius)
    Wnorm = np.sqrt((Ws * Ws).sum(1))  # (inst, n)
    nb = -(-n // fb)
    gWs = np.zeros((inst, m, n), np.float32)
    gbs = np.zeros((inst, n), np.float32)
    gh_part = np.zeros((inst, nb, T, m), np.float32)  # skipped pairs leave their zeros
    loss_part = np.zeros((inst, nb, T), np.float32)
    # dynamic scheduling, one block at a time: a busy core then takes fewer blocks
    # instead of the whole pass waiting for it (the assignment never changes results)
    with _threads(inst * T * n * m), numba.parallel_chunksize(1):
        K.dense_kernel(m)(
            Ws, bs, hs, c2, fb, tp, skip, centre, radius, Wnorm, gWs, gbs, gh_part, loss_part, l1
        )  # fmt: skip
    if skip:  # back to the caller's feature order
        gW, gb = np.empty_like(gWs), np.empty_like(gbs)
        np.put_along_axis(gW, fperm[:, None, :], gWs, axis=2)
        np.put_along_axis(gb, fperm, gbs, axis=1)
        inv_pts = np.empty((inst, T), np.int64)
        np.put_along_axis(inv_pts, pperm, np.arange(T)[None].repeat(inst, 0), axis=1)
    else:
        gW, gb = gWs, gbs
        inv_pts = np.ascontiguousarray(np.broadcast_to(np.arange(T), (inst, T)))
    gh = np.empty((inst * T, m), np.float32)
    loss_t = np.empty(inst * T)
    with _threads(sparse_work + inst * T * nb * m):
        K.per_point(
            d.indptr, d.indices, d.values, W, b, h, T, c2, inv_pts, gh_part, loss_part, gh,
            loss_t, l1,
        )  # fmt: skip
    with _threads(sparse_work):
        K.per_feature(d.cptr, d.crows, d.cvals, W, b, h, gh, n, c2, gW, gb, l1)
    return loss_t.reshape(inst, T).sum(1) / T, gW, gb


def numpy_step(p, step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a NumPy kernel ``step(W, b) -> (loss, gW, gb)`` on torch parameters p: W
    (inst, m, n) and b (inst, n) as contiguous float32 arrays in, loss (inst,) and the
    gradients back as torch tensors on p's device."""
    W = np.ascontiguousarray(p["W"].detach().cpu().numpy(), dtype=np.float32)
    b = np.ascontiguousarray(p["b"].detach().cpu().numpy(), dtype=np.float32)
    loss, gW, gb = step(W, b)
    dev = p["W"].device
    return (
        torch.as_tensor(loss, dtype=torch.float32, device=dev),
        {"W": torch.as_tensor(gW, device=dev), "b": torch.as_tensor(gb, device=dev)},
    )


class FastEngine(Engine):
    """Exact fast engine. CPU: Numba kernels. CUDA: the ``chunked`` engine's code.
    ``objective``: the TrainConfig.loss it computes, mse or (on CPU) l1."""

    name = "fast"
    pool = "numba"
    elastic = True  # thread-count independent, bit for bit (tested)
    OBJECTIVES = ("mse", "l1")

    def __init__(self, objective: str = "mse"):
        self.objective = objective

    # Feature-block size: at least 256 features (the vectorised inner loops) and at most
    # 64 blocks per instance, so the per-block partials stay O(64 T m) memory.
    MIN_BLOCK, MAX_BLOCKS = 256, 64
    TILE = 32  # points per tile: the bound test costs 1/TILE of the pair work it guards
    SKIP = False  # exact either way; measured not to pay at n = 10,000 (docs/ENGINES.md)

    def supports(self, model, device) -> bool:
        devices = ("cpu", "cuda") if self.objective == "mse" else ("cpu",)  # chunked: mse
        return isinstance(model, TiedReLUOutput) and torch.device(device).type in devices

    def prepare(self, data: SparseData, device):
        if torch.device(device).type == "cuda":
            return ChunkedEngine().prepare(data, device)
        return CpuData.from_sparse(data)

    def loss_and_grads(self, model, p, data):
        if not isinstance(data, CpuData):
            return ChunkedEngine().loss_and_grads(model, p, data)
        fb = max(self.MIN_BLOCK, -(-data.n // self.MAX_BLOCKS))
        l1 = self.objective == "l1"
        return numpy_step(
            p, lambda W, b: cpu_loss_and_grads(W, b, data, fb, self.TILE, self.SKIP, l1)
        )

    def loss(self, model, p, data):
        return self.loss_and_grads(model, p, data)[0]
