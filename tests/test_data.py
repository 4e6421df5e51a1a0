import numpy as np
import pytest

from supermem.toy import data
from supermem.toy.data import SparseData


def test_mean_nonzeros_near_n_times_density():
    X = data.sample(20_000, n=1000, sparsity=0.99, data_seed=0)
    k = np.diff(X.indptr)
    # resample conditions on k >= 1; for n(1-S)=10 that shifts the mean by ~5e-4
    assert k.mean() == pytest.approx(10.0, abs=0.1)
    assert k.min() >= 1


def test_rows_have_unit_norm_distinct_sorted_positions():
    X = data.sample(500, n=300, sparsity=0.95, data_seed=1)
    S = X.to_scipy()
    np.testing.assert_allclose(np.sqrt(S.multiply(S).sum(1)).A1, 1.0, rtol=1e-5)
    for t in range(X.T):
        idx = X.indices[X.indptr[t] : X.indptr[t + 1]]
        assert len(set(idx)) == len(idx) and (np.diff(idx) > 0).all()


def test_values_before_normalisation_are_uniform():
    # normalisation keeps ratios: within a row, value / row max of the other nonzeros are
    # iid U(0, 1) exactly when the raw values are uniform on [0, 1]
    from scipy.stats import kstest

    X = data.sample(4000, n=20, sparsity=0.5, data_seed=2)
    ratios = []
    for t in range(X.T):
        v = X.values[X.indptr[t] : X.indptr[t + 1]]
        if len(v) >= 2:
            ratios.extend(np.delete(v, np.argmax(v)) / v.max())
    assert kstest(ratios, "uniform").pvalue > 1e-3
    # and the test has power: U^3 or sqrt(U) values would fail it
    rng = np.random.default_rng(0)
    for warp in (lambda u: u**3, np.sqrt):
        u = warp(rng.random((4000, 10)))
        bad = (np.sort(u, 1)[:, :-1] / u.max(1, keepdims=True)).ravel()
        assert kstest(bad, "uniform").pvalue < 1e-6


def test_raw_points_are_the_unit_points_before_rescaling_and_uniform():
    u = data.sample(3000, n=40, sparsity=0.8, data_seed=3)
    r = data.sample(3000, n=40, sparsity=0.8, data_seed=3, norm="raw")
    np.testing.assert_array_equal(r.indptr, u.indptr)  # the same draws ...
    np.testing.assert_array_equal(r.indices, u.indices)
    R = r.to_scipy()
    norms = np.sqrt(R.multiply(R).sum(1)).A1
    np.testing.assert_allclose(r.values / np.repeat(norms, np.diff(r.indptr)), u.values, rtol=1e-5)
    assert abs((norms**2).mean() - 40 * 0.2 / 3) < 0.2  # ... left unscaled: E x_i^2 = 1/3
    from scipy.stats import kstest

    assert kstest(r.values, "uniform").pvalue > 1e-3  # U(0, 1) as drawn
    with pytest.raises(ValueError, match="norm must be unit or raw"):
        data.sample(5, n=4, sparsity=0.5, data_seed=0, norm="l1")


def test_point_norm__validated_keyed_only_off_its_default_and_reaches_the_data():
    from supermem.config import ConfigError, TrainConfig
    from supermem.sweeps.index import config_key

    with pytest.raises(ConfigError, match="point_norm must be one of unit, raw"):
        TrainConfig(point_norm="l2")
    base = TrainConfig(features=50, sparsity=0.9, train_size=10, steps=20, test_size=30)
    d = base.to_dict()
    del d["point_norm"]  # a config.json written before the field existed reads as unit
    assert TrainConfig(**d) == base  # (its key: the pinned DEFAULT_KEY of test_sweep.py)
    raw = base.replace(point_norm="raw")
    assert config_key(raw) != config_key(base)
    for X in data.train_test(raw):
        S = X.to_scipy()
        assert np.sqrt(S.multiply(S).sum(1)).A1.std() > 0.05  # not unit norm


def test_near_one_sparsity_resamples_exactly_without_looping():
    # P(k >= 1) = 4e-7 here: redrawing would loop ~1e6 times; the truncated inverse does not
    X = data.sample(20_000, n=40, sparsity=1 - 1e-8, data_seed=0)
    assert (np.diff(X.indptr) == 1).all()
    k = np.diff(data.sample(200_000, n=10, sparsity=0.95, data_seed=0).indptr)
    assert k.min() == 1 and k.mean() == pytest.approx(0.5 / (1 - 0.95**10), rel=5e-3)


def test_same_seed_same_data_other_seed_other_data():
    a = data.sample(100, 200, 0.95, data_seed=5)
    b = data.sample(100, 200, 0.95, data_seed=5)
    c = data.sample(100, 200, 0.95, data_seed=6)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
    assert not (len(a.indices) == len(c.indices) and np.array_equal(a.indices, c.indices))


def test_test_stream_differs_from_train_stream():
    tr = data.sample(50, 100, 0.9, data_seed=0, stream=data.TRAIN_STREAM)
    te = data.sample(50, 100, 0.9, data_seed=0, stream=data.TEST_STREAM)
    assert not np.array_equal(tr.to_scipy().toarray(), te.to_scipy().toarray())


def test_empty_zero_keeps_zero_rows_and_resample_never_does():
    z = data.sample(5000, n=10, sparsity=0.9, data_seed=0, empty="zero")
    assert (np.diff(z.indptr) == 0).mean() == pytest.approx(0.9**10, abs=0.02)
    r = data.sample(5000, n=10, sparsity=0.9, data_seed=0, empty="resample")
    assert (np.diff(r.indptr) > 0).all()


def test_dense_sparsity_zero_works():
    X = data.sample(10, n=8, sparsity=0.0, data_seed=0)
    assert (np.diff(X.indptr) == 8).all()


def test_stack_instance_roundtrip_and_dense_shape():
    a = data.sample(6, 30, 0.8, data_seed=0)
    b = data.sample(6, 30, 0.8, data_seed=1)
    s = SparseData.stack([a, b])
    assert s.inst == 2 and s.T == 6
    d = s.dense()
    assert d.shape == (2, 6, 30)
    np.testing.assert_array_equal(d[1].numpy(), b.to_scipy().toarray())
    np.testing.assert_array_equal(s.instance(0).to_scipy().toarray(), a.to_scipy().toarray())
