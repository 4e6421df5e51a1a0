"""The discrepancy recipe's figure: implementation variants side by side (issue 10).

Left: seed-averaged test loss (over the zero model's, 1 for unit points) vs T per variant
(baseline in black; each run's as a faint tick where a T has several) and, below, the
median data dimensionality over m/T with the line under which a T counts as left
memorisation.
Right: one panel per measure, one row per variant, with the paper's and the
replication's values (their Ts rescaled by T(1-S)) as vertical lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from supermem.report.plots import save

PANELS = (  # (measure key, its T key or None, axis label, reference key or None)
    ("T_leave", None, "T where D_t leaves m/T", "T_leave"),
    ("T_five", None, "T where 5 features take over", "T_five"),
    ("peak_loss", "peak_loss_T", "peak mean test loss", "peak_loss"),
    ("peak_b", "peak_b_T", "peak mean ||b||", None),
    ("peak_W", "peak_W_T", "peak mean ||W||_F", None),
)
REF_STYLE = {"paper": ("tab:green", "--"), "replication": ("tab:red", ":")}


def _log_ticks(ax, y: bool = False, narrow: bool = False) -> None:
    """Log x (and y) axis labelled at 1, 2, 5 x 10^k (wide: 10^k) as plain numbers;
    ``narrow`` (the measure panels, a few centimetres wide): 10^k past one decade."""
    ax.set_xscale("log")
    if y:
        ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis) if y else (ax.xaxis,):
        lo, hi = axis.get_view_interval()
        subs = (1.0,) if hi > (10 if narrow else 300) * lo else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())


def fig_discrepancy(
    tab: dict[str, dict[str, Any]],
    refs: dict[str, dict[str, float]],
    out: Path,
    leave_below: float | None = None,
) -> list[Path]:
    """tab: {variant: measures} (recipes.discrepancy.table); refs: {write-up: values};
    leave_below: the median D_t / (m/T) under which a T counts as left (drawn if given)."""
    names = list(tab)
    fig = plt.figure(figsize=(17, 0.32 * len(names) + 5.0))
    grid = fig.add_gridspec(2, 1 + len(PANELS), width_ratios=[2.2] + [1] * len(PANELS), wspace=0.45)
    ax, ax_dt = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(names), 2)))
    for name, col in zip(names, colors):
        m = tab[name]
        base = name == "baseline"
        style: dict[str, Any] = dict(ms=3, lw=2.5 if base else 1, color="k" if base else col)
        ax.plot(m["T"], m["test_loss"], "-o", label=name, zorder=3 if base else 2, **style)
        seeds = [(T, v) for T, vs in zip(m["T"], m.get("test_loss_per_seed", [])) for v in vs]
        if len(seeds) > len(m["T"]):  # several runs per T: each run's loss, faint, behind
            ts, vs = zip(*seeds)
            ax.plot(ts, vs, "_", ms=7, mew=1, alpha=0.55, color=style["color"], zorder=1)
        ax_dt.plot(m["T"], m["median_Dt_over_m_T"], "-o", zorder=3 if base else 2, **style)
    ax.set(xscale="log", yscale="log", ylabel="mean test loss / zero model's")
    _log_ticks(ax, y=True)
    ax.legend(fontsize=6, ncol=2)
    ax_dt.axhline(1.0, color="0.6", lw=0.8)
    if leave_below is not None:
        ax_dt.axhline(leave_below, color="tab:red", ls="--", lw=1, label="left below")
        ax_dt.legend(fontsize=6, loc="lower left")
    ax_dt.set(xscale="log", yscale="log", xlabel="training set size T")
    ax_dt.set_ylabel("median D_t / (m/T)", fontsize=8)
    _log_ticks(ax_dt, y=True)
    y = np.arange(len(names))[::-1]
    for j, (key, tkey, label, ref) in enumerate(PANELS):
        a = fig.add_subplot(grid[:, j + 1])
        grid_max = max(max(m["T"]) for m in tab.values())
        for yi, name in zip(y, names):
            m = tab[name]
            if key.startswith("T_") and not m.get("full_grid", True):
                continue  # a boundary on part of the grid says nothing: not drawn
            v, beyond = m[key], False
            if v is None:  # T_leave / T_five not reached in the grid: drawn past its end
                v, beyond = 1.5 * max(m["T"]), True
            a.scatter(
                [v],
                [yi],
                color="k" if name == "baseline" else "tab:blue",
                marker=">" if beyond else "o",
                s=22,
                zorder=3,
            )
            if tkey:
                a.annotate(
                    f"T={m[tkey]:g}", (v, yi), fontsize=5, xytext=(3, 2), textcoords="offset points"
                )
        if ref:
            for who, vals in refs.items():
                c, ls = REF_STYLE[who]
                a.axvline(vals[ref], color=c, ls=ls, lw=1, label=who)
        if key.startswith("T_"):
            a.axvline(grid_max, color="0.6", lw=0.6)
        _log_ticks(a, narrow=True)
        a.tick_params(axis="x", labelsize=7)
        a.set_yticks(y, names if j == 0 else [""] * len(names), fontsize=7)
        a.set_ylim(-0.5, len(names) - 0.5)  # rows line up across panels
        a.set_title(label, fontsize=8)
        a.grid(axis="y", lw=0.3)
        if j == 0:
            a.legend(fontsize=6, loc="lower left")
    k = len({T for m in tab.values() for T in m["T"]})
    fig.suptitle(
        f"Implementation variants side by side (m = 2; {k} T; paper / replication "
        "values rescaled by T(1-S); > = not reached in the grid)",
        fontsize=10,
    )
    return save(fig, out, "discrepancy")


def fig_storage_by_norm(
    by_T: dict[int, dict[str, Any]], out: Path, name: str, below: float
) -> list[Path]:
    """One panel per T: each training point's D_t / (m/T) (blue) and the same on
    h_t / ||x_t|| (orange: its direction's share, radius aside) against its squared norm,
    seeds pooled, with the line ``below`` which a point counts as not stored; by_T from
    ``recipes.discrepancy_measures.storage_by_norm``."""
    Ts = list(by_T)
    rows = -(-len(Ts) // 5)  # at most 5 panels a row, rows as even as they go
    cols = -(-len(Ts) // rows)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.9 * cols + 0.6, 3.2 * rows), squeeze=False, sharey=True
    )
    for ax in axes.flat[len(Ts) :]:
        ax.set_visible(False)
    for ax, T in zip(axes.flat, Ts):
        d = by_T[T]
        for key, col, lab in (
            ("ratio", "tab:blue", "D_t"),
            ("ratio_unit", "tab:orange", "on h/|x|"),
        ):
            y = np.maximum(d[key], 1e-4)
            ax.scatter(d["sq_norm"], y, s=4, alpha=0.3, lw=0, color=col, label=lab, rasterized=True)
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.axhline(below, color="tab:red", ls="--", lw=1)
        ax.set(yscale="log", ylim=(1e-4, 10), title=f"T = {T:g}")
        ax.text(
            0.03,
            0.03,
            f"above the line, largest / smallest quarter:\n"
            f"D_t {d['stored_top_quarter']:.0%} / {d['stored_bottom_quarter']:.0%}, "
            f"on h/|x| {d['direction_top_quarter']:.0%} / {d['direction_bottom_quarter']:.0%}",
            transform=ax.transAxes,
            fontsize=6,
        )
        ax.set_xlabel("||x_t||^2", fontsize=8)
        ax.tick_params(labelsize=7)
    for row in axes:
        row[0].set_ylabel("D_t / (m/T)", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="upper left", markerscale=3)
    fig.suptitle(
        f"{name}: each training point's dimensionality against its norm (red: m/(3T), "
        "the T_leave line; values below 1e-4 drawn at 1e-4)",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, out, f"storage_by_norm_{name}")
