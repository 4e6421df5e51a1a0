"""Models trained on random halves of one pool, for counterfactual memorisation.

A *unit* is a group of K models trained together and saved as one directory (written
atomically: ``config.json``, ``arrays.npz``, no pickle). Arrays, P pool examples:

    member (K, P) bool      model k trained on example t
    loss (K, P)             per-example loss of model k on every pool example (float64)
    dstar (K, P)            D*_t over model k's own training hidden vectors; NaN off-member
    data_dim (K, P)         D_t over the same vectors; NaN off-member

Toy units: all K tied models of one T trained at once as instances (``train_many`` with
``data=``); the pool is ``sample(2T, ...)`` and the held-out half is each model's test set.
The per-example loss is ||x - ReLU(W^T W x + b)||^2 (``supermem.toy.losses``) in float64,
and h_t = W x_t. MNIST units: one 512-unit MLP each (K = 1, seeded by its index), D* of
its hidden layer, per-example cross-entropy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from supermem.real.counterfactual import half_masks

ARRAYS = ("member", "loss", "dstar", "data_dim")


@dataclass(frozen=True)
class ToyUnit:
    """K tied toy models (m hidden, n features, sparsity S) on halves of a pool of 2T."""

    regime: str
    T: int
    models: int
    features: int
    sparsity: float
    hidden: int
    steps: int
    pool_seed: int = 0  # data_seed of the pool's sample
    mask_seed: int = 0  # halves drawn by (mask_seed, k)

    @property
    def name(self) -> str:
        return (
            f"toy-T{self.T}-K{self.models}-n{self.features}-S{self.sparsity:g}-m{self.hidden}"
            f"-steps{self.steps}-pool{self.pool_seed}-mask{self.mask_seed}"
        )


@dataclass(frozen=True)
class MnistUnit:
    """MLP ``index`` of the MNIST set: a random half of a pool of ``pool`` examples."""

    index: int
    pool: int
    hidden: int
    epochs: int
    pool_seed: int = 0  # which examples form the pool
    mask_seed: int = 0

    @property
    def name(self) -> str:
        return (
            f"mnist-P{self.pool}-h{self.hidden}-ep{self.epochs}-pool{self.pool_seed}"
            f"-mask{self.mask_seed}-model{self.index}"
        )


def toy_pool(u: ToyUnit):
    """The pool: 2T points (one ``SparseData`` instance) from data seed ``pool_seed``."""
    from supermem.toy.data import sample

    return sample(2 * u.T, u.features, u.sparsity, data_seed=u.pool_seed)


def toy_losses(W: np.ndarray, b: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (K, m, n), b (K, n), X (P, n) dense -> (loss (K, P) = ||x - ReLU(W^T W x + b)||^2,
    H (K, P, m) = x W^T), in float64."""
    W, b, X = (np.asarray(a, dtype=np.float64) for a in (W, b, X))
    H = np.einsum("pn,kmn->kpm", X, W)
    loss = np.empty(H.shape[:2])
    for k in range(len(W)):  # one (P, n) reconstruction at a time
        loss[k] = ((X - np.maximum(H[k] @ W[k] + b[k], 0.0)) ** 2).sum(-1)
    return loss, H


