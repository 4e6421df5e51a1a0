"""Where memorising stops winning (Anthropic's July 2023 update, PAPER.md).

Trained with several learning rates, the memorising solution keeps the lowest *training*
loss up to ~500k points (n = 10,000, S = 0.999, m = 2) and the generalising one wins past
that: a first-order transition. Much of the middle regime was optimisation failure, and
above ~1k points the memorising solution stores clusters of correlated points.

Grid: T on a log grid (paper 10^3 ... 10^6; quick, n = 1,000 and S = 0.99, ten times
lower in T, as T(1-S) predicts) x ``cross_lr`` learning rates. Per T the run of lowest
final training loss (float64, over learning rates; diverged runs are not results and are
left out) and its kind:

- *generalising*: five features take the hidden space, the 5th/6th feature dims ratio
  >= FIVE_RATIO and the top five D_i sum to >= m / 2;
- *memorising*: otherwise (the space goes to points or clusters of points:
  ``recipes.clusters``).

The crossover is the smallest T from which on the lowest-loss solution generalises,
with the grid point before it as its uncertainty (their geometric middle reported).
Each T's *margin* is the best memorising minus the best generalising training loss
(where both kinds were reached); where it is known at both ends of the bracket, the
crossover is also placed where it crosses zero, linear in log T (``at_margin``).

A generalising solution trained at a smaller T is a solution at this T too: each T's
row also holds the best training loss, on this T's own training set, of the generalising
runs of the nearest smaller T that has any (``carried``; float64, ``exact_loss``). It is
an upper bound on what the generalising solution reaches here, and it counts among the
candidates: when it is below every run trained at this T, the row's winner is
generalising, marked as carried. This decides a T whose slow rates were not run (a part
of the grid, ``--only lr=...``) and guards against a slow rate stopping short at large T.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from supermem.recipes import clusters as cl
from supermem.recipes.base import Recipe, RecipeError, is_m2, scale_costs
from supermem.recipes.claims import Claim
from supermem.recipes.runsets import first_from_which, group, top_feature_dims
from supermem.recipes.scales import SCALES, get_scale

FIVE_RATIO = 3.0
PAPER_T, PAPER_S = 500_000, 0.999
CORRELATED = 3.0  # clusters of correlated points: within-cluster data cosine >= 3x between
T_TOL = 3.0  # the crossover matches within this factor of the update's (rescaled) value


def grids(scale: str) -> list:
    s = get_scale(scale)
    if not s.cross_T:
        raise KeyError(f"scale {scale} has no crossover grid (cross_T)")
    axes_of = lambda Ts: {"lr": list(s.cross_lr), "train_size": Ts}  # noqa: E731
    small = [T for T in s.cross_T if T < s.small_T]
    large = [T for T in s.cross_T if T >= s.small_T]
    out = []
    if small:
        out.append(("crossover-small-T", s.fixed(hidden=2, restarts=s.restarts), axes_of(small)))
    if large:
        out.append(("crossover", s.fixed(hidden=2, restarts=1), axes_of(large)))
    return out


def kind(run) -> str:
    """'generalising' or 'memorising' (module docstring), from the saved feature dims."""
    top = top_feature_dims(run, 6)
    m = run.config["hidden"]
    five = top[4] / max(top[5], 1e-12) >= FIVE_RATIO and top[:5].sum() >= m / 2
    return "generalising" if five else "memorising"


def expected_T(S: float) -> float:
    """The update's crossover T rescaled to sparsity S by T(1-S)."""
    return PAPER_T * (1 - PAPER_S) / (1 - S)


def table(runs: list) -> dict[str, Any]:
    """Per T: every learning rate's training loss and kind, and the winner."""
    rows = []
    for (T,), rs in group(runs, "train_size").items():
        per: dict[float, dict[str, Any]] = {
            float(r.config["lr"]): {"train_loss": float(r.metrics["train_loss"]), "kind": kind(r)}
            for r in rs
            if r.status == "ok"
        }
        if not per:
            continue
        best = min(per, key=lambda lr: per[lr]["train_loss"])
        win = next(r for r in rs if r.status == "ok" and float(r.config["lr"]) == best)
        carried = _carried(runs, int(T), win)
        loss = min(per[best]["train_loss"], carried["train_loss"] if carried else math.inf)
        beaten = loss < per[best]["train_loss"]
        rows.append(
            {
                "T": int(T),
                "per_lr": per,
                "best_lr": None if beaten else best,
                "best_kind": "generalising" if beaten else per[best]["kind"],
                "best_loss": loss,
                "carried": carried,
                "carried_won": beaten,
                "clusters": _clusters(win),
                "kinds_reached": sorted({v["kind"] for v in per.values()}),
                "best_of_kind": (bk := _best_of_kind(per, carried)),
                "margin": bk["memorising"] - bk["generalising"] if len(bk) == 2 else None,
            }
        )
    Ts = [r["T"] for r in rows]
    cross = first_from_which(Ts, [r["best_kind"] == "generalising" for r in rows])
    before = Ts[Ts.index(cross) - 1] if cross is not None and Ts.index(cross) > 0 else None
    at = math.sqrt(cross * before) if cross is not None and before is not None else None
    at_margin = None
    if at is not None:  # the winners make margin(before) <= 0 <= margin(cross)
        g = {r["T"]: r["margin"] for r in rows}
        g0, g1 = g[before], g[cross]
        if g0 is not None and g1 is not None and g1 > g0:
            at_margin = before * (cross / before) ** (-g0 / (g1 - g0))
    S = runs[0].config["sparsity"] if runs else PAPER_S
    return {
        "rows": rows, "crossover": cross, "before": before, "at": at, "at_margin": at_margin,
        "S": S,
    }  # fmt: skip


