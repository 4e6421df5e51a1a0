"""Issue 11, part 5: the demo's m = 2 T sweep under other model variants.

M. Hobbhahn reports (PAPER.md, "Smaller setting") that at n = 1,000, S = 0.99 the same
double descent and geometry appear with other losses and with a ReLU between the layers.
This recipe runs the demo's sweep (``t_sweep_grids``: same T grid, seeds, restarts and
steps) once per variant of ``VARIANTS`` and asks of each:

- the three regimes, per T from the maxima over the seed-averaged runs of the data
  dimensionalities D_t and of the feature dimensionalities D_i (``regime``):
  memorising where the largest D_t beats the largest D_i, generalising where the
  largest D_i beats it and is at least ``GENERALISING_D`` (a few features with large
  dimensionality: the pentagon's are ~0.3), middle where neither; they appear if the
  smallest T memorises, the largest generalises and some T in between is middle;
- the bump: the seed-averaged test loss peaks at an interior T, above both ends
  (``claims.bump``, as fig. 3's claim).

``tied`` is the demo's own sweep (same spec names, so a folder that ran the demo has
it). The untied and relu_hidden models train on the engine ``auto`` picks (the tree or
``fast_variants``), the l1 loss on the ``fast`` engine's l1 kernels (all tested against
the reference engine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from supermem.recipes.base import (
    Recipe,
    RecipeError,
    is_m2,
    scale_costs,
    t_sweep_grids,
    t_sweep_text,
)
from supermem.recipes.claims import Claim, bump
from supermem.recipes.fig2 import SWEEP
from supermem.recipes.runsets import by_T, finite_mean
from supermem.recipes.scales import SCALES, get_scale

GENERALISING_D = 0.1  # a "large" feature dimensionality (m = 2: pentagon features ~0.3)
# name -> (what differs from the paper's model, TrainConfig changes)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tied": ("the paper's model: h = W x, x' = ReLU(W^T h + b), mse", {}),
    "untied": ("untied decoder: x' = ReLU(W_dec^T h + b)", {"model": "untied"}),
    "relu_hidden": ("ReLU between the layers: h = ReLU(W x)", {"model": "relu_hidden"}),
    "l1": ("L1 loss: sum over features of |x - x'|", {"loss": "l1"}),
}
# the engine each variant trains on, unless the scale's overrides name one: untied and
# relu_hidden as ``auto`` picks (tree where the cost model says so, else fast_variants;
# until 2026-12-04 fast_variants throughout, so runs trained before keep that key)
ENGINE = {"untied": "auto", "relu_hidden": "auto", "l1": "fast"}
# What fits on 2 shared CPU cores in about an hour at quick scale (docs/VARIANTS.md): the
# variants other than tied (the demo's own runs) train VARIANT_SEEDS data seeds.
VARIANT_SEEDS = {"quick": 1}
# specs run in this order: the new variants first, the tied control (the demo's sweep) last
ORDER = ("untied", "relu_hidden", "l1", "tied")


def variant_fixed(scale: str, name: str) -> dict[str, Any]:
    """The TrainConfig fields a variant adds to the demo's sweep at ``scale``."""
    s = get_scale(scale)
    ch = dict(VARIANTS[name][1])
    if name in ENGINE and "engine" not in s.overrides:
        ch["engine"] = ENGINE[name]
    return ch


def grids(scale: str) -> list:
    """The demo's T sweep per variant (tied: the demo's own specs), in ORDER."""
    out = []
    for name in ORDER:
        ch = variant_fixed(scale, name)
        prefix = SWEEP if name == "tied" else f"variant-{name}"
        seeds = VARIANT_SEEDS.get(scale) if name != "tied" else None
        for spec, fixed, axes in t_sweep_grids(prefix, scale, **ch):
            out.append((spec, fixed, {**axes, "data_seed": axes["data_seed"][:seeds]}))
    return out


def variant_of(run) -> str | None:
    """Which variant a run belongs to, by its model and loss."""
    key = (run.config.get("model", "tied"), run.config.get("loss", "mse"))
    for name, (_, ch) in VARIANTS.items():
        if key == (ch.get("model", "tied"), ch.get("loss", "mse")):
            return name
    return None


