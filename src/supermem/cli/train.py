"""``supermem train``: train one model and write its run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supermem.cli.common import (
    CLIError,
    add_dataclass_flags,
    check_out,
    config_from_args,
    progress_enabled,
)
from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.checks import DamagedRunError

if TYPE_CHECKING:
    from supermem.toy.checkpoint import Info


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one toy model and save it",
        description="Train one toy model (paper defaults) and save a run directory.",
    )
    add_dataclass_flags(p, TrainConfig)
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="save the training state beside --out this often (default 600; 0: every 100 "
        "steps; -1: never); the same command then resumes a stopped run with the same numbers",
    )
    p.set_defaults(func=run)


def checkpoint_dir(out: Path) -> Path:
    """Where ``supermem train --out OUT`` keeps its checkpoint: a hidden sibling of OUT."""
    return out.parent / f".{out.name}.checkpoint"


def run(args) -> int:
    from supermem.api import train
    from supermem.sweeps.store import save_run

    cfg = config_from_args(TrainConfig, args)
    check_out(args.out, args.overwrite)
    if cfg.init_from is not None:
        from supermem.sweeps.store import load_run

        try:
            status = load_run(cfg.init_from).status
        except FileNotFoundError:
            raise CLIError(f"--init-from {cfg.init_from}: not a run directory") from None
        except DamagedRunError as e:
            raise CLIError(f"--init-from: {e}") from None
        if status != "ok":
            raise CLIError(f"--init-from {cfg.init_from}: run has status {status}, no weights")
    from supermem.toy import checkpoint as ckpt

    ck = checkpoint_dir(args.out) if args.checkpoint_every >= 0 else None
    if ck is not None:
        try:
            found = ckpt.info(ck, [cfg])
        except ConfigError as e:
            if not args.overwrite:
                raise CLIError(f"{e}; remove it or pass --overwrite") from None
            ckpt.remove(ck)
            found = None
        if found is not None:
            print(f"supermem train: resuming from step {found.step:,} ({ck})", file=sys.stderr)
            for warning in _resume_warnings(found):
                print(f"supermem train: warning: {warning}", file=sys.stderr)
    try:
        result = train(cfg, progress_enabled(args), ck, max(args.checkpoint_every, 0.0))
    except ConfigError as e:
        raise CLIError(str(e)) from None
    path = save_run(result, args.out, overwrite=args.overwrite)
    if ck is not None:
        ckpt.remove(ck)
    if result.diverged:
        print(
            f"supermem train: run diverged at step {result.diverged_step}; recorded in {path}",
            file=sys.stderr,
        )
        return 1
    print(f"{path}: train_loss={result.train_loss:.4g} test_loss={result.test_loss:.4g}")
    return 0


def _resume_warnings(found: Info) -> list[str]:
    """Why a resumed run may not give one run's numbers: its earlier segments ran other
    source, or kernels compiled for another CPU target or with other features."""
    from supermem.provenance import cpu_features, cpu_target, git_commit

    out = []
    if any(c != git_commit() for c in found.commits):
        out.append(
            f"earlier segments ran other source ({', '.join(map(str, found.commits))}; "
            f"now {git_commit()}): the numbers equal one run's only where the engine's "
            "code is the same"
        )
    if any(t is not None and t != cpu_target() for t in found.targets):
        out.append(
            f"earlier segments ran on another CPU target ({', '.join(map(str, found.targets))}; "
            f"now {cpu_target()}): the numbers equal one run's only on the same target"
        )
    elif any(f is not None and f != cpu_features() for f in found.features):
        out.append(
            f"earlier segments ran on the CPU target {cpu_target()} with other features "
            "(see cpu_features): the numbers equal one run's only with the same features"
        )
    return out
