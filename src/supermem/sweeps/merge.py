"""Merge sweep folders trained apart (other machines, other sessions) into one.

A paper-scale grid is often split: ``--only data_seed=0`` on one machine, ``=1`` on
another, each into its own OUT. ``merge(sources, dest)`` copies every finished run dir
(status ok or diverged) of each source into ``dest`` and rebuilds its index, so figures,
claims and ``supermem results`` see the whole grid. Works on plain sweep folders and on
``supermem reproduce`` folders (``reproduce.json`` + ``sweeps/<name>/``, merged sweep by
sweep; both must be the same recipe at the same scale).

Rules (each checked for every source run before anything is written):

- A run dir is the source of truth and its name is its key: the dir must pass
  ``checks.check_run`` and its ``config.json`` must hash to its name (``config_key``), or
  the merge stops with ``MergeError`` naming it and nothing is copied.
- A key already in ``dest`` is the same config: it is kept, never replaced. The report
  counts those whose saved arrays differ from the source's byte for byte (same config
  trained with another thread count or code version) so the difference is not silent.
- Crash records (``failed/``), checkpoints in flight (``partial/``) and set-aside
  ``damaged/`` dirs are not results and are not copied.
- Each run dir is copied under a hidden temp name and renamed into place
  (``store.write_atomic``); ``dest``'s sweep lock is held throughout, so a sweep cannot
  run into it meanwhile. Sources are only read.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.checks import ARRAYS, DATA, DamagedRunError, check_run, read_json
from supermem.sweeps.index import (
    FAILED,
    RUNS,
    SweepBusyError,
    config_key,
    damaged,
    is_sweep_dir,
    rebuild_index,
    sweep_lock,
    visible,
)
from supermem.sweeps.manifest import MANIFEST, ManifestError, recorded_sets, show_sets
from supermem.sweeps.store import write_atomic

__all__ = ["MergeError", "MergeReport", "merge"]

SWEEPS = "sweeps"


class MergeError(ValueError):
    """A source cannot be merged (not a sweep, damaged run, another recipe or scale)."""


@dataclass
class MergeReport:
    """What ``merge`` did, per destination sweep folder."""

    dest: Path
    copied: dict[str, int] = field(default_factory=dict)  # sweep folder -> runs copied
    kept: dict[str, int] = field(default_factory=dict)  # key already in dest: kept
    differ: dict[str, list[str]] = field(default_factory=dict)  # kept, arrays not identical
    skipped_failed: int = 0

    def __str__(self) -> str:
        lines = []
        for name in sorted(set(self.copied) | set(self.kept)):
            line = f"{name}: {self.copied.get(name, 0)} run(s) copied"
            if self.kept.get(name):
                line += f", {self.kept[name]} already there (kept)"
            if self.differ.get(name):
                line += (
                    f", of which {len(self.differ[name])} differ in their arrays"
                    f" (kept {self.dest}'s): {', '.join(self.differ[name][:5])}"
                    + (" ..." if len(self.differ[name]) > 5 else "")
                )
            lines.append(line)
        if self.skipped_failed:
            lines.append(f"{self.skipped_failed} crash record(s) not copied (not results)")
        return "\n".join(lines) or "nothing to merge"


def _manifest(d: Path) -> dict | None:
    p = d / MANIFEST
    if not p.is_file():
        return None
    try:
        man = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise MergeError(f"{p}: unreadable ({e})") from None
    if not isinstance(man, dict):
        raise MergeError(f"{p}: not a JSON object")
    return man


def _kind(d: Path) -> tuple[str, dict | None]:
    """('recipe', its manifest) or ('plain', None); MergeError for anything else."""
    man = _manifest(d)
    if man is not None:
        if not (d / SWEEPS).is_dir():  # the real-network recipes keep one run, not sweeps
            raise MergeError(
                f"{d}: a `supermem reproduce` folder without {SWEEPS}/ (only "
                "sweep recipes can be merged)"
            )
        return "recipe", man
    if is_sweep_dir(d):
        return "plain", None
    raise MergeError(f"{d}: not a sweep or `supermem reproduce` folder")


def _pairs(sources: list[Path], dest: Path) -> list[tuple[Path, Path]]:
    """(source sweep folder, dest sweep folder) for every sweep of every source."""
    first: tuple[Path, str, dict | None] | None = None  # the folder all others must match
    if dest.is_dir() and (is_sweep_dir(dest) or (dest / MANIFEST).is_file()):
        first = (dest, *_kind(dest))
    pairs = []
    for src in sources:
        if not src.is_dir():
            raise MergeError(f"{src}: no such folder")
        if src.resolve() == dest.resolve():
            raise MergeError(f"{src}: is the destination itself")
        kind, man = _kind(src)
        if first is None:
            first = (src, kind, man)
        elif kind != first[1]:
            raise MergeError(f"{src} is a {kind} folder, {first[0]} a {first[1]} one: not one grid")
        elif man is not None and first[2] is not None:
            got, want = (
                (d.get("recipe"), d.get("scale"), _scale_set(d, p))
                for d, p in ((man, src), (first[2], first[0]))
            )
            if got != want:
                msg = f"{src} holds {_grid(got)}, {first[0]} {_grid(want)}: not one grid"
                raise MergeError(msg)
        if kind == "recipe":
            subs = [p for p in visible(src / SWEEPS) if is_sweep_dir(p)]
            pairs += [(p, dest / SWEEPS / p.name) for p in subs]
        else:
            pairs.append((src, dest))
    return pairs


def _scale_set(man: dict, where: Path) -> dict:
    """The ``reproduce --set`` values a manifest records for its scale ({} if none)."""
    try:
        return recorded_sets(man, where).get(str(man.get("scale")), {})
    except ManifestError as e:
        raise MergeError(str(e)) from None


def _grid(grid: tuple) -> str:
    """(recipe, scale, --set values) for a message."""
    recipe, scale, changes = grid
    return " ".join(filter(None, (f"recipe {recipe} at scale {scale}", show_sets(changes))))


def _check(run: Path) -> None:
    """DamagedRunError unless ``run`` is whole, flat, and its config hashes to its name."""
    config, _ = check_run(run)
    keys = TrainConfig.__dataclass_fields__
    try:
        cfg = TrainConfig.from_dict({k: v for k, v in config.items() if k in keys})
    except (ConfigError, TypeError, ValueError) as e:
        raise DamagedRunError(run / "config.json", f"not a valid config ({e})") from None
    if config_key(cfg) != run.name:
        raise DamagedRunError(
            run / "config.json", f"its config's key is {config_key(cfg)}, not {run.name}"
        )
    extra = [p.name for p in run.iterdir() if not p.is_file()]
    if extra:
        raise DamagedRunError(run / extra[0], "not a file (a run dir holds files only)")


def _history(src: Path) -> list[dict]:
    """The source's spec history (or its spec.json), each entry marked merged_from."""
    mark = {"merged_from": str(src.resolve()), "merged": time.time()}
    hist, spec = src / "spec_history.jsonl", src / "spec.json"
    try:
        if hist.is_file():
            entries = [json.loads(x) for x in hist.read_text().splitlines() if x.strip()]
        elif spec.is_file():
            entries = [{"time": time.time(), **read_json(spec)}]
        else:
            entries = []
    except (OSError, ValueError) as e:  # DamagedRunError is a ValueError
        raise MergeError(f"{src}: its spec history is unreadable ({e}); nothing merged") from None
    if not all(isinstance(e, dict) for e in entries):
        raise MergeError(f"{hist}: a line is not a JSON object; nothing merged")
    return [{**e, **mark} for e in entries]


