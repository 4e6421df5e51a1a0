"""``supermem sweep``: train a grid of configs into one resumable sweep directory."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from supermem.cli.common import CLIError, check_runnable, parse_int, progress_enabled
from supermem.cli.executor import add_executor_flags, open_executor, plan_workers, workers
from supermem.config import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every config of a sweep spec (resumable)",
        description="Train the grid of a TOML sweep spec ([fixed] and [axes] tables) into "
        "--out. Finished runs are kept; running again trains only what is missing. "
        "See docs/SWEEPS.md.",
    )
    p.add_argument("spec", type=Path, help="sweep spec (TOML)")
    p.add_argument("--out", type=Path, required=True, help="sweep directory (created or resumed)")
    p.add_argument(
        "--workers",
        type=parse_int,
        help="worker processes (default 1); with --executor ray, most tasks at once (default: all)",
    )
    add_executor_flags(p)
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan; train and create nothing"
    )
    p.add_argument("--no-batch", action="store_true", help="one train_many call per config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_spec(path: Path):
    from supermem.sweeps.spec import SweepSpec

    try:
        spec = SweepSpec.from_toml(path)
        spec.configs()  # validate every grid point before anything is created
    except FileNotFoundError:
        raise CLIError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise CLIError(f"{path}: is a directory, not a spec file") from None
    except OSError as e:
        raise CLIError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not UTF-8 text (a TOML spec is expected)") from None
    except tomllib.TOMLDecodeError as e:
        raise CLIError(f"{path}: not valid TOML: {e}") from None
    except ConfigError as e:
        raise CLIError(f"{path}: {e}") from None
    return spec


def run(args) -> int:
    from supermem.sweeps.cost import plan
    from supermem.sweeps.index import SweepBusyError
    from supermem.sweeps.run import run_sweep

    spec = load_spec(args.spec)
    k = workers(args)
    check_runnable([(spec, args.out)], args)
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"{args.out} exists and is not a directory")
    if args.dry_run:
        local = args.executor != "ray"  # local workers take up freed cores; Ray's do not
        k = plan_workers(args)
        print(plan(spec, args.out, workers=k, batch=not args.no_batch, elastic=local))
        return 0
    try:
        with open_executor(args) as executor:
            summary = run_sweep(
                spec,
                args.out,
                workers=k,
                executor=executor,
                progress=progress_enabled(args),
                batch=not args.no_batch,
            )
    except SweepBusyError as e:
        raise CLIError(str(e)) from None
    print(summary)
    if summary.failed:  # diverged runs are results; crashes need a look (and are retried)
        print(
            f"supermem sweep: {len(summary.failed)} run(s) failed; rerun to retry", file=sys.stderr
        )
        return 1
    return 0
