"""Repeated data points (A. Jermyn's comment, PAPER.md "What the commenters add").

In the generalising regime (m = 2: five features in a pentagon), a training point that
appears R times is worth storing once R is large enough against the T / n points that
support each feature. Three grids at T(1-S) = 30 (paper: T = 30,000 at n = 10,000;
quick: T = 3,000 at n = 1,000):

- ``repeated-control``: no repeats (the pentagon the repeats act on), per data seed;
- ``repeated-many``: K = 1 ... 7 points each repeated 5 times, per data seed. K = 1 is
  Jermyn's first picture (4 features plus the point); larger K displace a feature each,
  and past five, five points are stored and no feature is left;
- ``repeated-phase``: one point repeated R times over a grid of T: memorised or not,
  and the boundary R = c T / n fitted (Jermyn: c ~ 0.4).

Repeats are row weights (``--repeat-points``, ``--repeat-count``), never copies. What
counts (all recomputed from the saved arrays):

- a *generalising feature*: D_i >= FEATURE_DIM (a pentagon's features sit at 2/5);
- a *memorised* repeated point (Jermyn's criterion): its D_t in the top 0.1% of the
  training set's, i.e. at most TOP_FRACTION * T points have a larger D_t;
- with K repeated points, a *stored* one: among the K (or 0.1% of T, if more) largest D_t.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from supermem.recipes.base import Recipe, RecipeError, scale_costs
from supermem.recipes.claims import Claim
from supermem.recipes.scales import SCALES, get_scale

FEATURE_DIM = 0.2
TOP_FRACTION = 0.001
MANY_R = 5  # Jermyn's repeat count for the single and many-point pictures
JERMYN_C = 0.4
C_TOLERANCE = 2.0  # the fitted c holds if within this factor of Jermyn's
MAX_MISFIT = 0.1  # ... and the line R = c T/n misclassifies at most this share of runs


def grids(scale: str) -> list:
    s = get_scale(scale)
    if not s.rep_T:
        raise KeyError(f"scale {scale} has no repeated-points grid (rep_T)")
    seeds = list(range(s.data_seeds))
    f = s.fixed(hidden=2, restarts=1)
    return [
        ("repeated-control", {**f, "train_size": s.rep_T}, {"data_seed": seeds}),
        (
            "repeated-many",
            {**f, "train_size": s.rep_T, "repeat_count": MANY_R},
            {"repeat_points": list(s.rep_K), "data_seed": seeds},
        ),
        (
            "repeated-phase",
            {**f, "repeat_points": 1, "data_seed": 0},
            {"train_size": list(s.rep_phase_T), "repeat_count": list(s.rep_phase_R)},
        ),
    ]


# -- measures: pure functions of one run's arrays -------------------------------------


def features_held(fd: np.ndarray) -> int:
    """fd (n,) feature dims -> how many features are generalising (D_i >= FEATURE_DIM)."""
    return int((np.asarray(fd) >= FEATURE_DIM).sum())


def stored_points(dd: np.ndarray, K: int) -> list[bool]:
    """dd (T,) data dims, the first K points repeated -> per repeated point, whether it
    is among the max(K, TOP_FRACTION T) largest (K = 1: Jermyn's top-0.1% criterion)."""
    dd = np.asarray(dd)
    room = max(K, math.ceil(TOP_FRACTION * len(dd)))
    return [int((dd > dd[k]).sum()) < room for k in range(K)]


def _kind(run) -> str:
    c = run.config
    return "control" if c.get("repeat_points", 0) == 0 else "repeated"


def measure(run) -> dict[str, Any]:
    """One run's T, n, K, R, generalising features, and which repeated points are stored."""
    c, a = run.config, run.arrays
    K = int(c.get("repeat_points", 0))
    return {
        "T": int(c["train_size"]),
        "n": int(c["features"]),
        "K": K,
        "R": int(c.get("repeat_count", 1)),
        "data_seed": int(c["data_seed"]),
        "features": features_held(a["feature_dims"]),
        "strong": sorted(np.flatnonzero(np.asarray(a["feature_dims"]) >= FEATURE_DIM).tolist()),
        "stored": stored_points(a["data_dims"], K),
    }


def fit_boundary(points: list[tuple[float, float, bool]]) -> dict[str, Any]:
    """points: (T/n, R, memorised). Fit memorised <=> R > c T/n.

    Every c between two consecutive values of x = R / (T/n) classifies the same way;
    [c_lo, c_hi] spans all the c with the fewest errors (with noisy runs, possibly gaps of
    worse c inside), and c is its geometric middle. An interval open on one side (all
    runs memorised, or none) leaves c None.
    """
    x = np.array([r / tn for tn, r, _ in points])
    y = np.array([mem for _, _, mem in points])
    cuts = np.unique(x)
    edges = np.concatenate([[0.0], cuts, [np.inf]])
    # threshold strictly between edges[i] and edges[i+1]: memorised iff x >= edges[i+1]
    errors = [int(((x > lo) != y).sum()) for lo in edges[:-1]]
    best = min(errors)
    idx = [i for i, e in enumerate(errors) if e == best]
    lo, hi = float(edges[idx[0]]), float(edges[idx[-1] + 1])
    c = math.sqrt(lo * hi) if lo > 0 and math.isfinite(hi) else None
    return {"c": c, "c_lo": lo, "c_hi": hi, "errors": best, "runs": len(points)}


def table(runs: list) -> dict[str, Any]:
    """Everything the claims and figures use, from the runs' saved arrays."""
    ms = [(r, measure(r)) for r in runs]
    control = {m["data_seed"]: (r, m) for r, m in ms if m["K"] == 0}
    Tmany = max((m["T"] for _, m in ms if m["K"] == 0), default=None)
    # one run per (K, seed): the phase grid repeats K = 1, R = MANY_R at T = rep_T
    many_by = {
        (m["K"], m["data_seed"]): (r, m)
        for r, m in ms
        if m["K"] > 0 and m["R"] == MANY_R and m["T"] == Tmany
    }
    many = [many_by[k] for k in sorted(many_by)]
    by_K: dict[int, list] = {}
    for _, m in many:
        by_K.setdefault(m["K"], []).append(m)
    single = []
    for r, m in many:
        if m["K"] != 1 or m["data_seed"] not in control:
            continue
        base = control[m["data_seed"]][1]
        point = _point_features(r)
        displaced = sorted(set(base["strong"]) - set(m["strong"]))
        single.append(
            {
                **m,
                "control_features": base["features"],
                "displaced": displaced,
                "displaced_in_point": [f in point for f in displaced],
            }
        )
    phase_runs = [m for _, m in ms if m["K"] == 1 and m["data_seed"] == 0]
    seen = {(m["T"], m["R"]): m for m in phase_runs}  # one per (T, R) cell
    phase = [(m["T"] / m["n"], m["R"], m["stored"][0]) for m in seen.values()]
    return {
        "T": Tmany,
        "R": MANY_R,
        "single": single,
        "many": {
            K: {
                "features": float(np.median([m["features"] for m in v])),
                "stored": float(np.median([sum(m["stored"]) for m in v])),
                "per_seed": [(m["features"], sum(m["stored"])) for m in v],
            }
            for K, v in sorted(by_K.items())
        },
        "phase": sorted(phase),
        "boundary": fit_boundary(phase) if phase else None,
    }


def _point_features(run) -> list[int]:
    """The nonzero features of the first training point (the repeated one), if saved."""
    X = getattr(run, "X_train", None)
    return [] if X is None else sorted(X[0].indices.tolist())


# -- claims -----------------------------------------------------------------------------


def check(runs: list) -> list[Claim]:
    t = table(runs)
    if not t["single"] and not t["many"] and not t["phase"]:
        raise RecipeError("no repeated-points runs (repeat_points >= 1) beside a control")
    out = []
    if t["single"]:
        ok = [s["stored"][0] and s["features"] == 4 for s in t["single"]]
        desc = "; ".join(
            f"seed {s['data_seed']}: point {'memorised' if s['stored'][0] else 'not memorised'}, "
            f"{s['features']} features (control {s['control_features']}), displaced "
            f"{s['displaced'] or 'none'} ({sum(s['displaced_in_point'])} of them among the "
            "point's own nonzero features)"
            for s in t["single"]
        )
        out.append(
            Claim(
                f"One point repeated {MANY_R} times at T = {t['T']} is memorised beside 4 "
                "generalising features",
                "4 features + the point (one pentagon feature displaced)",
                desc,
                sum(ok) * 2 >= len(ok),
                f"holds if, in at least half the data seeds, the point's D_t is in the top "
                f"0.1% and exactly 4 features have D_i >= {FEATURE_DIM}",
            )
        )
    if t["many"]:
        Ks = sorted(t["many"])
        match = [
            t["many"][K]["features"] == max(5 - K, 0) and t["many"][K]["stored"] == min(K, 5)
            for K in Ks
        ]
        desc = ", ".join(
            f"K={K}: {t['many'][K]['features']:g} features / {t['many'][K]['stored']:g} stored"
            for K in Ks
        )
        out.append(
            Claim(
                "Each repeated point displaces a feature; past five, five points are stored "
                "and all features suppressed",
                "features = max(5 - K, 0), stored points = min(K, 5)",
                f"median over seeds: {desc}; features + stored points per seed: "
                + ", ".join(
                    f"K={K}: {'/'.join(str(f + p) for f, p in t['many'][K]['per_seed'])}"
                    for K in Ks
                ),
                sum(match) >= len(Ks) - 2 if len(Ks) >= 3 else all(match),
                "holds if both counts match exactly for all but at most two K",
            )
        )
    b = t["boundary"]
    if b is not None:
        if b["c"] is None:
            measured = (
                f"c undetermined: the {b['runs']} runs are not split by any line "
                f"(c in ({b['c_lo']:.3g}, {b['c_hi']:.3g}), {b['errors']} misclassified)"
            )
            holds = None
        else:
            measured = (
                f"c = {b['c']:.3g} (any c in ({b['c_lo']:.3g}, {b['c_hi']:.3g}) fits as well), "
                f"{b['errors']} of {b['runs']} runs misclassified"
            )
            within = b["c_lo"] <= JERMYN_C * C_TOLERANCE and b["c_hi"] >= JERMYN_C / C_TOLERANCE
            holds = within and b["errors"] <= MAX_MISFIT * b["runs"]
        out.append(
            Claim(
                "A point repeated R times is memorised when R > c T/n",
                f"c ~ {JERMYN_C}",
                measured,
                holds,
                f"memorised: top 0.1% of D_t; holds if the fitted interval of c reaches within "
                f"a factor {C_TOLERANCE:g} of {JERMYN_C} and at most "
                f"{MAX_MISFIT:.0%} of the runs are misclassified",
            )
        )
    return out


def draw(runs: list, out: Path) -> list[Path]:
    from supermem.report import fig_repeated

    return fig_repeated.figures(runs, table(runs), out)


def rows(runs: list) -> list[dict]:
    """The report's table: one row per run."""
    out = []
    for r in sorted(runs, key=lambda r: (measure(r)["K"], measure(r)["T"], measure(r)["R"])):
        m = measure(r)
        out.append(
            {
                "T": m["T"],
                "K": m["K"],
                "R": m["R"],
                "data seed": m["data_seed"],
                "features D_i >= 0.2": m["features"],
                "repeated points stored": f"{sum(m['stored'])} of {m['K']}",
                "test loss": r.metrics.get("test_loss"),
            }
        )
    return out


def _m2(run) -> bool:
    return run.config["hidden"] == 2 and "repeat_points" in run.config


def _text() -> str:
    return "; ".join(
        f"{k}: n={s.features}, S={s.sparsity}, T={s.rep_T}, K in {list(s.rep_K)} (R={MANY_R}) "
        f"x {s.data_seeds} seeds, phase T {list(s.rep_phase_T)} x R {list(s.rep_phase_R)}"
        for k, s in SCALES.items()
        if s.rep_T
    )


RECIPE = Recipe(
    name="repeated",
    title="Repeated data points: stored beside the features, and where (A. Jermyn)",
    description=f"{_text()}. {scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    keep=_m2,
    wants="m = 2 repeated-points",
    rows=rows,
)
