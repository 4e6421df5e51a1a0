"""Sorted D* curves on a log scale (the curve C. Olah showed for MNIST, PAPER.md)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MAX_POINTS = 4000  # a sorted curve of a million examples drawn from this many ranks


def sorted_curve(dstar: np.ndarray, points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """dstar (T,) -> (x (k,), y (k,)): D* sorted high to low at k <= points ranks, x the
    rank as a fraction of T in (0, 1]. The top and bottom ranks are always kept."""
    y = np.sort(np.asarray(dstar, dtype=np.float64))[::-1]
    T = len(y)
    idx = np.unique(np.concatenate([np.arange(min(T, 50)), np.linspace(0, T - 1, points)]))
    idx = idx.astype(int)
    return (idx + 1) / T, y[idx]


def dstar_curves(ax, curves: dict[str, np.ndarray], rank: int | None = None) -> None:
    """One sorted D* curve (T,) per label on log-y axes; zeros sit at the floor."""
    floor = min((float(c[c > 0].min()) for c in curves.values() if (c > 0).any()), default=1e-12)
    for label, d in curves.items():
        x, y = sorted_curve(d)
        ax.plot(x, np.maximum(y, floor / 2), lw=1.4, label=f"{label} (T={len(d):,})")
        if rank is not None:
            ax.axhline(rank / len(d), color="0.5", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("examples, sorted by D* (fraction)")
    ax.set_ylabel("maximal data dimensionality $D^*_t$")
    ax.legend(fontsize=8)


def save_curve(path: Path, curves: dict[str, np.ndarray], title: str, rank: int | None) -> Path:
    """Write the figure to ``path`` (PNG), one curve per entry of ``curves``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    dstar_curves(ax, curves, rank)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
