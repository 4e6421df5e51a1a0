"""The demo: figs. 2-4 from ONE m = 2 T sweep, at quick scale by default.

The README's main command: ``supermem reproduce demo --scale quick --out demo``.
"""

from __future__ import annotations

from pathlib import Path

from supermem.recipes import claims, fig2, fig3, fig4
from supermem.recipes.base import Recipe, scale_costs, t_sweep_text
from supermem.recipes.fig2 import grids


def draw(runs: list, out: Path) -> list[Path]:
    return [p for r in (fig2, fig3, fig4) for p in r.RECIPE.draw(runs, out)]


def check(runs: list) -> list[claims.Claim]:
    # fig3 repeats fig2's claims; keep each once
    return fig3.check(runs) + fig4.check(runs)


RECIPE = Recipe(
    name="demo",
    title="Demo: figs. 2-4 (m = 2) from one sweep",
    description=f"Figs. 2, 3 and 4 from the shared m = 2 T sweep ({t_sweep_text()}). "
    f"{scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
)
