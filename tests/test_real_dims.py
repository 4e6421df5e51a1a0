"""supermem.real: streamed D*, D and D_i against independent computations."""

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from supermem.metrics import data_dims, feature_dims
from supermem.real import (
    ActivationError,
    ActivationSource,
    dims,
    from_module,
    load_activations,
    weight_dims,
)


def svd_leverage(H: np.ndarray, center: bool = False, tol: float = 1e-5) -> np.ndarray:
    """Diagonal of the hat matrix U_r U_r^T from H's SVD, never forming H^T H. ``tol`` on
    singular values is the square root of the default cut-off on H^T H's eigenvalues."""
    H = np.asarray(H, dtype=np.float64)
    if center:
        H = H - H.mean(axis=0)
    U, s, _ = np.linalg.svd(H, full_matrices=False)
    r = int((s > tol * s[0]).sum()) if s.size and s[0] > 0 else 0
    return (U[:, :r] ** 2).sum(axis=1)


def qr_leverage(H: np.ndarray) -> np.ndarray:
    """Row norms of Q from H = QR (full column rank H only)."""
    return (np.linalg.qr(np.asarray(H, dtype=np.float64))[0] ** 2).sum(axis=1)


def lstsq_leverage(H: np.ndarray) -> np.ndarray:
    """h_t^T (H^T H)^+ h_t via numpy lstsq: solve (H^T H) x = h_t for all t."""
    G = H.T @ H
    X = np.linalg.lstsq(G, H.T, rcond=1e-10)[0]  # (m, T)
    return np.einsum("tm,mt->t", H, X)


def low_rank(rng, T: int, m: int, r: int) -> np.ndarray:
    return (rng.normal(size=(T, r)) @ rng.normal(size=(r, m))).astype(np.float32)


@pytest.mark.parametrize("T, m, r", [(50, 1, 1), (400, 12, 12), (300, 40, 7), (30, 64, 30)])
def test_dstar__equals_qr_leverage_and_sums_to_rank(T, m, r):
    H = low_rank(np.random.default_rng(T + m), T, m, r)
    d = dims(H, rows=37)  # many uneven batches
    np.testing.assert_allclose(d.dstar, svd_leverage(H), atol=1e-8)
    np.testing.assert_allclose(d.dstar, lstsq_leverage(H.astype(np.float64)), atol=1e-6)
    if r == m:
        np.testing.assert_allclose(d.dstar, qr_leverage(H), atol=1e-8)
    assert d.rank == r
    assert d.dstar.sum() == pytest.approx(r, abs=1e-8)
    assert d.dstar.min() >= -1e-12 and d.dstar.max() <= 1 + 1e-9


def test_dstar__m1_is_share_of_squares():
    h = np.random.default_rng(0).normal(size=(100, 1))
    np.testing.assert_allclose(dims(h).dstar, h[:, 0] ** 2 / (h**2).sum(), rtol=1e-12)


def test_dstar__planted_high_leverage_rows_rank_top():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(5000, 32))
    planted = rng.choice(5000, 10, replace=False)
    H[planted] *= 30  # far out in their own directions: leverage near 1
    d = dims(H.astype(np.float32), rows=999)
    assert set(np.argsort(d.dstar)[-10:]) == set(planted)
    assert d.dstar[planted].min() > 20 * np.median(d.dstar)


def test_dstar__private_direction_gives_one():
    """A row alone in a direction no other row uses is a pure data point feature: D* = 1."""
    rng = np.random.default_rng(2)
    H = np.zeros((200, 6))
    H[:, :5] = rng.normal(size=(200, 5))
    H[17] = [0, 0, 0, 0, 0, 0.3]
    d = dims(H)
    assert d.dstar[17] == pytest.approx(1.0, abs=1e-12) and d.rank == 6


def test_center__equals_intercept_leverage_minus_one_over_T_with_a_large_mean():
    rng = np.random.default_rng(3)
    H = rng.normal(size=(800, 10)) + 1e5  # a mean far above the spread
    d = dims(H, center=True, rows=100)
    X = np.c_[np.ones(len(H)), H - 1e5]
    np.testing.assert_allclose(d.dstar, qr_leverage(X) - 1 / len(H), atol=1e-7)
    assert d.centered and d.rank == 10


def test_rcond__cuts_small_directions_and_is_reported():
    rng = np.random.default_rng(4)
    U = np.linalg.qr(rng.normal(size=(500, 4)))[0]
    H = U @ np.diag([1.0, 0.5, 1e-3, 1e-7])  # eigenvalues of H^T H: 1, .25, 1e-6, 1e-14
    d = dims(H)
    assert d.rank == 3 and d.cutoff == pytest.approx(1e-10 * d.eig_max)
    assert dims(H, rcond=1e-5).rank == 2  # 1e-6 is below 1e-5 * 1
    assert dims(H, rcond=0.0).rank == 4


