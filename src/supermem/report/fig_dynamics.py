"""The dynamics recipe's figures (issue 11, part 3): D_t and D_i over training, frames of
W's columns and the hidden vectors, and the same as an animated GIF (Pillow, which
matplotlib ships with: no ffmpeg).

``tr``: one run's trajectories (``recipes.dynamics.trajectories``: steps (k,), W (k, 2, n),
H (k, T, 2), D_t (k, T), D_i (k, n)); ``d``: its measures (``run_measures``); ``tab``: all
runs' measures (``table``). Events are drawn dark: near-miss points black, forgotten
features navy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

from supermem.report.plots import DATA_COLOR, FEATURE_COLOR, save, vectors

NEAR_COLOR, LOST_COLOR = "k", "navy"
GIF_FRAMES = 50  # at most; snapshots are subsampled evenly
N_FRAMES = 8  # frames in the PNG strip for the report


def _lines(ax, steps, D, events: list[dict], lo: float, base: str, dark: str) -> None:
    """Every trajectory that ever reaches lo, thin; the events' trajectories thick."""
    marked = {e["index"] for e in events}
    shown = np.flatnonzero((D.max(0) >= lo) & ~np.isin(np.arange(D.shape[1]), list(marked)))
    floor = lo / 100  # log axis: a value at 0 is drawn on the floor
    for i in shown:
        ax.plot(steps, np.maximum(D[:, i], floor), color=base, lw=0.6, alpha=0.35)
    for i in marked:
        ax.plot(steps, np.maximum(D[:, i], floor), color=dark, lw=1.6)


def trajectories(
    tr: dict[str, Any], d: dict[str, Any], tab: dict[str, Any], label: str, out: Path
) -> list[Path]:
    """D_t and D_i over training of one run, stored counts, and events per run."""
    hi, lo, steps = tab["hi"], tab["lo"], tr["steps"]
    fig, ax = plt.subplots(2, 2, figsize=(12, 7.5))
    for a, key, ev, base, dark, what in (
        (ax[0, 0], "D_t", d["near_miss_events"], DATA_COLOR, NEAR_COLOR, "points $D_t$"),
        (ax[0, 1], "D_i", d["forgotten_events"], FEATURE_COLOR, LOST_COLOR, "features $D_i$"),
    ):
        _lines(a, steps, tr[key], ev, lo, base, dark)
        for v, ls in ((hi, "--"), (lo, ":")):
            a.axhline(v, color="0.4", ls=ls, lw=0.8)
        a.set(xlabel="step", ylabel=what, title=f"{what}: {len(ev)} lost by the end (dark)")
        a.set_yscale("log")  # from the unstructured level (~m/T, m/n) up to stored ones
    a = ax[1, 0]
    a.plot(steps, (tr["D_t"] >= hi).sum(1), color=DATA_COLOR, label="points stored")
    a.plot(steps, (tr["D_i"] >= hi).sum(1), color=FEATURE_COLOR, label="features stored")
    a.set(xlabel="step", ylabel=f"count with D >= {hi:g}", title="stored over training")
    a.legend(fontsize=8)
    a = ax[1, 1]
    runs = tab["runs"]
    x = np.arange(len(runs))
    a.bar(x - 0.2, [r["near_misses"] for r in runs], 0.4, color=DATA_COLOR, label="near misses")
    a.bar(
        x + 0.2,
        [r["forgotten_features"] for r in runs],
        0.4,
        color=FEATURE_COLOR,
        label="forgotten features",
    )
    a.set_xticks(x, [f"T={r['T']}\n{r['data_seed']}/{r['seed']}" for r in runs], fontsize=6)
    a.set(ylabel="count per run", title="every run (T, data seed / init seed)")
    a.legend(fontsize=8)
    fig.suptitle(
        f"Training dynamics, {label}: stored at D >= {hi:g} (dashed), lost below {lo:g} (dotted)",
        fontsize=10,
    )
    fig.tight_layout()
    return save(fig, out, "dynamics_trajectories")


def _frame(axes, tr: dict[str, Any], d: dict[str, Any], j: int) -> None:
    """Features (axes[0]) and hidden vectors (axes[1]) at snapshot j, events dark."""
    W, H = tr["W"][j].T, tr["H"][j]  # (n, 2), (T, 2)
    lim = 1.15 * max(float(np.linalg.norm(W, axis=1).max()), float(np.linalg.norm(H, axis=1).max()))
    lim = max(lim, 1e-6)
    vectors(axes[0], W, FEATURE_COLOR, lim, f"features, step {tr['steps'][j]}")
    vectors(axes[1], H, DATA_COLOR, lim, f"hidden vectors, step {tr['steps'][j]}")
    for ax, V, ev, c in (
        (axes[0], W, d["forgotten_events"], LOST_COLOR),
        (axes[1], H, d["near_miss_events"], NEAR_COLOR),
    ):
        idx = [e["index"] for e in ev]
        if idx:
            ax.scatter(V[idx, 0], V[idx, 1], s=22, color=c, zorder=4, marker="x")


def _pick(k: int, most: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, k - 1, min(k, most))).astype(int))


def _window(tr: dict[str, Any], d: dict[str, Any], most: int) -> np.ndarray:
    """Up to ``most`` snapshot indices: evenly over the steps up to 1.5x the last event's
    lost step (where the learning and forgetting happen; all steps if no event), and the
    last snapshot."""
    steps, ev = tr["steps"], d["near_miss_events"] + d["forgotten_events"]
    if not ev:
        return _pick(len(steps), most)
    inside = np.flatnonzero(steps <= 1.5 * max(e["lost_step"] for e in ev))
    return np.unique(np.r_[inside[_pick(len(inside), most - 1)], len(steps) - 1])


def frames(tr: dict[str, Any], d: dict[str, Any], label: str, out: Path) -> list[Path]:
    """N_FRAMES snapshots side by side (``_window``): features (top), hidden vectors
    (bottom)."""
    idx = _window(tr, d, N_FRAMES)
    fig, axes = plt.subplots(2, len(idx), figsize=(2.1 * len(idx), 4.6), squeeze=False)
    for col, j in enumerate(idx):
        _frame(axes[:, col], tr, d, j)
        for a in axes[:, col]:
            a.title.set_fontsize(7)
            for c in a.collections:  # thousands of segments: pixels, not SVG paths
                c.set_rasterized(True)
    fig.suptitle(
        f"W's columns (blue) and training hidden vectors (red) over training, {label}; "
        "x: near-miss points / forgotten features; each frame its own scale",
        fontsize=9,
    )
    return save(fig, out, "dynamics_frames")


def animation(tr: dict[str, Any], d: dict[str, Any], label: str, out: Path) -> Path:
    """dynamics_animation.gif: GIF_FRAMES snapshots (``_window``), 5 per second."""
    idx = _window(tr, d, GIF_FRAMES)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))

    def draw(j: int) -> None:
        for a in axes:
            a.clear()
        _frame(axes, tr, d, j)
        fig.suptitle(label, fontsize=8)

    anim = FuncAnimation(fig, draw, frames=list(idx), repeat=False)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dynamics_animation.gif"
    anim.save(path, writer=PillowWriter(fps=5), dpi=60)
    plt.close(fig)
    return path
