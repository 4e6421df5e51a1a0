"""Paper fig. 2: features (W columns) vs training hidden vectors, m = 2, across T.

Small T: the hidden vectors form a regular T-gon while the features look messy;
large T: the features form a pentagon and the data trace it (PAPER.md, item 1).
"""

from __future__ import annotations

from supermem.recipes import claims
from supermem.recipes.base import Recipe, scale_costs, t_sweep_grids, t_sweep_text
from supermem.report import figures

SWEEP = "m2-T"  # shared by fig2, fig3, fig4 and demo: one sweep serves all four


def grids(scale: str) -> list:
    return t_sweep_grids(SWEEP, scale)


def check(runs: list) -> list[claims.Claim]:
    return [claims.polygon(runs), claims.pentagon(runs)]


RECIPE = Recipe(
    name="fig2",
    title="Fig. 2: data points vs features (m = 2)",
    description=f"m = 2 T sweep ({t_sweep_text()}). {scale_costs(grids)}.",
    grids=grids,
    draw=figures.fig2,
    check=check,
)
