"""Paper fig. 4: vectors on one consistent scale, and ||W||_F, ||b|| vs T (m = 2).

Norms rise with T, peak near T = 30, fall in the middle regime and plateau at large
T, ||W||_F near sqrt(5) for the pentagon (PAPER.md, item 3).
"""

from __future__ import annotations

from supermem.recipes import claims
from supermem.recipes.base import Recipe, scale_costs, t_sweep_text
from supermem.recipes.fig2 import grids
from supermem.report import figures


def check(runs: list) -> list[claims.Claim]:
    return [
        claims.norm_peak(runs, "W_norm"),
        claims.norm_peak(runs, "b_norm"),
        claims.w_norm_large_T(runs),
    ]


RECIPE = Recipe(
    name="fig4",
    title="Fig. 4: vector lengths and norms vs T (m = 2)",
    description=f"Same sweep as fig2 ({t_sweep_text()}). {scale_costs(grids)}.",
    grids=grids,
    draw=figures.fig4,
    check=check,
)
