"""Exact float64 losses of a trained toy model on its data (what runs report).

The engines compute losses in float32 for training; the reported train and test losses
(and the choice between restarts) are recomputed here in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from numba import njit, prange

from supermem.metrics import _as_t
from supermem.toy.data import SparseData, combine
from supermem.toy.engines.reference import ELEMENT_LOSSES
from supermem.toy.model import TiedReLUOutput, get_model

CHUNKS = 64  # fixed row chunks per instance: sums independent of the thread count


def exact_loss(model, p: dict, X, max_elems: int = 2**22, loss: str = "mse") -> np.ndarray:
    """(inst,) loss of each instance of ``model`` (params p, leading dim inst) on its own
    rows of X (a ``SparseData``), in float64, as the direct sum of (x - x')^2 (or of
    |x - x'| for ``loss`` l1, TrainConfig.loss).

    The reported train and test losses (and the choice between restarts) use this, not an
    engine's float32 loss: a fast engine's split loss sum relu(p)^2 - 2 relu(p) x +
    ||x||^2 cancels to ~1e-8 (even below 0) where a point is memorised, so a loss of
    1e-14 needs the direct (x - x')^2. The tied model on CPU runs a Numba kernel over the
    sparse rows (O(T n m) time, O(n) memory per thread: T = 10^6 costs seconds); other
    models and losses use their dense forward on chunks of max_elems / n rows. Weighted
    rows (repeated points) give the weighted mean, from the plain means (``data.combine``).
    """
    if X.weights is not None:
        plain = exact_loss(model, p, X.with_weights(None), max_elems, loss)
        parts = [(e, g.T, exact_loss(model, p, g, max_elems, loss)) for e, g in X.weight_groups()]
        return combine(X.T, plain, parts)
    cpu = torch.as_tensor(p["W"]).device.type == "cpu"
    if isinstance(model, TiedReLUOutput) and cpu and loss == "mse":
        W = torch.as_tensor(p["W"]).detach().double().numpy()
        b = torch.as_tensor(p["b"]).detach().double().numpy()
        part = np.zeros((X.inst, CHUNKS))
        _tied_exact(X.indptr, X.indices, X.values, W, b, X.T, part)
        return part.sum(1) / X.T
    return _dense_exact(model, p, X, max_elems, loss)


@njit(parallel=True, cache=True)
def _tied_exact(indptr, indices, values, W, b, T, part):
    """part (inst, CHUNKS) = sum over the chunk's rows of ||x - ReLU(W^T W x + b)||^2.

    indptr (inst*T+1,), indices/values (nnz,) sorted within rows; W (inst, m, n),
    b (inst, n) float64. Per row: h = W x, then every feature's relu(p)^2 into a row
    buffer (vectorised), the row's nonzeros overwritten with (x - relu(p))^2, summed.
    """
    inst, m, n = W.shape
    C = part.shape[1]
    for q in prange(inst * C):
        i, c = q // C, q % C
        buf = np.empty(n)
        h = np.empty(m)
        acc = 0.0
        for t in range(c * T // C, (c + 1) * T // C):
            r = i * T + t
            for k in range(m):
                s = 0.0
                for e in range(indptr[r], indptr[r + 1]):
                    s += W[i, k, indices[e]] * np.float64(values[e])
                h[k] = s
            for j in range(n):
                buf[j] = b[i, j]
            for k in range(m):
                hk = h[k]
                for j in range(n):
                    buf[j] += W[i, k, j] * hk
            for j in range(n):
                y = buf[j]
                y = 0.0 if y <= 0 else y  # relu that keeps NaN
                buf[j] = y * y
            for e in range(indptr[r], indptr[r + 1]):
                j = indices[e]
                y = b[i, j]
                for k in range(m):
                    y += W[i, k, j] * h[k]
                y = 0.0 if y <= 0 else y
                d = np.float64(values[e]) - y
                buf[j] = d * d
            for j in range(n):
                acc += buf[j]
        part[i, c] = acc


def _dense_exact(model, p: dict, X, max_elems: int, loss: str = "mse") -> np.ndarray:
    """``exact_loss`` by the model's dense forward on chunks of max_elems / n rows."""
    error = ELEMENT_LOSSES[loss]
    p64 = {k: torch.as_tensor(v).detach().double() for k, v in p.items()}
    device = p64["W"].device
    rows = max(1, max_elems // X.n)
    out = np.zeros(X.inst)
    for i in range(X.inst):
        pi = {k: v[i : i + 1] for k, v in p64.items()}
        Xi = X.instance(i)
        for a in range(0, X.T, rows):
            x = Xi.rows(a, min(a + rows, X.T)).dense(device).double()  # (1, rows, n)
            out[i] += float(error(x - model.forward(pi, x)).sum())
    return out / X.T


def reconstruction_loss(W: Any, b: Any, X: Any) -> float:
    """Tied ReLU-output loss: mean over rows of ||x - ReLU(W^T W x + b)||^2, in float64.

    W (m, n), b (n,), X (T, n) dense or SciPy sparse.
    """
    W, b = _as_t(W)[0], _as_t(b)[0]
    data = SparseData.from_scipy(sp.csr_matrix(X))
    return float(exact_loss(get_model("tied"), {"W": W[None], "b": b[None]}, data)[0])