def per_T(runs: list) -> list[dict[str, Any]]:
    """One row per T: seed means of the losses and the largest dimensionalities."""
    rows = []
    for T, rs in by_T(runs).items():
        dt = [float(np.max(r.arrays["data_dims"])) for r in rs]
        di = [float(np.max(r.arrays["feature_dims"])) for r in rs]
        med = [float(np.median(r.arrays["data_dims"])) for r in rs]
        row = {
            "T": T,
            "runs": len(rs),
            "train_loss": finite_mean(r.metrics["train_loss"] for r in rs),
            "test_loss": finite_mean(r.metrics["test_loss"] for r in rs),
            "max_D_t": float(np.mean(dt)),
            "max_D_i": float(np.mean(di)),
            "median_D_t / (m/T)": float(np.mean(med)) / (rs[0].config["hidden"] / T),
            "W_norm": finite_mean(r.metrics["W_norm"] for r in rs),
            "b_norm": finite_mean(r.metrics["b_norm"] for r in rs),
        }
        row["regime"] = regime(row["max_D_t"], row["max_D_i"])
        rows.append(row)
    return rows


def regime(max_dt: float, max_di: float) -> str:
    """memorising / middle / generalising from the largest data and feature dims."""
    if max_dt > max_di:
        return "memorising"
    return "generalising" if max_di >= GENERALISING_D else "middle"


def three_regimes(regimes: list[str]) -> bool:
    """Memorising at the smallest T, generalising at the largest, middle in between."""
    return (
        len(regimes) >= 3
        and regimes[0] == "memorising"
        and regimes[-1] == "generalising"
        and "middle" in regimes[1:-1]
    )


def table(runs: list) -> dict[str, list[dict[str, Any]]]:
    """{variant: per-T rows} for the variants that have runs, in VARIANTS order."""
    groups: dict[str, list] = {}
    for r in runs:
        name = variant_of(r)
        if name is not None:
            groups.setdefault(name, []).append(r)
    if not groups:
        raise RecipeError("no runs of any model variant")
    return {k: per_T(groups[k]) for k in VARIANTS if k in groups}


def _regimes_text(rows: list[dict[str, Any]]) -> str:
    spans: list[list] = []
    for r in rows:
        if spans and spans[-1][0] == r["regime"]:
            spans[-1][2] = r["T"]
        else:
            spans.append([r["regime"], r["T"], r["T"]])
    return ", ".join(f"{g} T={a:g}" + (f"-{b:g}" if b != a else "") for g, a, b in spans)


def variant_claims(name: str, rows: list[dict[str, Any]]) -> list[Claim]:
    what = VARIANTS[name][0]
    Ts = np.array([r["T"] for r in rows], dtype=float)
    loss = np.array([r["test_loss"] for r in rows])
    regs = [r["regime"] for r in rows]
    b = bump(Ts, loss)
    span = f"T = {Ts[0]:g}..{Ts[-1]:g}, {len(Ts)} values"
    return [
        Claim(
            claim=f"{name} ({what}): the three regimes appear ({span})",
            paper="Hobbhahn: the same geometry with other losses and a ReLU between layers",
            measured=_regimes_text(rows),
            holds=three_regimes(regs) if len(rows) >= 3 else None,
            note="per T, means over seeds: memorising if max D_t > max D_i, generalising if "
            f"max D_i >= max D_t and >= {GENERALISING_D:g}, else middle; holds if the "
            "smallest T memorises, the largest generalises and some T between is middle",
        ),
        Claim(
            claim=f"{name} ({what}): the test loss has a bump ({span})",
            paper="Hobbhahn: the same double descent with other losses and a ReLU between layers",
            measured=f"peak mean test loss {b['peak']:.4g} at T={b['peak_T']:g}; "
            f"{b['first']:.4g} at T={Ts[0]:g}, {b['last']:.4g} at T={Ts[-1]:g}",
            holds=bool(b["interior"] and b["rise"] > 0 and b["last"] < b["peak"])
            if len(rows) > 2
            else None,
            note="holds if the peak is at an interior T and above both ends (as fig. 3's "
            "claim); a variant's loss (l1) has its own scale",
        ),
    ]


def check(runs: list) -> list[Claim]:
    return [c for name, rows in table(runs).items() for c in variant_claims(name, rows)]


def rows(runs: list) -> list[dict]:
    return [{"variant": k, **r} for k, rs in table(runs).items() for r in rs]


def draw(runs: list, out: Path) -> list[Path]:
    from supermem.report.fig_variants import fig_variants

    tab = table(runs)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "variants_table.json"
    path.write_text(json.dumps(tab, indent=1) + "\n")
    return [*fig_variants(tab, GENERALISING_D, out), path]


def _text() -> str:
    limits = "; ".join(
        f"{k}: {VARIANT_SEEDS.get(k, s.data_seeds)} data seed(s) for the variants other than tied"
        for k, s in SCALES.items()
    )
    return f"The demo's m = 2 T sweep ({t_sweep_text()}) per variant; {limits}"


RECIPE = Recipe(
    name="variants",
    title="Other model variants: untied, ReLU between layers, L1 loss (m = 2)",
    description=f"{_text()}; variants: {', '.join(VARIANTS)}. {scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    keep=is_m2,
    wants="m = 2",
    rows=rows,
)
