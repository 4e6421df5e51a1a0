"""One MNIST model as a run directory: train, measure D*, save (atomically, no pickle).

A run directory holds ``config.json``, ``weights.safetensors``, ``arrays.npz`` (every
per-example array, below) and ``metrics.json`` (``run_metrics`` of those arrays). Arrays,
T training and V validation examples:

    train_index (T,), val_index (V,)   rows of the source data set
    y_train (T,) labels trained on (flipped where ``flipped`` (T,)), y_true (T,), y_val (V,)
    pred_train (T,), pred_val (V,), loss_train (T,), loss_val (V,)   per-example CE
    dstar_train (T,)   D* over the training activations alone (Olah's curve)
    dstar_val (V,)     D* over the validation activations alone (the curve asked for)
    dstar_pool (T+V,)  D* over training then validation rows together (membership)
    dstar_train_centered (T,)  the same as dstar_train after subtracting the mean
    ranks (4,)         ranks of the train, val, pool, centred Gram matrices
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from supermem.real.dims import dims
from supermem.real.mlp import MLPConfig, evaluate, train_mlp, weights
from supermem.real.mnist import Digits, flip_labels
from supermem.real.scores import auroc, precision_at_k


@dataclass(frozen=True)
class MnistRun:
    """One model: a training-set size and a label-noise share."""

    n_train: int
    noise: float
    mlp: MLPConfig
    noise_seed: int = 1

    @property
    def name(self) -> str:
        return f"T{self.n_train}-noise{self.noise:g}-seed{self.mlp.seed}-ep{self.mlp.epochs}"


def measure(run: MnistRun, train: Digits, val: Digits, progress: bool = False) -> dict:
    """Train, then every per-example array of the module docstring (plus ``weights``)."""
    y, flipped = (
        flip_labels(train.y, run.noise, run.noise_seed)
        if run.noise > 0
        else (train.y, np.zeros(len(train.y), dtype=bool))
    )
    t0 = time.perf_counter()
    model = train_mlp(run.mlp, train.X, y, progress)
    seconds = time.perf_counter() - t0
    et, ev = evaluate(model, train.X, y), evaluate(model, val.X, val.y)
    d_train, d_val = dims(et["hidden"]), dims(ev["hidden"])
    d_pool = dims(np.concatenate([et["hidden"], ev["hidden"]]))
    d_cent = dims(et["hidden"], center=True)
    arrays = {
        "y_train": y, "y_true": train.y, "flipped": flipped, "y_val": val.y,
        "pred_train": et["pred"], "pred_val": ev["pred"],
        "loss_train": et["loss"], "loss_val": ev["loss"],
        "dstar_train": d_train.dstar, "dstar_val": d_val.dstar, "dstar_pool": d_pool.dstar,
        "dstar_train_centered": d_cent.dstar,
        "ranks": np.array([d_train.rank, d_val.rank, d_pool.rank, d_cent.rank]),
    }  # fmt: skip
    return {"arrays": arrays, "weights": weights(model), "seconds": seconds}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def run_metrics(a: dict[str, np.ndarray]) -> dict[str, float]:
    """Scalars from a run's arrays (so anyone can recompute them from ``arrays.npz``)."""
    T = len(a["y_train"])
    member = np.r_[np.ones(T, dtype=bool), np.zeros(len(a["y_val"]), dtype=bool)]
    fl = a["flipped"].astype(bool)
    wrong_t = a["pred_train"] != a["y_train"]
    med = np.median
    return {
        "n_train": T,
        "n_val": len(a["y_val"]),
        "train_acc": float(1 - wrong_t.mean()),
        "val_acc": float((a["pred_val"] == a["y_val"]).mean()),
        "rank_train": int(a["ranks"][0]),
        "rank_val": int(a["ranks"][1]),
        "median_dstar_train_x_T_over_rank": float(med(a["dstar_train"]) * T / a["ranks"][0]),
        "max_over_median_train": float(a["dstar_train"].max() / med(a["dstar_train"])),
        "max_over_median_val": float(a["dstar_val"].max() / med(a["dstar_val"])),
        "auroc_member_dstar": auroc(a["dstar_pool"], member),
        "auroc_member_loss": auroc(-np.r_[a["loss_train"], a["loss_val"]], member),
        "auroc_flipped_dstar": auroc(a["dstar_train"], fl),
        "auroc_flipped_dstar_centered": auroc(a["dstar_train_centered"], fl),
        "precision_at_k_flipped": precision_at_k(a["dstar_train"], fl, int(fl.sum())),
        "n_flipped": int(fl.sum()),
        "n_wrong_train": int(wrong_t.sum()),
        "spearman_dstar_loss_train": _spearman(a["dstar_train"], a["loss_train"]),
        "spearman_dstar_loss_val": _spearman(a["dstar_val"], a["loss_val"]),
    }


def save_run(out: Path, run: MnistRun, measured: dict, extra: dict) -> Path:
    """Write OUT (a run directory) atomically: temp dir, then rename."""
    from safetensors.numpy import save_file

    from supermem.sweeps.store import write_atomic

    def write(tmp: Path) -> None:
        cfg: dict[str, Any] = {"n_train": run.n_train, "noise": run.noise}
        cfg |= {"noise_seed": run.noise_seed, "mlp": run.mlp.to_dict(), **extra}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(measured["weights"], str(tmp / "weights.safetensors"))
        np.savez(tmp / "arrays.npz", **measured["arrays"])
        m = run_metrics(measured["arrays"]) | {"train_seconds": measured["seconds"]}
        (tmp / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")

    return write_atomic(out, write)


def load_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "arrays.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def is_done(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()
