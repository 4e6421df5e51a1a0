"""The ``supermem`` command: a thin layer over the Python API.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func``. Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys

from supermem import __version__
from supermem.cli import dims, explore, merge, plot, report, reproduce, results, sweep, train
from supermem.cli.common import CLIError, Parser

COMMANDS = [train, plot, sweep, results, merge, reproduce, report, dims, explore]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="supermem", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"supermem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for mod in COMMANDS:
        mod.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so it unwinds as Ctrl-C does (workers ended,
    temp dirs left hidden, nothing half-written visible)."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        before = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        before = None
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print(f"supermem {args.command}: terminated", file=sys.stderr)
        return 143
    except CLIError as e:
        print(f"supermem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (permissions, a file where a folder goes)
        print(f"supermem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"supermem {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
