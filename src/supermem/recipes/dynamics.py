"""Issue 11, part 3: training dynamics in the middle regime (m = 2): near misses and
features learned, then forgotten.

A. Jermyn saw "near misses" in training histories (a point memorised, later dropped)
and mid-regime models (T = 10,000 at n = 10,000, S = 0.999) that learn generalising
features and forget them (PAPER.md, "What the commenters add"). This recipe trains m = 2
models at three Ts of the middle regime with linear snapshots (``FRAMES`` of them) over
data and init seeds, and from the snapshots (``supermem.toy.dynamics``) computes every
point's D_t and every feature's D_i over training and counts the two events per run.

The Ts follow the scale: T(1-S) ~ 10, where generalisation starts (A. Jermyn; the
paper's T = 10,000; at quick, n = 1,000 and S = 0.99: T = 1,000), a third of it (inside
the middle regime, where the test-loss bump peaks at quick: T ~ 330), and one between.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from supermem.recipes.base import Recipe, RecipeError, scale_costs
from supermem.recipes.claims import Claim
from supermem.recipes.scales import SCALES, Scale, get_scale
from supermem.toy import dynamics as dyn

SPEC = "dyn-mid-T"
FRAMES = 100  # linear snapshots per run: one per 1% of training
SEEDS = {"quick": (3, 3), "cpu": (4, 4), "paper": (2, 2)}  # (data seeds, init seeds)
EXAMPLE_KEYS = ("data_seed", "seed")


def _sig2(x: float) -> int:
    return int(float(f"{x:.2g}"))


def mid_Ts(s: Scale) -> list[int]:
    """The middle-regime Ts of a scale: T(1-S) = 10, a third of it, and their geometric
    mean (2 digits): at quick 330, 580 and 1,000."""
    top = 10 / (1 - s.sparsity)
    return sorted({_sig2(v) for v in np.geomspace(top / 3, top, 3)})


def seeds(scale: str) -> tuple[int, int]:
    """(data seeds, init seeds) per T; a scale not named in SEEDS: its data seeds, 1 init."""
    return SEEDS.get(scale, (get_scale(scale).data_seeds, 1))


def grids(scale: str) -> list:
    s = get_scale(scale)
    n_data, n_init = seeds(scale)
    fixed = s.fixed(hidden=2, restarts=1, snapshots=FRAMES, snapshot_schedule="linear")
    axes = {"train_size": mid_Ts(s), "data_seed": list(range(n_data))}
    return [(SPEC, fixed, {**axes, "seed": list(range(n_init))})]


# -- measures ---------------------------------------------------------------------------
def trajectories(run) -> dict[str, Any]:
    """A run's snapshot steps (k,), W (k, m, n), H (k, T, m), D_t (k, T), D_i (k, n)."""
    a = run.arrays
    if run.X_train is None or "snapshot_W" not in a:
        raise RecipeError(f"run {getattr(run, 'path', '?')} has no snapshots or training data")
    W = np.asarray(a["snapshot_W"], dtype=np.float64)
    H = dyn.hidden_trajectory(W, run.X_train)
    return {
        "steps": np.asarray(a["snapshot_steps"]),
        "W": W,
        "H": H,
        "D_t": np.asarray(dyn.metrics.data_dims(H)),
        "D_i": dyn.feature_dim_trajectory(W),
    }


