"""``supermem report``: one self-contained HTML report for a reproduce or sweep folder."""

from __future__ import annotations

from pathlib import Path

from supermem.cli.common import CLIError
from supermem.sweeps.checks import DamagedRunError


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write DIR/report.html (claims, figures, tables, provenance)",
        description="Write one self-contained HTML report for a `supermem reproduce` "
        "output folder or a plain sweep folder (figures are redrawn into DIR/figures).",
    )
    p.add_argument("dir", type=Path, help="reproduce output folder or sweep folder")
    p.add_argument(
        "--recipe",
        default=None,
        help="recipe whose figures and claims to use (default: "
        "the one recorded by reproduce, else guessed from the runs)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from supermem.recipes import RECIPES, RecipeError
    from supermem.report.html import write_report

    if args.recipe is not None and args.recipe not in RECIPES:
        raise CLIError(f"unknown recipe {args.recipe!r}; choose one of {', '.join(RECIPES)}")
    if not args.dir.is_dir():
        raise CLIError(f"{args.dir}: no such folder")
    try:
        path = write_report(args.dir, args.recipe)
    except RecipeError as e:
        msg = str(e)
        raise CLIError(msg if msg.startswith(str(args.dir)) else f"{args.dir}: {msg}") from None
    except (FileNotFoundError, DamagedRunError) as e:
        raise CLIError(str(e)) from None
    print(path)
    return 0