def member_dims(H: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H (K, P, m), member (K, P) with the same count T per row -> (D*, D) each (K, P):
    over each model's own training rows, NaN elsewhere."""
    from supermem.metrics import data_dims, max_data_dims

    K, P, m = H.shape
    Ht = H[member].reshape(K, -1, m)  # (K, T, m): member rows in pool order
    dstar, dd = np.full((K, P), np.nan), np.full((K, P), np.nan)
    dstar[member] = max_data_dims(Ht).ravel()
    dd[member] = data_dims(Ht).ravel()
    return dstar, dd


def train_toy(u: ToyUnit, progress: bool = False) -> dict:
    """Train the unit's K models together; its arrays and the training seconds."""
    import scipy.sparse as sp

    from supermem.config import TrainConfig
    from supermem.toy.data import SparseData
    from supermem.toy.train import train_many

    pool = toy_pool(u)
    member = half_masks(u.models, 2 * u.T, u.mask_seed)
    X = pool.to_scipy()

    def stack(rows: list[np.ndarray]) -> SparseData:
        return SparseData.from_scipy(sp.vstack([X[r] for r in rows]), inst=len(rows))

    train = stack([np.flatnonzero(m) for m in member])
    test = stack([np.flatnonzero(~m) for m in member])
    base = TrainConfig(
        features=u.features,
        sparsity=u.sparsity,
        hidden=u.hidden,
        steps=u.steps,
        train_size=u.T,
        test_size=u.T,  # the held-out half
        snapshots=0,
    )
    cfgs = [base.replace(seed=k) for k in range(u.models)]
    t0 = time.perf_counter()
    res = train_many(cfgs, progress=progress, data=(train, test))
    seconds = time.perf_counter() - t0
    W = np.stack([r.params["W"] for r in res])
    b = np.stack([r.params["b"] for r in res])
    loss, H = toy_losses(W, b, X.toarray())
    dstar, dd = member_dims(H, member)
    diverged = np.array([r.diverged for r in res])
    arrays = {"member": member, "loss": loss, "dstar": dstar, "data_dim": dd}
    engine = res[0].engine  # what ``auto`` resolved to
    return {"arrays": arrays, "seconds": seconds, "diverged": int(diverged.sum()), "engine": engine}


def mnist_pool(u: MnistUnit, digits):
    """The first ``pool`` examples of ``digits`` (X (N, 784), y (N,)) shuffled by pool_seed:
    (X (P, 784), y (P,), source index (P,))."""
    from supermem.real.mnist import MnistError

    if u.pool > len(digits.y):
        raise MnistError(f"a pool of {u.pool} needs more than the {len(digits.y)} examples given")
    idx = np.random.default_rng(u.pool_seed).permutation(len(digits.y))[: u.pool]
    return digits.X[idx], digits.y[idx], idx


def train_mnist(u: MnistUnit, digits, progress: bool = False) -> dict:
    """Train MLP ``u.index`` on its half of the pool; arrays with K = 1."""
    from supermem.real.dims import dims
    from supermem.real.mlp import MLPConfig, evaluate, train_mlp

    X, y, _ = mnist_pool(u, digits)
    member = half_masks(u.index + 1, u.pool, u.mask_seed)[u.index]  # row k, whatever K is
    cfg = MLPConfig(hidden=u.hidden, epochs=u.epochs, seed=u.index)
    t0 = time.perf_counter()
    model = train_mlp(cfg, X[member], y[member], progress)
    seconds = time.perf_counter() - t0
    ev = evaluate(model, X, y)
    d = dims(ev["hidden"][member], data_dims=True)
    dstar, dd = np.full(u.pool, np.nan), np.full(u.pool, np.nan)
    dstar[member], dd[member] = d.dstar, d.data_dims
    arrays = {
        "member": member[None],
        "loss": ev["loss"][None],
        "dstar": dstar[None],
        "data_dim": dd[None],
        "correct": (ev["pred"] == y)[None],
    }
    return {"arrays": arrays, "seconds": seconds, "diverged": 0}


def save_unit(out: Path, unit: ToyUnit | MnistUnit, measured: dict) -> Path:
    """Write the unit's directory atomically (temp dir, then rename)."""
    from supermem.sweeps.store import write_atomic

    def write(tmp: Path) -> None:
        cfg = {"kind": type(unit).__name__, **asdict(unit), "seconds": measured["seconds"]}
        cfg |= {"diverged": measured["diverged"], "engine": measured.get("engine", "")}
        np.savez(tmp / "arrays.npz", **measured["arrays"])
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    return write_atomic(out, write)


def is_done(run_dir: Path) -> bool:
    return (run_dir / "config.json").is_file()


def concat_units(units: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Units of one pool stacked along the model axis: every array (K_total, P)."""
    keys = [k for k in units[0] if all(k in u for u in units)]
    return {k: np.concatenate([u[k] for u in units]) for k in keys}
