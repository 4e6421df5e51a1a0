"""``supermem explore``: serve an interactive page over a run, sweep or reproduce folder."""

from __future__ import annotations

from pathlib import Path

from supermem.cli.common import CLIError, parse_int
from supermem.sweeps.checks import DamagedRunError


def register(sub) -> None:
    p = sub.add_parser(
        "explore",
        help="serve a local page to browse runs: vectors, dims, loss, snapshot and T sliders",
        description="Serve a page over a run, sweep or reproduce folder: a table of runs to "
        "filter and sort; for the selected run W's columns and the training hidden vectors "
        "(a PCA plane for m > 2), dimensionalities and the loss curve; a slider over training "
        "snapshots and one over T. Everything is served locally (docs/EXPLORE.md).",
    )
    p.add_argument("dir", type=Path, help="run, sweep or reproduce folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=parse_int, default=5006, help="port (default 5006; 0: any free port)"
    )
    p.add_argument("--no-show", action="store_true", help="do not open a browser")
    p.set_defaults(func=run)


def run(args) -> int:
    from supermem.report.explorer_data import ExploreError, open_catalog

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    try:
        catalog = open_catalog(args.dir)
    except (ExploreError, FileNotFoundError, DamagedRunError) as e:
        raise CLIError(str(e)) from None
    try:
        from supermem.report.explorer import serve
    except ImportError as e:
        raise CLIError(
            f"explore needs Panel ({e.name} is missing): pip install 'supermem[explore]'"
        ) from None
    try:
        serve(catalog, args.host, args.port, show=not args.no_show)
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise CLIError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0
