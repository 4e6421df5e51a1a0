"""The circles recipe's figure (issue 11, part 4): caught two-circle solutions next to
the best one-circle solution at the same T, and the rate over T with and without
restarts.

``tab``: ``recipes.circles.table`` (per run: T, seed, restarts, the detector's output);
``rates``: {restarts: {T: (caught, runs)}}. Hidden vectors come from the runs' H_train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Wedge

from supermem.report.plots import DATA_COLOR, save, vectors

SHOWN = 4  # caught cases drawn at most


def _find(runs: list, d: dict[str, Any]):
    return next(
        r
        for r in runs
        if (r.config["train_size"], r.config["seed"], r.config["restarts"])
        == (d["T"], d["seed"], d["restarts"])
    )


def _circles(ax, d: dict[str, Any]) -> None:
    """The two radii (dashed) and the widest meeting gap (shaded) of a caught case."""
    for r in (d["r_inner"], d["r_outer"]):
        ax.add_patch(plt.Circle((0, 0), r, fill=False, ls="--", lw=0.7, color="0.4"))
    half = np.degrees(d["meet_gap"]) / 2
    mid = np.degrees(d["meet_angle"])
    ax.add_patch(Wedge((0, 0), d["r_outer"], mid - half, mid + half, color="orange", alpha=0.25))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same trained model: a restarts run that kept restart 0 is its single run."""
    return all(a[k] == b[k] for k in ("T", "seed", "train_loss"))


def _shown(tab: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to SHOWN distinct caught cases: the widest gap first, from different Ts."""
    caught = sorted((d for d in tab["runs"] if d["caught"]), key=lambda d: -d["gap_ratio"])
    picked: list[dict[str, Any]] = []
    Ts: set[int] = set()
    for d in caught + caught:  # second pass: repeat Ts if fewer Ts than SHOWN
        if len(picked) == SHOWN:
            break
        if any(_same(d, x) for x in picked):
            continue
        if d["T"] in Ts and len(Ts) < len({x["T"] for x in caught}):
            continue
        picked.append(d)
        Ts.add(d["T"])
    return picked


def fig_circles(
    runs: list, tab: dict[str, Any], rates: dict[int, dict[int, tuple[int, int]]], out: Path
) -> list[Path]:
    shown = _shown(tab)
    cols = max(len(shown), 1) + 1
    fig, axes = plt.subplots(2, cols, figsize=(2.7 * cols, 5.6), squeeze=False)
    for j, d in enumerate(shown):
        H = _find(runs, d).arrays["H_train"]
        lim = vectors(axes[0, j], H, DATA_COLOR)
        _circles(axes[0, j], d)
        axes[0, j].set_title(
            f"T={d['T']}, seed {d['seed']}, R={d['restarts']}\nradii x{d['radius_ratio']:.2f}, "
            f"gap x{d['gap_ratio']:.2f}, loss {d['train_loss']:.3g}",
            fontsize=7,
        )
        best = min(
            (x for x in tab["runs"] if x["T"] == d["T"] and not x["caught"]),
            key=lambda x: x["train_loss"],
            default=None,
        )
        if best is None:
            axes[1, j].axis("off")
            continue
        vectors(axes[1, j], _find(runs, best).arrays["H_train"], DATA_COLOR, lim)
        axes[1, j].set_title(
            f"not caught: T={best['T']}, seed {best['seed']}\nloss {best['train_loss']:.3g}",
            fontsize=7,
        )
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no two-circle case caught", ha="center", va="center")
        axes[0, 0].axis("off")
        axes[1, 0].axis("off")
    gs = axes[0, -1].get_gridspec()
    for a in axes[:, -1]:
        a.remove()
    ax = fig.add_subplot(gs[:, -1])
    for R, per_T in sorted(rates.items()):
        Ts = sorted(per_T)
        ax.plot(
            Ts,
            [per_T[T][0] / per_T[T][1] for T in Ts],
            "-o",
            label="one init" if R == 1 else f"best of {R}",
        )
    top = max((k / n for per_T in rates.values() for k, n in per_T.values()), default=0.0)
    ax.set(xlabel="T", ylabel="two-circle rate", title="rate over inits")
    ax.set_ylim(-0.01, max(0.25, 1.2 * top))
    ax.legend(fontsize=8)
    fig.suptitle(
        "Two-circle solutions (top; dashed: the two radii, shaded: the gap where they meet) "
        "and the best one-circle solution at the same T (bottom)",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, out, "circles")
