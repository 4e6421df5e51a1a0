"""``supermem explore``: a Panel page over a run, a sweep or a reproduce folder.

Panel (on Bokeh) because it is a maintained library whose every script and stylesheet,
Tabulator's included, ships inside the Python packages and is served by the same local
server: the page needs no internet (docs/EXPLORE.md; tests/test_explore_browser.py
checks that no request leaves the machine). Its Tabulator table filters and sorts in
the browser, and its widgets call back into Python, where a run's arrays are read only
once it is selected (``explorer_data``).

One ``Explorer`` per browser session; the folder is listed once, before serving.
"""

from __future__ import annotations

import contextlib
import functools
import html
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import ScientificFormatter

from supermem.report import explorer_plots as xp
from supermem.report.explorer_data import (
    METRIC_COLUMNS,
    Catalog,
    Frames,
    run_frames,
    t_walk,
    table_columns,
)
from supermem.report.plots import DATA_COLOR, FEATURE_COLOR
from supermem.sweeps.checks import DamagedRunError
from supermem.sweeps.store import load_run

CACHED_RUNS = 16  # runs whose frames stay in memory, shared by every session


@functools.lru_cache(maxsize=CACHED_RUNS)
def frames_of(path: str) -> Frames | None:
    """A run's frames, read from disk on first use; DamagedRunError if it is damaged."""
    run = load_run(path)
    return run_frames(run) if run.status == "ok" else None


class Explorer:
    """The page for one session: table, T slider, snapshot slider and player, figures."""

    def __init__(self, catalog: Catalog):
        self.catalog, self.rows = catalog, catalog.rows
        self.frames: Frames | None = None
        self.current, self.syncing = 0, False  # syncing: sliders being set by code
        self.walk: list[dict[str, Any]] = []
        self.table = self._table()
        self.t_slider = pn.widgets.DiscreteSlider(
            label="T", options=[0], width=420, css_classes=["sm-T"]
        )
        self.snap = pn.widgets.DiscreteSlider(
            label="snapshot", options={"step 0": 0}, width=420, css_classes=["sm-snapshot"]
        )
        self.player = pn.widgets.Player(
            label="play", start=0, end=1, interval=400, width=300, show_loop_controls=False
        )
        self.status = pn.pane.HTML("", css_classes=["sm-status"], width=900)
        self.w_fig, self.w_src = xp.vectors_figure("features (W columns)", FEATURE_COLOR)
        self.h_fig, self.h_src = xp.vectors_figure("training hidden vectors", DATA_COLOR)
        self.loss_fig, self.loss_src, self.loss_at = xp.loss_figure()
        self.fd_fig, self.fd_src = xp.feature_dims_figure()
        self.dd_fig, self.dd_src, self.dd_guide = xp.data_dims_figure()
        self.sweep_fig, self.sweep_here = xp.sweep_figure(self.rows)
        self.table.param.watch(self._on_select, "selection")
        self.t_slider.param.watch(self._on_T, "value")
        self.snap.param.watch(self._on_snap, "value")
        self.player.param.watch(lambda e: setattr(self.snap, "value", e.new), "value")
        first = next((i for i, r in enumerate(self.rows) if r["status"] == "ok"), 0)
        self.table.selection = [first]

    def _table(self) -> pn.widgets.Tabulator:
        frame = pd.DataFrame(self.rows, columns=table_columns(self.rows))
        sci = {k: ScientificFormatter(precision=3) for k in (*METRIC_COLUMNS, "max_D_i")}
        return pn.widgets.Tabulator(
            frame,
            header_filters={c: header_filter(frame[c]) for c in frame.columns},
            selectable=1,
            show_index=False,
            disabled=True,
            pagination="local",
            page_size=15,
            formatters=sci,
            css_classes=["sm-table"],
            sizing_mode="stretch_width",
        )

    def layout(self) -> pn.viewable.Viewable:
        c = self.catalog
        runs = f"{len(self.rows)} run" + ("s" if len(self.rows) > 1 else "")
        head = f"## supermem explore: {html.escape(str(c.root))}\n{c.kind}, {runs}"
        side = pn.Column(self.sweep_fig, self.t_slider) if c.kind != "run" else pn.Column()
        geometry = pn.Row(self.w_fig, self.h_fig, self.loss_fig, css_classes=["sm-geometry"])
        return pn.Column(
            pn.pane.Markdown(head),
            pn.Row(self.table, side),
            self.status,
            pn.Row(self.snap, self.player),
            geometry,
            pn.Row(self.fd_fig, self.dd_fig),
        )

    # -- callbacks ------------------------------------------------------------------
    # Tabulator's selection arrives without the Bokeh document lock, and the figures'
    # sources may only change under it: pn.state.execute schedules the change when needed.
    def _on_select(self, event) -> None:
        if event.new:
            pn.state.execute(
                functools.partial(self.select, self.table.value.index[event.new[0]]), schedule=True
            )

    def _on_snap(self, event) -> None:
        if not self.syncing:
            pn.state.execute(functools.partial(self.show_snapshot, event.new), schedule=True)

    def _on_T(self, event) -> None:
        if self.syncing:
            return
        at = [r["T"] for r in self.walk].index(event.new)
        target = self.rows.index(self.walk[at])
        if target != self.current:
            self.table.selection = [target]

    def select(self, i: int) -> None:
        """Show run i of the catalog: read its arrays, reset both sliders."""
        self.current, r = i, self.rows[i]
        self.walk = t_walk(self.rows, r)
        with self.sync():
            self.t_slider.options = [w["T"] for w in self.walk]
            self.t_slider.value = r["T"]
        self.sweep_here.data = {"T": [r["T"]], "loss": [r["test_loss"]]}
        try:
            self.frames = frames_of(r["path"])
        except (FileNotFoundError, DamagedRunError) as e:
            self.frames, problem = None, str(e)
        else:
            problem = f"status {r['status']}: nothing to draw"
        if self.frames is None:
            self.say(f"<b>{html.escape(r['run'])}</b>: {html.escape(problem)}")
            return self.clear()
        fr = self.frames
        xp.set_limits(self.w_fig, fr.lim)
        xp.set_limits(self.h_fig, fr.lim)
        self.loss_src.data = xp.loss_data(fr)
        self.dd_guide.location = fr.m / fr.T
        last = len(fr.steps) - 1
        with self.sync():
            self.snap.options = {f"step {s}": j for j, s in enumerate(fr.steps.tolist())}
            self.player.end = max(last, 1)
            self.snap.value = last
        self.show_snapshot(last)

    def show_snapshot(self, j: int) -> None:
        fr, r = self.frames, self.rows[self.current]
        if fr is None:
            return
        self.w_src.data, self.h_src.data = xp.geometry_data(fr, j)
        self.fd_src.data, self.dd_src.data = xp.dims_data(fr, j)
        self.loss_at.location = max(int(fr.steps[j]), 1)
        self.player.value = j
        view = "" if fr.m == 2 else f" (m = {fr.m}: projected on W's top-2 PCA plane)"
        self.say(
            f"<b>{html.escape(r['run'])}</b>: T = {r['T']}, m = {r['m']}, n = {r['n']}, "
            f"m/T = {r['m'] / r['T']:.3g}, test loss {r['test_loss']:.3g}; "
            f"snapshot {j + 1} of {len(fr.steps)}, step {int(fr.steps[j])}{view}"
        )

    def say(self, line: str) -> None:
        """The status line under the table (a div the browser test reads)."""
        self.status.object = f"<div class='sm-line'>{line}</div>"

    def clear(self) -> None:
        for src in (self.w_src, self.h_src, self.fd_src, self.dd_src, self.loss_src):
            src.data = {k: [] for k in src.data}
        with self.sync():
            self.snap.options = {"step 0": 0}

    @contextlib.contextmanager
    def sync(self) -> Iterator[None]:
        """Set widgets from code without their callbacks acting on it."""
        self.syncing = True
        try:
            yield
        finally:
            self.syncing = False


