"""How well a score finds a set: AUROC and precision in the top k."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """score (T,), positive (T,) bool -> P(score of a positive > a negative), ties 1/2
    (the Mann-Whitney U statistic over n_pos * n_neg); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at_k(score: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Share of positives among the k highest scores (T,)."""
    top = np.argsort(-np.asarray(score), kind="stable")[:k]
    return float(np.asarray(positive, dtype=bool)[top].mean()) if k > 0 else float("nan")
