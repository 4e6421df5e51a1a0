import numpy as np
import pytest
import torch

from supermem import metrics
from supermem.toy import losses


def polygon(T: int, radius: float = 1.0, phase: float = 0.3) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(T) / T
    return radius * np.stack([np.cos(a), np.sin(a)], 1)


def test_data_dims__orthogonal_vectors_give_one():
    H = np.diag([1.0, 2.0, 0.5])
    np.testing.assert_allclose(metrics.data_dims(H), 1.0)


def test_data_dims__antipodal_pair_gives_half():
    H = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(metrics.data_dims(H), [0.5, 0.5, 1.0])


@pytest.mark.parametrize("T", [3, 5, 7, 12])
def test_data_dims__regular_polygon_gives_m_over_T(T):
    np.testing.assert_allclose(metrics.data_dims(polygon(T, 2.5)), 2 / T, rtol=1e-12)


def test_feature_dims__regular_polygon_columns_and_zero_columns():
    W = np.concatenate([polygon(5).T, np.zeros((2, 3))], axis=1)  # (2, 8)
    fd = metrics.feature_dims(W)
    np.testing.assert_allclose(fd[:5], 2 / 5, rtol=1e-12)
    np.testing.assert_array_equal(fd[5:], 0.0)  # zero vectors: 0, not NaN


def test_feature_dims__matches_brute_force_definition():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 40))
    unit = W / np.linalg.norm(W, axis=0)
    brute = (W**2).sum(0) / ((unit.T @ W) ** 2).sum(1)
    np.testing.assert_allclose(metrics.feature_dims(W), brute, rtol=1e-10)


def test_dims_sum_to_rank_for_random_vectors():
    H = np.random.default_rng(1).normal(size=(30, 4))
    assert metrics.max_data_dims(H).sum() == pytest.approx(4.0)
    assert 0 < metrics.data_dims(H).sum() <= 4.0 + 1e-9


def test_max_data_dims__equals_brute_force_sup_over_directions_m2():
    rng = np.random.default_rng(2)
    H = rng.normal(size=(9, 2)) * rng.uniform(0.1, 3, size=(9, 1))
    ang = np.linspace(0, np.pi, 200_001)
    V = np.stack([np.cos(ang), np.sin(ang)], 1)  # (k, 2) directions
    proj = (H @ V.T) ** 2  # (T, k)
    brute = (proj / proj.sum(0)).max(1)
    np.testing.assert_allclose(metrics.max_data_dims(H), brute, rtol=1e-6)


def test_max_data_dims__rank_deficient_and_batched():
    H = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(metrics.max_data_dims(H), [0.2, 0.8, 0.0], atol=1e-12)
    Hb = np.stack([H, 2 * H])
    np.testing.assert_allclose(
        metrics.max_data_dims(Hb), [[0.2, 0.8, 0], [0.2, 0.8, 0]], atol=1e-12
    )


def test_metrics_accept_torch_and_return_torch():
    H = torch.tensor(polygon(6), dtype=torch.float32)
    out = metrics.data_dims(H)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), 2 / 6, rtol=1e-6)


def test_reconstruction_loss_sparse_equals_dense():
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(2, 20)), -np.abs(rng.normal(size=20))
    X = rng.random((7, 20)) * (rng.random((7, 20)) > 0.7)
    import scipy.sparse as sp

    dense = ((X - np.maximum(X @ W.T @ W + b, 0)) ** 2).sum(1).mean()
    assert losses.reconstruction_loss(W, b, sp.csr_matrix(X)) == pytest.approx(dense)
    assert losses.reconstruction_loss(W, b, X) == pytest.approx(dense)


def test_norms():
    assert metrics.norms(np.ones((2, 2)), np.array([3.0, 4.0])) == {"W_norm": 2.0, "b_norm": 5.0}
