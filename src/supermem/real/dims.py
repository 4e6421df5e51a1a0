"""D*_t (the leverage of each example) and D_t of any activations, streamed in two passes.

Pass 1 accumulates the m x m Gram matrix G = sum_t h_t h_t^T in float64 (and the row sum,
for centring); pass 2 computes each example's value from it. Memory is O(m^2 + T)
whatever T is: H itself is never held.

D*_t = h_t^T G^+ h_t (PAPER.md, "maximal data dimensionality"). The pseudo-inverse keeps
the eigenvalues of G above ``rcond * lambda_max`` and drops the rest; ``rank`` counts the
kept ones and the D*_t sum to it. The default cut-off 1e-10 on G's eigenvalues is 1e-5 on
H's singular values: well above float32 rounding noise in H (~1e-7 relative, ~1e-14 on G)
and the same as ``supermem.metrics.max_data_dims``. With ``center`` the mean row mu is
taken off first: D*_t = (h_t - mu)^T G_c^+ (h_t - mu), the leverage with an intercept
less 1/T.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from supermem.real.activations import ActivationError, ActivationSource, from_array

RCOND = 1e-10


@dataclass(frozen=True)
class Gram:
    """Pass 1: G (m, m) about ``shift`` (m,), row sum about it (m,), T rows, a row checksum."""

    G: np.ndarray
    total: np.ndarray
    shift: np.ndarray
    T: int
    check: float
    scale: float  # sum of the checksum's absolute terms, for its tolerance


@dataclass(frozen=True)
class Dims:
    """Per-example values (T,) and how the pseudo-inverse was cut."""

    dstar: np.ndarray  # (T,) D*_t, in [0, 1], sums to rank
    data_dims: np.ndarray | None  # (T,) D_t, when asked
    rank: int
    rcond: float
    cutoff: float  # absolute: eigenvalues of G at or below it are dropped
    eig_max: float
    centered: bool
    m: int

    @property
    def T(self) -> int:
        return len(self.dstar)

    def summary(self) -> dict[str, Any]:
        """Scalars for a JSON file or a log line."""
        return {
            "T": self.T,
            "m": self.m,
            "rank": self.rank,
            "rcond": self.rcond,
            "cutoff": self.cutoff,
            "eig_max": self.eig_max,
            "centered": self.centered,
            "dstar_sum": float(self.dstar.sum()),
            "dstar_median": float(np.median(self.dstar)),
            "dstar_max": float(self.dstar.max()),
        }


def default_rows(m: int) -> int:
    """Batch rows so one float64 batch is about 32 MB."""
    return max(256, (1 << 22) // m)


def _bar(T: int | None, desc: str, progress: bool):
    return tqdm(total=T, desc=desc, unit="row", unit_scale=True, disable=not progress)


def _checksum(rowsum: np.ndarray, start: int) -> tuple[float, float]:
    """(sum_t (t + 1) s_t, sum_t (t + 1) |s_t|) of a batch's row sums s (B,) starting at row
    ``start``: order-sensitive, so a second pass in another order is caught."""
    w = np.arange(start + 1, start + len(rowsum) + 1, dtype=np.float64)
    return float(w @ rowsum), float(w @ np.abs(rowsum))


def _float64_finite(b: np.ndarray, start: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(b (B, m) as float64, its row sums (B,)); a NaN or inf anywhere makes its row sum
    non-finite, so only the row sums need checking."""
    b = np.asarray(b, dtype=np.float64)
    rowsum = b.sum(axis=1)
    if not np.isfinite(rowsum).all():
        bad = int(np.flatnonzero(~np.isfinite(b).all(axis=1))[0])
        raise ActivationError(f"{name}: row {start + bad} holds NaN or inf")
    return b, rowsum


def gram_pass(
    src: ActivationSource, center: bool = False, rows: int | None = None, progress: bool = False
) -> Gram:
    """Pass 1 over H (T, m): G = sum_t (h_t - s)(h_t - s)^T in float64, s = 0 or, when
    centring, the first batch's mean (a shift keeps the centred Gram accurate when the mean
    is large next to the spread)."""
    m = src.m
    G, total, shift = np.zeros((m, m)), np.zeros(m), np.zeros(m)
    T, check, scale = 0, 0.0, 0.0
    with _bar(src.T, "dims: Gram", progress) as bar:
        for b in src.batches(rows or default_rows(m)):
            b, rowsum = _float64_finite(b, T, src.name)
            c, a = _checksum(rowsum, T)
            check, scale = check + c, scale + a
            if center and T == 0:
                shift = b.mean(axis=0)
            d = b - shift if center else b
            G += d.T @ d  # NumPy uses a symmetric rank-k update for a.T @ a
            total += d.sum(axis=0)
            T += len(b)
            bar.update(len(b))
    if T == 0:
        raise ActivationError(f"{src.name} is empty")
    return Gram(G, total, shift, T, check, scale)


