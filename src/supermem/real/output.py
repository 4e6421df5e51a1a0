"""Write a ``Dims`` result beside OUT.csv: the CSV, the sorted-curve PNG and a JSON
summary, all or nothing (temporary files renamed into place once all three exist)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from supermem.real.activations import ActivationError
from supermem.real.dims import Dims

MAX_LABEL_CURVES = 10  # more classes than this: one curve for all examples only


class OutputExistsError(FileExistsError):
    """An output file exists and overwriting was not asked for."""


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """OUT.csv, and the PNG and JSON beside it (same stem)."""
    out = Path(out)
    return {"csv": out, "png": out.with_suffix(".png"), "json": out.with_suffix(".json")}


def check_outputs(out: str | os.PathLike, overwrite: bool = False) -> dict[str, Path]:
    """The output paths, refused if any exists and ``overwrite`` is False."""
    paths = output_paths(out)
    if not overwrite:
        for p in paths.values():
            if p.exists():
                raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    return paths


def dims_table(d: Dims, labels: np.ndarray | None = None):
    """One row per example: index, dstar, rank, [data_dim], [label] (a pandas DataFrame)."""
    import pandas as pd

    cols: dict = {"index": np.arange(d.T), "dstar": d.dstar, "rank": np.full(d.T, d.rank)}
    if d.data_dims is not None:
        cols["data_dim"] = d.data_dims
    if labels is not None:
        cols["label"] = labels
    return pd.DataFrame(cols)


def label_curves(d: Dims, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """{'all': D* (T,)} plus one entry per label when there are few labels."""
    curves = {"all": d.dstar}
    if labels is not None and len(np.unique(labels)) <= MAX_LABEL_CURVES:
        curves |= {f"label {v}": d.dstar[labels == v] for v in np.unique(labels)}
    return curves


def summary(d: Dims, source: str, labels: np.ndarray | None) -> dict:
    s = {"source": source, **d.summary()}
    if labels is not None and len(np.unique(labels)) <= 50:
        s["dstar_median_by_label"] = {
            str(v): float(np.median(d.dstar[labels == v])) for v in np.unique(labels)
        }
    return s


def write_dims(
    d: Dims,
    out: str | os.PathLike,
    source: str = "",
    labels: np.ndarray | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """OUT.csv (one row per example), OUT.png (sorted D*, log scale), OUT.json (summary)."""
    from supermem.real.plots import save_curve

    if labels is not None and len(labels) != d.T:
        raise ActivationError(f"{len(labels)} labels for {d.T} examples")
    paths = check_outputs(out, overwrite)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    tmp = {k: p.with_name(f".{p.name}.tmp-{uuid.uuid4().hex[:8]}") for k, p in paths.items()}
    try:
        dims_table(d, labels).to_csv(tmp["csv"], index=False)
        title = f"{source}: T={d.T:,}, m={d.m}, rank {d.rank}" + (", centred" * d.centered)
        save_curve(tmp["png"], label_curves(d, labels), title, d.rank)
        tmp["json"].write_text(json.dumps(summary(d, source, labels), indent=2) + "\n")
        check_outputs(out, overwrite)  # nothing appeared meanwhile
        for k in paths:
            os.replace(tmp[k], paths[k])
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
    return paths