def header_filter(column: pd.Series) -> dict[str, Any]:
    """Tabulator header filters: a status menu, "at least" for numbers, substring else."""
    if column.name == "status":
        return {"type": "list", "valuesLookup": True, "placeholder": "any"}
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return {"type": "number", "func": ">=", "placeholder": ">="}
    return {"type": "input", "func": "like", "placeholder": "contains"}


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def free_port(host: str) -> int:
    """A port nobody listens on now at ``host`` (the OS picks it)."""
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def origins(host: str, port: int) -> list[str]:
    """The host:port names a browser may open the page's websocket from: the loopback
    names, and for another ``host`` also this machine's names."""
    names = {host, "127.0.0.1", "localhost"}
    if host not in LOOPBACK:
        names |= {socket.gethostname(), socket.getfqdn()}
    return [f"{h}:{port}" for h in sorted(names)]


def serve(catalog: Catalog, host: str = "127.0.0.1", port: int = 5006, show: bool = True) -> None:
    """Serve the page at http://HOST:PORT/ until interrupted (port 0: any free port).

    The URL is printed (flushed) before serving. The page's scripts come from this same
    server (Bokeh's and Panel's bundled static files), never from a CDN.
    """
    port = port or free_port(host)
    server = pn.serve(
        {"/": lambda: Explorer(catalog).layout()},
        port=port,
        address=host,
        websocket_origin=origins(host, port),
        show=False,
        start=False,
        title="supermem explore",
        verbose=False,  # we print the URL ourselves, first on stdout
    )
    url = f"http://{host}:{port}/"
    print(url, flush=True)
    if host not in LOOPBACK:
        print(f"warning: serving {catalog.root} to anyone who can reach {host}", file=sys.stderr)
    server.start()
    if show:
        server.io_loop.add_callback(server.show, "/")
    server.io_loop.start()
