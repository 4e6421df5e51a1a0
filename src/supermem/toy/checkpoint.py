"""Checkpoints of a training call in flight, so a stopped run resumes bit for bit.

A 50,000-step model at T = 10^6 trains for hours; a sweep of them for days. Every
``every`` seconds (at a finiteness check, every ``CHECK_EVERY`` steps) ``train_many``
writes what the next step depends on into a directory: the parameters, the optimiser's
moments, the loss history, the snapshots taken, the divergence record and what the
engine carries from step to step (the tree engine's point order and rebuild
bookkeeping). Everything else (data, prepared arrays, learning rate) is a function of
the configs and the step. Resuming from it gives the same numbers as never stopping
(tested for every engine).

Layout: ``checkpoint.json`` (configs, step, engine, scalars) and
``checkpoint.safetensors`` (every tensor), written to a temporary sibling and renamed
over the previous checkpoint, so a stop mid-write leaves the last complete one (a stop
between the two renames leaves it as a hidden ``.old-*`` sibling, which ``load`` and
``info`` take back).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from supermem.config import ConfigError, TrainConfig

VERSION = 1
META, TENSORS = "checkpoint.json", "checkpoint.safetensors"


@dataclass
class Checkpoint:
    """The state of a training call after ``step`` steps (all instances).

    params: name -> (inst, ...); optimizer: torch's ``state_dict()['state']``;
    history (step, inst); snapshots: name -> (k, inst, ...) at steps ``snap_taken``;
    diverged (inst,) (-1: not diverged); engine_state: ``Engine.state``'s arrays.
    """

    step: int
    engine: str
    seconds: float
    params: dict[str, torch.Tensor]
    optimizer: dict[int, dict[str, torch.Tensor]]
    history: torch.Tensor
    snap_taken: list[int]
    snapshots: dict[str, torch.Tensor]
    diverged: np.ndarray
    engine_state: dict[str, np.ndarray]
    resumed: list[int]  # steps at which earlier segments resumed
    commits: list[str | None]  # the git commit each segment so far ran (None: unknown)
    # seconds times the CPU threads each segment's steps used, summed (None: a segment ran
    # off the CPU or before checkpoints recorded it)
    thread_seconds: float | None = None
    # the CPU target and features Numba compiled each segment's kernels for (None: not
    # recorded then); float32 sums round as that code orders them (supermem.provenance)
    targets: list[str | None] = field(default_factory=list)
    features: list[str | None] = field(default_factory=list)


def save(path: str | os.PathLike, cfgs: list[TrainConfig], ck: Checkpoint) -> None:
    """Write ``ck`` to the directory ``path``, replacing an earlier checkpoint atomically."""
    path = Path(path)
    tensors = {f"param.{k}": v.detach().cpu().contiguous() for k, v in ck.params.items()}
    opt_scalars: dict[str, float] = {}
    for idx, st in ck.optimizer.items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                opt_scalars[f"{idx}.{name}"] = float(v)
    tensors["history"] = ck.history[: ck.step].cpu().contiguous()
    tensors |= {f"snap.{k}": v.contiguous() for k, v in ck.snapshots.items()}
    for k, a in ck.engine_state.items():
        tensors[f"engine.{k}"] = torch.from_numpy(np.ascontiguousarray(a))
    meta = {
        "version": VERSION,
        "configs": [c.to_dict() for c in cfgs],
        "step": ck.step,
        "engine": ck.engine,
        "seconds": ck.seconds,
        "snap_taken": ck.snap_taken,
        "diverged": ck.diverged.tolist(),
        "optimizer_scalars": opt_scalars,
        "resumed": ck.resumed,
        "commits": ck.commits,
        "thread_seconds": ck.thread_seconds,
        "cpu_targets": ck.targets,
        "cpu_features": ck.features,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / TENSORS))
        (tmp / META).write_text(json.dumps(meta, indent=1))
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Info:
    """What a resuming caller reports before training, read from ``checkpoint.json``."""

    step: int
    commits: list[str | None]
    engine: str
    targets: list[str | None]  # each segment's CPU target (supermem.provenance.cpu_target)
    features: list[str | None]  # and its features (supermem.provenance.cpu_features)


def _complete(d: Path) -> bool:
    return (d / META).exists() and (d / TENSORS).exists()


def recover(path: str | os.PathLike) -> None:
    """Put back the previous checkpoint if a stop fell between ``save``'s two renames
    (``path`` gone, its ``.old-*`` sibling complete)."""
    path = Path(path)
    if path.exists():
        return
    old = _newest_old(path)
    if old is not None:
        os.rename(old, path)


def _newest_old(path: Path) -> Path | None:
    """The newest complete ``.old-*`` sibling of ``path`` (what ``save`` renamed aside)."""
    olds = [d for d in path.parent.glob(f".{path.name}.old-*") if _complete(d)]
    return max(olds, key=lambda d: (d / META).stat().st_mtime, default=None)


def _meta(path: Path, cfgs: list[TrainConfig]) -> dict | None:
    recover(path)
    if not _complete(path):
        return None
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"checkpoint {path} is unreadable ({e})") from None
    if meta.get("version") != VERSION or not same_configs(meta.get("configs"), cfgs):
        raise ConfigError(f"checkpoint {path} belongs to another run (its configs differ)")
    return meta


def same_configs(stored: object, cfgs: list[TrainConfig]) -> bool:
    """Whether a checkpoint's config dicts are ``cfgs``, as configs: a field added to
    TrainConfig since the checkpoint was written, absent from its dicts, reads as its
    default (so an older checkpoint of the same runs still resumes)."""
    if not isinstance(stored, list) or len(stored) != len(cfgs):
        return False
    try:
        return [TrainConfig.from_dict(d) for d in stored] == list(cfgs)
    except (ConfigError, TypeError):
        return False


def _per_segment(meta: dict, key: str) -> list[str | None]:
    """A per-segment record (``commits``, ``cpu_targets``, ``cpu_features``); None for
    each segment of a checkpoint saved before it was recorded."""
    return meta.get(key) or [None] * (len(meta.get("resumed", [])) + 1)


def info(path: str | os.PathLike, cfgs: list[TrainConfig]) -> Info | None:
    """The step, segment commits, CPU targets and features of the checkpoint in ``path``,
    reading only its JSON; None if there is none, ConfigError as ``load``."""
    meta = _meta(Path(path), cfgs)
    if meta is None:
        return None
    return Info(
        step=int(meta["step"]),
        commits=_per_segment(meta, "commits"),
        engine=meta["engine"],
        targets=_per_segment(meta, "cpu_targets"),
        features=_per_segment(meta, "cpu_features"),
    )


def peek(path: str | os.PathLike) -> tuple[int, list[dict]] | None:
    """(step, config dicts) of the checkpoint in ``path``, for plans: reads only (no
    ``recover``: a checkpoint caught between its renames is read from its newest
    ``.old-*`` sibling, which ``recover`` would put back); None if there is none, it is
    unreadable or of another format version."""
    meta = peek_meta(path)
    try:
        return None if meta is None else (int(meta["step"]), list(meta["configs"]))
    except (ValueError, KeyError, TypeError):
        return None


def peek_meta(path: str | os.PathLike) -> dict | None:
    """The checkpoint.json of the checkpoint in ``path`` (step, seconds, engine, configs,
    ...), read as ``peek`` reads it; None where ``peek`` gives None."""
    path = Path(path)
    try:  # a sweep in flight may rename or remove these as we read
        found = path if _complete(path) else _newest_old(path)
        meta = None if found is None else json.loads((found / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("version") == VERSION else None


def load(path: str | os.PathLike, cfgs: list[TrainConfig]) -> Checkpoint | None:
    """The checkpoint in ``path``; None if there is none. ConfigError if it belongs to
    other configs (the caller decides whether to refuse or start afresh)."""
    path = Path(path)
    meta = _meta(path, cfgs)
    if meta is None:
        return None
    try:
        tensors = load_file(str(path / TENSORS))
    except (OSError, ValueError) as e:
        raise ConfigError(f"checkpoint {path} is unreadable ({e})") from None
    opt: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt.setdefault(int(idx), {})[name] = v
    for key, x in meta["optimizer_scalars"].items():
        idx, name = key.split(".", 1)
        opt.setdefault(int(idx), {})[name] = x

    def strip(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    return Checkpoint(
        step=int(meta["step"]),
        engine=meta["engine"],
        seconds=float(meta["seconds"]),
        params=strip("param."),
        optimizer=opt,
        history=tensors["history"],
        snap_taken=[int(s) for s in meta["snap_taken"]],
        snapshots=strip("snap."),
        diverged=np.asarray(meta["diverged"], dtype=np.int64),
        engine_state={k: v.numpy() for k, v in strip("engine.").items()},
        resumed=[int(s) for s in meta.get("resumed", [])],
        commits=_per_segment(meta, "commits"),
        thread_seconds=meta.get("thread_seconds"),
        targets=_per_segment(meta, "cpu_targets"),
        features=_per_segment(meta, "cpu_features"),
    )


def remove(path: str | os.PathLike) -> None:
    """Delete a checkpoint directory (after its run was saved), and any ``.old-*`` sibling."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    for d in path.parent.glob(f".{path.name}.old-*"):
        shutil.rmtree(d, ignore_errors=True)
