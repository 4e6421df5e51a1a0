"""``supermem plot``: draw a saved run."""

from __future__ import annotations

from pathlib import Path

from supermem.cli.common import CLIError
from supermem.sweeps.checks import DamagedRunError


def register(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a run's vectors and dimensionalities",
        description="Draw W's columns and the training hidden vectors side by "
        "side (m = 2), and the feature and data dimensionalities.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--out", type=Path, default=None, help="figure folder (default RUN/figures)")
    p.set_defaults(func=run)


def run(args) -> int:
    from supermem.report.plots import plot_run
    from supermem.sweeps.store import load_run

    try:
        r = load_run(args.run)
    except (FileNotFoundError, DamagedRunError) as e:
        raise CLIError(str(e)) from None
    if r.status != "ok":
        raise CLIError(f"{args.run} has status {r.status}: nothing to draw")
    for path in plot_run(r, args.out or args.run / "figures"):
        print(path)
    return 0
