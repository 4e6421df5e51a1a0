"""Is a run directory whole? Cheap structural checks, run before anything reads it.

A run directory is written atomically (``store.write_atomic``), but a disk can still
fill, a copy can be cut short, or a person can edit a file. Readers call ``check_run``
(JSON parses, required keys present, each safetensors header sound, the file as long as
its header says, every known array the shape the config implies) and get one
``DamagedRunError`` naming the file and the problem instead of a traceback somewhere
downstream. Nothing here reads the array data itself, so a sweep can check all its
run dirs at every resume.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

ARRAYS, DATA = "arrays.safetensors", "train_data.safetensors"
CONFIG_KEYS = ("features", "hidden", "train_size", "sparsity", "steps", "seed", "data_seed")
OK_METRICS = ("train_loss", "test_loss", "W_norm", "b_norm")
OK_ARRAYS = ("W", "b", "H_train", "feature_dims", "data_dims", "max_data_dims")
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1}
_ITEMSIZE |= {"U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


class DamagedRunError(ValueError):
    """A run directory's file is missing, truncated, unparseable or inconsistent."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem

    def __reduce__(self):  # picklable, so a worker process can raise it
        return type(self), (self.path, self.problem)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; DamagedRunError if it is missing or not one."""
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DamagedRunError(path, "missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedRunError(path, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise DamagedRunError(path, f"not a JSON object (a {type(obj).__name__})")
    return obj


def require(path: Path, obj: dict[str, Any], keys: tuple[str, ...], what: str = "key") -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DamagedRunError(path, f"missing {what}(s) {', '.join(missing)}")


def tensor_shapes(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(name -> shape, metadata) from a safetensors header, checking that the file holds
    exactly the bytes the header describes (a truncated file fails here)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            size = path.stat().st_size
            if len(head) < 8:
                raise DamagedRunError(path, "truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise DamagedRunError(path, "truncated or unparseable safetensors header")
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        raise DamagedRunError(path, "missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DamagedRunError(path, "unparseable safetensors header") from None
    if not isinstance(header, dict):
        raise DamagedRunError(path, "unparseable safetensors header")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise DamagedRunError(path, "unparseable safetensors metadata")
    shapes, end = {}, 0
    for name, t in header.items():
        try:
            shape = tuple(int(s) for s in t["shape"])
            lo, hi = (int(x) for x in t["data_offsets"])
            nbytes = math.prod(shape) * _ITEMSIZE[t["dtype"]]
        except (TypeError, KeyError, ValueError):
            raise DamagedRunError(path, f"unparseable safetensors entry {name!r}") from None
        if hi - lo != nbytes or lo < 0:
            raise DamagedRunError(path, f"safetensors entry {name!r} has the wrong byte count")
        shapes[name], end = shape, max(end, hi)
    have = size - 8 - n
    if have != end:
        what = "truncated safetensors file" if have < end else "safetensors file too long"
        raise DamagedRunError(path, f"{what} ({have} data bytes, header says {end})")
    return shapes, meta


def expected_shapes(config: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict:
    """The shape each known array must have, from the config and the saved step counts."""
    T, m, n = config["train_size"], config["hidden"], config["features"]
    (k, *_), (h, *_) = shapes.get("snapshot_steps") or (0,), shapes.get("loss_steps") or (0,)
    return {
        "snapshot_steps": (k,),
        "loss_steps": (h,),
        "W": (m, n),
        "b": (n,),
        "H_train": (T, m),
        "feature_dims": (n,),
        "data_dims": (T,),
        "max_data_dims": (T,),
        "snapshot_W": (k, m, n),
        "snapshot_b": (k, n),
        "W_dec": (m, n),  # untied model only
        "snapshot_W_dec": (k, m, n),
        "loss_history": (h,),
    }


def check_shapes(path: Path, config: dict, shapes: dict, want: tuple[str, ...]) -> None:
    require(path, shapes, want, "array")
    for name, shape in expected_shapes(config, shapes).items():
        if name in shapes and shapes[name] != shape:
            raise DamagedRunError(
                path, f"array {name} has shape {shapes[name]}, config.json implies {shape}"
            )


def check_data(path: Path, config: dict) -> None:
    """The CSR training set: indptr (T+1,), indices and values (nnz,), shape T,n; row
    weights (T,) when points repeat."""
    shapes, meta = tensor_shapes(path)
    require(path, shapes, ("indptr", "indices", "values"), "array")
    T, n = config["train_size"], config["features"]
    if shapes["indptr"] != (T + 1,) or shapes["indices"] != shapes["values"]:
        raise DamagedRunError(path, f"not a CSR matrix of {T} rows")
    if meta.get("shape", f"{T},{n}") != f"{T},{n}":
        raise DamagedRunError(path, f"shape {meta['shape']}, config.json implies {T},{n}")
    if "weights" in shapes and shapes["weights"] != (T,):
        raise DamagedRunError(path, f"row weights of shape {shapes['weights']}, expected ({T},)")


def check_run(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, metrics) of a whole run directory; DamagedRunError naming what is wrong.

    FileNotFoundError if ``path`` is no run directory at all (it has no config.json).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a supermem run directory (no config.json)")
    config = read_json(path / "config.json")
    require(path / "config.json", config, CONFIG_KEYS)
    for k in ("features", "hidden", "train_size"):
        v = config[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise DamagedRunError(path / "config.json", f"{k} is {v!r}, not a positive integer")
    mets = read_json(path / "metrics.json")
    require(path / "metrics.json", mets, ("status",))
    if mets["status"] == "ok":
        require(path / "metrics.json", mets, OK_METRICS)
    if mets["status"] == "ok" or (path / ARRAYS).exists():
        check_shapes(path / ARRAYS, config, tensor_shapes(path / ARRAYS)[0], OK_ARRAYS)
        check_data(path / DATA, config)
    return config, mets
