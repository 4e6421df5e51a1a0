"""What a recipe is, what a claim is, and how recipes find their runs.

A recipe turns a scale into sweep specs, and the finished runs into figures and
claims. Recipes never train anything themselves: ``supermem reproduce`` runs their
specs with ``supermem.sweeps.run.run_sweep`` and hands the loaded runs back.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supermem.recipes.claims import Claim
from supermem.recipes.scales import SCALES, get_scale

GridsFn = Callable[[str], list]
FiguresFn = Callable[[list, Path], list[Path]]
ClaimsFn = Callable[[list], list[Claim]]


class RecipeError(Exception):
    """The runs given cannot make this recipe's figures or claims (a one-line message)."""


def _any_run(run) -> bool:
    return True


def is_m2(run) -> bool:
    """The runs of the m = 2 recipes (a Recipe's ``keep``)."""
    return run.config["hidden"] == 2


@dataclass(frozen=True)
class Recipe:
    """A paper figure (or a group of them) as sweeps + figures + claims."""

    name: str
    title: str
    description: str  # grid, seeds, expected cost per scale
    grids: GridsFn  # scale -> [(spec name, fixed, axes)]
    draw: FiguresFn  # (ok runs, figure folder) -> written files
    check: ClaimsFn  # ok runs -> claims
    keep: Callable[[Any], bool] = _any_run  # the runs this recipe draws and checks
    wants: str = "finished (status ok)"  # those runs in words, for RecipeError
    rows: Callable[[list], list[dict]] | None = None  # the report's table; None: per-T summary

    def specs(self, scale: str) -> list:
        """The SweepSpecs to run at ``scale`` (KeyError for an unknown scale)."""
        return [make_spec(g) for g in self.grids(scale)]

    def select(self, sources) -> list:
        """The ok runs of ``sources`` this recipe uses; RecipeError if there are none."""
        runs = [r for r in load_runs(sources) if self.keep(r)]
        if not runs:
            raise RecipeError(f"no {self.wants} runs for recipe {self.name}")
        return runs

    def figures(self, sources, out_dir: str | os.PathLike) -> list[Path]:
        """Write this recipe's figures (PNG and SVG) from runs or sweep folders."""
        return self.draw(self.select(sources), Path(out_dir))

    def claims(self, sources) -> list[Claim]:
        return self.check(self.select(sources))


Grid = tuple[str, dict[str, Any], dict[str, list]]  # (spec name, fixed fields, axes)


def make_spec(grid: Grid):
    """A ``supermem.sweeps.spec.SweepSpec`` (imported here so recipes load without it)."""
    from supermem.sweeps.spec import SweepSpec

    name, fixed, axes = grid
    return SweepSpec(name=name, fixed=fixed, axes={k: list(v) for k, v in axes.items()})


def grid_configs(grid: Grid) -> list[dict[str, Any]]:
    """Every point of a grid as a dict of TrainConfig fields (product of the axes)."""
    _, fixed, axes = grid
    return [{**fixed, **dict(zip(axes, vals))} for vals in itertools.product(*axes.values())]


def estimate_seconds(grids: list[Grid]) -> float:
    """Serial seconds for the grids on 2 CPU cores, by the sweeps' cost model (priced on
    the CPU whatever this machine has: the same text on every machine)."""
    from supermem.config import TrainConfig
    from supermem.sweeps.cost import run_seconds

    return sum(
        run_seconds(TrainConfig(**{**c, "device": "cpu"})) for g in grids for c in grid_configs(g)
    )


def t_sweep_grids(prefix: str, scale: str, hidden: int = 2, **fixed) -> list[Grid]:
    """The m-fixed T sweep behind figs 2-4, as two grids split at ``small_T``.

    Restarts cannot vary along an axis, and they are cheap only at small T (where
    m = 2 most needs them: the paper keeps the best of several init seeds), so small
    and large T are two specs of one sweep.
    """
    s = get_scale(scale)
    seeds = list(range(s.data_seeds))
    small = [t for t in s.T_grid if t < s.small_T]
    large = [t for t in s.T_grid if t >= s.small_T]
    out: list[Grid] = []
    if small:
        f = s.fixed(hidden=hidden, restarts=s.restarts, **fixed)
        out.append((f"{prefix}-small-T", f, {"train_size": small, "data_seed": seeds}))
    if large:
        f = s.fixed(hidden=hidden, restarts=1, **fixed)
        out.append((f"{prefix}-large-T", f, {"train_size": large, "data_seed": seeds}))
    return out


def runs_in(folder: Path) -> list:
    """The runs of a sweep folder, a reproduce folder (all its sweeps) or one run folder."""
    from supermem.sweeps.index import load_sweep
    from supermem.sweeps.store import load_run

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return [load_run(folder)]
    if (folder / "sweeps").is_dir():
        return [r for d in sorted((folder / "sweeps").iterdir()) if d.is_dir() for r in runs_in(d)]
    return list(load_sweep(folder))


def spec_runs(out: str | os.PathLike, specs: list, ok_only: bool = True) -> list:
    """The runs of a reproduce folder that belong to ``specs``, each once.

    Spec names do not name the scale, so a folder that ran two scales (or two recipes
    with a shared spec name) holds other runs in the same OUT/sweeps/<spec>/: only runs
    whose key is a config of ``specs`` are kept.
    """
    from supermem.sweeps.index import config_key

    keys = {config_key(c) for s in specs for c in s.configs()}
    seen: dict[str, Any] = {}
    for s in specs:
        folder = Path(out) / "sweeps" / s.name
        for r in load_runs(folder, ok_only) if (folder / "runs").is_dir() else []:
            if r.path.name in keys:
                seen.setdefault(r.path.name, r)
    return list(seen.values())


def load_runs(sources, ok_only: bool = True) -> list:
    """Runs (status ok unless ``ok_only`` is False) from Run objects and/or folders."""
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    runs: list = []
    for s in sources:
        runs += runs_in(Path(s)) if isinstance(s, str | os.PathLike) else [s]
    return [r for r in runs if r.status == "ok" or not ok_only]


def scale_costs(grids: Callable[[str], list[Grid]]) -> str:
    """'Expected cost (...): quick ~N min, cpu ~N h, ...': ``estimate_seconds`` of each
    scale's grids, the engine ``auto`` would pick for each run, at the default cost model's
    rates (a folder's ``--dry-run`` prices it on its own runs and the workers)."""

    def fmt(sec: float) -> str:
        return f"~{sec / 60:.0f} min" if sec < 2 * 3600 else f"~{sec / 3600:.0f} h"

    costs = ", ".join(f"{k} {fmt(estimate_seconds(grids(k)))}" for k in SCALES)
    return f"Expected cost (default cost model, one run at a time on 2 CPU cores): {costs}"


def t_sweep_text() -> str:
    """The T sweep's grid at every scale, for recipe descriptions."""
    parts = []
    for k, s in SCALES.items():
        parts.append(
            f"{k}: n={s.features}, S={s.sparsity}, {s.steps} steps, {len(s.T_grid)} T from "
            f"{s.T_grid[0]} to {s.T_grid[-1]} x {s.data_seeds} data seeds, "
            f"{s.restarts} restarts below T={s.small_T}"
        )
    return "; ".join(parts)
