"""Exact float64 losses of a trained toy model on its data (what runs report).

The engines compute losses in float32 for training; the reported train and test losses
(and the choice between restarts) are recomputed here in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from supermem.metrics import _as_t
from supermem.toy.data import SparseData
from supermem.toy.model import get_model


def exact_loss(model, p: dict, X, max_elems: int = 2**22) -> np.ndarray:
    """(inst,) loss of each instance of ``model`` (params p, leading dim inst) on its own
    rows of X (a ``SparseData``): float64, the model's dense forward, rows in chunks of
    max_elems / n to bound memory.

    The reported train and test losses (and the choice between restarts) use this, not an
    engine's float32 loss: a fast engine's split loss sum relu(p)^2 - 2 relu(p) x +
    ||x||^2 cancels to ~1e-8 (even below 0) where a point is memorised, so a loss of
    1e-14 needs the direct (x - x')^2.
    """
    p64 = {k: torch.as_tensor(v).detach().double() for k, v in p.items()}
    device = p64["W"].device
    rows = max(1, max_elems // X.n)
    out = np.zeros(X.inst)
    for i in range(X.inst):
        pi = {k: v[i : i + 1] for k, v in p64.items()}
        Xi = X.instance(i)
        for a in range(0, X.T, rows):
            x = Xi.rows(a, min(a + rows, X.T)).dense(device).double()  # (1, rows, n)
            out[i] += float(((x - model.forward(pi, x)) ** 2).sum())
    return out / X.T


def reconstruction_loss(W: Any, b: Any, X: Any) -> float:
    """Tied ReLU-output loss: mean over rows of ||x - ReLU(W^T W x + b)||^2, in float64.

    W (m, n), b (n,), X (T, n) dense or SciPy sparse.
    """
    W, b = _as_t(W)[0], _as_t(b)[0]
    data = SparseData.from_scipy(sp.csr_matrix(X))
    return float(exact_loss(get_model("tied"), {"W": W[None], "b": b[None]}, data)[0])
