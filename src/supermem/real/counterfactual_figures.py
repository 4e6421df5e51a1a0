"""Figures of the counterfactual recipe: D*_t and D_t against mem(t), one column per set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from supermem.real.counterfactual import Memorisation, RankCorrelation
from supermem.real.plots import plt
from supermem.report.plots import DATA_COLOR
from supermem.report.plots import save as _save  # PNG and SVG, as every figure

ROWS = (("D*", "maximal data dimensionality $D^*_t$"), ("D", "data dimensionality $D_t$"))


def scatter(
    sets: dict[str, tuple[Memorisation, dict[str, np.ndarray], dict[str, RankCorrelation]]],
    out: Path,
) -> list[Path]:
    """Per set (a column): D*_t vs mem(t), D_t vs mem(t) (log x; each averaged over the
    models that trained on t), and the mean loss without t vs with t (the regime)."""
    k = len(sets)
    fig, axes = plt.subplots(3, k, figsize=(3.6 * k, 9.6), squeeze=False)
    for c, (name, (m, scores, corr)) in enumerate(sets.items()):
        for r, (key, label) in enumerate(ROWS):
            ax, x = axes[r, c], scores[key]
            ok = np.isfinite(x) & np.isfinite(m.mem) & (x > 0)
            ax.scatter(x[ok], m.mem[ok], s=4, alpha=0.4, color=DATA_COLOR, lw=0)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short spans
            ax.set_title(f"{name}\nSpearman {corr[key]}", fontsize=8)
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel("mem(t) = loss out - loss in", fontsize=8)
        ax = axes[2, c]
        ax.scatter(m.loss_in, m.loss_out, s=4, alpha=0.4, color="0.3", lw=0)
        hi = float(np.nanmax(np.r_[m.loss_in, m.loss_out, 1e-12]))
        ax.plot([0, hi], [0, hi], ":", color="0.5", lw=0.8)
        ax.set_xlabel("mean loss, models trained on t", fontsize=8)
        ax.set_ylabel("mean loss, models not trained on t", fontsize=8)
        ax.set_title(f"{name}: median mem {np.nanmedian(m.mem):.3g}", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "counterfactual_scatter")