def margins(tab: dict) -> list[tuple[int, float]]:
    """(T, margin) for each T of ``table`` where both kinds were reached: the best
    memorising minus the best generalising training loss; below zero memorising wins."""
    return [(r["T"], r["margin"]) for r in tab["rows"] if r["margin"] is not None]


def _best_of_kind(per: dict, carried: dict | None) -> dict[str, float]:
    """Lowest training loss per kind over the runs trained at one T and the carried
    generalising solution."""
    out: dict[str, float] = {}
    for v in per.values():
        out[v["kind"]] = min(out.get(v["kind"], math.inf), v["train_loss"])
    if carried is not None:
        out["generalising"] = min(out.get("generalising", math.inf), carried["train_loss"])
    return out


def _carried(runs: list, T: int, here) -> dict[str, Any] | None:
    """The best training loss on ``here``'s training set (T points) of the generalising runs
    at the nearest smaller T that has any: {"T", "lr", "train_loss"}, or None (none, or the
    runs carry no weights or data)."""
    X = getattr(here, "X_train", None)
    smaller = sorted(
        {int(r.config["train_size"]) for r in runs if r.config["train_size"] < T}, reverse=True
    )
    for t in smaller:
        gen = [
            r
            for r in runs
            if r.config["train_size"] == t and r.status == "ok" and kind(r) == "generalising"
        ]
        if not gen:
            continue
        if X is None or any("W" not in r.arrays for r in gen):
            return None
        loss = {float(r.config["lr"]): _loss_on(r, here) for r in gen}
        lr = min(loss, key=loss.__getitem__)
        return {"T": t, "lr": lr, "train_loss": loss[lr]}
    return None


_ON: dict[tuple[str, str], float] = {}  # (donor run dir, data's run dir) -> loss


def _loss_on(donor, here) -> float:
    """Tied-model loss of ``donor``'s W, b on ``here``'s training set (float64), cached by
    the two run dirs (a T = 10^6 set costs seconds; table() is called once per output)."""
    from supermem.toy.losses import reconstruction_loss

    if not (hasattr(donor, "path") and hasattr(here, "path")):  # not loaded from a folder
        return reconstruction_loss(donor.arrays["W"], donor.arrays["b"], here.X_train)
    key = (str(donor.path), str(here.path))
    if key not in _ON:
        _ON[key] = reconstruction_loss(donor.arrays["W"], donor.arrays["b"], here.X_train)
    return _ON[key]


def _clusters(run) -> dict[str, Any]:
    a = run.arrays
    F = cl.feature_directions(a["W"], a["feature_dims"]) if "W" in a else None
    return cl.summary(a["H_train"], a["data_dims"], getattr(run, "X_train", None), F)


