"""A sweep directory on disk: content keys, run-dir layout, and the SQLite index.

Layout of a sweep directory ``OUT``::

    OUT/spec.json            the spec of the latest ``run_sweep`` call
    OUT/spec_history.jsonl   every spec ever run into OUT, one JSON object per line
    OUT/runs/<key>/          finished runs (status ok or diverged), written by store.save_run
    OUT/failed/<key>/        crash records (status failed + error), retried on the next call
    OUT/damaged/<key>.<id>/  run dirs or crash records found damaged, moved out of the way
    OUT/index.sqlite         one row per run dir above: a cache, rebuildable from them

The run dirs are the source of truth. They are immutable once visible (written
atomically), so the index is fresh when it holds the same keys as the dirs and every
dir's files have the sizes and mtimes its row recorded (a damaged file changes them);
readers check that and fall back to scanning the dirs, never writing the index
themselves (only the process running the sweep writes it). Reading a damaged dir raises
``checks.DamagedRunError``; a sweep moves such dirs to OUT/damaged/ and trains them again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supermem.config import TrainConfig
from supermem.sweeps.checks import DamagedRunError, check_run, read_json
from supermem.sweeps.store import Run, load_run
from supermem.toy import checkpoint

if TYPE_CHECKING:  # pandas is imported on use: `import supermem` should stay quick
    import pandas as pd

RUNS, FAILED, DAMAGED, INDEX, LOCK = "runs", "failed", "damaged", "index.sqlite", ".lock"
PARTIAL = "partial"  # OUT/partial/<key>/: the checkpoint of a group in flight (executors)
_FLOATS = {f.name for f in fields(TrainConfig) if f.type == "float"}
_SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, status TEXT NOT NULL, config TEXT NOT NULL, metrics TEXT NOT NULL,
    path TEXT NOT NULL, error TEXT, created REAL, indexed REAL, stamp TEXT)"""


