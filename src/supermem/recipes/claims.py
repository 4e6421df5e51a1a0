"""The paper's statements as checks on runs: each returns a ``Claim``.

Every number in a measured string is computed here from the runs' arrays and metrics;
paper values are quoted from PAPER.md. ``holds`` uses a stated tolerance (in the
claim's note), and is None when the runs cannot decide (too few T values, ...).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from supermem.recipes.runsets import by_T, group, series, top_feature_dims

PAPER_PEAK, REPLICATION_PEAK = 1.01, 5_000.0  # middle-regime test loss (PAPER.md)
PENTAGON_W_NORM = math.sqrt(5)  # ||W||_F of 5 unit features


@dataclass(frozen=True)
class Claim:
    """One statement of the paper, checked against runs."""

    claim: str
    paper: str
    measured: str
    holds: bool | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean_test(runs: list) -> float:
    return float(np.mean([r.metrics["test_loss"] for r in runs]))


def bump(Ts: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """Where a test-loss curve over T peaks and how far it rises above its first value.

    Ts, losses: (k,), Ts increasing. ``rise`` = peak - loss at the smallest T, 0 when
    the peak is the first point (no bump: the curve only falls).
    """
    i = int(np.nanargmax(losses))
    return {
        "peak_T": float(Ts[i]),
        "peak": float(losses[i]),
        "first": float(losses[0]),
        "last": float(losses[-1]),
        "rise": float(losses[i] - losses[0]),
        "interior": 0 < i < len(Ts) - 1,
    }


def polygon(runs: list, tol: float = 0.2, span: float = 30.0) -> Claim:
    """Figs. 2/3, small T: training points sit at D_t = m/T (a T-gon), T by T.

    Small T = every T up to ``span`` times the smallest. Per T, the median over its points
    (all seeds pooled) of D_t / (m/T) must be within ``tol`` of 1. Medians, not means
    (PAPER.md): the D_t of any T vectors spanning m dimensions *average* about m/T, but a
    random cloud has median D_t ~ 0.7 m/T, a T-gon exactly m/T. T = 3 in m = 2 is
    degenerate (any three directions >= 90 degrees apart memorise), so one T alone is
    weak evidence; hence the whole small-T range.
    """
    Ts = [T for T in sorted(by_T(runs)) if T <= span * min(by_T(runs))]
    m = by_T(runs)[Ts[0]][0].config["hidden"]
    med = []
    for T in Ts:
        dd = np.concatenate([np.asarray(r.arrays["data_dims"], float) for r in by_T(runs)[T]])
        med.append(float(np.median(dd)) / (m / T))
    worst = int(np.argmax(np.abs(np.array(med) - 1)))
    return Claim(
        claim=f"At small T the training points sit at D_t = m/T (T = {Ts[0]}..{Ts[-1]}, m={m})",
        paper="data dims follow m/T for small T (regular T-gon)",
        measured="median D_t / (m/T) per T: "
        + ", ".join(f"T={T}: {v:.2f}" for T, v in zip(Ts, med))
        + f"; worst T={Ts[worst]}",
        holds=bool(all(abs(v - 1) <= tol for v in med)),
        note=f"holds if, at every T <= {span:g} x the smallest, the median D_t is within "
        f"{tol:.0%} of m/T",
    )


def pentagon(runs: list, ratio_min: float = 3.0) -> Claim:
    """Fig. 2/3, largest T: ~5 features carry the dimensionality (the pentagon)."""
    T = max(by_T(runs))
    top = np.stack([top_feature_dims(r, 6) for r in by_T(runs)[T]])  # (runs, 6)
    ratio = float(np.median(top[:, 4] / np.maximum(top[:, 5], 1e-12)))
    return Claim(
        claim=f"At large T about 5 features have large dimensionality (T={T})",
        paper="5 features, each D_i below 2/5; the rest nearly ignored",
        measured=f"top-5 D_i mean {top[:, :5].mean():.3g} (max {top[:, :5].max():.3g}), "
        f"6th {np.median(top[:, 5]):.3g}; 5th/6th ratio {ratio:.3g} "
        f"(median of {len(top)} runs)",
        holds=bool(ratio >= ratio_min),
        note=f"holds if the median 5th/6th ratio >= {ratio_min:g}",
    )


def test_loss_peak(runs: list) -> Claim:
    """Fig. 3: the seed-averaged test loss rises before it falls; where and how high."""
    Ts, means, _ = series(runs, "test_loss")
    b = bump(Ts, means)
    closer = abs(math.log(b["peak"] / PAPER_PEAK)) < abs(math.log(b["peak"] / REPLICATION_PEAK))
    like = "the paper (~1.01)" if closer else "the replication (~5,000)"
    return Claim(
        claim="Test loss has a bump between small and large T (data double descent)",
        paper="peak ~1.01 in the middle regime (replication: ~5,000)",
        measured=f"peak mean test loss {b['peak']:.4g} at T={b['peak_T']:g}; "
        f"{b['first']:.4g} at T={Ts[0]:g}, {b['last']:.4g} at T={Ts[-1]:g}; "
        f"height resembles {like}",
        holds=bool(b["interior"] and b["rise"] > 0 and b["last"] < b["peak"])
        if len(Ts) > 2
        else None,
        note="holds if the peak is at an interior T and above both ends",
    )


def norm_peak(runs: list, metric: str, paper_T: float = 30.0) -> Claim:
    """Fig. 4: ||W||_F and ||b|| peak near T = 30 (paper, S = 0.999)."""
    Ts, means, _ = series(runs, metric)
    i = int(np.nanargmax(means))
    S = runs[0].config["sparsity"]
    rescaled = paper_T * (1 - 0.999) / (1 - S)
    label = {"W_norm": "||W||_F", "b_norm": "||b||"}[metric]
    return Claim(
        claim=f"{label} peaks near T = 30",
        paper=f"peak near T = {paper_T:g}",
        measured=f"peak {means[i]:.3g} at T={Ts[i]:g}",
        holds=bool(paper_T / 3 <= Ts[i] <= paper_T * 3 and 0 < i < len(Ts) - 1),
        note=f"holds within a factor 3 of T=30 at an interior T; at S={S:g} the "
        f"T(1-S)-rescaled position would be T~{rescaled:.3g}",
    )


def w_norm_large_T(runs: list, tol: float = 0.15) -> Claim:
    """Fig. 4: ||W||_F plateaus near sqrt(5) = 2.24 at large T (the pentagon)."""
    T = max(by_T(runs))
    w = float(np.mean([r.metrics["W_norm"] for r in by_T(runs)[T]]))
    return Claim(
        claim=f"||W||_F at the largest T (T={T}) is near sqrt(5)",
        paper="||W||_F ~ sqrt(5) = 2.24",
        measured=f"mean ||W||_F = {w:.3g} ({w / PENTAGON_W_NORM - 1:+.0%})",
        holds=bool(abs(w / PENTAGON_W_NORM - 1) <= tol),
        note=f"holds within {tol:.0%}",
    )


def hurts(runs: list, along: str, across: str, rel: float = 0.01) -> Claim:
    """Fig. 5: somewhere, more of ``along`` (T or m) raises mean test loss at fixed ``across``.

    Compares neighbouring grid values; a rise counts if larger than ``rel`` (relative).
    """
    table = {k: _mean_test(v) for k, v in group(runs, across, along).items()}
    best: tuple[float, tuple | None] = (0.0, None)
    pairs = 0  # neighbouring steps compared; none where every `across` value has one `along`
    for c in sorted({k[0] for k in table}):
        pts = sorted((a, v) for (cc, a), v in table.items() if cc == c)
        for (a0, v0), (a1, v1) in zip(pts, pts[1:]):
            pairs += 1
            if v1 / v0 - 1 > best[0]:
                best = (v1 / v0 - 1, (c, a0, a1, v0, v1))
    name = {"train_size": "T", "hidden": "m"}
    what = {"train_size": "more data", "hidden": "a bigger model"}[along]
    measured = "no rise found" if pairs else f"one {name[along]} only: nothing to compare"
    if best[1]:
        c, a0, a1, v0, v1 = best[1]
        measured = (
            f"largest rise {best[0]:+.1%}: at {name[across]}={c}, {name[along]} {a0} -> {a1} "
            f"takes test loss {v0:.4g} -> {v1:.4g}"
        )
    return Claim(
        claim=f"In places {what} raises the test loss",
        paper="regions of the (T, m) map where more data or a bigger model hurts",
        measured=measured,
        holds=bool(best[0] > rel) if pairs else None,
        note=f"holds if some neighbouring step raises the mean test loss by > {rel:.0%}",
    )


def bump_grows(runs: list, key: str = "steps") -> Claim:
    """Appendix (m = 4): the test-loss bump grows with the number of training steps."""
    rises = {k[0]: bump(*series(rs, "test_loss")[:2])["rise"] for k, rs in group(runs, key).items()}
    vals = list(rises.values())
    return Claim(
        claim="The test-loss bump grows with training length (m = 4)",
        paper="more training epochs give a larger bump",
        measured="; ".join(f"{k} steps: rise {v:.3g}" for k, v in rises.items()),
        holds=bool(vals[-1] > vals[0] and vals[-1] > 0) if len(vals) > 1 else None,
        note="rise = peak mean test loss minus the value at the smallest T; holds if the "
        "longest training has a larger, positive rise than the shortest",
    )


def decay_removes_bump(runs: list, strong: float = 1.0, frac: float = 0.25) -> Claim:
    """Appendix (m = 4): weight decay 1.0 instead of 1e-2 removes the bump."""
    rises = {
        k[0]: bump(*series(rs, "test_loss")[:2]) for k, rs in group(runs, "weight_decay").items()
    }
    weak = min(rises)
    ok = strong in rises and weak != strong
    measured = "; ".join(
        f"wd {k:g}: rise {v['rise']:.3g}, peak {v['peak']:.4g} at T={v['peak_T']:g}"
        for k, v in rises.items()
    )
    return Claim(
        claim=f"Weight decay {strong:g} removes the test-loss bump (m = 4)",
        paper="weight decay 1.0 instead of 1e-2 removes the bump",
        measured=measured,
        holds=bool(rises[strong]["rise"] <= frac * max(rises[weak]["rise"], 1e-12)) if ok else None,
        note=f"holds if the rise with wd {strong:g} is <= {frac:.0%} of the rise with wd {weak:g}",
    )
