"""The paper's figures 2-5 and the m = 4 appendix, drawn from lists of loaded runs.

Layout follows the paper: features blue, data points red, T on a log axis. Scatter
layers are rasterised so the SVGs stay small. Shapes: W (m, n), H_train (T, m),
feature_dims (n,), data_dims (T,). Every function returns the files it wrote.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from supermem.recipes.runsets import by_T, group, series
from supermem.report.plots import DATA_COLOR, FEATURE_COLOR, save, vectors

JITTER = 0.07  # log10 spread of per-point scatter around its T


def pick_Ts(Ts: list[int], k: int) -> list[int]:
    """Up to k of the sorted Ts, evenly spread over the (log-spaced) grid, ends included."""
    idx = np.unique(np.round(np.linspace(0, len(Ts) - 1, min(k, len(Ts)))).astype(int))
    return [Ts[i] for i in idx]


def first_seed(runs: list):
    """The run with the lowest (data_seed, seed): the one drawn in vector plots."""
    return min(runs, key=lambda r: (r.config["data_seed"], r.config["seed"]))


def vector_rows(axes, groups: dict[int, list], same_scale: bool) -> None:
    """Row 0: features (W columns), row 1: training hidden vectors; one column per T.

    same_scale: one axis limit for every panel (fig. 4), else each its own (fig. 2).
    """
    runs = [first_seed(rs) for rs in groups.values()]
    lim = None
    if same_scale:
        norms = [
            np.linalg.norm(r.arrays[k], axis=-1 if k == "H_train" else 0).max()
            for r in runs
            for k in ("W", "H_train")
        ]
        lim = 1.1 * float(max(norms))
    for j, (T, r) in enumerate(zip(groups, runs)):
        vectors(axes[0, j], r.arrays["W"].T, FEATURE_COLOR, lim, f"T = {T}")
        vectors(axes[1, j], r.arrays["H_train"], DATA_COLOR, lim)
    axes[0, 0].set_ylabel("features", color=FEATURE_COLOR)
    axes[1, 0].set_ylabel("training data", color=DATA_COLOR)


def _setting(runs: list) -> str:
    c = runs[0].config
    return f"n={c['features']}, S={c['sparsity']}, m={c['hidden']}, {c['steps']} steps"


def fig2(runs: list, out: Path, k: int = 7) -> list[Path]:
    """Paper fig. 2: features vs training hidden vectors (m = 2) across T."""
    groups = by_T(r for r in runs if r.config["hidden"] == 2)
    groups = {T: groups[T] for T in pick_Ts(list(groups), k)}
    fig, axes = plt.subplots(2, len(groups), figsize=(1.9 * len(groups), 4.2), squeeze=False)
    vector_rows(axes, groups, same_scale=False)
    fig.suptitle(f"Features (blue) and training hidden vectors (red); {_setting(runs)}")
    return save(fig, out, "fig2_vectors")


def dims_scatter(ax, groups: dict[int, list], key: str, color: str, rng, floor=None) -> None:
    """Every point's dimensionality at its T (jittered), with median and mean per T.

    floor: with a log y axis, values below it are drawn on it (so none vanish).
    """
    Ts, med, mean = [], [], []
    for T, rs in groups.items():
        d = np.concatenate([np.asarray(r.arrays[key], float) for r in rs])
        x = T * 10 ** rng.uniform(-JITTER, JITTER, d.size)
        shown = d if floor is None else np.maximum(d, floor)
        ax.scatter(x, shown, s=3, color=color, alpha=0.25, lw=0, rasterized=True)
        Ts.append(T)
        med.append(np.median(d))
        mean.append(d.mean())
    ax.plot(Ts, med, "k-o", ms=3, lw=1, label="median")
    ax.plot(Ts, mean, "k--", lw=1, label="mean")
    ax.set_xscale("log")


def loss_panel(ax, runs: list, metric: str = "test_loss", color: str = "k", label="") -> None:
    """Per-run points and the mean over runs (data seeds) at each T."""
    Ts, means, per = series(runs, metric)
    for T, v in zip(Ts, per):
        ax.scatter(np.full(v.size, T), v, s=10, color=color, alpha=0.4, lw=0)
    ax.plot(Ts, means, "-o", ms=3, color=color, label=label or f"mean of {len(per[0])} seeds")
    ax.set_xscale("log")


def log_if_wide(ax, ratio: float = 10.0) -> None:
    """Log y axis when the plotted values span more than ``ratio``: a bump of the
    replication's size (~5,000 over a baseline of ~1) would flatten everything else."""
    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    if lo > 0 and hi / lo > ratio:
        ax.set_yscale("log")


