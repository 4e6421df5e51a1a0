"""The synthetic data distribution of the paper, sampled sparse.

Each of n features is 0 with probability S, else uniform on [0, 1]; every point is then
rescaled to unit L2 norm (PAPER.md, "The task and the model"; ``norm="raw"`` skips the
rescaling, as the "Toy Models" paper did). We never draw a dense
T x n mask: per point we draw the number of nonzeros k ~ Binomial(n, 1 - S), then k
distinct positions, then k values. That is the same distribution, at O(T n (1-S)) cost.

A point with no nonzero feature cannot be rescaled to unit norm. ``empty="resample"``
(the default) conditions every point on having at least one nonzero (k drawn from the
zero-truncated binomial), so every training point has norm 1 (with ``norm="unit"``);
``empty="zero"`` keeps the
zero vector. At the paper's settings (n (1-S) = 10) either happens with probability
e^-10, so the choice only matters for small n (1 - S).

Data sets are stacks of ``inst`` CSR matrices (one per model instance) held as a single
``(inst*T) x n`` CSR matrix, so fast engines see one flat set of rows.

Repeated points (``repeat_points`` K, ``repeat_count`` R) are row weights, never copies:
the first K points of a training set weigh R, the loss is the weighted mean over rows
(the mean over all T + K(R-1) rows of the duplicated set). Engines see unweighted data;
``weight_groups`` splits a weighted set into the plain set plus, per weight value, the
rows that carry extra weight, and ``combine`` adds their losses back together
(``toy/engines/weighted.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import binom

TRAIN_STREAM, TEST_STREAM = 0, 1


@dataclass(frozen=True)
class SparseData:
    """``inst`` data sets of T points in n dimensions, as one (inst*T) x n CSR matrix.

    indptr: (inst*T + 1,) int64; indices: (nnz,) int32; values: (nnz,) float32.
    Rows ``i*T .. (i+1)*T - 1`` are instance i. weights: (inst*T,) float64 row
    multiplicities, or None (every row once).
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    inst: int
    T: int
    n: int
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        assert self.indptr.shape == (self.inst * self.T + 1,), "indptr shape"
        assert self.indices.shape == self.values.shape == (int(self.indptr[-1]),), "nnz"
        assert self.weights is None or self.weights.shape == (self.inst * self.T,), "weights"

    def with_weights(self, weights: np.ndarray | None) -> SparseData:
        """The same rows with row weights (inst*T,) (None: every row once)."""
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        return dataclasses.replace(self, weights=w)

    def weight_groups(self) -> list[tuple[float, SparseData]]:
        """[(extra, rows)]: per weight value v != 1, the rows of weight v as a data set of
        ``inst`` instances (unweighted), with extra = v - 1. Every instance must have the
        same number of rows of each weight (true of ``repeat_points``: the first K)."""
        if self.weights is None:
            return []
        w = self.weights.reshape(self.inst, self.T)
        groups = []
        for v in np.unique(w[w != 1.0]):
            rows = [np.flatnonzero(wi == v) for wi in w]
            if len({len(r) for r in rows}) != 1:
                raise ValueError(f"instances have different numbers of rows of weight {v}")
            picked = np.concatenate([i * self.T + r for i, r in enumerate(rows)])
            groups.append((float(v) - 1.0, self.take(picked, inst=self.inst)))
        return groups

    def take(self, rows: np.ndarray, inst: int = 1) -> SparseData:
        """The given rows (flat indices) in that order, unweighted, as ``inst`` instances."""
        lo, hi = self.indptr[rows], self.indptr[rows + 1]
        k = hi - lo
        idx = np.repeat(lo - np.concatenate([[0], np.cumsum(k)[:-1]]), k) + np.arange(k.sum())
        return SparseData(
            np.concatenate([[0], np.cumsum(k)]).astype(np.int64),
            self.indices[idx],
            self.values[idx],
            inst,
            len(rows) // inst,
            self.n,
        )

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def to_scipy(self) -> sp.csr_matrix:
        """(inst*T, n) SciPy CSR matrix."""
        return sp.csr_matrix(
            (self.values, self.indices, self.indptr), shape=(self.inst * self.T, self.n)
        )

    @classmethod
    def from_scipy(cls, X: sp.spmatrix, inst: int = 1) -> SparseData:
        """From an (inst*T, n) SciPy sparse matrix."""
        X = sp.csr_matrix(X)
        X.sort_indices()
        rows, n = X.shape
        assert rows % inst == 0, "rows must split evenly into instances"
        return cls(
            X.indptr.astype(np.int64),
            X.indices.astype(np.int32),
            X.data.astype(np.float32),
            inst,
            rows // inst,
            n,
        )

    def dense(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(inst, T, n) float32 dense tensor. Costs inst*T*n floats: reference engine only."""
        out = torch.zeros(self.inst * self.T, self.n, dtype=torch.float32, device=device)
        rows = np.repeat(np.arange(self.inst * self.T), np.diff(self.indptr))
        out[
            torch.as_tensor(rows, device=device),
            torch.as_tensor(self.indices, device=device).long(),
        ] = torch.as_tensor(self.values, device=device)
        return out.view(self.inst, self.T, self.n)

    def instance(self, i: int) -> SparseData:
        return self.rows(i * self.T, (i + 1) * self.T, inst=1)

    def rows(self, start: int, stop: int, inst: int = 1) -> SparseData:
        """Rows [start, stop) of the flat matrix (with their weights) as ``inst`` instances."""
        a, z = int(self.indptr[start]), int(self.indptr[stop])
        return SparseData(
            self.indptr[start : stop + 1] - a,
            self.indices[a:z],
            self.values[a:z],
            inst,
            (stop - start) // inst,
            self.n,
            None if self.weights is None else self.weights[start:stop],
        )

    @staticmethod
    def stack(parts: list[SparseData]) -> SparseData:
        """Stack single or multi-instance data sets of equal T and n along ``inst``."""
        T, n = parts[0].T, parts[0].n
        assert all(p.T == T and p.n == n for p in parts), "stacked data sets must share T, n"
        offsets = np.cumsum([0] + [p.nnz for p in parts])
        indptr = np.concatenate(
            [parts[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)]
        )
        weights = None
        if any(p.weights is not None for p in parts):
            weights = np.concatenate(
                [np.ones(p.inst * T) if p.weights is None else p.weights for p in parts]
            )
        return SparseData(
            indptr,
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.values for p in parts]),
            sum(p.inst for p in parts),
            T,
            n,
            weights,
        )


def combine(T: int, full: Any, groups: list[tuple[float, int, Any]]) -> Any:
    """Weighted mean from plain means: full is the mean over T rows, each group (extra,
    k, mean over its k rows) adds extra weight to k of them. Works elementwise on losses
    (inst,) and on gradients alike: (T full + sum extra k mean) / (T + sum extra k)."""
    total = T + sum(e * k for e, k, _ in groups)
    out = full * (T / total)
    for e, k, g in groups:
        out = out + g * (e * k / total)
    return out


def repeat_weights(T: int, repeat_points: int, repeat_count: int) -> np.ndarray | None:
    """(T,) row weights: R on the first K points, 1 elsewhere; None when nothing repeats."""
    if repeat_points == 0 or repeat_count == 1:
        return None
    w = np.ones(T)
    w[:repeat_points] = repeat_count
    return w


def _rng(data_seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([data_seed, stream]))


def _counts(rng: np.random.Generator, size: int, n: int, density: float, empty: str) -> np.ndarray:
    """(size,) number of nonzeros per point, zero-truncated when empty == 'resample'."""
    if empty == "resample":
        p_any = -math.expm1(n * math.log1p(-density)) if density < 1 else 1.0  # P(k >= 1)
        if p_any == 0:
            raise ValueError("sparsity 1 leaves no nonzero feature to resample")
        if p_any < 0.5:  # redrawing would loop ~1/p_any times: invert the truncated CDF
            # P(K > k) <= u < P(K > k-1) with u ~ U(0, P(K >= 1)) gives K ~ Binomial | K >= 1
            return binom.isf(rng.random(size) * p_any, n, density).astype(np.int64)
    k = rng.binomial(n, density, size=size)
    if empty == "resample":
        while (zero := k == 0).any():
            k[zero] = rng.binomial(n, density, size=int(zero.sum()))
    return k


def _distinct_positions(rng: np.random.Generator, k: np.ndarray, n: int) -> np.ndarray:
    """Concatenated sorted positions: k[t] distinct features in [0, n) for each point t."""
    rows = np.repeat(np.arange(len(k)), k)
    pos = rng.integers(0, n, size=len(rows))
    dense_rows = np.flatnonzero(k > n // 4)  # rejection is slow when k ~ n: permute instead
    starts = np.concatenate([[0], np.cumsum(k)])
    for t in dense_rows:
        pos[starts[t] : starts[t + 1]] = rng.permutation(n)[: k[t]]
    while True:  # redraw duplicates within a row until none remain
        order = np.lexsort((pos, rows))
        pos, rows = pos[order], rows[order]
        dup = np.flatnonzero((rows[1:] == rows[:-1]) & (pos[1:] == pos[:-1])) + 1
        if len(dup) == 0:
            return pos
        pos[dup] = rng.integers(0, n, size=len(dup))


def sample(
    size: int,
    n: int,
    sparsity: float,
    data_seed: int,
    stream: int = TRAIN_STREAM,
    empty: str = "resample",
    norm: str = "unit",
) -> SparseData:
    """Draw ``size`` sparse points in n dimensions (one instance), each rescaled to unit
    L2 norm (``norm="unit"``) or left as drawn (``"raw"``: the same draws, unscaled).

    The stream separates the training set (0) from the test set (1) of one data seed, so
    the test set of a data seed is the same whatever T is.
    """
    if norm not in ("unit", "raw"):
        raise ValueError(f"norm must be unit or raw, got {norm!r}")
    rng = _rng(data_seed, stream)
    k = _counts(rng, size, n, 1.0 - sparsity, empty)
    pos = _distinct_positions(rng, k, n)
    vals = rng.random(len(pos)).astype(np.float64)
    indptr = np.concatenate([[0], np.cumsum(k)]).astype(np.int64)
    if norm == "unit":
        norms = np.sqrt(np.add.reduceat(vals**2, indptr[:-1][k > 0])) if len(vals) else vals
        vals[: len(vals)] /= np.repeat(norms, k[k > 0])
    return SparseData(indptr, pos.astype(np.int32), vals.astype(np.float32), 1, size, n)


def train_test(cfg, data_seeds: list[int] | None = None) -> tuple[SparseData, SparseData]:
    """Training and test sets for a config, one instance per data seed (default: its own)."""
    seeds = [cfg.data_seed] if data_seeds is None else data_seeds
    args = dict(n=cfg.features, sparsity=cfg.sparsity, empty=cfg.empty, norm=cfg.point_norm)
    w = repeat_weights(cfg.train_size, cfg.repeat_points, cfg.repeat_count)
    train = SparseData.stack(
        [sample(cfg.train_size, data_seed=s, **args).with_weights(w) for s in seeds]
    )
    test = SparseData.stack(
        [sample(cfg.test_size, data_seed=s, stream=TEST_STREAM, **args) for s in seeds]
    )
    return train, test


def zero_model_loss(cfg) -> float:
    """The test loss of the zero model (x' = 0) on a config's test set: the mean over its
    points of sum_i x_i^2 (mse) or sum_i |x_i| (l1). 1 for the paper's unit points (mse);
    for raw points ~n(1-S)/3 (mse) or ~n(1-S)/2 (l1). Divides test losses so that
    variants compare."""
    c = cfg
    return _zero_loss(
        c.test_size, c.features, c.sparsity, c.data_seed, c.empty, c.point_norm, c.loss
    )


@functools.lru_cache(maxsize=64)
def _zero_loss(
    size: int, n: int, sparsity: float, data_seed: int, empty: str, norm: str, loss: str
) -> float:
    v = sample(size, n, sparsity, data_seed, TEST_STREAM, empty, norm).values.astype(np.float64)
    if loss == "mse":
        return float(np.square(v).sum() / size)
    if loss == "l1":
        return float(np.abs(v).sum() / size)
    raise ValueError(f"no zero-model loss for loss {loss!r}")
