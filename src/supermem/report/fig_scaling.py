"""The scaling recipe's figures: max feature dimensionality and test loss against T and
against T(1-S), one colour per sparsity (``scaling_m{m}_sparsity``) and one per weight
decay (``scaling_m{m}_decay``); the jumps marked, Jermyn's T(1-S) = 10 dashed."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from supermem.report.plots import save

JERMYN_X = 10.0


def figures(tab: dict, out: Path) -> list[Path]:
    paths: list[Path] = []
    for m, t in tab.items():
        if t["S"]:
            paths += _sweep(
                t["S"], "S", f"m = {m}, weight decay fixed", out, f"scaling_m{m}_sparsity"
            )
        if len(t["wd"]) > 1:
            title = f"m = {m}, S = {t['wd_S']:g}"
            paths += _sweep(t["wd"], "weight decay", title, out, f"scaling_m{m}_decay")
    return paths


def _sweep(curves: dict, label: str, title: str, out: Path, name: str) -> list[Path]:
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col")
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(curves), 2)))
    for (k, c), col in zip(curves.items(), colors):
        for j, xs in enumerate((c["T"], c["x"])):
            axes[0, j].plot(xs, c["max_dim"], "-o", ms=3, color=col, label=f"{label} = {k:g}")
            axes[1, j].plot(xs, c["test_loss"], "-o", ms=3, color=col)
        if c["at"] is not None:
            axes[0, 1].axvline(c["at"], color=col, lw=0.8, alpha=0.6)
    for j, xlabel in enumerate(("T", "T(1-S): expected count of each feature")):
        for i in range(2):
            axes[i, j].set_xscale("log")
        axes[1, j].set_xlabel(xlabel)
    axes[1, 0].set_yscale("log")
    axes[1, 1].set_yscale("log")
    for ax in axes.flat:  # plain numbers, no minor labels (they collide on short log axes)
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
    axes[0, 1].axvline(JERMYN_X, color="k", ls="--", lw=1, label="T(1-S) = 10 (Jermyn)")
    axes[0, 0].set_ylabel("max feature dimensionality")
    axes[1, 0].set_ylabel("test loss")
    axes[0, 1].legend(fontsize=7)
    fig.suptitle(f"{title}: thin lines mark each curve's jump (max D_i >= 0.2 from there on)")
    return save(fig, out, name)
