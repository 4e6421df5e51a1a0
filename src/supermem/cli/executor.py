"""``--executor``, ``--address``, ``--no-shared-fs``: where ``sweep`` and ``reproduce`` train."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from supermem.cli.common import CLIError

if TYPE_CHECKING:  # importing executors imports torch: not for --help
    from supermem.sweeps.executors import Executor


def add_executor_flags(p) -> None:
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this machine (--workers processes); ray: Ray tasks, on a local Ray "
        "instance or the cluster at --address (pip install 'supermem[ray]'; docs/SWEEPS.md)",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: HOST:PORT of a running Ray cluster's head (`ray start "
        "--head`), or auto; default: start a local Ray instance",
    )
    p.add_argument(
        "--no-shared-fs",
        action="store_true",
        help="with --executor ray: workers send each run's files back and this process "
        "writes them (default: workers write into --out, mounted at the same path on every node)",
    )


def workers(args) -> int:
    """--workers checked (None: 1 locally, the cluster's CPUs on Ray); CLIError on bad flags."""
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.executor != "ray" and (args.address is not None or args.no_shared_fs):
        flag = "--address" if args.address is not None else "--no-shared-fs"
        raise CLIError(f"{flag} is for --executor ray")
    return args.workers or 1


def plan_workers(args) -> int:
    """The workers a ``--dry-run`` plans for: --workers, else what the sweep would start.
    Locally that is 1; a local Ray instance runs one task per CPU (each task 1 thread); a
    cluster's size is unknown without connecting, so plan 1 and say how to plan for it."""
    k = workers(args)
    if args.executor != "ray" or args.workers is not None:
        return k
    if args.address is None:
        return max(1, os.cpu_count() or 1)
    print(
        "supermem: planned for 1 worker; pass --workers N (the cluster's CPUs) to plan for "
        f"the cluster at {args.address}",
        file=sys.stderr,
    )
    return k


@contextlib.contextmanager
def open_executor(args) -> Iterator[Executor | None]:
    """The executor the flags ask for (None: run_sweep's local one); closed on the way out,
    Ctrl-C included, so no Ray task outlives the command."""
    if args.executor != "ray":
        yield None
        return
    from supermem.sweeps.ray_executor import NotSharedError, RayExecutor, RayUnavailableError

    try:
        ex = RayExecutor(args.address, workers=args.workers, shared_fs=not args.no_shared_fs)
    except RayUnavailableError as e:
        raise CLIError(str(e)) from None
    with ex:
        try:
            yield ex
        except NotSharedError as e:
            raise CLIError(f"{e} (--no-shared-fs)") from None
