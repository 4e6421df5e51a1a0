"""What ``supermem explore`` shows, as plain data: no UI code here.

A folder is listed lazily: ``open_catalog`` reads each run's config.json and
metrics.json (or a sweep's SQLite index, when it is fresh) and never opens a
safetensors file, so a sweep of hundreds of runs lists in well under a second. A run's
arrays are read only when it is selected (``run_frames``).

Shapes: W (m, n) with feature i in column i; H (T, m) with point t in row t; k
snapshots; the 2-D views of both use a fixed basis P (m, 2) per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from supermem import metrics
from supermem.config import TrainConfig
from supermem.sweeps.checks import check_run, read_json, require
from supermem.sweeps.index import FAILED, RUNS, done_keys, failed_keys, index_rows, is_sweep_dir
from supermem.sweeps.manifest import MANIFEST

# Table columns drawn from config.json and metrics.json, in order: (column, source key).
CONFIG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("T", "train_size"),
    ("m", "hidden"),
    ("n", "features"),
    ("S", "sparsity"),
    ("steps", "steps"),
    ("wd", "weight_decay"),
    ("seed", "seed"),
    ("data_seed", "data_seed"),
)
METRIC_COLUMNS = ("train_loss", "test_loss", "W_norm", "b_norm", "data_dims_median")
_SHOWN = {k for _, k in CONFIG_COLUMNS}
_VARIES = [f.name for f in fields(TrainConfig) if f.name not in _SHOWN]


class ExploreError(ValueError):
    """The folder cannot be explored (missing, no runs, not a supermem folder)."""


@dataclass(frozen=True)
class Catalog:
    """A folder's runs as table rows (dicts with a ``path`` to load the run from)."""

    root: Path
    kind: str  # "run", "sweep" or "reproduce"
    rows: list[dict[str, Any]]


def open_catalog(root: str | Path) -> Catalog:
    """List a run, sweep or reproduce folder; ExploreError or DamagedRunError if it cannot.

    A single run is checked whole (``checks.check_run``: headers, no array data); the
    runs of a sweep only have their JSON read, so damage in their arrays shows when one
    is selected.
    """
    root = Path(root)
    if not root.is_dir():
        raise ExploreError(f"{root}: no such folder")
    if (root / "config.json").is_file():
        config, mets = check_run(root)
        kind, rows = "run", [row(root, root.name, config, mets)]
    elif (root / MANIFEST).is_file() or (root / "sweeps").is_dir():
        subs = sorted(d for d in (root / "sweeps").glob("*") if is_sweep_dir(d))
        kind, rows = "reproduce", [r for d in subs for r in sweep_rows(d, f"{d.name}/")]
    elif is_sweep_dir(root):
        kind, rows = "sweep", sweep_rows(root)
    else:
        raise ExploreError(
            f"{root} is not a supermem run, sweep or reproduce folder "
            "(no config.json, spec.json, runs/ or sweeps/)"
        )
    if not rows:
        raise ExploreError(f"{root}: no runs yet")
    return Catalog(root, kind, add_varying(rows))


def sweep_rows(out: Path, prefix: str = "") -> list[dict[str, Any]]:
    """Rows of a sweep folder: from its index when fresh, else from each run's JSON files."""
    got = index_rows(out)
    if got is not None:
        pairs = [(r["key"], r["status"] == "failed", r["config"], r["metrics"]) for r in got]
    else:
        done = done_keys(out)
        keys = [(k, False) for k in sorted(done)]
        keys += [(k, True) for k in sorted(failed_keys(out) - done)]
        pairs = [(k, f, *read_pair(out / (FAILED if f else RUNS) / k)) for k, f in keys]
    rows = [row(out / (FAILED if f else RUNS) / k, prefix + k, c, m) for k, f, c, m in pairs]
    return sorted(rows, key=lambda r: (r["T"], r["m"], r["data_seed"], r["seed"], r["run"]))


