"""The crossover recipe's figures.

- ``crossover``: left, final training loss against T for every learning rate, each run
  marked by its kind (filled: generalising, open: memorising), the lowest per T ringed,
  the crossover shaded, and (grey diamonds) the loss on each T's training set of the
  best generalising run of the T before (``crossover.table``'s ``carried``); right, the
  margin: the best memorising training loss minus the best generalising one (trained or
  carried), per T where both exist (below zero memorising wins; the crossover is where
  it crosses zero, dotted where ``table``'s ``at_margin`` puts it);
- ``crossover_clusters``: the hidden vectors of the lowest-loss memorising run at the
  largest such T, stored points coloured by cluster (points sharing a direction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from supermem.recipes import clusters as cl
from supermem.recipes import crossover as cx
from supermem.report.plots import save


def figures(runs: list, tab: dict[str, Any], out: Path) -> list[Path]:
    paths = _losses(tab, out)
    mem = [r for r in tab["rows"] if r["best_kind"] == "memorising"]
    if mem:
        row = mem[-1]
        run = next(
            r
            for r in runs
            if r.config["train_size"] == row["T"] and float(r.config["lr"]) == row["best_lr"]
        )
        paths += _clusters(run, out)
    return paths


def _losses(tab: dict, out: Path) -> list[Path]:
    fig, (ax, gap) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(3, 2))
    lrs = sorted({lr for r in tab["rows"] for lr in r["per_lr"]})
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(lrs), 2)))
    for lr, col in zip(lrs, colors):
        pts = [(r["T"], r["per_lr"][lr]) for r in tab["rows"] if lr in r["per_lr"]]
        ax.plot([T for T, _ in pts], [v["train_loss"] for _, v in pts], "-", color=col, lw=1)
        for T, v in pts:
            gen = v["kind"] == "generalising"
            ax.scatter(T, v["train_loss"], s=30, color=col, facecolors=col if gen else "none")
        ax.plot([], [], "-", color=col, label=f"lr {lr:g}")
    carried = [(r["T"], r["carried"]["train_loss"]) for r in tab["rows"] if r.get("carried")]
    if carried:
        ax.scatter(
            *zip(*carried),
            s=30,
            marker="D",
            color="grey",
            zorder=3,
            label="generalising run of the T before, on this T's data",
        )
    for r in tab["rows"]:
        ax.scatter(r["T"], r["best_loss"], s=140, facecolors="none", edgecolors="k", lw=1.2)
    if tab["crossover"] is not None and tab["before"] is not None:
        ax.axvspan(
            tab["before"], tab["crossover"], color="tab:green", alpha=0.15, label="crossover"
        )
    ax.scatter([], [], s=30, color="grey", label="generalising (filled)")
    ax.scatter([], [], s=30, facecolors="none", edgecolors="grey", label="memorising (open)")
    ax.set_xscale("log")
    ax.set_xlabel("T")
    ax.set_ylabel("final training loss")
    ax.set_title("lowest training loss per T ringed", fontsize=10)
    ax.legend(fontsize=7)
    _margin(gap, tab)
    fig.tight_layout()
    return save(fig, out, "crossover")


def _margin(ax, tab: dict) -> None:
    pts = cx.margins(tab)
    ax.axhline(0, color="k", lw=0.8)
    if pts:
        ax.plot(*zip(*pts), "o-", color="tab:purple")
    if tab.get("at_margin"):
        ax.axvline(tab["at_margin"], color="tab:purple", ls=":", lw=1)
        ax.annotate(
            f"zero at ~{tab['at_margin']:.2g}", (tab["at_margin"], 0), xytext=(-4, 6),
            textcoords="offset points", ha="right", fontsize=8, color="tab:purple",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("T")
    ax.set_ylabel("best memorising - best generalising")
    ax.set_title("margin (below 0: memorising wins)", fontsize=10)


def _clusters(run, out: Path) -> list[Path]:
    H, dd = np.asarray(run.arrays["H_train"], float), np.asarray(run.arrays["data_dims"], float)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(H[:, 0], H[:, 1], s=3, color="lightgrey", zorder=1, rasterized=True)
    groups = cl.clusters(H, dd, cl.feature_directions(run.arrays["W"], run.arrays["feature_dims"]))
    cmap = plt.cm.tab20(np.linspace(0, 1, 20))
    for k, g in enumerate(groups):
        ax.scatter(H[g, 0], H[g, 1], s=14, color=cmap[k % 20], zorder=2, rasterized=True)
    sizes = [len(g) for g in groups]
    ax.set_aspect("equal")
    ax.set_title(
        f"T = {run.config['train_size']}, lr {run.config['lr']:g}: {sum(sizes)} stored points "
        f"in {len(groups)} directions off the features\n(largest cluster "
        f"{max(sizes, default=0)}; grey: the rest)",
        fontsize=9,
    )
    return save(fig, out, "crossover_clusters")
