"""``supermem reproduce``: run a paper recipe's sweeps, then draw, check and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from supermem.cli.common import (
    CLIError,
    check_runnable,
    parse_assignment,
    parse_int,
    progress_enabled,
)
from supermem.cli.executor import add_executor_flags, open_executor, plan_workers, workers
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
    p.add_argument(
        "--scale", default="quick", help="a scale of the recipe (see --list; default quick)"
    )
    p.add_argument("--out", type=Path, help="output folder (created or resumed)")
    p.add_argument(
        "--workers",
        type=parse_int,
        help="worker processes (default 1); with --executor ray, most tasks at once (default: all)",
    )
    add_executor_flags(p)
    p.add_argument(
        "--specs",
        help="run only these of the recipe's sweeps (comma-separated names, as --dry-run "
        "prints them); the figures and claims cover every run of the recipe in OUT so far",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="run only the configs whose TrainConfig FIELD is one of the values, e.g. "
        "--only train_size=1800,4200 (repeatable, one field each; a value no run has is "
        "refused; a later call without it trains the rest)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="train every run of the recipe with this TrainConfig field changed, e.g. "
        "--set adam_eps=1e-5 (repeatable; not an axis of the recipe's grid; recorded in "
        "OUT/reproduce.json, and an OUT trained with other --set values is refused)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; train nothing")
    p.add_argument(
        "--data", type=Path, help="real-network recipes: folder of the four MNIST IDX files"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def list_recipes() -> int:
    from supermem.recipes import REAL_RECIPES, RECIPES

    for r in RECIPES.values():
        print(f"{r.name:12s} {r.title}\n{'':12s} {r.description}")
    for q in REAL_RECIPES.values():  # they train their own models; scales of their own
        scales = ", ".join(q.scales)
        print(f"{q.name:12s} {q.title}\n{'':12s} {q.description} (scales: {scales})")
    return 0


def check_args(args, scales) -> None:
    """The arguments every recipe checks: a known scale, an --out folder, --workers."""
    if args.scale not in scales:
        raise CLIError(f"unknown scale {args.scale!r}; choose one of {', '.join(scales)}")
    if args.out is None:
        raise CLIError("--out is required")
    workers(args)
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"{args.out} exists and is not a directory")


def resolve(args):
    """(recipe, whole, specs, changes) for the arguments, or a one-line CLIError: the
    recipe's specs at the scale with ``--set``'s changes, the part of them --specs / --only
    select, and the changes (field -> value)."""
    from supermem.config import ConfigError
    from supermem.recipes import REAL_RECIPES, RECIPES, SCALES

    if args.recipe not in RECIPES:
        names = ", ".join([*RECIPES, *REAL_RECIPES])
        raise CLIError(f"unknown recipe {args.recipe!r}; choose one of {names}")
    check_args(args, SCALES)
    if args.data is not None:
        raise CLIError(f"--data is for the real-network recipes; {args.recipe} makes its data")
    recipe = RECIPES[args.recipe]
    whole = recipe.specs(args.scale)
    changes = set_changes(args.set, whole)
    if changes:
        try:
            whole = [s.with_fixed(changes) for s in whole]
            for s in whole:
                s.configs()  # a value TrainConfig refuses is named here, before any write
        except ConfigError as e:
            raise CLIError(f"--set: {e}") from None
    check_set(args.out, recipe.name, args.scale, changes)
    return recipe, whole, select(whole, args.specs, args.only), changes


# Fields --set does not take: a run to start from is one run's, not a grid's setting.
NOT_SETTABLE = ("init_from",)


def set_changes(texts: list[str], specs: list) -> dict:
    """``--set`` values (field -> value) for the recipe's ``specs``, or a one-line CLIError:
    a field twice, one --set does not take, or one the recipe's own sweeps differ in (its
    variants: setting it would make them one) is refused; a value every run already has
    changes nothing and is dropped, so such a call resumes the plain grid."""
    from supermem.config import TrainConfig

    changes: dict = {}
    for text in texts:
        field, value = parse_assignment(TrainConfig, text)
        if field in changes:
            raise CLIError(f"--set {text!r}: {field} is set twice")
        if field in NOT_SETTABLE:
            raise CLIError(f"--set {text!r}: {field} is set per run, not for a recipe's grid")
        changes[field] = value
    cfgs = [c for s in specs for c in s.configs()]
    for field in list(changes):
        had = {getattr(c, field) for c in cfgs}
        if any(field in s.axes for s in specs):
            continue  # SweepSpec.with_fixed names the axis
        if len(had) > 1:
            values = ", ".join(map(str, _sorted(had)))
            raise CLIError(
                f"--set {field}: the recipe's sweeps differ in it ({values}); it is what "
                "they compare, not a setting to change"
            )
        if had == {changes[field]}:
            del changes[field]
    return changes


def check_set(out: Path, recipe: str, scale: str, changes: dict) -> None:
    """CLIError if OUT holds runs of this recipe at this scale trained with other ``--set``
    values (reproduce.json's ``sets``, one entry per scale): one folder, one grid."""
    man = manifest(out)
    if man.get("recipe") != recipe:
        return
    from supermem.sweeps.manifest import show_sets

    had = recorded_sets(man, out).get(scale, {})
    if had != changes and any_runs(out):
        raise CLIError(
            f"{out} holds {recipe} at scale {scale} trained with {show_sets(had) or 'no --set'}; "
            "run with the same, or choose another --out"
        )


def manifest(out: Path) -> dict:
    """OUT/reproduce.json ({} when there is none), or a one-line CLIError."""
    from supermem.recipes import RecipeError
    from supermem.recipes.real import read_manifest

    try:
        return read_manifest(out) if out.is_dir() else {}
    except RecipeError as e:
        raise CLIError(str(e)) from None


def recorded_sets(man: dict, out: Path) -> dict:
    """reproduce.json's ``--set`` values per scale ({} where none), or a one-line CLIError."""
    from supermem.sweeps.manifest import ManifestError
    from supermem.sweeps.manifest import recorded_sets as read_sets

    try:
        return read_sets(man, out)
    except ManifestError as e:
        raise CLIError(str(e)) from None


def any_runs(out: Path) -> bool:
    """Whether OUT/sweeps holds a finished run (a call that trained nothing binds nothing)."""
    from supermem.sweeps.index import done_keys, is_sweep_dir

    sweeps = out / "sweeps"
    return sweeps.is_dir() and any(
        is_sweep_dir(d) and done_keys(d) for d in sweeps.iterdir() if d.is_dir()
    )


def select(specs: list, names: str | None, only: list[str]) -> list:
    """The specs named in ``names`` (all if None), each restricted by ``only``'s
    FIELD=V1,V2 filters; a one-line CLIError if a name or field is unknown or nothing is left."""
    from supermem.config import ConfigError

    if names is not None:
        want = [x.strip() for x in names.split(",") if x.strip()]
        unknown = [x for x in want if x not in {s.name for s in specs}]
        if unknown or not want:
            raise CLIError(
                f"--specs: unknown sweep(s) {', '.join(unknown) or repr(names)}; this recipe "
                f"and scale have {', '.join(s.name for s in specs)}"
            )
        specs = [s for s in specs if s.name in want]
    for f in only:
        field, eq, values = f.partition("=")
        field = field.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not field or not vals:
            raise CLIError(f"--only {f!r}: expected FIELD=V1,V2,... (e.g. train_size=1800)")
        if any("=" in v for v in vals):
            raise CLIError(
                f"--only {f!r}: one field per --only (e.g. --only hidden=2 --only train_size=30)"
            )
        try:
            # a value that matches no run is a typo, not a filter: say so rather than drop it
            missing = [v for v in vals if all(s.restrict(field, [v]) is None for s in specs)]
            if missing:
                have = _sorted({getattr(c, field) for s in specs for c in s.configs()})
                raise CLIError(
                    f"--only {f!r}: no run of the selected sweeps has {field} "
                    f"{', '.join(missing)} (they have {', '.join(map(str, have))})"
                )
            specs = [r for s in specs if (r := s.restrict(field, vals)) is not None]
        except ConfigError as e:
            raise CLIError(f"--only {f!r}: {e}") from None
    if not specs:
        raise CLIError("--specs / --only leave no run to train")
    return specs


def _sorted(values: set) -> list:
    """Numbers in numeric order, anything else (strings, None) by its text."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def run_real(args) -> int:
    """A recipe that trains its own models (``REAL_RECIPES``): train what is missing, then
    figures, claims.json and report.html; print the claims."""
    from supermem.real.mnist import MnistError
    from supermem.recipes import REAL_RECIPES, RecipeError

    recipe = REAL_RECIPES[args.recipe]
    check_args(args, recipe.scales)
    if args.set:
        raise CLIError(f"recipe {recipe.name} trains its own models, not TrainConfigs; drop --set")
    if args.workers not in (None, 1) or args.executor != "local":
        flag = "--workers" if args.workers not in (None, 1) else "--executor"
        raise CLIError(f"recipe {recipe.name} trains in one process; drop {flag}")
    if args.data is not None and not args.data.is_dir():
        raise CLIError(f"--data {args.data}: no such folder")
    try:
        claims = recipe.reproduce(
            args.out, args.scale, args.data, args.dry_run, progress_enabled(args)
        )
    except (MnistError, RecipeError) as e:
        raise CLIError(str(e)) from None
    if not args.dry_run:
        print(format_claims(claims))
        print(f"figures: {args.out / 'figures'}\nreport:  {args.out / 'report.html'}")
    return 0


def read_manifest_recipe(out: Path):
    """The recipe recorded in OUT/reproduce.json, or None."""
    from supermem.recipes import RecipeError
    from supermem.recipes.real import read_manifest

    try:
        return read_manifest(out).get("recipe")
    except RecipeError as e:
        raise CLIError(str(e)) from None


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
    from supermem.recipes import REAL_RECIPES

    if args.recipe in REAL_RECIPES:
        return run_real(args)
    recipe, whole, specs, changes = resolve(args)  # whole: what --specs / --only select from
    check_runnable([(s, args.out / "sweeps" / s.name) for s in specs], args)
    from supermem.sweeps.cost import plan, total
    from supermem.sweeps.index import SweepBusyError
    from supermem.sweeps.manifest import MANIFEST
    from supermem.sweeps.run import run_sweep
    from supermem.sweeps.store import provenance

    sweeps = args.out / "sweeps"
    if args.dry_run:
        others = tuple(sweeps / w.name for w in whole)  # calibrate a sweep with no runs yet
        local = args.executor != "ray"  # local workers take up freed cores; Ray's do not
        k = plan_workers(args)
        plans = [plan(s, sweeps / s.name, workers=k, siblings=others, elastic=local) for s in specs]
        for s, p in zip(specs, plans):
            print(f"{s.name}: {p}")
        if len(plans) > 1:
            print(f"total: {total(plans)}")
        return 0
    if (old := read_manifest_recipe(args.out)) in REAL_RECIPES:
        raise CLIError(f"{args.out} holds the outputs of recipe {old!r}; choose another --out")
    record = {"recipe": recipe.name, "scale": args.scale, "specs": [s.to_dict() for s in whole]}
    before = manifest(args.out)  # --set values of the recipe's other scales are kept
    sets = recorded_sets(before, args.out) if before.get("recipe") == recipe.name else {}
    sets = {k: v for k, v in {**sets, args.scale: changes}.items() if v}
    if sets:
        record["sets"] = sets
    failed = 0
    with open_executor(args) as ex:  # first: a bad --address exits 2 with nothing created
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / MANIFEST).write_text(json.dumps({**record, **provenance()}, indent=2) + "\n")
        for s in specs:  # one Ray instance for all the recipe's sweeps
            try:
                summary = run_sweep(
                    s,
                    sweeps / s.name,
                    workers=workers(args),
                    executor=ex,
                    progress=progress_enabled(args),
                )
            except SweepBusyError as e:
                raise CLIError(str(e)) from None
            print(summary)
            failed += len(summary.failed)
    return finish(recipe, whole, args.out, failed)  # every run so far, filtered or not


def finish(recipe, specs, out: Path, failed: int) -> int:
    """Figures, claims.json and report.html from the runs of ``specs`` in OUT/sweeps (not
    those of other scales or recipes run into the same OUT; those trained so far, when a
    part was run with --specs / --only); print the claims."""
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
