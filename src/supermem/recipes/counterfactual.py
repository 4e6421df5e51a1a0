"""Counterfactual memorisation (Zhang et al. 2021) as ground truth for D_t and D*_t.

mem(t) = E[loss on t | t not in training] - E[loss on t | t in training] (PAPER.md, "What
the commenters add"), from models trained on random halves of one pool: toy models (m = 2)
in the memorising, middle and generalising regimes, and 512-unit MNIST MLPs. Then the
Spearman correlation of D_t and D*_t (each averaged over the models that trained on t)
with mem(t), a bootstrap CI, scatter plots and claims. Every unit of models is a directory
under OUT/runs/, written atomically: rerunning trains only what is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from supermem.real.counterfactual import (
    Memorisation,
    RankCorrelation,
    mean_over_members,
    memorisation,
    spearman_ci,
)
from supermem.real.counterfactual_runs import (
    MnistUnit,
    ToyUnit,
    concat_units,
    is_done,
    save_unit,
    train_mnist,
    train_toy,
)
from supermem.real.mnist_runs import load_arrays as load_unit  # arrays.npz, no pickle
from supermem.recipes.claims import Claim
from supermem.recipes.real import RealRecipe, check_done, write_html

SCORES = {"D*": "dstar", "D": "data_dim"}  # score name -> array of the units
RHO_HOLDS = 0.3  # "D* tracks mem(t)": Spearman >= this and the CI above 0


@dataclass(frozen=True)
class CounterfactualScale:
    """Toy regimes (name, T, models: each a pool of 2T) and the MNIST set of one scale."""

    regimes: tuple[tuple[str, int, int], ...]
    features: int
    sparsity: float
    steps: int  # warm-up: the default 5%
    mnist_pool: int  # examples; each MLP trains on half
    mnist_models: int
    mnist_epochs: int
    mnist_hidden: int = 512
    boots: int = 1000  # bootstrap resamples for the CIs


SCALES = {
    "tiny": CounterfactualScale(
        regimes=(("memorising", 4, 16), ("middle", 16, 16), ("generalising", 60, 8)),
        features=50,
        sparsity=0.8,
        steps=200,
        mnist_pool=200,
        mnist_models=4,
        mnist_epochs=3,
        mnist_hidden=32,
        boots=200,
    ),
    "quick": CounterfactualScale(
        regimes=(("memorising", 30, 64), ("middle", 300, 32), ("generalising", 2000, 16)),
        features=1000,
        sparsity=0.99,
        steps=5000,
        mnist_pool=5000,
        mnist_models=32,
        mnist_epochs=20,
    ),
}


def toy_units(sc: CounterfactualScale) -> list[ToyUnit]:
    return [ToyUnit(name, T, K, sc.features, sc.sparsity, 2, sc.steps) for name, T, K in sc.regimes]


def mnist_units(sc: CounterfactualScale) -> list[MnistUnit]:
    return [
        MnistUnit(k, sc.mnist_pool, sc.mnist_hidden, sc.mnist_epochs)
        for k in range(sc.mnist_models)
    ]


def plan(out: Path, scale: str) -> list[tuple[ToyUnit | MnistUnit, bool]]:
    """Every unit of ``scale`` and whether OUT/runs/ already holds it."""
    sc = SCALES[scale]
    units: list[ToyUnit | MnistUnit] = [*toy_units(sc), *mnist_units(sc)]
    return [(u, is_done(out / "runs" / u.name)) for u in units]


def load_digits(data: str | os.PathLike | None):
    """The MNIST examples a pool is drawn from: the IDX training set or the 5k subset."""
    from supermem.real.mnist import load_builtin, load_idx_dir

    return load_idx_dir(data)[0] if data is not None else load_builtin()


def reproduce(
    out: str | os.PathLike,
    scale: str = "quick",
    data: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> list[Claim]:
    """Train what is missing under OUT/runs/, then OUT/figures/, claims.json, report.html."""
    out = Path(out)
    todo = [u for u, done in plan(out, scale) if not done]
    if dry_run:
        for u, done in plan(out, scale):
            print(f"{u.name}: {'done' if done else 'to train'}")
        return []
    digits = load_digits(data) if any(isinstance(u, MnistUnit) for u in todo) else None
    for u in tqdm(todo, desc="counterfactual units", disable=not progress):
        m = train_toy(u, progress) if isinstance(u, ToyUnit) else train_mnist(u, digits, progress)
        save_unit(out / "runs" / u.name, u, m)
    return finish(out, scale)


def redraw(out: Path, scale: str, data: str | os.PathLike | None = None) -> list[Claim]:
    """Figures, claims and report again from OUT/runs/ (RecipeError if a unit is missing)."""
    check_done(out, [(u.name, done) for u, done in plan(out, scale)], "counterfactual")
    return finish(out, scale)


Analysis = tuple[Memorisation, dict[str, np.ndarray], dict[str, RankCorrelation]]


def analyse(a: dict[str, np.ndarray], boots: int) -> Analysis:
    """Unit arrays (K, P) -> mem(t), the scores D*_t and D_t (P,) averaged over the models
    that trained on t, and the Spearman correlation of each score with mem(t)."""
    m = memorisation(a["member"], a["loss"])
    scores = {k: mean_over_members(a[v], a["member"]) for k, v in SCORES.items()}
    return m, scores, {k: spearman_ci(s, m.mem, boots) for k, s in scores.items()}


def load_sets(out: Path, scale: str) -> dict[str, dict[str, np.ndarray]]:
    """{set name: arrays (K, P)}: one per toy regime, then 'MNIST' (all its MLPs)."""
    sc = SCALES[scale]
    sets = {f"{u.regime} T={u.T}": load_unit(out / "runs" / u.name) for u in toy_units(sc)}
    mn = mnist_units(sc)
    if mn:
        sets[f"MNIST T={sc.mnist_pool // 2}"] = concat_units(
            [load_unit(out / "runs" / u.name) for u in mn]
        )
    return sets


def summary_row(name: str, a: dict[str, np.ndarray], res: Analysis) -> dict:
    m, _, corr = res
    K, P = a["member"].shape
    row = {"set": name, "models": K, "pool": P, "median models in": float(np.median(m.n_in))}
    row |= {
        "median loss in": float(np.nanmedian(m.loss_in)),
        "median loss out": float(np.nanmedian(m.loss_out)),
        "median mem": float(np.nanmedian(m.mem)),
        "share mem > 2 se": float(np.nanmean(m.mem > 2 * m.se)),
    }
    for k, c in corr.items():
        row |= {f"rho {k}": c.rho, f"rho {k} lo": c.lo, f"rho {k} hi": c.hi}
    return row


def finish(out: Path, scale: str) -> list[Claim]:
    from supermem.real.counterfactual_figures import scatter

    sc = SCALES[scale]
    sets = load_sets(out, scale)
    results = {name: analyse(a, sc.boots) for name, a in sets.items()}
    rows = [summary_row(name, sets[name], r) for name, r in results.items()]
    figs = scatter(results, out / "figures")
    claims = check(rows)
    corr = {name: {k: c.to_dict() for k, c in r[2].items()} for name, r in results.items()}
    tmp = out / ".correlations.json.tmp"
    tmp.write_text(json.dumps({"boots": sc.boots, "sets": corr, "rows": rows}, indent=2) + "\n")
    os.replace(tmp, out / "correlations.json")
    (out / "claims.json").write_text(json.dumps([c.to_dict() for c in claims], indent=2) + "\n")
    write_html(out, f"Counterfactual memorisation vs D and D* ({scale})", claims, figs, rows)
    return claims


def _rho(r: dict, k: str) -> str:
    return f"{r[f'rho {k}']:+.3f} [{r[f'rho {k} lo']:+.3f}, {r[f'rho {k} hi']:+.3f}]"


def check(rows: list[dict]) -> list[Claim]:
    """The regimes by mem(t), then one claim per set: does D*_t rank examples by mem(t)?"""
    toy = [r for r in rows if not r["set"].startswith("MNIST")]
    mems = [r["median mem"] for r in toy]
    claims = [
        Claim(
            "Counterfactual memorisation falls from the memorising to the generalising regime",
            "memorised points are those the model fits only when trained on them (Zhang et "
            "al. 2021); in the generalising regime a point's own presence barely matters",
            "; ".join(
                f"{r['set']}: median mem {r['median mem']:.3g} (loss in "
                f"{r['median loss in']:.3g}, out {r['median loss out']:.3g})"
                for r in toy
            ),
            bool(mems[0] > 10 * abs(mems[-1])) if len(toy) >= 2 else None,
            "holds if the median mem(t) of the first regime is > 10x that of the last",
        )
    ]
    for r in rows:
        claims.append(
            Claim(
                f"D*_t ranks examples by counterfactual memorisation ({r['set']})",
                "D* as a measure of memorisation (Olah; the discussion proposes mem(t) "
                "as the ground truth to test it against)",
                f"Spearman with mem(t): D* {_rho(r, 'D*')}, D {_rho(r, 'D')}; "
                f"{r['models']} models, pool {r['pool']}, median {r['median models in']:.0f} "
                f"in; share of examples with mem > 2 se {r['share mem > 2 se']:.2f}",
                bool(r["rho D*"] >= RHO_HOLDS and r["rho D* lo"] > 0),
                f"holds if Spearman(D*, mem) >= {RHO_HOLDS} and its 95% bootstrap CI (over "
                "examples) lies above 0",
            )
        )
    return claims


RECIPE = RealRecipe(
    name="counterfactual",
    title="Counterfactual memorisation (Zhang et al. 2021) vs D_t and D*_t",
    description="Models on random halves of a pool; Spearman of D_t, D*_t with mem(t). "
    + "; ".join(
        f"{k}: toy n={s.features}, S={s.sparsity}, m=2, {s.steps} steps, "
        + ", ".join(f"{n} T={T} x {K} models" for n, T, K in s.regimes)
        + f"; MNIST {s.mnist_models} MLPs ({s.mnist_hidden} units, {s.mnist_epochs} epochs) "
        f"on halves of {s.mnist_pool}"
        for k, s in SCALES.items()
    ),
    scales=SCALES,
    run=reproduce,
    redraw=redraw,
)
