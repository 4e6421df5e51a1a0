"""``supermem reproduce``: run a paper recipe's sweeps, then draw, check and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from supermem.cli.common import CLIError, parse_int, progress_enabled
from supermem.sweeps.checks import DamagedRunError


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a paper figure: sweeps, figures, claims, HTML report",
        description="Run a recipe's sweeps into OUT/sweeps/<spec>/ (resumable: rerunning "
        "trains only what is missing), then write OUT/figures/, OUT/claims.json and "
        "OUT/report.html and print the claims. --list shows the recipes.",
    )
    p.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--scale", default="quick", help="quick, cpu or paper (default quick)")
    p.add_argument("--out", type=Path, help="output folder (created or resumed)")
    p.add_argument("--workers", type=parse_int, default=1, help="worker processes (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; train nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def list_recipes() -> int:
    from supermem.recipes import RECIPES

    for r in RECIPES.values():
        print(f"{r.name:12s} {r.title}\n{'':12s} {r.description}")
    return 0


def resolve(args):
    """(recipe, specs) for the arguments, or a one-line CLIError."""
    from supermem.recipes import RECIPES, SCALES

    if args.recipe not in RECIPES:
        raise CLIError(f"unknown recipe {args.recipe!r}; choose one of {', '.join(RECIPES)}")
    if args.scale not in SCALES:
        raise CLIError(f"unknown scale {args.scale!r}; choose one of {', '.join(SCALES)}")
    if args.out is None:
        raise CLIError("--out is required")
    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"{args.out} exists and is not a directory")
    recipe = RECIPES[args.recipe]
    return recipe, recipe.specs(args.scale)


def format_claims(claims) -> str:
    mark = {True: "yes", False: "NO ", None: " ? "}
    return "\n".join(
        f"[{mark[c.holds]}] {c.claim}\n       measured: {c.measured}\n       paper:    {c.paper}"
        for c in claims
    )


def run(args) -> int:
    if args.list:
        return list_recipes()
    if args.recipe is None:
        raise CLIError("name a recipe (or pass --list)")
    recipe, specs = resolve(args)
    from supermem.report.html import MANIFEST
    from supermem.sweeps.spec import SweepBusyError, plan, run_sweep
    from supermem.sweeps.store import provenance

    sweeps = args.out / "sweeps"
    if args.dry_run:
        for s in specs:
            print(f"{s.name}: {plan(s, sweeps / s.name, workers=args.workers)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"recipe": recipe.name, "scale": args.scale, "specs": [s.to_dict() for s in specs]}
    (args.out / MANIFEST).write_text(json.dumps({**manifest, **provenance()}, indent=2) + "\n")
    failed = 0
    for s in specs:
        try:
            summary = run_sweep(
                s, sweeps / s.name, workers=args.workers, progress=progress_enabled(args)
            )
        except SweepBusyError as e:
            raise CLIError(str(e)) from None
        print(summary)
        failed += len(summary.failed)
    return finish(recipe, specs, args.out, failed)


def finish(recipe, specs, out: Path, failed: int) -> int:
    """Figures, claims.json and report.html from the runs of ``specs`` in OUT/sweeps (not
    those of other scales or recipes run into the same OUT); print the claims."""
    from supermem.recipes import RecipeError, spec_runs
    from supermem.report.html import write_report

    try:  # run_sweep set damaged run dirs aside; one damaged since is named here
        everything = spec_runs(out, specs, ok_only=False)
    except DamagedRunError as e:
        raise CLIError(str(e)) from None
    runs = [r for r in everything if r.status == "ok"]
    if not runs:
        raise CLIError(f"{out}: no run finished ok; nothing to draw")
    try:
        figures = recipe.figures(runs, out / "figures")
        claims = recipe.claims(runs)
    except RecipeError as e:
        raise CLIError(f"{out}: {e}") from None
    (out / "claims.json").write_text(json.dumps([c.to_dict() for c in claims], indent=2) + "\n")
    report = write_report(out, recipe, runs=everything, claims=claims, figures=figures)
    print(format_claims(claims))
    print(f"figures: {out / 'figures'}\nreport:  {report}")
    if failed:  # crashed runs are retried by the next call; diverged ones are results
        print(f"supermem reproduce: {failed} run(s) failed; rerun to retry", file=sys.stderr)
    return 1 if failed else 0