def fig3(runs: list, out: Path, k: int = 7) -> list[Path]:
    """Paper fig. 3: test loss, feature dims and data dims vs T; vector plots underneath."""
    runs = [r for r in runs if r.config["hidden"] == 2]
    groups = by_T(runs)
    m, rng = 2, np.random.default_rng(0)
    fig = plt.figure(figsize=(11, 11))
    top = fig.add_gridspec(3, 1, top=0.95, bottom=0.36, hspace=0.12)
    ax_l = fig.add_subplot(top[0])
    ax_f = fig.add_subplot(top[1], sharex=ax_l)
    ax_d = fig.add_subplot(top[2], sharex=ax_l)
    loss_panel(ax_l, runs)
    log_if_wide(ax_l)
    ax_l.set_ylabel("test loss")
    ax_l.legend(fontsize=8)
    dims_scatter(ax_f, groups, "feature_dims", FEATURE_COLOR, rng)
    ax_f.set_ylabel("feature dimensionality $D_i$")
    # log y: m/T spans decades, and "near 0" (the middle regime) must read as far below it
    floor = m / max(groups) / 100
    dims_scatter(ax_d, groups, "data_dims", DATA_COLOR, rng, floor)
    Ts = np.geomspace(min(groups), max(groups), 100)
    ax_d.plot(Ts, m / Ts, color="0.4", ls=":", label="m/T")
    ax_d.set_yscale("log")
    ax_d.set_ylim(floor / 1.5, 1.5)
    ax_d.set_ylabel(f"data dimensionality $D_t$ (floor {floor:.1g})")
    ax_d.set_xlabel("training set size T")
    ax_d.legend(fontsize=8)
    for ax in (ax_l, ax_f):
        plt.setp(ax.get_xticklabels(), visible=False)
    chosen = {T: groups[T] for T in pick_Ts(list(groups), k)}
    low = fig.add_gridspec(2, len(chosen), top=0.30, bottom=0.02, wspace=0.05, hspace=0.08)
    axes = np.array([[fig.add_subplot(low[i, j]) for j in range(len(chosen))] for i in range(2)])
    vector_rows(axes, chosen, same_scale=False)
    fig.suptitle(f"Test loss and dimensionality vs T; {_setting(runs)}", y=0.985)
    return save(fig, out, "fig3_dims_loss")


def fig4(runs: list, out: Path, k: int = 7) -> list[Path]:
    """Paper fig. 4: vectors on one scale, and ||W||_F, ||b|| vs T."""
    runs = [r for r in runs if r.config["hidden"] == 2]
    groups = by_T(runs)
    chosen = {T: groups[T] for T in pick_Ts(list(groups), k)}
    fig = plt.figure(figsize=(1.9 * len(chosen), 8))
    up = fig.add_gridspec(2, len(chosen), top=0.93, bottom=0.50, wspace=0.05)
    axes = np.array([[fig.add_subplot(up[i, j]) for j in range(len(chosen))] for i in range(2)])
    vector_rows(axes, chosen, same_scale=True)
    ax = fig.add_subplot(fig.add_gridspec(1, 1, top=0.42, bottom=0.07)[0])
    loss_panel(ax, runs, "W_norm", FEATURE_COLOR, r"$\|W\|_F$ (mean)")
    loss_panel(ax, runs, "b_norm", "0.3", r"$\|b\|$ (mean)")
    ax.axhline(np.sqrt(5), color=FEATURE_COLOR, ls=":", lw=1, label=r"$\sqrt{5}$ (pentagon)")
    ax.set_xlabel("training set size T")
    ax.set_ylabel("norm")
    ax.legend(fontsize=8)
    fig.suptitle(f"Vectors on one scale, and norms vs T; {_setting(runs)}")
    return save(fig, out, "fig4_norms")


