"""The paper's quantities, as functions of arrays (NumPy or torch, any leading dims).

All are computed in float64 and returned in the caller's array type. Zero vectors get
dimensionality 0 rather than NaN.

Shapes: W (..., m, n) with feature i in column W[..., :, i]; H (..., T, m) with point t
in row H[..., t, :].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

EPS = 1e-30


def _as_t(a: Any) -> tuple[torch.Tensor, bool]:
    was_np = not isinstance(a, torch.Tensor)
    return torch.as_tensor(np.asarray(a) if was_np else a).detach().double(), was_np


def _back(t: torch.Tensor, was_np: bool):
    return t.cpu().numpy() if was_np else t


def vector_dims(V: Any) -> Any:
    """(..., k, m) -> (..., k): ||v_i||^2 / sum_j (unit(v_i) . v_j)^2 for each row v_i.

    Since sum_j (u . v_j)^2 = u^T (V^T V) u, this needs only the m x m Gram matrix, never
    the k x k one. Orthogonal rows give 1, an antipodal pair 1/2 each, a regular k-gon
    in 2-D gives 2/k each.
    """
    v, was_np = _as_t(V)
    gram = v.transpose(-1, -2) @ v  # (..., m, m)
    sq = (v * v).sum(-1)  # (..., k)
    quad = torch.einsum("...km,...mn,...kn->...k", v, gram, v)  # v_i^T G v_i = sq_i * denom_i
    out = torch.where(sq > EPS, sq * sq / quad.clamp_min(EPS), torch.zeros_like(sq))
    return _back(out, was_np)


def feature_dims(W: Any) -> Any:
    """(..., m, n) -> (..., n): feature dimensionality D_i of each column of W."""
    w, was_np = _as_t(W)
    return _back(vector_dims(w.transpose(-1, -2)), was_np)


def data_dims(H: Any) -> Any:
    """(..., T, m) -> (..., T): data point dimensionality D_t of each hidden vector h_t."""
    return vector_dims(H)


def max_data_dims(H: Any, rcond: float = 1e-10) -> Any:
    """(..., T, m) -> (..., T): D*_t = h_t^T (sum_s h_s h_s^T)^+ h_t, the leverage of h_t.

    Equals sup over directions v of (v . h_t)^2 / sum_s (v . h_s)^2 (PAPER.md). Values lie
    in [0, 1] and sum to the rank of H.
    """
    h, was_np = _as_t(H)
    pinv = torch.linalg.pinv(h.transpose(-1, -2) @ h, rtol=rcond, hermitian=True)
    return _back(torch.einsum("...tm,...mn,...tn->...t", h, pinv, h), was_np)


def hidden(W: Any, X: Any) -> Any:
    """W (m, n), X (T, n) dense or SciPy sparse -> H (T, m) = X W^T."""
    Wn = W.detach().cpu().numpy() if isinstance(W, torch.Tensor) else np.asarray(W)
    if sp.issparse(X):
        return np.asarray(X @ Wn.T.astype(np.float64))
    return _back(_as_t(X)[0] @ _as_t(W)[0].T, not isinstance(X, torch.Tensor))


def norms(W: Any, b: Any) -> dict[str, float]:
    """||W||_F and ||b||_2."""
    return {"W_norm": float(_as_t(W)[0].norm()), "b_norm": float(_as_t(b)[0].norm())}
