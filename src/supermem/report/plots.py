"""Matplotlib figures in the paper's colours: features blue, data points red.

Functions take arrays (or a loaded ``Run``) and axes or an output folder; nothing here
trains or computes metrics beyond what it draws.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

FEATURE_COLOR, DATA_COLOR = "#1f5fbf", "#d62728"
FORMATS = ("png", "svg")
# Above this many marks an artist is drawn into the SVG as an image: the paper scale's
# 100,000 hidden vectors would otherwise make every vector figure ~70 MB of SVG paths.
RASTER_ABOVE = 2000


def vectors(ax, V: np.ndarray, color: str, lim: float | None = None, title: str = "") -> float:
    """Draw 2-D vectors V (k, 2) as segments from the origin; return the axis limit used."""
    V = np.asarray(V, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1)
    lim = lim or 1.15 * max(float(norms.max(initial=0.0)), 1e-6)
    alpha = np.clip(norms / max(norms.max(initial=0.0), 1e-12), 0.08, 1.0)
    segs = np.stack([np.zeros_like(V), V], axis=1)
    colors = [matplotlib.colors.to_rgba(color, a) for a in alpha]
    raster = len(V) > RASTER_ABOVE
    ax.add_collection(LineCollection(list(segs), colors=colors, linewidths=1.2, rasterized=raster))
    ax.scatter(V[:, 0], V[:, 1], s=6, c=colors, zorder=3, rasterized=raster)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return lim


def vector_pair(
    axes, W: np.ndarray, H: np.ndarray, lim: float | None = None, label: str = ""
) -> None:
    """Features (columns of W (2, n)) on axes[0], training hidden vectors H (T, 2) on axes[1]."""
    vectors(axes[0], W.T, FEATURE_COLOR, lim, f"features (W columns){label}")
    vectors(axes[1], H, DATA_COLOR, lim, f"training hidden vectors{label}")


def save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{ext}" for ext in FORMATS]
    for p in paths:
        fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def dims_panel(ax_f, ax_d, fd: np.ndarray, dd: np.ndarray, m: int) -> None:
    """Feature dims sorted (blue) and data dims per point (red) with the m/T guide line."""
    T = len(dd)
    top = np.sort(fd)[::-1][: min(len(fd), 50)]
    ax_f.bar(np.arange(len(top)), top, color=FEATURE_COLOR)
    ax_f.set_xlabel("feature (sorted by dimensionality)")
    ax_f.set_ylabel("feature dimensionality $D_i$")
    ax_f.set_title(f"top {len(top)} of {len(fd)} features", fontsize=9)
    ax_d.scatter(np.arange(T), dd, s=8, color=DATA_COLOR, rasterized=T > RASTER_ABOVE)
    ax_d.axhline(m / T, color="k", ls="--", lw=1, label=f"m/T = {m / T:.3g}")
    ax_d.set_xlabel("training point t")
    ax_d.set_ylabel("data dimensionality $D_t$")
    ax_d.set_ylim(0, max(1.05 * float(dd.max(initial=0)), 1.2 * m / T))
    ax_d.legend(fontsize=8)


def plot_run(run, out: Path) -> list[Path]:
    """Write vectors.{png,svg} (m = 2 only) and dims.{png,svg} for a loaded run."""
    a, c = run.arrays, run.config
    title = f"T={c['train_size']}, n={c['features']}, S={c['sparsity']}, m={c['hidden']}"
    paths: list[Path] = []
    if c["hidden"] == 2:
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
        vector_pair(axes, a["W"], a["H_train"])
        fig.suptitle(title, fontsize=10)
        paths += save(fig, Path(out), "vectors")
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(9, 3.4))
    dims_panel(ax_f, ax_d, a["feature_dims"], a["data_dims"], c["hidden"])
    fig.suptitle(title, fontsize=10)
    paths += save(fig, Path(out), "dims")
    return paths
