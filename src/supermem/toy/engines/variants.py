"""The fast engine's Numba kernels for the model variants: untied and relu_hidden (mse).

The fast engine's dense pass never needs the encoder: given the hidden vectors h (T, m),
the decoder matrix and b it returns the decoder's gradient, dL/db and dL/dh without the
T x n output (``fast.py``). So for any model whose reconstruction is ReLU(D^T h + b)
with h = act(W x):

- h from the sparse x (``K.hidden``), then ReLU for relu_hidden;
- the dense pass, ``per_point`` and ``per_feature`` (with dL/dh = 0, i.e. only its
  decoder terms) on the decoder D (W_dec for untied, W for the tied models), giving
  the loss, dL/dD, dL/db and dL/dh;
- the encoder's gradient X^T (dL/dh, masked by W x > 0 for relu_hidden), sparse;
- tied decoders add the two gradients of W.

Loss mse only (TrainConfig.loss). ``auto`` takes it for the untied and relu_hidden
models on CPU where the cost model does not pick the tree engine (which computes the
same from a kd-tree of h: ``tree.tree_variant_loss_and_grads``); both are tested
against the reference engine (tests/test_model_variants.py, tests/test_tree_variants.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
import torch

from supermem.toy.data import SparseData
from supermem.toy.engines import _numba_kernels as K
from supermem.toy.engines.base import Engine
from supermem.toy.engines.fast import CpuData, FastEngine, _threads


@dataclass(frozen=True)
class VariantData:
    """The fast engine's CpuData, plus each instance's points as CSR (T, n) float32."""

    cpu: CpuData
    X: list[sp.csr_matrix]


def variant_loss_and_grads(
    W: np.ndarray, D: np.ndarray | None, b: np.ndarray, relu: bool, d: VariantData, fb: int
):
    """W (inst, m, n) encoder, D (inst, m, n) decoder or None (tied: D = W), b (inst, n),
    float32 -> loss (inst,) f64, gW (inst, m, n), gD (inst, m, n) or None, gb (inst, n)."""
    c = d.cpu
    inst, m, n = W.shape
    T = c.T
    dec = W if D is None else D
    c2 = np.float32(2.0 / T)
    sparse_work = len(c.indices) * m + inst * (T + n)
    pre = np.empty((inst * T, m), np.float32)
    with _threads(sparse_work):
        K.hidden(c.indptr, c.indices, c.values, W, T, pre)
    h = np.maximum(pre, np.float32(0.0)) if relu else pre
    nb, ntiles = -(-n // fb), -(-T // FastEngine.TILE)
    gD = np.zeros((inst, m, n), np.float32)
    gb = np.zeros((inst, n), np.float32)
    gh_part = np.zeros((inst, nb, T, m), np.float32)
    loss_part = np.zeros((inst, nb, T), np.float32)
    centre, radius = np.zeros((inst, ntiles, m)), np.zeros((inst, ntiles))  # no skipping
    dense = K.dense_kernel(m)
    hs = np.ascontiguousarray(h.reshape(inst, T, m))
    with _threads(inst * T * n * m), numba.parallel_chunksize(1):
        Wnorm = np.zeros((inst, n), np.float32)  # read only when skipping
        dense(
            dec,
            b,
            hs,
            c2,
            fb,
            FastEngine.TILE,
            False,
            centre,
            radius,
            Wnorm,
            gD,
            gb,
            gh_part,
            loss_part,
        )
    return _finish(c, d.X, W, dec, b, h, pre, relu, c2, gh_part, loss_part, gD, gb, D is None)


def _finish(c, X, W, dec, b, h, pre, relu, c2, gh_part, loss_part, gD, gb, tied):
    inst, m, n = W.shape
    T = c.T
    inv_pts = np.ascontiguousarray(np.broadcast_to(np.arange(T, dtype=np.int64), (inst, T)))
    gh = np.empty((inst * T, m), np.float32)
    loss_t = np.empty(inst * T)
    sparse_work = len(c.indices) * m + inst * (T + n)
    nb = gh_part.shape[1]
    with _threads(sparse_work + inst * T * nb * m):
        K.per_point(
            c.indptr, c.indices, c.values, dec, b, h, T, c2, inv_pts, gh_part, loss_part, gh, loss_t
        )
    with _threads(sparse_work):  # decoder terms only: dL/dh = 0 switches the encoder's off
        K.per_feature(c.cptr, c.crows, c.cvals, dec, b, h, np.zeros_like(gh), n, c2, gD, gb)
    if relu:
        gh *= pre > 0
    gW = np.stack([np.asarray(X[i].T @ gh[i * T : (i + 1) * T]).T for i in range(inst)])
    gW = gW.astype(np.float32)
    if tied:
        return loss_t.reshape(inst, T).sum(1) / T, gW + gD, None, gb
    return loss_t.reshape(inst, T).sum(1) / T, gW, gD, gb


class FastVariantsEngine(Engine):
    """Exact fast engine for every model of ``MODELS`` on CPU (loss mse)."""

    name = "fast_variants"
    pool = "numba"

    def supports(self, model, device) -> bool:
        return set(model.params) <= {"W", "W_dec", "b"} and torch.device(device).type == "cpu"

    def prepare(self, data: SparseData, device) -> VariantData:
        X = [data.instance(i).to_scipy().astype(np.float32) for i in range(data.inst)]
        return VariantData(CpuData.from_sparse(data), X)

    def loss_and_grads(self, model, p, data):
        fb = max(FastEngine.MIN_BLOCK, -(-data.cpu.n // FastEngine.MAX_BLOCKS))
        return variant_step(
            p, lambda W, D, b: variant_loss_and_grads(W, D, b, model.relu_hidden, data, fb)
        )

    def loss(self, model, p, data):
        return self.loss_and_grads(model, p, data)[0]


def variant_step(p, step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a NumPy kernel ``step(W, D, b) -> (loss, gW, gD, gb)`` on torch parameters p
    (W, b, and W_dec for the untied model, else D = None): float32 arrays in, loss
    (inst,) and the gradients back as torch tensors on p's device (``numpy_step`` for
    the variants)."""
    dev = p["W"].device

    def arr(k: str) -> np.ndarray:
        return np.ascontiguousarray(p[k].detach().cpu().numpy(), dtype=np.float32)

    D = arr("W_dec") if "W_dec" in p else None
    loss, gW, gD, gb = step(arr("W"), D, arr("b"))
    grads = {"W": gW, "b": gb} | ({"W_dec": gD} if gD is not None else {})
    return (
        torch.as_tensor(loss, dtype=torch.float32, device=dev),
        {k: torch.as_tensor(grads[k], device=dev) for k in p},
    )
