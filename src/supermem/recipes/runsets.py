"""Sets of loaded runs: grouping by config values and per-group summaries.

Figures, claims and the report are all functions of these. A run here is anything
with ``.config`` (dict), ``.metrics`` (dict) and ``.arrays`` (dict of arrays), as
``supermem.sweeps.store.Run``: W (m, n), b (n,), H_train (T, m), feature_dims (n,),
data_dims (T,).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def group(runs: Iterable, *keys: str) -> dict[tuple, list]:
    """Runs grouped by config values, groups sorted: {(v1, v2, ...): [run, ...]}."""
    out: dict[tuple, list] = {}
    for r in runs:
        out.setdefault(tuple(r.config[k] for k in keys), []).append(r)
    return dict(sorted(out.items()))


def by_T(runs: Iterable) -> dict[int, list]:
    """{T: [runs]} sorted by T."""
    return {k[0]: v for k, v in group(runs, "train_size").items()}


def finite_mean(xs: Iterable[float]) -> float:
    xs = [float(x) for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def series(runs: Iterable, metric: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(Ts, mean over runs at each T, per-run values at each T) of a scalar metric."""
    groups = by_T(runs)
    per = [np.array([r.metrics[metric] for r in rs], dtype=float) for rs in groups.values()]
    means = np.array([finite_mean(v) for v in per])
    return np.array(list(groups), dtype=float), means, per


def first_from_which(xs: list, ok: list[bool]):
    """The smallest x (xs increasing) such that ok holds there and at every larger x; None
    if ok fails at the largest."""
    out = None
    for x, good in zip(reversed(xs), reversed(ok)):
        if not good:
            break
        out = x
    return out


def top_feature_dims(run, k: int) -> np.ndarray:
    """(k,) the k largest feature dimensionalities of a run, descending."""
    return np.sort(np.asarray(run.arrays["feature_dims"], dtype=float))[::-1][:k]


def summary_rows(runs: Iterable) -> list[dict]:
    """One row per (m, T, steps, weight decay): counts and means over its runs."""
    rows = []
    for (m, T, steps, wd), rs in group(
        runs, "hidden", "train_size", "steps", "weight_decay"
    ).items():
        dd = np.concatenate([np.asarray(r.arrays["data_dims"], float) for r in rs])
        rows.append(
            {
                "m": m,
                "T": T,
                "steps": steps,
                "weight_decay": wd,
                "runs": len(rs),
                "test_loss": finite_mean([r.metrics["test_loss"] for r in rs]),
                "test_loss_sd": float(np.std([r.metrics["test_loss"] for r in rs])),
                "train_loss": finite_mean([r.metrics["train_loss"] for r in rs]),
                "W_norm": finite_mean([r.metrics["W_norm"] for r in rs]),
                "b_norm": finite_mean([r.metrics["b_norm"] for r in rs]),
                "median_D_t": float(np.median(dd)),
                "m_over_T": m / T,
                "top5_D_i": finite_mean([top_feature_dims(r, 5).mean() for r in rs]),
            }
        )
    return rows
