"""Run directories on disk: written atomically, read back as arrays. No pickle anywhere.

A run directory holds
  config.json          every setting (defaults filled in) + seeds, versions, git commit
  metrics.json         status, losses, norms, summaries
  arrays.safetensors   W (m, n), b (n), H_train (T, m), feature_dims (n), data_dims (T),
                       max_data_dims (T), snapshot_steps (k,), snapshot_W (k, m, n),
                       snapshot_b (k, n), loss_steps (h,), loss_history (h,); the untied
                       model also W_dec (m, n) and snapshot_W_dec (k, m, n)
  train_data.safetensors  the training set as CSR: indptr (T+1,), indices, values;
                          weights (T,) when points repeat (repeat_points > 0)
A diverged run has config.json and metrics.json (status "diverged") and no arrays.

The directory is assembled under a hidden temporary name beside the target and renamed
into place only when complete, so a visible run directory is always a whole one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from supermem import metrics
from supermem.config import ConfigError, TrainConfig
from supermem.provenance import git_commit, provenance  # noqa: F401 (re-exported)
from supermem.sweeps.checks import ARRAYS, DATA, DamagedRunError, check_run
from supermem.toy.model import get_model
from supermem.toy.train import InstanceResult


class RunExistsError(FileExistsError):
    """The output directory exists and overwriting was not asked for."""


def run_record(r: InstanceResult) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(config.json, metrics.json, arrays) for a trained instance."""
    config = {
        **r.config.to_dict(),
        "init_seeds": r.restart_seeds,
        "kept_init_seed": r.init_seed,
        **provenance(),
    }
    base: dict[str, Any] = {
        "status": "diverged" if r.diverged else "ok",
        "diverged_step": r.diverged_step,
        "seconds": r.seconds,
        "engine": r.engine,
        "threads": None if r.threads is None else round(r.threads, 3),
        "restart_train_losses": r.restart_train_losses,
    }
    if r.resumed:  # trained in segments, from checkpoints (the same numbers as in one
        # where every segment ran the same code for the same CPU target and features)
        base["resumed_at_steps"] = r.resumed
        base["segment_commits"] = r.segment_commits
        base["segment_cpu_targets"] = r.segment_cpu_targets
        base["segment_cpu_features"] = r.segment_cpu_features
    if r.diverged:
        return config, base, {}
    W, b = r.params["W"], r.params["b"]
    H = metrics.hidden(W, r.X_train.to_scipy())
    if get_model(r.config.model).relu_hidden:  # the hidden vectors the decoder sees
        H = np.maximum(H, 0)
    H = H.astype(np.float32)
    fd, dd, dstar = metrics.feature_dims(W), metrics.data_dims(H), metrics.max_data_dims(H)
    arrays = {
        "W": W,
        "b": b,
        "H_train": H,
        "feature_dims": fd,
        "data_dims": dd,
        "max_data_dims": dstar,
        "snapshot_steps": r.snapshot_steps,
        "snapshot_W": r.snapshots["W"],
        "snapshot_b": r.snapshots["b"],
        "loss_steps": r.loss_steps,
        "loss_history": r.loss_history,
    }
    if "W_dec" in r.params:  # untied: the decoder, beside the encoder W
        arrays |= {"W_dec": r.params["W_dec"], "snapshot_W_dec": r.snapshots["W_dec"]}
    m = {
        **base,
        "train_loss": r.train_loss,
        "test_loss": r.test_loss,
        **metrics.norms(W, b),
        **({"W_dec_norm": float(np.linalg.norm(r.params["W_dec"]))} if "W_dec" in r.params else {}),
        "top_feature_dims": np.sort(fd)[::-1][:10].tolist(),
        "feature_dims_sum": float(fd.sum()),
        "data_dims_mean": float(dd.mean()),
        "data_dims_median": float(np.median(dd)),
        "m_over_T": r.config.hidden / r.config.train_size,
    }
    if r.config.repeat_points:
        K = r.config.repeat_points  # the first K training points, each repeat_count times
        m["repeated_points"] = list(range(K))
        m["repeated_data_dims"] = dd[:K].tolist()
        m["repeated_dims_quantile"] = [float((dd < v).mean()) for v in dd[:K]]
    return config, m, {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def check_replaceable(out: Path, overwrite: bool) -> None:
    """Raise RunExistsError unless ``out`` is absent, or a run directory and ``overwrite``.

    --overwrite replaces a run, never another kind of folder or file (a sweep, a typo).
    """
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise RunExistsError(f"{out} exists; pass --overwrite to replace it")
    if not (out.is_dir() and (out / "config.json").is_file()):
        raise RunExistsError(f"{out} exists and is not a run directory; refusing to replace it")


def save_run(r: InstanceResult, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a run directory atomically; refuse an existing one unless ``overwrite``."""
    out = Path(out)
    check_replaceable(out, overwrite)
    config, mets, arrays = run_record(r)
    X = r.X_train
    data = {"indptr": X.indptr, "indices": X.indices, "values": X.values}
    if X.weights is not None:
        data["weights"] = X.weights  # (T,) row weights: repeat_count on the repeated points

    def write(tmp: Path) -> None:
        _json(tmp / "config.json", config)
        _json(tmp / "metrics.json", mets)
        if arrays:
            save_file(arrays, str(tmp / ARRAYS))
            save_file(data, str(tmp / DATA), metadata={"shape": f"{X.T},{X.n}"})

    return write_atomic(out, write, overwrite)


def write_atomic(out: Path, write, overwrite: bool = False) -> Path:
    """Call ``write(tmp_dir)`` then rename tmp_dir to ``out`` (replacing it if ``overwrite``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        if out.exists():
            if not overwrite:
                raise RunExistsError(f"{out} exists; pass --overwrite to replace it")
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


@dataclass
class Run:
    """A run loaded back: plain dicts and NumPy arrays."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]
    X_train: sp.csr_matrix | None

    @property
    def status(self) -> str:
        return self.metrics.get("status", "unknown")

    @property
    def train_config(self) -> TrainConfig:
        """The TrainConfig this run was trained with."""
        keys = TrainConfig.__dataclass_fields__
        return TrainConfig.from_dict({k: v for k, v in self.config.items() if k in keys})


def load_run(path: str | os.PathLike) -> Run:
    """Load a run directory written by ``save_run``.

    FileNotFoundError if ``path`` has no config.json; DamagedRunError (naming the file and
    the problem) if a file is missing, truncated, unparseable or disagrees with the config.
    """
    path = Path(path)
    config, mets = check_run(path)
    arrays = _load(path / ARRAYS) if (path / ARRAYS).exists() else {}
    X = None
    if (path / DATA).exists():
        d = _load(path / DATA)
        T, n = config["train_size"], config["features"]
        try:
            X = sp.csr_matrix((d["values"], d["indices"], d["indptr"]), shape=(T, n))
            X.check_format(full_check=True)
        except ValueError as e:  # e.g. a column index >= n
            raise DamagedRunError(path / DATA, f"not a valid CSR matrix ({e})") from None
    return Run(path, config, mets, arrays, X)


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except SafetensorError as e:  # check_run read the header; the data can still be bad
        raise DamagedRunError(path, f"unparseable safetensors file ({e})") from None


def init_weights(cfg: TrainConfig) -> dict[str, np.ndarray] | None:
    """W (m, n), b (n) (and W_dec (m, n) if saved) of the run ``cfg.init_from`` names;
    None when it names none."""
    if cfg.init_from is None:
        return None
    try:
        run = load_run(cfg.init_from)
    except (FileNotFoundError, DamagedRunError) as e:
        raise ConfigError(f"init_from: {e}") from None
    if run.status != "ok" or not {"W", "b"} <= set(run.arrays):
        raise ConfigError(f"init_from run {cfg.init_from} has status {run.status}: no weights")
    return {k: run.arrays[k] for k in ("W", "W_dec", "b") if k in run.arrays}