def floats_as_floats(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with integers in TrainConfig float fields made floats (TOML writes 1 for 1.0).

    Booleans are left alone, for TrainConfig to reject.
    """
    return {
        k: float(v) if k in _FLOATS and isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in d.items()
    }


# Fields added after sweeps were on disk (issue 10: optimiser, init and precision
# variants). They are left out of the key while at their default, so that every run
# keyed before they existed keeps its key (and is not retrained); at any other value
# they are part of it. Add a field here when adding it to TrainConfig.
KEY_OMIT_AT_DEFAULT = (
    "decay_mode",
    "decay_params",
    "adam_eps",
    "adam_beta2",
    "dtype",
    "init_bias",
    "repeat_points",
    "repeat_count",
    "snapshot_schedule",  # issue 11: log (the default) or linear snapshot steps
    "loss",  # issue 11: model variants
    "lr_schedule",  # issue 10: cosine (the default), linear or constant
    "point_norm",  # issue 10: unit (the default) or raw data points
)
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def config_key(cfg: TrainConfig) -> str:
    """16 hex digits of sha256 over the canonical JSON of the config.

    Float fields are cast to float first so that ``lr = 1`` (a TOML integer) and
    ``lr = 1.0`` name the same run, as they compare equal as configs. Fields of
    ``KEY_OMIT_AT_DEFAULT`` at their default are left out.
    """
    d = floats_as_floats(cfg.to_dict())
    for k in KEY_OMIT_AT_DEFAULT:
        if d[k] == _DEFAULTS[k]:
            del d[k]
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_spec(out: Path, spec: dict[str, Any]) -> None:
    """Replace ``spec.json`` atomically (readers never see half a spec); log it to history."""
    tmp = out / f".spec.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(tmp, out / "spec.json")
    with (out / "spec_history.jsonl").open("a") as fh:
        fh.write(json.dumps({"time": time.time(), **spec}) + "\n")


def is_sweep_dir(out: Path) -> bool:
    return (out / "spec.json").is_file() or (out / RUNS).is_dir()


def visible(d: Path) -> list[Path]:
    """Complete record dirs under ``d`` (hidden ``.x.tmp-*`` dirs are partial writes)."""
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def done_keys(out: Path) -> set[str]:
    """Keys with a finished run dir (ok or diverged): these are never trained again."""
    return {p.name for p in visible(out / RUNS)}


def failed_keys(out: Path) -> set[str]:
    return {p.name for p in visible(out / FAILED)}


class SweepBusyError(RuntimeError):
    """Another process holds OUT's sweep lock (it is running a sweep into OUT)."""


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``OUT/.lock`` for one sweep; SweepBusyError if taken.

    One writer per OUT: ``remove_partial`` at the start of a sweep would delete the
    temp dirs of another sweep's runs in flight. The OS drops the lock if we die.
    """
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepBusyError(f"another sweep is running into {out}") from None
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def remove_partial(out: Path) -> list[Path]:
    """Delete hidden temp dirs left by a killed ``store.write_atomic`` (or checkpoint
    write); return them. A checkpoint caught between its two renames is put back first."""
    if (out / PARTIAL).is_dir():
        for p in (out / PARTIAL).glob(".*.old-*"):
            checkpoint.recover(p.parent / p.name[1:].rsplit(".old-", 1)[0])
    gone = []
    for sub in (out / RUNS, out / FAILED, out / PARTIAL):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
                    shutil.rmtree(p, ignore_errors=True)
                    gone.append(p)
    return gone


def record(path: Path) -> dict[str, Any]:
    """The index row of one run or failure dir (config and metrics as dicts).

    DamagedRunError if the dir is damaged (a run dir is checked whole, see ``checks``).
    """
    if path.parent.name == FAILED:
        config, mets = read_json(path / "config.json"), read_json(path / "metrics.json")
    elif not (path / "config.json").is_file():
        raise DamagedRunError(path / "config.json", "missing")
    else:
        config, mets = check_run(path)
    return {
        "key": path.name,
        "status": mets.get("status", "unknown"),
        "config": config,
        "metrics": mets,
        "path": str(path),
        "error": mets.get("error"),
        "created": path.stat().st_mtime,
        "stamp": stamp(path),
    }


def stamp(path: Path) -> str:
    """Name, size and mtime of each file in a dir: editing, cutting or losing one changes it."""
    stats = {p.name: p.stat() for p in path.iterdir()}
    return json.dumps(sorted((k, st.st_size, st.st_mtime_ns) for k, st in stats.items()))


def _record_dirs(out: Path) -> list[Path]:
    """The run dirs, and the failure records no finished run hides (they are stale)."""
    done = done_keys(out)
    return visible(out / RUNS) + [p for p in visible(out / FAILED) if p.name not in done]


def scan(out: Path, skip: Collection[Path] = ()) -> list[dict[str, Any]]:
    """Index rows read straight from the dirs (but ``skip``); DamagedRunError on damage."""
    return [record(p) for p in _record_dirs(out) if p not in skip]


def damaged(out: Path) -> dict[Path, DamagedRunError]:
    """The run dirs and failure records that ``record`` cannot read, with the reason."""
    found = {}
    for p in _record_dirs(out):
        try:
            record(p)
        except DamagedRunError as e:
            found[p] = e
    return found


def set_aside(out: Path, path: Path) -> Path:
    """Move a damaged dir to OUT/damaged/<key>.<id> (kept to look at); return it."""
    (out / DAMAGED).mkdir(exist_ok=True)
    dest = out / DAMAGED / f"{path.name}.{uuid.uuid4().hex[:8]}"
    os.rename(path, dest)
    return dest


# -- the SQLite index -----------------------------------------------------------------
def _connect(out: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{out / INDEX}?mode=ro", uri=True, timeout=30)
    con = sqlite3.connect(out / INDEX, timeout=30)
    con.execute(_SCHEMA)
    return con


def _values(r: dict[str, Any]) -> tuple:
    return (
        r["key"],
        r["status"],
        json.dumps(r["config"], allow_nan=True),
        json.dumps(r["metrics"], allow_nan=True),
        r["path"],
        r["error"],
        r["created"],
        time.time(),
        r["stamp"],
    )


def upsert(out: Path, rows: list[dict[str, Any]]) -> None:
    """Insert or replace index rows (called by the sweep's parent process only)."""
    try:
        with _connect(out) as con:
            sql = "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)"
            con.executemany(sql, map(_values, rows))
        con.close()
    except sqlite3.DatabaseError:  # the file was damaged meanwhile: the dirs hold every row
        rebuild_index(out)


def rebuild_index(out: str | Path) -> int:
    """Rewrite ``OUT/index.sqlite`` from the run and failure dirs; return the row count.

    Written to a new file that replaces the old one, so a damaged index (garbage bytes,
    a lost journal) is replaced rather than opened. DamagedRunError on a damaged dir.
    """
    out = Path(out)
    rows = scan(out)
    tmp = out / f".{INDEX}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    with con:
        con.execute(_SCHEMA)
        con.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?)", map(_values, rows))
    con.close()
    for journal in ("-journal", "-wal", "-shm"):  # belong to the old file, not to ours
        (out / f"{INDEX}{journal}").unlink(missing_ok=True)
    os.replace(tmp, out / INDEX)
    return len(rows)


_COLUMNS = ("key", "status", "config", "metrics", "path", "error", "created", "stamp")


def _read_index(out: Path) -> list[dict[str, Any]]:
    """Every row of the index; sqlite3.Error if it cannot be read."""
    con = _connect(out, readonly=True)
    try:
        got = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs").fetchall()
    finally:
        con.close()
    return [dict(zip(_COLUMNS, r)) for r in got]


def index_rows(out: Path) -> list[dict[str, Any]] | None:
    """Rows from the index if it matches the dirs exactly, else None (stale or missing)."""
    if not (out / INDEX).is_file():
        return None
    try:
        rows = _read_index(out)
    except sqlite3.Error:
        return None
    done = done_keys(out)
    want = {(k, "run") for k in done} | {(k, "failed") for k in failed_keys(out) - done}
    have = {(r["key"], "failed" if r["status"] == "failed" else "run") for r in rows}
    if have != want:
        return None
    for r in rows:
        sub = FAILED if r["status"] == "failed" else RUNS
        if r.pop("stamp") != stamp(out / sub / r["key"]):  # a file changed since indexing
            return None
        r["config"], r["metrics"] = json.loads(r["config"]), json.loads(r["metrics"])
    return rows


def ensure_index(out: Path) -> str | None:
    """Rebuild the index if stale, missing or damaged; if damaged, a line saying so."""
    if index_rows(out) is not None:
        return None
    problem = None
    if (out / INDEX).is_file():
        try:
            _read_index(out)
        except sqlite3.Error as e:  # garbage bytes, or an index from an older supermem
            problem = str(e)
    n = rebuild_index(out)
    return f"{out / INDEX}: unreadable ({problem}); rebuilt from {n} dirs" if problem else None


# -- reading a sweep back ---------------------------------------------------------------
def _check(out: Path) -> None:
    if not is_sweep_dir(out):
        raise FileNotFoundError(f"{out} is not a sweep directory (no spec.json or runs/)")


def load_sweep(out: str | Path) -> list[Run]:
    """Every finished run (status ok or diverged) in ``out``, as ``store.load_run`` gives it."""
    out = Path(out)
    _check(out)
    return [load_run(p) for p in visible(out / RUNS)]


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    scalar = (int, float, str, bool, type(None))
    row = {k: v for k, v in r["config"].items() if isinstance(v, scalar)}
    row.update({k: v for k, v in r["metrics"].items() if isinstance(v, scalar)})
    top = r["metrics"].get("top_feature_dims")
    row["max_feature_dim"] = top[0] if top else None
    row.update(key=r["key"], status=r["status"], error=r["error"], path=r["path"])
    return row


def sweep_frame(out: str | Path) -> pd.DataFrame:
    """One row per run (failed ones included, with ``error``): every config field, the scalar
    metrics (train_loss, test_loss, W_norm, b_norm, status, diverged_step, seconds, ...),
    ``max_feature_dim``, ``key`` and ``path``. Read from the index when it is fresh,
    else straight from the run dirs. Rows are sorted by key."""
    import pandas as pd

    out = Path(out)
    _check(out)
    rows = index_rows(out)
    rows = scan(out) if rows is None else rows
    cols = [f.name for f in fields(TrainConfig)] + ["key", "status", "error", "path"]
    frame = pd.DataFrame([_flat(r) for r in rows], columns=None if rows else cols)
    return frame.sort_values("key", ignore_index=True) if len(frame) else frame