def whitener(G: np.ndarray, rcond: float = RCOND) -> tuple[np.ndarray, float, float]:
    """G (m, m) symmetric PSD -> (B (m, r), cutoff, lambda_max) with G^+ = B B^T.

    B = V_r diag(lambda_r^-1/2) over the r eigenvalues above ``rcond * lambda_max``; so
    h^T G^+ h = ||B^T h||^2 for every h.
    """
    lam, V = np.linalg.eigh((G + G.T) / 2)
    lam_max = float(max(lam[-1], 0.0))
    cutoff = rcond * lam_max
    keep = lam > cutoff if lam_max > 0 else np.zeros_like(lam, dtype=bool)
    return V[:, keep] / np.sqrt(lam[keep]), cutoff, lam_max


def dims(
    source: ActivationSource | Any,
    center: bool = False,
    rcond: float = RCOND,
    data_dims: bool = False,
    rows: int | None = None,
    progress: bool = False,
) -> Dims:
    """D*_t (and D_t with ``data_dims``) for every row of H (T, m) -> ``Dims`` with (T,)
    arrays. ``source`` is an ``ActivationSource`` or an array (..., m)."""
    if not 0 <= rcond < 1:
        raise ValueError(f"rcond must be in [0, 1), got {rcond}")
    src = source if isinstance(source, ActivationSource) else from_array(source)
    rows = rows or default_rows(src.m)
    g = gram_pass(src, center, rows, progress)
    mu_s = g.total / g.T  # mean about the shift
    G = g.G - np.outer(g.total, mu_s) if center else g.G
    B, cutoff, lam_max = whitener(G, rcond)
    dstar, dd = np.empty(g.T), np.empty(g.T) if data_dims else None
    t, check = 0, 0.0
    with _bar(g.T, "dims: D*", progress) as bar:
        for b in src.batches(rows):
            b, rowsum = _float64_finite(b, t, src.name)
            if t + len(b) > g.T:
                raise ActivationError(f"{src.name} gave more rows on the second pass")
            check += _checksum(rowsum, t)[0]
            h = b - g.shift - mu_s if center else b
            z = h @ B  # (B, r)
            dstar[t : t + len(b)] = np.einsum("tr,tr->t", z, z)
            if dd is not None:
                dd[t : t + len(b)] = _data_dims(h, G)
            t += len(b)
            bar.update(len(b))
    _same_rows(src.name, g, t, check)
    return Dims(dstar, dd, B.shape[1], rcond, cutoff, lam_max, center, src.m)


def _data_dims(h: np.ndarray, G: np.ndarray) -> np.ndarray:
    """h (B, m), G (m, m) -> (B,): D_t = ||h_t||^4 / h_t^T G h_t, 0 for a zero row."""
    sq = np.einsum("tm,tm->t", h, h)
    quad = np.einsum("tm,tm->t", h @ G, h)
    return np.where(sq > 1e-30, sq * sq / np.maximum(quad, 1e-30), 0.0)


def _same_rows(name: str, g: Gram, t: int, check: float) -> None:
    if t != g.T:
        raise ActivationError(f"{name} gave {t} rows on the second pass, {g.T} on the first")
    if abs(check - g.check) > 1e-6 * g.scale:
        raise ActivationError(
            f"{name} gave different rows on the second pass (a shuffling or random source?)"
        )


def weight_dims(W: Any, key: str | None = None) -> np.ndarray:
    """Feature dimensionality D_i of each column of W (m, n) -> (n,); W an array or a file
    (``.npy``, ``.npz``, ``.safetensors``, with ``key``). Columns are features, as in
    ``supermem.metrics.feature_dims`` (a PyTorch ``Linear.weight`` (out, in) is already so)."""
    from supermem.metrics import feature_dims
    from supermem.real.activations import read_array

    if isinstance(W, str | os.PathLike):
        W = read_array(W, key)
    return np.asarray(feature_dims(np.asarray(W, dtype=np.float64)))
