"""Recipes: one module per paper figure, each sweeps + figures + claims.

``RECIPES`` maps a recipe's name to its ``Recipe``; the CLI's choices come from it.
Grids, seeds and step counts for every scale live in ``recipes.scales``.
"""

from __future__ import annotations

from supermem.recipes import (
    appendix_m4,
    circles,
    counterfactual,
    crossover,
    demo,
    discrepancy,
    dynamics,
    fig2,
    fig3,
    fig4,
    fig5,
    mnist,
    repeated,
    scaling,
    variants,
)
from supermem.recipes.base import Recipe, RecipeError, load_runs, spec_runs
from supermem.recipes.scales import SCALES

RECIPES: dict[str, Recipe] = {
    m.RECIPE.name: m.RECIPE
    for m in (
        demo,
        fig2,
        fig3,
        fig4,
        fig5,
        appendix_m4,
        discrepancy,
        repeated,
        scaling,
        crossover,
        dynamics,
        circles,
        variants,
    )
}
# Recipes that train real networks, not toy sweeps: ``RECIPE.reproduce(out, scale, ...)``
REAL_RECIPES = {m.RECIPE.name: m.RECIPE for m in (mnist, counterfactual)}

__all__ = ["REAL_RECIPES", "RECIPES", "SCALES", "Recipe", "RecipeError", "load_runs", "spec_runs"]
