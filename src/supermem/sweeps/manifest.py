"""OUT/reproduce.json: the record ``supermem reproduce`` keeps of an output folder.

It holds the recipe, the scale, the specs of the grid and, under ``sets``, the
``reproduce --set`` values the runs of each scale were trained with (one table per scale,
absent when none). ``reproduce`` reads ``sets`` to refuse a call that would mix grids in
one folder, ``merge`` to refuse mixing two folders; both go through this module.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MANIFEST", "ManifestError", "recorded_sets", "show_sets"]

MANIFEST = "reproduce.json"


class ManifestError(ValueError):
    """reproduce.json holds something this version cannot read (a one-line message)."""


def recorded_sets(man: dict, where: Path) -> dict[str, dict]:
    """The ``--set`` values per scale of a read manifest ({} where none).

    ``where`` is the folder, for the message; ManifestError if ``sets`` is not a table of
    tables.
    """
    sets = man.get("sets", {})
    if not isinstance(sets, dict) or not all(isinstance(v, dict) for v in sets.values()):
        raise ManifestError(f"{Path(where) / MANIFEST}: 'sets' is not a table of tables")
    return sets


def show_sets(changes: dict) -> str:
    """``--set`` values as typed: "--set adam_eps=1e-05 --set steps=40" ("" when none)."""
    return " ".join(f"--set {k}={v}" for k, v in changes.items())
