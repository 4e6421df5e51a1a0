"""Recipes that train real networks (or their own toy runs) rather than toy sweeps.

A ``RealRecipe`` trains what is missing under OUT/runs/ itself, then writes OUT/figures/,
OUT/claims.json and OUT/report.html. OUT/reproduce.json records the recipe, scale and data
folder, so ``supermem report OUT`` can redraw everything from the saved runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supermem.recipes.base import RecipeError
from supermem.recipes.claims import Claim
from supermem.sweeps.manifest import MANIFEST


def read_manifest(out: Path) -> dict:
    """OUT/reproduce.json, or {} when there is none (RecipeError if unreadable)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return {}
    try:
        d = json.loads(path.read_text())
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise RecipeError(f"{path}: not valid JSON") from None
    if not isinstance(d, dict):
        raise RecipeError(f"{path}: not a JSON object")
    return d


def check_manifest(out: Path, recipe: str) -> None:
    """RecipeError if OUT holds the outputs of another recipe (never mixed or overwritten)."""
    old = read_manifest(out).get("recipe")
    if old not in (None, recipe):
        raise RecipeError(f"{out} holds the outputs of recipe {old!r}; choose another --out")


def write_manifest(out: Path, recipe: str, scale: str, data: str | os.PathLike | None) -> None:
    """Record (recipe, scale, data) in OUT/reproduce.json; an OUT made by another recipe is
    refused rather than mixed (RecipeError)."""
    from supermem.sweeps.store import provenance

    check_manifest(out, recipe)
    out.mkdir(parents=True, exist_ok=True)
    d = {"recipe": recipe, "scale": scale, "data": None if data is None else str(data)}
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({**d, **provenance()}, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)


def check_done(out: Path, plan: list[tuple[str, bool]], recipe: str) -> None:
    """RecipeError naming the first missing run of ``plan`` [(run name, done)]."""
    missing = [name for name, done in plan if not done]
    if missing:
        raise RecipeError(
            f"{out}: {len(missing)} of {len(plan)} runs missing (first: {missing[0]}); "
            f"run `supermem reproduce {recipe}` first"
        )


ReproduceFn = Callable[..., list[Claim]]  # (out, scale, data, dry_run, progress) -> claims
RedrawFn = Callable[..., list[Claim]]  # (out, scale, data) -> claims, from saved runs only


@dataclass(frozen=True)
class RealRecipe:
    """A recipe that trains its own models: ``reproduce`` trains what is missing and
    draws; ``report`` only redraws from what OUT holds."""

    name: str
    title: str
    description: str
    scales: dict
    run: ReproduceFn
    redraw: RedrawFn

    def reproduce(self, out, scale="quick", data=None, dry_run=False, progress=False):
        if scale not in self.scales:
            raise RecipeError(f"unknown scale {scale!r}; choose one of {', '.join(self.scales)}")
        check_manifest(Path(out), self.name)
        claims = self.run(Path(out), scale, data, dry_run, progress)
        if not dry_run:  # once the outputs exist: bad input leaves OUT as it was
            write_manifest(Path(out), self.name, scale, data)
        return claims

    def report(self, out) -> list[Claim]:
        """Figures, claims.json and report.html again from OUT's saved runs (no training)."""
        m = read_manifest(Path(out))
        if m.get("recipe") != self.name or m.get("scale") not in self.scales:
            raise RecipeError(f"{out}: no {MANIFEST} of recipe {self.name} with a known scale")
        return self.redraw(Path(out), m["scale"], m.get("data"))


def write_html(out: Path, title: str, claims: list[Claim], figs: list[Path], rows) -> Path:
    """OUT/report.html: the claims, the PNG figures and a table of ``rows`` (dicts)."""
    from supermem.report.html import CSS, claims_table, image, table

    body = (
        f"<h1>{title}</h1>{claims_table(claims)}"
        + "".join(image(f) for f in figs if f.suffix == ".png")
        + "<h2>Runs</h2>"
        + table(
            [{k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
        )
    )
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text(f"<!doctype html><meta charset=utf-8><style>{CSS}</style>{body}\n")
    os.replace(tmp, path)
    return path