def run_measures(run, traj: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts and events of one run (JSON-ready)."""
    c = run.config
    tr = trajectories(run) if traj is None else traj
    m, hi = c["hidden"], dyn.thresholds(c["hidden"])[0]
    near = dyn.near_misses(tr["D_t"], tr["steps"], m)
    lost = dyn.forgotten_features(tr["D_i"], tr["steps"], m)
    pts, feats = dyn.stored_counts(tr["D_t"], hi), dyn.stored_counts(tr["D_i"], hi)
    return {
        "T": c["train_size"],
        "data_seed": c["data_seed"],
        "seed": c["seed"],
        "test_loss": float(run.metrics["test_loss"]),
        "snapshots": int(len(tr["steps"])),
        "detectable": dyn.detectable(m, c["train_size"]) and dyn.detectable(m, c["features"]),
        "near_misses": len(near),
        "forgotten_features": len(lost),
        "peak_D_t": _peak(tr["D_t"], tr["steps"]),
        "peak_D_i": _peak(tr["D_i"], tr["steps"]),
        "stored_points_max": int(pts.max(initial=0)),
        "stored_points_final": int(pts[-1]) if len(pts) else 0,
        "stored_features_max": int(feats.max(initial=0)),
        "stored_features_final": int(feats[-1]) if len(feats) else 0,
        "near_miss_events": [e.to_dict() for e in near],
        "forgotten_events": [e.to_dict() for e in lost],
    }


def _peak(D: np.ndarray, steps: np.ndarray) -> float:
    """The largest value any point (feature) reaches after step 0; D (k, N)."""
    late = D[np.asarray(steps) > 0]
    return float(late.max()) if late.size else 0.0


def table(runs: list) -> dict[str, Any]:
    """Thresholds and every run's measures, sorted by (T, data seed, init seed)."""
    m = runs[0].config["hidden"]
    hi, lo = dyn.thresholds(m)
    rows = sorted(
        (run_measures(r) for r in runs), key=lambda d: (d["T"], d["data_seed"], d["seed"])
    )
    return {"m": m, "hi": hi, "lo": lo, "runs": rows}


def example(runs: list, tab: dict[str, Any]):
    """The run drawn and animated: most events (near misses + forgotten features), then
    the larger T, then the lowest seeds."""

    def score(r) -> tuple:
        d = next(
            x
            for x in tab["runs"]
            if (x["T"], x["data_seed"], x["seed"])
            == (r.config["train_size"], r.config["data_seed"], r.config["seed"])
        )
        return (
            d["near_misses"] + d["forgotten_features"],
            d["T"],
            -d["data_seed"],
            -d["seed"],
        )

    return max(runs, key=score)


# -- claims -----------------------------------------------------------------------------
def _count_claim(tab: dict[str, Any], key: str, peak: str, what: str, paper: str) -> Claim:
    rows = [d for d in tab["runs"] if d["detectable"]]
    parts = []
    for T in sorted({d["T"] for d in tab["runs"]}):
        at = [d[key] for d in rows if d["T"] == T]
        if at:
            top = max(d[peak] for d in rows if d["T"] == T)
            parts.append(
                f"T={T}: {sum(at)} in {sum(v > 0 for v in at)} of {len(at)} runs (per run "
                + ", ".join(map(str, at))
                + f"; highest {peak.replace('peak_', '')} reached {top:.3g})"
            )
    skipped = len(tab["runs"]) - len(rows)
    return Claim(
        claim=f"{what} during mid-regime training (m = {tab['m']})",
        paper=paper,
        measured="; ".join(parts) + (f"; {skipped} runs too small to tell" if skipped else "")
        if rows
        else "no run large enough to tell",
        holds=bool(sum(d[key] for d in rows) > 0) if rows else None,
        note=f"stored at D >= {tab['hi']:g} after step 0, lost = below {tab['lo']:g} at the "
        "last snapshot (supermem.toy.dynamics); holds if any run has one; runs where m/T or "
        "m/n exceeds a tenth of the stored level are too small to tell",
    )


def check(runs: list) -> list[Claim]:
    tab = table(runs)
    return [
        _count_claim(
            tab,
            "near_misses",
            "peak_D_t",
            "Near misses: points memorised and later dropped",
            "near misses in training histories near the memorisation boundary (A. Jermyn)",
        ),
        _count_claim(
            tab,
            "forgotten_features",
            "peak_D_i",
            "Features learned, then forgotten",
            "mid-regime models (T = 10,000 at S = 0.999) may learn generalising features "
            "and forget them (A. Jermyn)",
        ),
    ]


def rows(runs: list) -> list[dict]:
    """Per run: the counts (the report's table)."""
    keep: tuple[str, ...] = ("T", "data_seed", "seed", "test_loss", "near_misses")
    keep += ("forgotten_features",)
    keep += ("stored_points_max", "stored_points_final")
    keep += ("stored_features_max", "stored_features_final")
    return [{k: d[k] for k in keep} for d in table(runs)["runs"]]


def draw(runs: list, out: Path) -> list[Path]:
    from supermem.report import fig_dynamics

    tab = table(runs)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dynamics_measures.json"
    path.write_text(json.dumps(tab, indent=1) + "\n")
    ex = example(runs, tab)
    tr = trajectories(ex)
    d = run_measures(ex, tr)
    c = ex.config
    label = f"T={c['train_size']}, data seed {c['data_seed']}, init seed {c['seed']}"
    return [
        *fig_dynamics.trajectories(tr, d, tab, label, out),
        *fig_dynamics.frames(tr, d, label, out),
        fig_dynamics.animation(tr, d, label, out),
        path,
    ]


def _text() -> str:
    parts = []
    for k, s in SCALES.items():
        n_data, n_init = seeds(k)
        parts.append(
            f"{k}: n={s.features}, S={s.sparsity}, {s.steps} steps, T = "
            f"{', '.join(map(str, mid_Ts(s)))} x {n_data} data x {n_init} init seeds, "
            f"{FRAMES} linear snapshots"
        )
    return "; ".join(parts)


RECIPE = Recipe(
    name="dynamics",
    title="Training dynamics: near misses and forgotten features (m = 2, middle regime)",
    description=f"{_text()}. {scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    keep=lambda r: r.config["hidden"] == 2 and r.config.get("snapshot_schedule") == "linear",
    wants="m = 2 linear-snapshot",
    rows=rows,
)
