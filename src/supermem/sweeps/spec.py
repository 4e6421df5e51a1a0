"""A sweep's grid: a ``SweepSpec`` is fixed settings plus axes, its grid the product of
the axes, every config keyed by its content hash (``config_key``); ``groups`` splits a
to-do list into the batches one ``train_many`` call trains. Training a sweep is in
``sweeps.run``, its cost model and plan in ``sweeps.cost``, the on-disk layout and the
SQLite index in ``sweeps.index``, where the training happens in ``executors``.
"""

from __future__ import annotations

import importlib
import itertools
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.index import config_key, floats_as_floats
from supermem.toy.train import INSTANCE_FIELDS

__all__ = ["GROUP_SIZE", "SweepSpec", "by_key", "groups"]

GROUP_SIZE = 8  # instances per train_many call: batched enough to pay, small enough to flow
_FIELDS = {f.name: f for f in fields(TrainConfig)}


@dataclass(frozen=True)
class SweepSpec:
    """A named grid: ``fixed`` TrainConfig fields plus ``axes`` (field -> list of values)."""

    name: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]

    def __post_init__(self) -> None:
        for part in ("fixed", "axes"):
            table = getattr(self, part)
            if not isinstance(table, dict):
                raise ConfigError(f"sweep {part} must be a table, got {table!r}")
            unknown = sorted(set(table) - set(_FIELDS))
            if unknown:
                raise ConfigError(
                    f"sweep {part}: unknown TrainConfig field(s) {', '.join(unknown)}"
                )
        both = sorted(set(self.fixed) & set(self.axes))
        if both:
            raise ConfigError(f"sweep field(s) {', '.join(both)} are both fixed and an axis")
        for k, vals in self.axes.items():
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"sweep axis {k} must be a non-empty list, got {vals!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        unknown = sorted(set(d) - {"name", "fixed", "axes"})
        if unknown:
            raise ConfigError(
                f"sweep spec: unknown key(s) {', '.join(unknown)} (name, fixed, axes)"
            )
        fixed, axes = d.get("fixed", {}), d.get("axes", {})
        for part, table in (("fixed", fixed), ("axes", axes)):
            if not isinstance(table, dict):
                raise ConfigError(f"sweep {part} must be a table, got {table!r}")
        return cls(str(d.get("name", "sweep")), dict(fixed), dict(axes))

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> SweepSpec:
        """Top-level ``name`` (default: the file's stem), a ``[fixed]`` and an ``[axes]`` table."""
        import tomllib

        path = Path(path)
        with path.open("rb") as fh:
            d = tomllib.load(fh)
        return cls.from_dict({"name": path.stem, **d})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fixed": dict(self.fixed), "axes": dict(self.axes)}

    def with_fixed(self, changes: dict[str, Any]) -> SweepSpec:
        """The grid with ``changes`` (TrainConfig field -> value) fixed in every config, in
        place of what the spec fixes; an axis of the spec is refused (select its values
        with ``restrict`` instead)."""
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {', '.join(unknown)}")
        axes = sorted(set(changes) & set(self.axes))
        if axes:
            raise ConfigError(
                f"{', '.join(axes)} is an axis of sweep {self.name}, not a fixed field; "
                "select its values instead"
            )
        return replace(self, fixed={**self.fixed, **changes})

    def restrict(self, field: str, values: list[str]) -> SweepSpec | None:
        """The part of the grid whose ``field`` is one of ``values`` (strings, as typed on
        a command line: numbers compare as numbers, so 1800 matches 1800 and 1.8e3), or
        None if no config has such a value. Run keys depend on configs only, so the part's
        runs are the whole grid's: a later run of the whole spec trains only the rest."""
        if field not in _FIELDS:
            raise ConfigError(f"unknown TrainConfig field {field!r}")
        if field in self.axes:
            kept = [x for x in self.axes[field] if any(_same(x, v) for v in values)]
            return replace(self, axes={**self.axes, field: kept}) if kept else None
        # fixed or at its default: the value each config resolves to (warmup follows steps)
        hits = {any(_same(getattr(c, field), v) for v in values) for c in self.configs()}
        if len(hits) > 1:
            raise ConfigError(
                f"{field} varies with the axes of sweep {self.name} "
                f"({', '.join(self.axes)}); select on an axis instead"
            )
        return self if hits == {True} else None

    def configs(self) -> list[TrainConfig]:
        """The grid in axis order (last axis varies fastest); ConfigError names a bad value."""
        out = []
        for combo in itertools.product(*self.axes.values()):
            point = dict(zip(self.axes, combo))
            d = floats_as_floats({**self.fixed, **point})
            try:
                out.append(TrainConfig.from_dict(d))
            except ConfigError as e:
                where = ", ".join(f"{k}={v!r}" for k, v in point.items())
                raise ConfigError(
                    f"sweep {self.name}{f' at {where}' if where else ''}: {e}"
                ) from None
        return out


def _same(x: Any, typed: str) -> bool:
    """Whether a spec value equals a value typed as text (numbers as numbers)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            return float(typed) == float(x)
        except ValueError:
            return False
    return str(x) == typed


def by_key(cfgs: list[TrainConfig]) -> dict[str, TrainConfig]:
    """The configs by config key, in order; a repeated axis value names the same run."""
    return {config_key(c): c for c in cfgs}


def groups(cfgs: list[TrainConfig], batch: bool = True, size: int = GROUP_SIZE) -> list[list]:
    """Configs that differ only in INSTANCE_FIELDS, in chunks of <= size (batch=False: 1)."""
    if not batch:
        return [[c] for c in cfgs]
    shapes: dict[TrainConfig, list[TrainConfig]] = {}
    for c in cfgs:
        shapes.setdefault(c.replace(**{f: 0 for f in INSTANCE_FIELDS}), []).append(c)
    return [g[i : i + size] for g in shapes.values() for i in range(0, len(g), size)]


# Where the names this module held before it was split (2026-12-06) live now; importing
# them from here still works (lazily: ``cost`` and ``run`` import this module).
_MOVED = {
    **dict.fromkeys(
        ["plan", "SweepPlan", "run_seconds", "resumed_steps", "job_seconds", "total"], "cost"
    ),
    **dict.fromkeys(["run_sweep", "SweepSummary"], "run"),
    **dict.fromkeys(["SweepBusyError", "load_sweep", "rebuild_index", "sweep_frame"], "index"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"supermem.sweeps.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
