"""Paper fig. 5: mean test loss over (T, m), 4 models per cell averaged.

The map shows regions where more data, or a bigger model, raises the test loss
(PAPER.md, item 4). Each cell averages 2 init seeds x 2 data seeds; one restart per
model keeps the map affordable (the paper's restarts matter most for m <= 3).
"""

from __future__ import annotations

from supermem.recipes import claims
from supermem.recipes.base import Recipe, scale_costs
from supermem.recipes.scales import SCALES, get_scale
from supermem.report import figures


def grids(scale: str) -> list:
    s = get_scale(scale)
    axes = {
        "hidden": list(s.fig5_m),
        "train_size": list(s.fig5_T),
        "seed": [0, 1],
        "data_seed": [0, 1],
    }
    return [("Tm-map", s.fixed(restarts=1), axes)]


def check(runs: list) -> list[claims.Claim]:
    return [
        claims.hurts(runs, along="train_size", across="hidden"),
        claims.hurts(runs, along="hidden", across="train_size"),
    ]


def _text() -> str:
    return "; ".join(
        f"{k}: m in {list(s.fig5_m)}, {len(s.fig5_T)} T from {s.fig5_T[0]} to {s.fig5_T[-1]}"
        for k, s in SCALES.items()
    )


RECIPE = Recipe(
    name="fig5",
    title="Fig. 5: test loss over (T, m)",
    description=f"{_text()}; 2 init x 2 data seeds per cell, {SCALES['quick'].steps} steps at "
    f"quick, 50,000 otherwise. {scale_costs(grids)}.",
    grids=grids,
    draw=figures.fig5,
    check=check,
)
