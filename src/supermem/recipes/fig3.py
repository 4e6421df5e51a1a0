"""Paper fig. 3: test loss, feature dims and data dims vs T (m = 2), vectors underneath.

Small T: every D_t at m/T; large T: ~5 large feature dims; in between both small and
the seed-averaged test loss has a bump (data double descent; PAPER.md, item 2).
"""

from __future__ import annotations

from supermem.recipes import claims
from supermem.recipes.base import Recipe, scale_costs, t_sweep_text
from supermem.recipes.fig2 import grids
from supermem.report import figures


def check(runs: list) -> list[claims.Claim]:
    return [claims.polygon(runs), claims.pentagon(runs), claims.test_loss_peak(runs)]


RECIPE = Recipe(
    name="fig3",
    title="Fig. 3: dimensionality and test loss vs T (m = 2)",
    description=f"Same sweep as fig2 ({t_sweep_text()}). {scale_costs(grids)}.",
    grids=grids,
    draw=figures.fig3,
    check=check,
)