def fig5(runs: list, out: Path) -> list[Path]:
    """Paper fig. 5: mean test loss over (T, m), several models per cell averaged."""
    cells = group(runs, "hidden", "train_size")
    ms = sorted({k[0] for k in cells})
    Ts = sorted({k[1] for k in cells})
    Z = np.full((len(ms), len(Ts)), np.nan)  # (m, T)
    for (m, T), rs in cells.items():
        Z[ms.index(m), Ts.index(T)] = np.mean([r.metrics["test_loss"] for r in rs])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    norm = LogNorm(np.nanmin(Z), np.nanmax(Z))
    im = ax.imshow(Z, origin="lower", aspect="auto", cmap="viridis", norm=norm)
    if Z.size <= 400:  # cell values stay legible; the paper scale is 12 x 16
        for i, j in np.ndindex(Z.shape):
            if np.isfinite(Z[i, j]):
                color = "w" if norm(float(Z[i, j])) < 0.6 else "k"
                ax.text(j, i, f"{Z[i, j]:.3g}", ha="center", va="center", fontsize=7, c=color)
    for i, row in enumerate(Z):  # each m's worst T, where more data stops hurting
        if np.isfinite(row).any():
            j = int(np.nanargmax(row))
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="r", lw=1.5))
    ax.set_xticks(range(len(Ts)), [str(t) for t in Ts], rotation=45)
    ax.set_yticks(range(len(ms)), [str(m) for m in ms])
    ax.set_xlabel("training set size T (log spaced)")
    ax.set_ylabel("hidden dimension m")
    fig.colorbar(im, ax=ax, label="mean test loss")
    n = len(next(iter(cells.values())))
    fig.suptitle(
        f"Test loss over (T, m), mean of {n} models per cell (red: each m's peak); "
        f"n={runs[0].config['features']}, S={runs[0].config['sparsity']}"
    )
    return save(fig, out, "fig5_loss_map") + fig5_curves(runs, out)


def fig5_curves(runs: list, out: Path) -> list[Path]:
    """Fig. 5's rows as curves: test loss vs T, one line per m (the mean of its models,
    each model a dot), each m's peak ringed; the map's colours hide a curve's shape."""
    by_m = group(runs, "hidden")
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(by_m)))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for ((m,), rs), col in zip(sorted(by_m.items()), colors):
        loss_panel(ax, rs, color=col, label=f"m = {m}")
        Ts, means, _ = series(rs, "test_loss")
        j = int(np.nanargmax(means))
        ax.scatter([Ts[j]], [means[j]], s=90, facecolors="none", edgecolors="r", lw=1.2)
    log_if_wide(ax)
    ax.set_xlabel("training set size T")
    ax.set_ylabel("test loss")
    ax.legend(fontsize=8, ncol=2 if len(by_m) > 6 else 1)
    c = runs[0].config
    fig.suptitle(
        f"Test loss vs T per hidden size m (line: mean, dots: models, ring: peak); "
        f"n={c['features']}, S={c['sparsity']}",
        fontsize=10,
    )
    return save(fig, out, "fig5_loss_curves")


def fig_m4(runs: list, out: Path, default_steps: int) -> list[Path]:
    """Appendix, m = 4: the bump vs training length; weight decay 1e-2 vs 1.0."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    weak = group([r for r in runs if r.config["weight_decay"] < 0.1], "steps")
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(weak)))  # darker = shorter
    for ((steps,), rs), col in zip(weak.items(), colors):
        loss_panel(a, rs, color=col, label=f"{steps} steps")
    a.set_title("weight decay 1e-2, by training length", fontsize=10)
    for (wd,), rs in group(
        [r for r in runs if r.config["steps"] == default_steps], "weight_decay"
    ).items():
        loss_panel(b, rs, color="k" if wd < 0.1 else "tab:orange", label=f"weight decay {wd:g}")
    b.set_title(f"{default_steps} steps, by weight decay", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("training set size T")
        ax.legend(fontsize=8)
    log_if_wide(a)
    a.set_ylabel("test loss")
    fig.suptitle(f"Appendix, m = 4; n={runs[0].config['features']}, S={runs[0].config['sparsity']}")
    return save(fig, out, "appendix_m4")