def read_pair(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and metrics.json of a run dir; DamagedRunError if unreadable."""
    config, mets = read_json(path / "config.json"), read_json(path / "metrics.json")
    require(path / "config.json", config, tuple(k for _, k in CONFIG_COLUMNS))
    require(path / "metrics.json", mets, ("status",))
    return config, mets


def row(path: Path, name: str, config: dict, mets: dict) -> dict[str, Any]:
    """One table row: run name, status, the main settings and scalar results."""
    r: dict[str, Any] = {"run": name, "status": mets["status"]}
    r.update({col: config[key] for col, key in CONFIG_COLUMNS})
    r.update({k: _num(mets.get(k)) for k in METRIC_COLUMNS})
    top = mets.get("top_feature_dims") or [math.nan]
    r["max_D_i"] = _num(top[0])
    r["path"] = str(path)
    r["_config"] = config  # for add_varying and t_walk; not a column
    return r


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else math.nan


def add_varying(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add a column for every other config field whose value differs between runs (lr,
    adam_eps, ... in a variants sweep), so the table can be filtered on it."""
    for k in _VARIES:
        values = {repr(r["_config"].get(k)) for r in rows}
        if len(values) > 1:
            for r in rows:
                r[k] = r["_config"].get(k)
    return rows


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns shown in the table (internal keys start with an underscore)."""
    return [k for k in rows[0] if not k.startswith("_") and k != "path"]


def t_walk(rows: list[dict[str, Any]], current: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per T, ascending: at each T the run most like ``current``.

    "Most like" is the fewest config fields (T aside) that differ from ``current``'s,
    then the lowest (data_seed, seed), then ok runs before others; walking these walks
    the sweep through its regimes with everything else held fixed where the sweep allows.
    """
    here = current["_config"]

    def distance(r: dict[str, Any]) -> tuple:
        c = r["_config"]
        differ = sum(c.get(k) != v for k, v in here.items() if k in _FIELDS)
        return differ, r["status"] != "ok", c["data_seed"], c["seed"], r["run"]

    best: dict[int, dict[str, Any]] = {}
    for r in rows:
        T = r["T"]
        if T not in best or distance(r) < distance(best[T]):
            best[T] = r
    return [best[T] for T in sorted(best)]


_FIELDS = {f.name for f in fields(TrainConfig)} - {"train_size"}


MAX_POINTS = 5000  # training points drawn per snapshot; dims are measured over all T


@dataclass(frozen=True)
class Frames:
    """One run's geometry over its training snapshots, ready to draw.

    steps (k,); W2 (k, 2, n) and H2 (k, p, 2) are W's columns and the hidden vectors of
    the p drawn training points ``points`` (p,) in the 2-D basis P (m, 2); feature_dims
    (k, n) and data_dims (k, p) are measured in the full m dimensions over all T points;
    loss_steps, loss (h,) the training loss curve.
    """

    steps: np.ndarray
    W2: np.ndarray
    H2: np.ndarray
    points: np.ndarray
    feature_dims: np.ndarray
    data_dims: np.ndarray
    loss_steps: np.ndarray
    loss: np.ndarray
    P: np.ndarray
    m: int
    T: int

    @property
    def lim(self) -> float:
        """One axis limit for every frame: the largest vector norm, with a margin."""
        norms = [np.linalg.norm(self.W2, axis=1).max(), np.linalg.norm(self.H2, axis=2).max()]
        return 1.15 * max(max(float(x) for x in norms), 1e-6)


def plane(W: np.ndarray) -> np.ndarray:
    """(m, n) -> P (m, 2): the basis W's columns are drawn in.

    m = 2: the identity (no projection). m > 2: the top two left singular vectors of W,
    i.e. uncentred PCA of the columns (features are vectors from the origin, so the
    plane keeps the most of ||W||_F^2). m = 1: the line, padded with a zero axis.
    """
    m = W.shape[0]
    if m <= 2:
        return np.eye(m, 2)
    U, _, _ = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
    return U[:, :2]


def drawn_points(T: int, most: int = MAX_POINTS) -> np.ndarray:
    """(p,) the training points drawn: all of them, or ``most`` evenly spaced ones (the
    points are i.i.d., so an even spacing is a fair sample and the same in every frame)."""
    return np.arange(T) if T <= most else np.linspace(0, T - 1, most).round().astype(int)


def run_frames(run, most: int = MAX_POINTS) -> Frames | None:
    """The snapshots of a loaded ``store.Run`` (status ok); None if it has no arrays.

    Training hidden vectors at snapshot j are X_train W_j^T with the run's saved training
    set. A run saved without snapshots gives one frame, its final weights. The plane is
    fitted to the final W and kept for every snapshot, so motion in the view is motion
    of the vectors, not of the basis. At most ``most`` training points are kept.
    """
    a, X = run.arrays, run.X_train
    if "W" not in a or X is None:
        return None
    if a["snapshot_steps"].size:
        steps, Ws = a["snapshot_steps"], a["snapshot_W"]  # (k,), (k, m, n)
    else:
        steps, Ws = np.array([run.config["steps"]]), a["W"][None]
    Ws, P, T = np.asarray(Ws, np.float64), plane(a["W"]), X.shape[0]
    points = drawn_points(T, most)
    H2, dd = [], []
    for W in Ws:  # one snapshot's H (T, m) at a time: T can be 10^6
        H = np.asarray(X @ W.T)
        H2.append(H[points] @ P)
        dd.append(metrics.data_dims(H)[points])
    return Frames(
        steps=np.asarray(steps),
        W2=np.einsum("kmn,mj->kjn", Ws, P),
        H2=np.stack(H2),
        points=points,
        feature_dims=metrics.feature_dims(Ws),
        data_dims=np.stack(dd),
        loss_steps=np.asarray(a["loss_steps"]),
        loss=np.asarray(a["loss_history"]),
        P=P,
        m=Ws.shape[1],
        T=T,
    )
