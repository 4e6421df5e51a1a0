"""``supermem results``: a sweep directory as a table (and a CSV)."""

from __future__ import annotations

from pathlib import Path

from supermem.cli.common import CLIError
from supermem.sweeps.checks import DamagedRunError

METRICS = ["status", "train_loss", "test_loss", "W_norm", "b_norm"]


def register(sub) -> None:
    p = sub.add_parser(
        "results",
        help="tabulate a sweep's runs",
        description="Print one row per run of a sweep directory: the config fields that "
        "vary across its runs, then status and the main metrics. --csv writes every column.",
    )
    p.add_argument("dir", type=Path, help="sweep directory")
    p.add_argument("--csv", type=Path, default=None, help="write all columns to this CSV file")
    p.add_argument("--columns", nargs="+", default=None, help="columns to print instead")
    p.set_defaults(func=run)


def default_columns(frame) -> list[str]:
    """The sweep's axes (config fields with more than one value), then the metrics."""
    from supermem.config import TrainConfig

    axes = [f for f in TrainConfig.__dataclass_fields__ if frame[f].nunique(dropna=False) > 1]
    return axes + [c for c in METRICS if c in frame.columns]


def run(args) -> int:
    import pandas as pd

    from supermem.sweeps.index import sweep_frame

    try:
        frame = sweep_frame(args.dir)
    except (FileNotFoundError, DamagedRunError) as e:
        raise CLIError(str(e)) from None
    cols = args.columns or default_columns(frame)
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise CLIError(f"unknown column(s) {', '.join(missing)}; have {', '.join(frame.columns)}")
    if args.csv is not None:
        try:
            frame.to_csv(args.csv, index=False)
        except OSError as e:
            raise CLIError(f"{args.csv}: cannot write: {e.strerror or e}") from None
    if not len(frame):
        print(f"{args.dir}: no runs yet")
        return 0
    axes = [c for c in default_columns(frame) if c not in METRICS and c in cols]
    shown = frame.sort_values(axes, ignore_index=True) if axes else frame
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(shown[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
