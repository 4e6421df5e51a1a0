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
        help="recipe whose figures and claims to use, real-network ones too (default: "
        "the one recorded by reproduce, else guessed from the runs)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from supermem.real.mnist import MnistError
    from supermem.recipes import REAL_RECIPES, RECIPES, RecipeError
    from supermem.report.html import write_report

    if args.recipe is not None and args.recipe not in (*RECIPES, *REAL_RECIPES):
        names = ", ".join([*RECIPES, *REAL_RECIPES])
        raise CLIError(f"unknown recipe {args.recipe!r}; choose one of {names}")
    if not args.dir.is_dir():
        raise CLIError(f"{args.dir}: no such folder")
    try:
        real = real_recipe(args)
        if real is not None:  # redrawn from its saved runs; the report sits in DIR
            real.report(args.dir)
            path = args.dir / "report.html"
        else:
            path = write_report(args.dir, args.recipe)
    except (RecipeError, MnistError) as e:
        msg = str(e)
        raise CLIError(msg if msg.startswith(str(args.dir)) else f"{args.dir}: {msg}") from None
    except (FileNotFoundError, DamagedRunError) as e:
        raise CLIError(str(e)) from None
    print(path)
    return 0


def real_recipe(args):
    """The real-network recipe (``REAL_RECIPES``) named or recorded in DIR, else None."""
    from supermem.recipes import REAL_RECIPES
    from supermem.recipes.real import read_manifest

    name = args.recipe if args.recipe is not None else read_manifest(args.dir).get("recipe")
    return REAL_RECIPES.get(name) if isinstance(name, str) else None
