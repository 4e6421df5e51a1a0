"""``supermem merge``: sweep folders trained apart, into one (``sweeps.merge``)."""

from __future__ import annotations

from pathlib import Path

from supermem.cli.common import CLIError


def register(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="copy the runs of sweep folders trained apart into one",
        description="Copy every finished run of each SRC (a sweep folder, or a `supermem "
        "reproduce` folder of the same recipe and scale) into --into and rebuild its index, "
        "so results, reports and reproduce see the whole grid. Runs already in --into are "
        "kept, never replaced; crash records are not copied. See docs/SWEEPS.md.",
    )
    p.add_argument("src", type=Path, nargs="+", help="folders to copy runs from (only read)")
    p.add_argument("--into", type=Path, required=True, help="folder to merge into (created)")
    p.add_argument("--dry-run", action="store_true", help="say what would be copied; copy nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    from supermem.sweeps.index import SweepBusyError
    from supermem.sweeps.merge import MergeError, merge

    try:
        report = merge(args.src, args.into, dry_run=args.dry_run)
    except (MergeError, SweepBusyError) as e:
        raise CLIError(str(e)) from None
    print(("would merge (dry run):\n" if args.dry_run else "") + str(report))
    return 0
