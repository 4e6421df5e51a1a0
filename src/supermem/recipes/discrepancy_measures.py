"""The measures of the discrepancy recipe (issue 10) and the two write-ups' numbers.

Functions of runs (anything with ``.config``, ``.metrics`` and ``.arrays``: data_dims
(T,), feature_dims (n,)) and of the measures they return; no training, no plotting.
See ``recipes.discrepancy`` for what each measure means.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from supermem.config import TrainConfig
from supermem.recipes.runsets import by_T, first_from_which, top_feature_dims
from supermem.toy.data import zero_model_loss

# A T has left memorisation when the median D_t is below m/T by more than DT_FACTOR:
# most points hold under a third of their share of the hidden space. Memorising solutions
# store points unevenly (median D_t 0.4-1.6 m/T in the runs measured: some store only a
# ring of points), so the first criterion ("within 20% of m/T") called them left too.
# The factor sits in the widest gap of the quick scale's medians (docs/REPRODUCTION.md,
# "T_leave").
DT_FACTOR, FIVE_RATIO = 3.0, 3.0  # 5th/6th feature dims ratio >= 3: the pentagon
REF_S = 0.999  # the sparsity both write-ups used
REFS = {  # (T where the middle regime starts, T where generalisation starts, peak test loss)
    "paper": {"T_leave": 700.0, "T_five": 5_000.0, "peak_loss": 1.01},
    "replication": {"T_leave": 100.0, "T_five": 20_000.0, "peak_loss": 5_000.0},
}
T_TOL = 2.5  # a T matches within this factor (one step of the T grid is ~2.3x)
LOSS_TOL = {"paper": 1.2, "replication": 10.0}  # peak loss within this factor


def measures(runs: list, Ts: list[int] | None = None) -> dict[str, Any]:
    """The five measures of one variant's runs (restricted to ``Ts`` if given)."""
    groups = {T: rs for T, rs in by_T(runs).items() if Ts is None or T in Ts}
    grid = list(groups)
    ratio, five, loss, b, W, seeds = [], [], [], [], [], []
    for T, rs in groups.items():
        rs = sorted(rs, key=lambda r: (r.config.get("data_seed", 0), r.config.get("seed", 0)))
        seeds.append(sorted({int(r.config.get("data_seed", 0)) for r in rs}))
        dd = np.concatenate([np.asarray(r.arrays["data_dims"], float) for r in rs])
        ratio.append(float(np.median(dd)) / (2 / T))
        top = np.stack([top_feature_dims(r, 6) for r in rs])  # (runs, 6)
        five.append(float(np.median(top[:, 4] / np.maximum(top[:, 5], 1e-12))))
        loss.append([float(r.metrics["test_loss"]) / zero_loss(r) for r in rs])
        b.append(float(np.mean([r.metrics["b_norm"] for r in rs])))
        W.append(float(np.mean([r.metrics["W_norm"] for r in rs])))
    mean_loss = [float(np.mean(v)) for v in loss]
    i, ib, iw = int(np.argmax(mean_loss)), int(np.argmax(b)), int(np.argmax(W))
    return {
        "T": grid,
        "median_Dt_over_m_T": ratio,
        "five_sixth_ratio": five,
        "test_loss": mean_loss,
        "test_loss_per_seed": loss,  # per T, in data-seed order
        "data_seeds": seeds,  # per T, the data seeds its means are over
        "b_norm": b,
        "W_norm": W,
        "T_leave": first_from_which(grid, [q < 1 / DT_FACTOR for q in ratio]),
        "T_five": first_from_which(grid, [v >= FIVE_RATIO for v in five]),
        "peak_loss": mean_loss[i],
        "peak_loss_T": grid[i],
        "peak_b": b[ib],
        "peak_b_T": grid[ib],
        "peak_W": W[iw],
        "peak_W_T": grid[iw],
    }


def zero_loss(run) -> float:
    """What a run's test loss is measured against: the zero model's test loss
    (``data.zero_model_loss``), 1 for the paper's unit points and mse (not recomputed),
    for ``point_norm="raw"`` the mean squared norm of the test points (~3.3 at
    n(1-S) = 10), so that a flat middle regime reads ~1.01 whatever the points' scale."""
    c = run.config
    if (c.get("point_norm", "unit"), c.get("empty", "resample"), c.get("loss", "mse")) == (
        "unit",
        "resample",
        "mse",
    ):
        return 1.0
    return zero_model_loss(_train_config(run))


def _train_config(run) -> TrainConfig:
    """The run's TrainConfig from its config dict (which also records seeds, versions)."""
    keys = TrainConfig.__dataclass_fields__
    return TrainConfig.from_dict({k: v for k, v in run.config.items() if k in keys})