def check(runs: list) -> list[Claim]:
    if not runs:
        raise RecipeError("no crossover runs")
    t = table(runs)
    rows = t["rows"]
    exp = expected_T(t["S"])
    n_lr = len({lr for r in rows for lr in r["per_lr"]})
    win = ", ".join(f"T={r['T']}: {r['best_kind'][:3]} ({_how(r, n_lr)})" for r in rows)
    if t["crossover"] is None:
        top = max(r["T"] for r in rows) if rows else 0
        measured = f"no crossover up to T = {top:,} (winners: {win})"
        # memorising wins up to the largest T trained, so the crossover lies above it: a
        # bracket there can still reach within x T_TOL of the expected T unless the grid
        # went past expected x T_TOL (a partial grid, `--only`, cannot decide)
        holds = False if top > exp * T_TOL else None
        if holds is None:
            measured += f"; not decided: the grid so far ends below ~{exp * T_TOL:,.0f}"
    else:
        lo = t["before"] or t["crossover"]
        where = [f"~{t['at']:.3g}"] if t["at"] else []
        where += [f"margin zero at ~{t['at_margin']:.3g}"] if t["at_margin"] else []
        measured = (
            f"crossover between T = {lo} and {t['crossover']}"
            + (f" ({'; '.join(where)})" if where else "")
            + f"; winners: {win}"
        )
        holds = lo / T_TOL <= exp <= t["crossover"] * T_TOL
    out = [
        Claim(
            "The memorising solution has the lowest training loss up to a crossover T, the "
            "generalising one past it",
            f"~{PAPER_T:,} at S = {PAPER_S} (expected here, by T(1-S): ~{exp:,.0f})",
            measured,
            holds,
            f"over {len({lr for r in rows for lr in r['per_lr']})} learning rates; holds if the "
            f"bracket of the crossover reaches within x{T_TOL:g} of the expected T",
        )
    ]
    big = [
        r
        for r in rows
        if r["T"] >= 1_000 and r["best_kind"] == "memorising" and r["clusters"]["stored"]
    ]  # memorising winners with stored points off their features' directions
    if big:
        share = [r["clusters"]["shared_share"] for r in big]
        corr = [_correlated(r["clusters"]) for r in big]
        out.append(
            Claim(
                "Above ~1k points the memorising solution stores clusters of correlated "
                "points, not single points",
                "clusters ('triangles') above ~1k points",
                "share of stored points sharing a direction: "
                + ", ".join(
                    f"T={r['T']}: {s:.2f} ({r['clusters']['stored']} stored; uniform "
                    f"directions: {r['clusters'].get('shared_null', float('nan')):.2f})"
                    for r, s in zip(big, share)
                )
                + "; within-cluster data cosine vs between: "
                + ", ".join(_cos(r["clusters"]) for r in big),
                bool(np.median(share) >= 0.5 and sum(corr) > len(corr) / 2),
                f"stored: D_t >= {cl.STORED_SHARE:g} m/T, not within {cl.FEATURE_DEG:g} deg "
                f"of a feature with D_i >= {cl.FEATURE_DIM}; a cluster: directions chained "
                f"within {cl.ANGLE_DEG:g} deg; holds if the median share is >= 0.5 and in most "
                f"of these runs the within-cluster data cosine is >= {CORRELATED:g}x the "
                "between-cluster one (correlated points)",
            )
        )
    return out


def _how(row: dict, n_lr: int) -> str:
    """How a row's winner was found: its lr, or the carried solution; rates left out."""
    c = row["carried"]
    how = (
        f"lr {row['best_lr']:g}"
        if not row["carried_won"]
        else f"carried from T={c['T']} lr {c['lr']:g}, {c['train_loss']:.5f} here"
    )
    if len(row["per_lr"]) < n_lr:
        how += f"; {len(row['per_lr'])} of {n_lr} rates trained"
    return how


def _correlated(c: dict) -> bool:
    """Whether a run's clusters hold correlated points: within-cluster data cosine at
    least CORRELATED times the between-cluster one (False without the data)."""
    w, b = c["within_cos"], c["between_cos"]
    return w is not None and b is not None and w >= CORRELATED * max(b, 1e-12)


def _cos(c: dict) -> str:
    w, b = c["within_cos"], c["between_cos"]
    # .2g: at the paper's n the cosines are ~1e-3, which two decimals show as 0.00
    return "-" if w is None or b is None else f"{w:.2g} vs {b:.2g}"


def draw(runs: list, out: Path) -> list[Path]:
    from supermem.report import fig_crossover

    return fig_crossover.figures(runs, table(runs), out)


def rows(runs: list) -> list[dict]:
    return [
        {
            "T": r["T"],
            "lowest training loss": r["best_loss"],
            "its kind": r["best_kind"],
            "its lr": r["best_lr"] if not r["carried_won"] else f"from T={r['carried']['T']}",
            "best memorising": r["best_of_kind"].get("memorising"),
            "best generalising": r["best_of_kind"].get("generalising"),
            "stored points / clusters": f"{r['clusters']['stored']} / {r['clusters']['clusters']}",
        }
        for r in table(runs)["rows"]
    ]


def _text() -> str:
    return "; ".join(
        f"{k}: n={s.features}, S={s.sparsity}, {s.steps} steps, {len(s.cross_T)} T from "
        f"{s.cross_T[0]} to {s.cross_T[-1]} x lr {list(s.cross_lr)}"
        for k, s in SCALES.items()
        if s.cross_T
    )


RECIPE = Recipe(
    name="crossover",
    title="Where memorising stops winning: lowest training loss over learning rates (m = 2)",
    description=f"{_text()}. {scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    keep=is_m2,
    wants="m = 2",
    rows=rows,
)