def test_data_dims__equals_metrics():
    H = np.random.default_rng(5).normal(size=(300, 8))
    H[3] = 0
    d = dims(H, data_dims=True, rows=64)
    np.testing.assert_allclose(d.data_dims, data_dims(H), rtol=1e-12)
    assert d.data_dims[3] == 0


def test_weight_dims__orthogonal_columns_are_one_and_files_match(tmp_path):
    W = np.random.default_rng(6).normal(size=(4, 30))
    np.testing.assert_allclose(weight_dims(np.eye(5)), np.ones(5))
    np.save(tmp_path / "w.npy", W)
    np.testing.assert_allclose(weight_dims(tmp_path / "w.npy"), feature_dims(W), rtol=1e-12)


def test_files__npy_npz_safetensors_and_3d_give_the_same_values(tmp_path):
    H = np.random.default_rng(7).normal(size=(6, 50, 16)).astype(np.float32)
    flat = H.reshape(-1, 16)
    np.save(tmp_path / "h.npy", H)
    np.savez(tmp_path / "h.npz", acts=H, other=flat[:3])
    save_file({"resid": H, "other": flat[:3]}, str(tmp_path / "h.safetensors"))
    want = svd_leverage(flat)
    for path, key in [("h.npy", None), ("h.npz", "acts"), ("h.safetensors", "resid")]:
        src = load_activations(tmp_path / path, key)
        assert (src.T, src.m) == (300, 16)
        np.testing.assert_allclose(dims(src, rows=70).dstar, want, atol=1e-8)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: np.save(p / "a.npy", np.array([1.0, np.nan, 2.0]).reshape(3, 1)), "NaN"),
        (lambda p: np.save(p / "a.npy", np.r_[np.ones((4, 2)), [[1, np.inf]]]), "row 4"),
        (lambda p: np.save(p / "a.npy", np.arange(5.0)), "two dimensions"),
        (lambda p: np.save(p / "a.npy", np.zeros((0, 3))), "empty"),
        (lambda p: np.save(p / "a.npy", np.array([["a", "b"]])), "real numbers"),
        (lambda p: np.savez(p / "a.npz", x=np.ones((3, 2)), y=np.ones((3, 2))), "pass a key"),
        (lambda p: (p / "a.txt").write_text("1 2\n"), "unknown format"),
        (lambda p: (p / "a.npy").write_bytes(b"not numpy"), "cannot read"),
    ],
)
def test_bad_files__raise_one_line_errors(tmp_path, make, match):
    make(tmp_path)
    (path,) = tmp_path.iterdir()
    with pytest.raises(ActivationError, match=match) as e:
        dims(load_activations(path))
    assert "\n" not in str(e.value)


def test_unknown_key__lists_the_keys(tmp_path):
    save_file({"a": np.ones((3, 2), np.float32)}, str(tmp_path / "h.safetensors"))
    with pytest.raises(ActivationError, match=r"no array 'b' \(keys: a\)"):
        load_activations(tmp_path / "h.safetensors", "b")


def test_source_that_changes_between_passes__is_refused():
    rng = np.random.default_rng(8)

    def read(rows):  # fresh random rows on every pass
        yield rng.normal(size=(10, 3))

    with pytest.raises(ActivationError, match="different rows"):
        dims(ActivationSource(read, 3, 10, "random"))


class TwoLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(5, 7)
        self.act = torch.nn.ReLU()
        self.out = torch.nn.Linear(7, 3)

    def forward(self, x):
        return self.out(self.act(self.fc(x)))


def test_from_module__hook_equals_dims_of_the_layer_output():
    torch.manual_seed(0)
    model, X = TwoLayer(), torch.randn(130, 5)
    ds = torch.utils.data.TensorDataset(X, torch.zeros(130))
    loader = torch.utils.data.DataLoader(ds, batch_size=32)
    with torch.no_grad():
        H = model.act(model.fc(X)).double().numpy()
    d = dims(from_module(model, loader, "act"))
    np.testing.assert_allclose(d.dstar, svd_leverage(H), atol=1e-8)
    assert d.T == 130


def test_from_module__refuses_shuffling_loader_and_unknown_layer():
    ds = torch.utils.data.TensorDataset(torch.randn(20, 5))
    with pytest.raises(ActivationError, match="shuffles"):
        from_module(TwoLayer(), torch.utils.data.DataLoader(ds, shuffle=True), "act")
    with pytest.raises(ActivationError, match="no layer 'nope'"):
        from_module(TwoLayer(), torch.utils.data.DataLoader(ds), "nope")


def test_files__bfloat16_safetensors_read_exactly(tmp_path):
    from safetensors.torch import save_file as save_torch

    H = torch.randn(200, 8).to(torch.bfloat16)
    save_torch({"h": H}, str(tmp_path / "h.safetensors"))
    got = dims(load_activations(tmp_path / "h.safetensors")).dstar
    np.testing.assert_allclose(got, svd_leverage(H.double().numpy()), atol=1e-8)
