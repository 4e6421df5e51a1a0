"""Shared CLI pieces: a parser whose errors are one line, and flags made from dataclasses."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, NoReturn

from supermem.config import ConfigError


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_int(s: str) -> int:
    try:
        v = float(s) if any(c in s.lower() for c in ".e") else int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if not math.isfinite(v) or v != int(v):
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}")
    return int(v)


def parse_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"not a finite number: {s!r}")
    return v


_TYPES: dict[str, Callable[[str], Any]] = {
    "int": parse_int,
    "int | None": parse_int,
    "float": parse_float,
    "str": str,
    "str | None": str,
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field, named after it, with the field's help and default."""
    for f in fields(cls):
        if f.name in skip:
            continue
        default = None if f.default is MISSING else f.default
        parser.add_argument(
            flag(f.name),
            dest=f.name,
            type=_TYPES[str(f.type)],  # a string: config.py postpones annotations
            default=default,
            choices=f.metadata.get("choices"),
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} (default: {default})",
        )


def parse_assignment(cls, text: str, option: str = "--set") -> tuple[str, Any]:
    """``FIELD=VALUE`` for a field of dataclass ``cls`` -> (field, value), the value parsed
    as the field's own flag parses it (add_dataclass_flags); CLIError names the problem."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    known = {f.name: f for f in fields(cls)}
    if not sep or not name:
        raise CLIError(f"{option} {text!r}: expected FIELD=VALUE (e.g. adam_eps=1e-5)")
    if name not in known:
        raise CLIError(f"{option} {text!r}: unknown {cls.__name__} field {name!r}")
    f = known[name]
    try:
        v = _TYPES[str(f.type)](value)
    except argparse.ArgumentTypeError as e:
        raise CLIError(f"{option} {text!r}: {e}") from None
    choices = f.metadata.get("choices")
    if choices and v not in choices:
        raise CLIError(f"{option} {text!r}: choose {name} from {', '.join(map(str, choices))}")
    return name, v


def config_from_args(cls, args: argparse.Namespace):
    try:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
    except ConfigError as e:
        raise CLIError(str(e)) from None


def check_runnable(specs_in: list[tuple[Any, Path]], args: argparse.Namespace) -> None:
    """Before any work, for the runs of each (spec, its OUT) still to train (a finished
    run is never trained again, so runs trained on a GPU elsewhere may be re-reported
    here): a device they ask for that this machine lacks (``device = "cuda"`` without
    CUDA), or an engine that cannot train a run's model, loss or device (``engine =
    "cuda"`` on a CPU, ``fast`` or ``chunked`` for the untied model, ``fast`` with loss l1
    for it), or a run that alone needs more memory than is available now
    (``toy.memory.check_memory``; a batch of runs needs more, checked as it starts), is
    one line, not a failure per run after the folder is made. Checked as
    ``train`` resolves them (float64 on the reference engine), without data, the cuda
    engine's self-check per hidden size, or a checkpoint's engine (a run resumed under
    ``auto`` goes on on the engine that began it, checked when it resumes). For a Ray
    cluster at ``--address``, whose workers may have the GPUs and memory this machine has
    not, only what no worker could train (``fast`` for the untied model, ``engine =
    "cuda"`` with ``device = "cpu"``) is refused (a local Ray instance runs here, and is
    checked in full)."""
    cluster = getattr(args, "executor", "local") == "ray" and getattr(args, "address", None)
    from supermem.sweeps.cost import engine_used
    from supermem.sweeps.index import config_key, done_keys
    from supermem.toy.engines import get_engine, named_engine, resolve_device
    from supermem.toy.memory import check_memory
    from supermem.toy.model import get_model

    cfgs = []
    for spec, out in specs_in:
        done = done_keys(out) if out.is_dir() else set()
        cfgs += [c for c in spec.configs() if config_key(c) not in done]
    kinds = {(named_engine(c), c.model, c.loss, c.device) for c in cfgs}
    if cluster:
        for kind in sorted(kinds):
            _on_some_device(*kind)
        return
    try:
        for device in sorted({c.device for c in cfgs}):  # one line per missing device
            resolve_device(device)
        for engine, model, loss, device in sorted(kinds):
            get_engine(engine, get_model(model), resolve_device(device), loss=loss)
        for c in {c: None for c in cfgs}:  # each alone: a batch only needs more
            check_memory(c, c.restarts, engine_used(c), device=resolve_device(c.device).type)
    except ConfigError as e:
        raise CLIError(str(e)) from None


def _on_some_device(engine: str, model: str, loss: str, device: str) -> None:
    """CLIError unless ``engine`` trains ``model`` with ``loss`` on some device ``device``
    may be on a cluster's worker (``auto``: the CPU or a GPU), by device type only: this
    machine need not have the GPU (nor Triton, so ``engine = "cuda"`` on a GPU passes)."""
    import torch

    from supermem.toy.engines import get_engine
    from supermem.toy.model import get_model

    kinds = ("cpu", "cuda") if device == "auto" else (torch.device(device).type,)
    if engine == "auto" or (engine == "cuda" and "cuda" in kinds):
        return
    errors = []
    for kind in kinds:
        try:
            get_engine(engine, get_model(model), torch.device(kind), loss=loss)
            return
        except ConfigError as e:
            errors.append(str(e))
    raise CLIError(f"no worker could train these runs: {'; nor: '.join(errors)}")


def check_out(out: Path, overwrite: bool) -> None:
    """Before any work: ``out`` may be written (a missing or replaceable run directory)."""
    from supermem.sweeps.store import RunExistsError, check_replaceable

    try:
        check_replaceable(out, overwrite)
    except RunExistsError as e:
        raise CLIError(str(e)) from None
    check_writable(out)


def check_writable(out: Path) -> None:
    """The nearest existing ancestor of ``out`` is a writable directory."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot create {out}: {parent} is not a writable directory")


def progress_enabled(args) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()
