"""The repeated recipe's figures (A. Jermyn's repeated data points).

- ``repeated_single``: the control's features and hidden vectors beside those of the
  same data with one point repeated (the point starred, displaced features dashed);
- ``repeated_many``: generalising features and stored points against K, and the
  features (W columns) for each K;
- ``repeated_phase``: memorised or not over T/n and R, with the fitted R = c T/n.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

from supermem.report.plots import DATA_COLOR, FEATURE_COLOR, save, vectors


def figures(runs: list, tab: dict[str, Any], out: Path) -> list[Path]:
    paths: list[Path] = []
    by = {_key(r): r for r in runs}
    if tab["single"]:
        paths += _single(by, tab, out)
    if tab["many"]:
        paths += _many(by, tab, out)
    if tab["phase"]:
        paths += _phase(tab, out)
    return paths


def _key(r) -> tuple[int, int, int, int]:
    c = r.config
    return (c["train_size"], c.get("repeat_points", 0), c.get("repeat_count", 1), c["data_seed"])


def _single(by: dict, tab: dict, out: Path) -> list[Path]:
    rows = tab["single"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(12, 3.1 * len(rows)), squeeze=False)
    for ax, s in zip(axes, rows):
        ctl, rep = by[(s["T"], 0, 1, s["data_seed"])], by[(s["T"], 1, s["R"], s["data_seed"])]
        for (a_f, a_h), run, what in ((ax[:2], ctl, "no repeats"), (ax[2:], rep, "repeated")):
            vectors(a_f, run.arrays["W"].T, FEATURE_COLOR, title=f"features, {what}")
            vectors(a_h, run.arrays["H_train"], DATA_COLOR, title=f"hidden vectors, {what}")
        W = ctl.arrays["W"]
        for f in s["displaced"]:  # the features the repeated point pushed out
            ax[0].plot([0, W[0, f]], [0, W[1, f]], "k--", lw=1.5)
        H = rep.arrays["H_train"]
        ax[3].scatter(H[0, 0], H[0, 1], marker="*", s=220, c="gold", edgecolors="k", zorder=5)
        ax[0].set_ylabel(f"seed {s['data_seed']}")
    fig.suptitle(
        f"T = {rows[0]['T']}, one point repeated {rows[0]['R']} times (starred); dashed: the "
        "control's generalising features that are not generalising with the repeat",
        fontsize=10,
    )
    return save(fig, out, "repeated_single")


def _many(by: dict, tab: dict, out: Path) -> list[Path]:
    Ks = sorted(tab["many"])
    fig = plt.figure(figsize=(4 + 1.9 * len(Ks), 3.6))
    grid = fig.add_gridspec(1, 1 + len(Ks), width_ratios=[2.2] + [1] * len(Ks))
    ax = fig.add_subplot(grid[0])
    for k_idx, (name, color) in enumerate((("features", FEATURE_COLOR), ("stored", DATA_COLOR))):
        med = [tab["many"][K][name] for K in Ks]
        ax.plot(Ks, med, "-o", color=color, label=f"{name} (median over seeds)")
        for K in Ks:
            vals = [ps[k_idx] for ps in tab["many"][K]["per_seed"]]
            ax.scatter([K] * len(vals), vals, s=12, color=color, alpha=0.4)
    ax.plot(Ks, [max(5 - K, 0) for K in Ks], "k:", lw=1, label="max(5-K, 0), min(K, 5)")
    ax.plot(Ks, [min(K, 5) for K in Ks], "k:", lw=1)
    ax.set_xlabel("K repeated points")
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
    T, R = tab["T"], tab["R"]
    for i, K in enumerate(Ks):
        a = fig.add_subplot(grid[1 + i])
        run = min((r for k, r in by.items() if k[:3] == (T, K, R)), key=lambda r: _key(r)[3])
        vectors(a, run.arrays["W"].T, FEATURE_COLOR, title=f"K = {K}")
    fig.suptitle(f"T = {T}, K points each repeated {R} times: W's columns", fontsize=10)
    return save(fig, out, "repeated_many")


def _phase(tab: dict, out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    pts = np.array([(tn, r) for tn, r, _ in tab["phase"]])
    mem = np.array([m for *_, m in tab["phase"]])
    ax.scatter(pts[mem, 0], pts[mem, 1], s=60, c=DATA_COLOR, label="memorised (top 0.1% D_t)")
    ax.scatter(
        pts[~mem, 0], pts[~mem, 1], s=60, facecolors="none", edgecolors="k", label="not memorised"
    )
    x = np.geomspace(pts[:, 0].min() / 1.3, pts[:, 0].max() * 1.3, 50)
    b = tab["boundary"]
    if b and b["c"] is not None:
        ax.plot(x, b["c"] * x, "-", color="tab:green", label=f"fit: R = {b['c']:.2g} T/n")
        ax.fill_between(x, b["c_lo"] * x, b["c_hi"] * x, color="tab:green", alpha=0.15)
    ax.plot(x, 0.4 * x, "k--", lw=1, label="Jermyn: R = 0.4 T/n")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(pts[:, 1].min() / 1.5, pts[:, 1].max() * 1.5)
    for axis, vals in ((ax.xaxis, pts[:, 0]), (ax.yaxis, pts[:, 1])):
        axis.set_major_locator(FixedLocator(sorted(set(vals.tolist()))))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("T / n")
    ax.set_ylabel("R (times the point appears)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("one repeated point: memorised or not", fontsize=10)
    return save(fig, out, "repeated_phase")
