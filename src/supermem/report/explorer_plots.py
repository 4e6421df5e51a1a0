"""The explorer's Bokeh figures, and the source data each shows for one snapshot.

Each ``*_figure`` returns the figure and the ``ColumnDataSource`` (or span) the page
updates; each ``*_data`` is a pure function of ``explorer_data.Frames`` and a snapshot
index j giving that source's columns. Colours are the paper's (``report.plots``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource
from bokeh.models.annotations import Span
from bokeh.plotting import figure

from supermem.report.explorer_data import Frames
from supermem.report.plots import DATA_COLOR, FEATURE_COLOR

TOP_FEATURES = 50  # feature dims drawn per snapshot (the largest ones)
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _fig(title: str, **kw: Any):
    f = figure(title=title, tools=TOOLS, **{"width": 330, "height": 330, **kw})
    f.toolbar.logo = None
    return f


def vectors_figure(title: str, color: str) -> tuple[Any, ColumnDataSource]:
    """Vectors as segments from the origin, tips dotted; alpha grows with the norm."""
    f = _fig(title, match_aspect=True)
    src = ColumnDataSource(vectors_data(np.zeros((0, 2))))
    f.segment(0, 0, "x", "y", source=src, line_color=color, line_alpha="alpha", line_width=1.5)
    f.scatter("x", "y", source=src, color=color, alpha="alpha", size=4)
    return f, src


def vectors_data(V: np.ndarray) -> dict[str, np.ndarray]:
    """(k, 2) vectors -> columns x, y, alpha (norm over the largest, floored at 0.08)."""
    norms = np.linalg.norm(V, axis=1)
    alpha = np.clip(norms / max(float(norms.max(initial=0.0)), 1e-12), 0.08, 1.0)
    return {"x": V[:, 0], "y": V[:, 1], "alpha": alpha}


def set_limits(fig, lim: float) -> None:
    fig.x_range.start, fig.x_range.end = -lim, lim
    fig.y_range.start, fig.y_range.end = -lim, lim


def geometry_data(fr: Frames, j: int) -> tuple[dict, dict]:
    """Snapshot j's feature vectors (W columns, n) and hidden vectors (T), in the plane."""
    return vectors_data(fr.W2[j].T), vectors_data(fr.H2[j])


def feature_dims_figure() -> tuple[Any, ColumnDataSource]:
    f = _fig(f"feature dimensionality D_i (top {TOP_FEATURES})", width=420, height=260)
    src = ColumnDataSource({"rank": np.zeros(0), "D": np.zeros(0)})
    f.vbar("rank", top="D", width=0.8, source=src, color=FEATURE_COLOR)
    f.xaxis.axis_label, f.yaxis.axis_label = "feature (sorted)", "D_i"
    return f, src


def data_dims_figure() -> tuple[Any, ColumnDataSource, Span]:
    """Per-point D_t, with a dashed line at m/T (where every point shares the m dims)."""
    f = _fig("data dimensionality D_t (dashed: m/T)", width=420, height=260)
    src = ColumnDataSource({"t": np.zeros(0), "D": np.zeros(0)})
    f.scatter("t", "D", source=src, color=DATA_COLOR, size=5)
    guide = Span(location=0, dimension="width", line_dash="dashed", line_color="black")
    f.add_layout(guide)
    f.xaxis.axis_label, f.yaxis.axis_label = "training point t", "D_t"
    return f, src, guide


def dims_data(fr: Frames, j: int) -> tuple[dict, dict]:
    """Snapshot j's top feature dims, descending, and each drawn point's data dim."""
    top = np.sort(fr.feature_dims[j])[::-1][:TOP_FEATURES]
    return {"rank": np.arange(top.size), "D": top}, {"t": fr.points, "D": fr.data_dims[j]}


def loss_figure() -> tuple[Any, ColumnDataSource, Span]:
    """The training loss against step (log-log), a vertical line at the snapshot shown."""
    f = _fig("training loss", width=330, height=330, x_axis_type="log", y_axis_type="log")
    src = ColumnDataSource({"step": np.zeros(0), "loss": np.zeros(0)})
    f.line("step", "loss", source=src, color="black")
    at = Span(location=1, dimension="height", line_color=DATA_COLOR, line_width=2)
    f.add_layout(at)
    f.xaxis.axis_label = "step"
    return f, src, at


def loss_data(fr: Frames) -> dict[str, np.ndarray]:
    """The loss curve without step 0 and non-positive losses (log axes)."""
    keep = (fr.loss_steps > 0) & (fr.loss > 0)
    return {"step": fr.loss_steps[keep], "loss": fr.loss[keep]}


def sweep_figure(rows: list[dict]) -> tuple[Any, ColumnDataSource]:
    """Test loss of every ok run against T (the double descent), current T highlighted."""
    ok = [r for r in rows if r["status"] == "ok" and r["test_loss"] > 0]
    kw = {"x_axis_type": "log", "y_axis_type": "log"}
    f = _fig("test loss across the sweep", width=420, height=300, **kw)
    T = np.array([r["T"] for r in ok], float)
    f.scatter(T, [r["test_loss"] for r in ok], color="gray", alpha=0.6, size=5)
    here = ColumnDataSource({"T": np.zeros(0), "loss": np.zeros(0)})
    f.scatter("T", "loss", source=here, color=DATA_COLOR, size=12, marker="diamond")
    f.xaxis.axis_label, f.yaxis.axis_label = "training set size T", "test loss"
    return f, here
