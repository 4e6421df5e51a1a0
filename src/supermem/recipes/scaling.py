"""What sets the generalisation scale (A. Jermyn's comment, PAPER.md).

Sweeps of sparsity S and of weight decay, for m = 2 and a larger m, over a grid of
x = T(1-S), the expected count of each feature in the data set (T = x / (1-S), so every
S sees the same x). Jermyn: plotted against T(1-S), the jump in the maximal feature
dimensionality lines up near T(1-S) ~ 10 for every S; weight decay does not move it;
less clean for larger m.

The *jump* of one curve (max_i D_i against x): the smallest x from which on max D_i >=
JUMP_DIM (a generalising feature: a pentagon's sit at 2/5, memorising solutions' far
below), reported with the grid point before it; ``at`` is their geometric middle.
Where a curve *settles* (this project's check, for larger m where the largest feature
says little): the smallest x from which on the seed-mean test loss stays within
SETTLE_TOL of its value at the largest x, the generalising level. Everything is
recomputed from the saved feature_dims arrays and metrics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from supermem.recipes.base import Recipe, RecipeError, scale_costs
from supermem.recipes.claims import Claim
from supermem.recipes.runsets import first_from_which, group
from supermem.recipes.scales import SCALES, get_scale

JUMP_DIM = 0.2
JERMYN_X = 10.0
X_TOL = 2.5  # a jump "near 10": within this factor
SPREAD_TOL = 2.5  # jumps "line up": max / min within this factor (about one grid step)
SETTLE_TOL = 0.01  # the test loss "at its generalising level": within 1% of the last x's


def T_of(x: float, S: float) -> int:
    """The training size with T(1-S) = x (rounded; at least 1)."""
    return max(1, round(x / (1 - S)))


def grids(scale: str) -> list:
    s = get_scale(scale)
    if not s.scaling_S:
        raise KeyError(f"scale {scale} has no scaling grid (scaling_S)")
    seeds = list(range(s.scaling_seeds))
    out = []
    for m in s.scaling_m:
        f = s.fixed(hidden=m, restarts=1)
        for S in s.scaling_S:
            Ts = sorted({T_of(x, S) for x in s.scaling_x})
            out.append(
                (
                    f"scaling-m{m}-S{S:g}",
                    {**f, "sparsity": S},
                    {"train_size": Ts, "data_seed": seeds},
                )
            )
        Ts = sorted({T_of(x, s.sparsity) for x in s.scaling_x})
        wd: dict[str, list] = {"weight_decay": list(s.scaling_wd)}
        out.append((f"scaling-m{m}-wd", f, {**wd, "train_size": Ts, "data_seed": seeds}))
    return out


def max_dim(run) -> float:
    return float(np.max(run.arrays["feature_dims"]))


def curve(runs: list) -> dict[str, Any]:
    """One curve (runs at one m, S and weight decay): per x, the mean max D_i and test
    loss over seeds, the jump and the test-loss peak."""
    Ts, xs, top, loss = [], [], [], []
    for (T,), rs in group(runs, "train_size").items():
        Ts.append(int(T))
        xs.append(T * (1 - rs[0].config["sparsity"]))
        top.append(float(np.mean([max_dim(r) for r in rs])))
        loss.append(float(np.mean([r.metrics["test_loss"] for r in rs])))
    jump = first_from_which(xs, [v >= JUMP_DIM for v in top])
    before = None
    if jump is not None and xs.index(jump) > 0:
        before = xs[xs.index(jump) - 1]
    at = math.sqrt(jump * before) if jump is not None and before is not None else jump
    settle = first_from_which(xs, [v <= loss[-1] * (1 + SETTLE_TOL) for v in loss])
    return {
        "T": Ts,
        "x": xs,
        "max_dim": top,
        "test_loss": loss,
        "jump": jump,
        "before": before,
        "at": at,
        "peak": xs[int(np.argmax(loss))],  # the x of the largest test loss
        "settle": settle,  # the x from which the test loss is at its generalising level
    }


def table(runs: list) -> dict[int, dict[str, Any]]:
    """{m: {"S": {S: curve at the default decay}, "wd": {wd: curve at the scale's S}}}."""
    out: dict[int, dict[str, Any]] = {}
    wd0 = _default_decay(runs)
    for (m,), rs in group(runs, "hidden").items():
        at_wd0 = [r for r in rs if r.config["weight_decay"] == wd0]
        S0 = _decay_sparsity(rs)
        at_S0 = [r for r in rs if r.config["sparsity"] == S0]
        out[m] = {
            "S": {S: curve(v) for (S,), v in group(at_wd0, "sparsity").items()},
            "wd": {wd: curve(v) for (wd,), v in group(at_S0, "weight_decay").items()},
            "wd_S": S0,
        }
    return out


def _default_decay(runs: list) -> float:
    """The weight decay of the sparsity sweep: the one shared by most sparsities."""
    per = group(runs, "weight_decay")
    return max(per, key=lambda k: len({r.config["sparsity"] for r in per[k]}))[0]


def _decay_sparsity(runs: list) -> float:
    """The sparsity of the weight-decay sweep: the one with most weight decays."""
    per = group(runs, "sparsity")
    return max(per, key=lambda k: len({r.config["weight_decay"] for r in per[k]}))[0]


def _jumps(curves: dict) -> str:
    def fmt(a: float | None) -> str:
        return "none" if a is None else f"{a:.3g}"

    return ", ".join(f"{k:g}: {fmt(c['at'])}" for k, c in curves.items())


def check(runs: list) -> list[Claim]:
    tab = table(runs)
    if not tab:
        raise RecipeError("no scaling runs")
    out = []
    for m, t in tab.items():
        at = [c["at"] for c in t["S"].values()]
        if len(t["S"]) >= 2:
            found = [a for a in at if a is not None]
            near = all(JERMYN_X / X_TOL <= a <= JERMYN_X * X_TOL for a in found)
            spread = max(found) / min(found) if found else math.inf
            out.append(
                Claim(
                    f"m = {m}: the jump in max feature dimensionality lines up near "
                    "T(1-S) ~ 10 for every sparsity",
                    "T(1-S) ~ 10" + (" (less clean for larger m)" if m > 2 else ""),
                    f"jump at T(1-S) per S: {_jumps(t['S'])}; spread x{spread:.3g}",
                    len(found) == len(at) and near and spread <= SPREAD_TOL,
                    f"jump: first T(1-S) from which max D_i >= {JUMP_DIM}; holds if every S has "
                    f"one, each within x{X_TOL:g} of {JERMYN_X:g} and max/min <= {SPREAD_TOL:g}",
                )
            )
            peaks = {S: c["peak"] for S, c in t["S"].items()}
            pspread = max(peaks.values()) / min(peaks.values())
            out.append(
                Claim(
                    f"m = {m}: the test-loss peak lines up in T(1-S) for every sparsity",
                    "the same scale in the test loss (this project's check, not Jermyn's)",
                    "test-loss peak at T(1-S) per S: "
                    + ", ".join(f"{S:g}: {x:.3g}" for S, x in peaks.items())
                    + f"; spread x{pspread:.3g}",
                    pspread <= SPREAD_TOL,
                    f"peak: the grid T(1-S) of the largest test loss; holds if max/min <= "
                    f"{SPREAD_TOL:g}",
                )
            )
            settles = {S: c["settle"] for S, c in t["S"].items()}
            sspread = max(settles.values()) / min(settles.values())
            out.append(
                Claim(
                    f"m = {m}: the test loss reaches its generalising level at the same "
                    "T(1-S) for every sparsity",
                    "the same scale in the test loss (this project's check, not Jermyn's)",
                    "settles at T(1-S) per S: "
                    + ", ".join(f"{S:g}: {x:.3g}" for S, x in settles.items())
                    + f"; spread x{sspread:.3g}",
                    sspread <= SPREAD_TOL,
                    f"settles: the first grid T(1-S) from which the seed-mean test loss stays "
                    f"within {SETTLE_TOL:.0%} of its value at the largest T(1-S); holds if "
                    f"max/min <= {SPREAD_TOL:g}",
                )
            )
        if len(t["wd"]) >= 2:
            found = [c["at"] for c in t["wd"].values() if c["at"] is not None]
            spread = max(found) / min(found) if found else math.inf
            out.append(
                Claim(
                    f"m = {m}: weight decay does not move the jump (S = {t['wd_S']:g})",
                    "no shift over weight decay",
                    f"jump at T(1-S) per weight decay: {_jumps(t['wd'])}; spread x{spread:.3g}",
                    len(found) == len(t["wd"]) and spread <= SPREAD_TOL,
                    f"holds if every weight decay has a jump and max/min <= {SPREAD_TOL:g}",
                )
            )
            wsettles = [c["settle"] for c in t["wd"].values() if c["settle"] is not None]
            sspread = max(wsettles) / min(wsettles) if wsettles else math.inf
            out.append(
                Claim(
                    f"m = {m}: weight decay does not move where the test loss settles "
                    f"(S = {t['wd_S']:g})",
                    "no shift over weight decay (this project's check, on the test loss)",
                    "settles at T(1-S) per weight decay: "
                    + ", ".join(f"{k:g}: {c['settle']:.3g}" for k, c in t["wd"].items())
                    + f"; spread x{sspread:.3g}",
                    len(wsettles) == len(t["wd"]) and sspread <= SPREAD_TOL,
                    f"settles as above; holds if max/min <= {SPREAD_TOL:g}",
                )
            )
    return out


def draw(runs: list, out: Path) -> list[Path]:
    from supermem.report import fig_scaling

    return fig_scaling.figures(table(runs), out)


def rows(runs: list) -> list[dict]:
    out = []
    for m, t in table(runs).items():
        for what, curves in (("S", t["S"]), ("weight decay", t["wd"])):
            for k, c in curves.items():
                out.append(
                    {
                        "m": m,
                        "sweep": what,
                        "value": k,
                        "jump at T(1-S)": c["at"],
                        "test loss settles at T(1-S)": c["settle"],
                        "max D_i per T(1-S)": ", ".join(
                            f"{x:g}: {v:.2f}" for x, v in zip(c["x"], c["max_dim"])
                        ),
                    }
                )
    return out


def _text() -> str:
    return "; ".join(
        f"{k}: n={s.features}, S in {list(s.scaling_S)}, T(1-S) in {list(s.scaling_x)}, "
        f"weight decay {sorted({1e-2, *s.scaling_wd})}, m in {list(s.scaling_m)}, "
        f"{s.scaling_seeds} seed(s)"
        for k, s in SCALES.items()
        if s.scaling_S
    )


RECIPE = Recipe(
    name="scaling",
    title="What sets the generalisation scale: sparsity and weight decay (A. Jermyn)",
    description=f"{_text()}. {scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    rows=rows,
)
