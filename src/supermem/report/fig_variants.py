"""The variants recipe's figure: one column per model variant (issue 11).

Top: seed-averaged test loss vs T. Bottom: the largest data dimensionality D_t and the
largest feature dimensionality D_i vs T (seed means), with m/T and the threshold above
which a feature counts as large; the regime of each T is written under its point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from supermem.report.plots import save

SHORT = {"memorising": "M", "middle": "-", "generalising": "G"}


def fig_variants(tab: dict[str, list[dict[str, Any]]], large: float, out: Path) -> list[Path]:
    """tab: {variant: per-T rows with T, test_loss, max_D_t, max_D_i, regime}."""
    k = len(tab)
    fig, axes = plt.subplots(2, k, figsize=(3.4 * k, 6), squeeze=False, sharex="col")
    for c, (name, rows) in enumerate(tab.items()):
        T = np.array([r["T"] for r in rows], dtype=float)
        top, bot = axes[0, c], axes[1, c]
        top.plot(T, [r["test_loss"] for r in rows], "o-", color="black")
        top.set_title(name)
        top.set_xscale("log")
        top.set_ylabel("mean test loss" if c == 0 else "")
        dt, di = [r["max_D_t"] for r in rows], [r["max_D_i"] for r in rows]
        bot.plot(T, dt, "o-", color="tab:red", label="max D_t (data)")
        bot.plot(T, di, "s-", color="tab:blue", label="max D_i (features)")
        m = 2.0  # the sweep's hidden size
        bot.plot(T, m / T, ":", color="gray", label="m/T")
        bot.axhline(large, color="tab:blue", ls="--", lw=0.8, label=f"large D_i ({large:g})")
        bot.set_xscale("log")
        bot.set_yscale("log")
        bot.set_xlabel("T (training points)")
        for t, y, r in zip(T, np.minimum(dt, di), rows):
            bot.annotate(
                SHORT[r["regime"]],
                (t, y),
                textcoords="offset points",
                xytext=(0, -12),
                ha="center",
                fontsize=8,
            )
        for ax in (top, bot):  # a short T range (a partial sweep) gets no labelled minor ticks
            ax.xaxis.set_minor_formatter(NullFormatter())
        bot.yaxis.set_minor_formatter(NullFormatter())
        if c == 0:
            bot.set_ylabel("largest dimensionality")
            bot.legend(fontsize=7, loc="lower left")
    fig.suptitle(
        "Model variants, m = 2: test loss and regimes (M memorising, - middle, G generalising)"
    )
    fig.tight_layout()
    return save(fig, out, "variants")