def _same_arrays(a: Path, b: Path) -> bool:
    """Both run dirs hold the same saved arrays and training data, byte for byte."""
    for f in (ARRAYS, DATA):
        if (a / f).is_file() != (b / f).is_file():
            return False
        if (a / f).is_file() and not filecmp.cmp(a / f, b / f, shallow=False):
            return False
    return True


def _copy(src: Path, dest: Path) -> None:
    def write(tmp: Path) -> None:
        for f in src.iterdir():
            shutil.copy2(f, tmp / f.name)

    write_atomic(dest, write)


def _write_text(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, path)


def merge(sources: list[Path], dest: Path, dry_run: bool = False) -> MergeReport:
    """Copy the finished runs of ``sources`` into ``dest`` (module docstring).

    MergeError (one line) before anything is written if a source is not a sweep folder,
    holds a damaged run or an unreadable spec history, is another kind, recipe or scale
    than the others and ``dest``, or if ``dest`` holds a damaged run.
    """
    dest = Path(dest)
    sources = [Path(s) for s in sources]
    if dest.exists() and not dest.is_dir():
        raise MergeError(f"{dest} exists and is not a folder")
    pairs = _pairs(sources, dest)
    report = MergeReport(dest)
    todo: list[tuple[Path, Path, str]] = []  # (source run, dest sweep folder, its name)
    first_of: dict[tuple[Path, str], Path] = {}  # (dest sweep, key) -> the run copied there
    histories: dict[tuple[Path, Path], list[dict]] = {}
    for out in dict.fromkeys(out for _, out in pairs):
        bad = list(damaged(out).values()) if out.is_dir() else []
        if bad:
            raise MergeError(f"{bad[0]} (in the destination); nothing merged")
    for src, out in pairs:
        name = str(out.relative_to(dest)) if out != dest else "."
        report.copied.setdefault(name, 0)
        mine = []
        for run in visible(src / RUNS):
            try:
                _check(run)
            except DamagedRunError as e:
                raise MergeError(f"{e}; nothing merged") from None
            there = first_of.get((out, run.name), out / RUNS / run.name)
            if there.is_dir():
                report.kept[name] = report.kept.get(name, 0) + 1
                if not _same_arrays(run, there):
                    report.differ.setdefault(name, []).append(run.name)
                continue
            first_of[(out, run.name)] = run
            mine.append((run, out, name))
        todo += mine
        if mine:
            histories[(src, out)] = _history(src)
        report.skipped_failed += len(visible(src / FAILED))
    if dry_run:
        for _, _, name in todo:
            report.copied[name] += 1
        return report
    outs = list(dict.fromkeys(out for _, out in pairs))  # distinct, in order
    made = [d for d in dict.fromkeys([dest, *outs]) if not d.exists()]
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as locks:  # every lock first: all or nothing is blocked
        try:
            for out in outs:
                locks.enter_context(sweep_lock(out))
        except SweepBusyError:
            for d in reversed(made):  # leave no empty folders behind
                shutil.rmtree(d, ignore_errors=True)
            raise
        if not (dest / MANIFEST).exists():
            for src in sources:
                if (src / MANIFEST).is_file():
                    _write_text(dest / MANIFEST, (src / MANIFEST).read_text())
                    break
        for run, out, name in todo:
            _copy(run, out / RUNS / run.name)
            report.copied[name] += 1
        for (src, out), entries in histories.items():
            if (src / "spec.json").is_file() and not (out / "spec.json").is_file():
                _write_text(out / "spec.json", (src / "spec.json").read_text())
            with (out / "spec_history.jsonl").open("a") as fh:
                fh.writelines(json.dumps(e) + "\n" for e in entries)
        for out in outs:
            rebuild_index(out)
    return report
