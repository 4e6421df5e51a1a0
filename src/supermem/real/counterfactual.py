"""Counterfactual memorisation (Zhang et al. 2021) and how well a score ranks by it.

mem(t) = E[loss on t | t not in training] - E[loss on t | t in training], estimated over
many models, each trained on a random half of one pool of P examples (so each example is
in about half the models). Works for any model family: the inputs are only a membership
mask and per-example losses, one row per model.

Shapes: K models, P pool examples; ``member`` (K, P) bool, ``loss`` (K, P) float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass(frozen=True)
class Memorisation:
    """Per-example estimates, each (P,); NaN where an example was never in (or never out)."""

    mem: np.ndarray  # loss_out - loss_in
    se: np.ndarray  # standard error of mem: sqrt(var_in / n_in + var_out / n_out)
    loss_in: np.ndarray  # mean loss over the models that trained on the example
    loss_out: np.ndarray  # mean loss over the models that did not
    n_in: np.ndarray  # (P,) int: models that trained on it
    n_out: np.ndarray  # (P,) int: models that did not


def _mean_var(loss: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column mean, unbiased variance of the mean (var / n) and count over ``mask`` rows."""
    n = mask.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, loss, 0.0).sum(0) / n
        ss = np.where(mask, (loss - mean) ** 2, 0.0).sum(0)
        var_of_mean = ss / (n - 1) / n  # NaN for n < 2: no spread to estimate
    return mean, var_of_mean, n


def memorisation(member: np.ndarray, loss: np.ndarray) -> Memorisation:
    """member (K, P) bool, loss (K, P) -> ``Memorisation`` of each pool example.

    The standard error is Welch's (the in and out losses are independent samples of
    different variance); it needs at least two models on each side, else it is NaN.
    """
    member = np.asarray(member)
    loss = np.asarray(loss, dtype=np.float64)
    if member.dtype != bool:
        raise ValueError(f"member must be a bool mask, got {member.dtype}")
    if member.ndim != 2 or member.shape != loss.shape:
        raise ValueError(f"member {member.shape} and loss {loss.shape} must both be (K, P)")
    if not np.isfinite(loss).all():
        raise ValueError("loss has NaN or inf entries")
    li, vi, ni = _mean_var(loss, member)
    lo, vo, no = _mean_var(loss, ~member)
    return Memorisation(lo - li, np.sqrt(vi + vo), li, lo, ni, no)


def half_masks(K: int, P: int, seed: int) -> np.ndarray:
    """(K, P) bool: model k trains on exactly P // 2 of the pool, drawn by (seed, k), so a
    resumed run draws the same halves."""
    out = np.zeros((K, P), dtype=bool)
    for k in range(K):
        rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
        out[k, rng.permutation(P)[: P // 2]] = True
    return out


def mean_over_members(values: np.ndarray, member: np.ndarray) -> np.ndarray:
    """values (K, P) (e.g. D*_t of each model on its own training set; ignored where not a
    member), member (K, P) -> (P,) mean over the models that trained on each example."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(member, values, 0.0).sum(0) / member.sum(0)


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho of a score with mem(t), a bootstrap CI over examples, and n used."""

    rho: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        return {"rho": self.rho, "ci_lo": self.lo, "ci_hi": self.hi, "n": self.n}

    def __str__(self) -> str:
        return f"{self.rho:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}] (n={self.n})"


def spearman_ci(
    score: np.ndarray, mem: np.ndarray, boots: int = 1000, level: float = 0.95, seed: int = 0
) -> RankCorrelation:
    """score (P,), mem (P,) -> Spearman's rho over the examples where both are finite, with a
    percentile bootstrap CI (examples resampled with replacement, ``boots`` times).

    The CI covers the sampling of examples only, not the noise in each mem(t) estimate.
    """
    ok = np.isfinite(score) & np.isfinite(mem)
    x, y = np.asarray(score)[ok], np.asarray(mem)[ok]
    n = len(x)
    if n < 3:
        return RankCorrelation(float("nan"), float("nan"), float("nan"), n)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(boots, n))
    rx, ry = _ranks(x[idx]), _ranks(y[idx])  # Spearman = Pearson of ranks, row by row
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    r = r[np.isfinite(r)]  # a resample of constant values has no rank correlation
    a = (1 - level) / 2
    lo, hi = np.quantile(r, [a, 1 - a]) if len(r) else (np.nan, np.nan)
    return RankCorrelation(rho, float(lo), float(hi), n)


def _ranks(a: np.ndarray) -> np.ndarray:
    """(B, n) -> (B, n) float ranks along the last axis, ties averaged (as spearmanr)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=1).astype(np.float64)
