"""Exact float64 losses: the sparse Numba kernel equals the dense float64 forward."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from test_engines import MODEL, STATES, make_data, make_params

from supermem.toy.losses import _dense_exact, exact_loss


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("m", [1, 2, 3])
def test_sparse_exact_loss_equals_dense_forward(state, m):
    data = make_data(2, 37, 150, 0.95, m, "zero")
    p = make_params(state, 2, m, 150, m)
    np.testing.assert_allclose(
        exact_loss(MODEL, p, data), _dense_exact(MODEL, p, data, 2**22), rtol=1e-12, atol=0
    )


def test_exact_loss_resolves_a_memorised_point():
    """A point stored exactly (W = its direction, b just below zero elsewhere) has a
    loss of ~1e-14 relative to its norm: the direct sum gets it, a split sum would not."""
    n = 50
    x = np.zeros((1, n), np.float32)
    x[0, [3, 17]] = [0.6, 0.8]
    W = torch.zeros(1, 1, n, dtype=torch.float64)
    W[0, 0] = torch.as_tensor(x[0], dtype=torch.float64) * (1 + 1e-7)
    b = torch.full((1, n), -1e-9, dtype=torch.float64)
    data = make_data(1, 1, n, 0.9, 0, "resample")
    from supermem.toy.data import SparseData

    data = SparseData.from_scipy(sp.csr_matrix(x))
    got = exact_loss(MODEL, {"W": W, "b": b}, data)[0]
    want = _dense_exact(MODEL, {"W": W, "b": b}, data, 2**22)[0]
    assert 0 < got < 1e-12 and got == pytest.approx(want, rel=1e-6)
