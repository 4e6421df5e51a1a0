"""One self-contained HTML report: setup, claims table, figures, per-T table, provenance.

Figures are embedded as base64 PNG, so the file can be mailed or attached on its own.
Everything in it is computed from the runs on disk (``write_report`` reloads them).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from pathlib import Path

from supermem import __version__
from supermem.recipes import RECIPES, Recipe, RecipeError, load_runs, spec_runs
from supermem.recipes.claims import Claim
from supermem.recipes.runsets import summary_rows
from supermem.sweeps.checks import read_json
from supermem.sweeps.manifest import MANIFEST

CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.yes{color:#1a7f37}.no{color:#c62828}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}pre{background:#f6f6f6;padding:.7em;
overflow-x:auto;font-size:12px}"""


def pick_recipe(runs: list) -> Recipe:
    """The recipe that fits a plain sweep: a (T, m) map, the m = 4 appendix, or figs 2-4."""
    ms = {r.config["hidden"] for r in runs}
    if len(ms) > 1:
        return RECIPES["fig5"]
    if ms == {4}:
        return RECIPES["appendix-m4"]
    return RECIPES["demo"]


def read_manifest(out_dir: Path) -> dict:
    """reproduce.json if present, else the specs of a plain sweep folder (spec.json)."""
    if (out_dir / MANIFEST).is_file():
        return read_json(out_dir / MANIFEST)  # DamagedRunError (one line) if broken
    spec = out_dir / "spec.json"
    return {"specs": [read_json(spec)] if spec.is_file() else []}


def _recipe(name: Recipe | str) -> Recipe:
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def reproduce_specs(manifest: dict, recipe: Recipe) -> list:
    """The SweepSpecs whose runs a report on a reproduce folder uses: the recorded ones
    for the recorded recipe, else ``recipe``'s at the recorded scale."""
    from supermem.recipes import SCALES
    from supermem.sweeps.spec import SweepSpec

    if recipe.name == manifest["recipe"]:
        return [SweepSpec.from_dict(d) for d in manifest["specs"]]
    scale = manifest.get("scale")
    if scale not in SCALES:
        raise RecipeError(f"unknown scale {scale!r} recorded in {MANIFEST}")
    return recipe.specs(scale)


def _esc(x) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return html.escape(str(x))


def table(rows: list[dict]) -> str:
    """An HTML table of dicts (keys of the first row as the header)."""
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{_esc(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def claims_table(claims: list[Claim]) -> str:
    """The claims as a table; 'holds' as yes / no / undecided."""
    mark = {True: '<b class="yes">yes</b>', False: '<b class="no">no</b>', None: "undecided"}
    head = "<tr><th>claim</th><th>paper</th><th>measured</th><th>holds</th><th>note</th></tr>"
    rows = "".join(
        f"<tr><td>{_esc(c.claim)}</td><td>{_esc(c.paper)}</td><td>{_esc(c.measured)}</td>"
        f"<td>{mark[c.holds]}</td><td>{_esc(c.note)}</td></tr>"
        for c in claims
    )
    return f'<table class="claims">{head}{rows}</table>'


def image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = path.suffix.lstrip(".")  # png, or gif (an animation)
    return f'<figure><img alt="{_esc(path.stem)}" src="data:image/{mime};base64,{data}"></figure>'


def provenance(runs: list) -> list[dict]:
    """Versions, git commits and CPU targets the runs were trained with, with run counts."""
    keys = ("supermem_version", "git_commit", "torch_version", "engine", "device", "cpu_target")
    seen = Counter(tuple(r.config.get(k) for k in keys) for r in runs)
    return [{**dict(zip(keys, k)), "runs": n} for k, n in seen.items()]


def write_report(
    out_dir,
    recipe: Recipe | str | None = None,
    runs: list | None = None,
    claims: list[Claim] | None = None,
    figures: list[Path] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` for a reproduce folder or a plain sweep folder.

    Missing pieces are computed: runs loaded from ``out_dir``, the recipe read from
    reproduce.json (else guessed from the runs), figures drawn into out_dir/figures.
    In a reproduce folder only the runs of the recipe's specs at the recorded scale are
    used (the folder may hold runs of other scales). RecipeError if nothing fits.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    recipe = recipe or manifest.get("recipe")
    if runs is None and "recipe" in manifest:
        recipe = _recipe(recipe or manifest["recipe"])
        runs = spec_runs(out_dir, reproduce_specs(manifest, recipe), ok_only=False)
    everything = load_runs(out_dir, ok_only=False) if runs is None else runs
    statuses = Counter(r.status for r in everything)  # diverged runs are counted, not drawn
    runs = [r for r in everything if r.status == "ok"]
    if not runs:
        raise RecipeError(f"{out_dir}: no finished (status ok) runs to report on")
    recipe = _recipe(recipe or pick_recipe(runs))
    figures = recipe.figures(runs, out_dir / "figures") if figures is None else figures
    claims = recipe.claims(runs) if claims is None else claims
    counts = ", ".join(f"{n} {k}" for k, n in statuses.items())
    parts = [
        f"<h1>supermem: {_esc(recipe.title)}</h1>",
        f"<p>Recipe <code>{_esc(recipe.name)}</code>, scale "
        f"<code>{_esc(manifest.get('scale', 'n/a'))}</code>; {len(everything)} runs "
        f"({_esc(counts)}). {_esc(recipe.description)}</p>",
        "<h2>Claims</h2>",
        claims_table(claims),
        "<h2>Figures</h2>",
        *(image(p) for p in figures if p.suffix in (".png", ".gif")),
        "<h2>Per-T summary (means over runs)</h2>",
        table(recipe.rows(runs) if recipe.rows else summary_rows(runs)),
        "<h2>Sweep specs</h2>",
        f"<pre>{_esc(json.dumps(manifest.get('specs', []), indent=1))}</pre>",
        "<h2>Provenance</h2>",
        f"<p>Report written by supermem {_esc(__version__)}; the runs were trained with:</p>",
        table(provenance(runs)),
    ]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>supermem {_esc(recipe.name)}"
        f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page)
    return path