def storage_by_norm(runs: list) -> dict[int, dict[str, Any]]:
    """Per T (seeds pooled), how storing a point follows its norm, for runs whose points
    are not all of norm 1 (``point_norm="raw"``; {} otherwise). Arrays (points,): each
    point's squared norm ``sq_norm``; ``ratio``, D_t / (m/T); and ``ratio_unit``, the same
    on h_t / ||x_t|| (what the point's direction would hold at unit norm: D_t grows with
    ||h_t||^2 against the other points', so a point stored in its own direction at a
    smaller radius has a small D_t but not a small ratio_unit). Numbers: the fraction
    above m/(DT_FACTOR T) (as for T_leave) among all points and among the quarters with
    the largest and the smallest norm, for each ratio (``stored_*`` and ``direction_*``);
    Spearman rank correlations of the squared norm with D_t and with the gain
    ||h_t|| / ||x_t||."""
    from scipy.stats import spearmanr

    from supermem.metrics import data_dims
    from supermem.toy.data import sample

    out: dict[int, dict[str, Any]] = {}
    for T, rs in by_T(runs).items():
        if all(r.config.get("point_norm", "unit") == "unit" for r in rs):
            continue
        sq, ratio, unit, gain = [], [], [], []
        for r in rs:
            m = r.config.get("hidden", 2)
            X = getattr(r, "X_train", None)
            if X is None:  # not saved with the run: drawn again from its config
                c = _train_config(r)
                X = sample(T, c.features, c.sparsity, c.data_seed, 0, c.empty, c.point_norm)
                X = X.to_scipy()
            q = np.asarray(X.multiply(X).sum(1), float).ravel()  # (T,)
            H = np.asarray(r.arrays["H_train"], float)  # (T, m)
            x = np.sqrt(np.maximum(q, 1e-30))  # (T,) norms, never 0
            sq.append(q)
            ratio.append(np.asarray(r.arrays["data_dims"], float) / (m / T))
            unit.append(data_dims(H / x[:, None]) / (m / T))
            gain.append(np.linalg.norm(H, axis=1) / x)
        q, v, u = np.concatenate(sq), np.concatenate(ratio), np.concatenate(unit)
        order, k = np.argsort(q), max(len(q) // 4, 1)
        d: dict[str, Any] = {"sq_norm": q, "ratio": v, "ratio_unit": u}
        for name, w in (("stored", v), ("direction", u)):
            above = w > 1 / DT_FACTOR
            d[f"{name}_top_quarter"] = float(above[order[-k:]].mean())
            d[f"{name}_bottom_quarter"] = float(above[order[:k]].mean())
            d[name] = float(above.mean())
        d["spearman"] = float(spearmanr(q, v).statistic)
        d["spearman_gain"] = float(spearmanr(q, np.concatenate(gain)).statistic)
        out[T] = d
    return out


def reference(who: str, sparsity: float) -> dict[str, float]:
    """A write-up's numbers with its Ts rescaled by T(1-S) to ``sparsity``."""
    k = (1 - REF_S) / (1 - sparsity)
    r = REFS[who]
    return {"T_leave": r["T_leave"] * k, "T_five": r["T_five"] * k, "peak_loss": r["peak_loss"]}


def gives(m: dict[str, Any], who: str, sparsity: float) -> bool:
    """Whether measures ``m`` match a write-up's numbers within T_TOL and LOSS_TOL."""
    ref = reference(who, sparsity)
    near_T = all(
        m[k] is not None and 1 / T_TOL <= m[k] / ref[k] <= T_TOL for k in ("T_leave", "T_five")
    )
    tol = LOSS_TOL[who]
    return bool(near_T and 1 / tol <= m["peak_loss"] / ref["peak_loss"] <= tol)


def nearer(value: float | None, key: str, sparsity: float) -> str:
    """'paper' or 'replication': the write-up whose value is nearer on a log scale."""
    if value is None:
        return "n/a"
    d = {w: abs(math.log(value / reference(w, sparsity)[key])) for w in REFS}
    return min(d, key=lambda w: d[w])


def markdown(tab: dict[str, dict[str, Any]]) -> str:
    """The docs' tables from ``table`` (or discrepancy_measures.json): measures per
    variant, then the seed-averaged test loss per variant and T."""

    def g(v: float | None) -> str:
        return "beyond grid" if v is None else f"{v:.3g}"

    head = "| variant | T_leave | T_five | peak test loss (T) | peak ‖b‖ (T) | peak ‖W‖_F (T) |"
    lines = [head, "|---" * 6 + "|"]
    for k, m in tab.items():
        lines.append(
            f"| {k} | {g(m['T_leave'])} | {g(m['T_five'])} | {g(m['peak_loss'])} "
            f"({m['peak_loss_T']}) | {g(m['peak_b'])} ({m['peak_b_T']}) | {g(m['peak_W'])} "
            f"({m['peak_W_T']}) |"
        )
    Ts = sorted({T for m in tab.values() for T in m["T"]})  # every T any variant has
    lines += ["", "| variant | " + " | ".join(f"T={T}" for T in Ts) + " |"]
    lines.append("|---" * (len(Ts) + 1) + "|")
    for k, m in tab.items():
        cells = [g(m["test_loss"][m["T"].index(T)]) if T in m["T"] else "" for T in Ts]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
