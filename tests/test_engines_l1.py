"""The fast engine's l1 loss (|x - x'| summed over features) against the reference
engine, the spec: loss and gradients on drawn shapes and states, where x' = x exactly
(slope 0), thread-count identity, and 300 steps of training."""

import numba
import numpy as np
import pytest
import torch
from conftest import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines import STATES, assert_matches_reference, make_data, make_params

from supermem.config import ConfigError
from supermem.toy.engines import FastEngine, get_engine
from supermem.toy.engines.fast import CpuData, cpu_loss_and_grads
from supermem.toy.model import get_model
from supermem.toy.train import train

CPU = torch.device("cpu")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 600),
    m=st.integers(1, 4),
    T=st.integers(1, 60),
    S=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    inst=st.integers(1, 3),
    state=st.sampled_from(STATES),
    empty=st.sampled_from(["resample", "zero"]),
    seed=st.integers(0, 10_000),
)
def test_fast_l1_matches_reference(n, m, T, S, inst, state, empty, seed):
    data = make_data(inst, T, n, S, seed, empty)
    assert_matches_reference("fast", make_params(state, inst, m, n, seed), data, loss="l1")


@pytest.mark.parametrize("m", [1, 2, 3])
def test_fast_l1_matches_reference_with_many_blocks_and_tiles(m):
    data = make_data(2, 150, 900, 0.99, 3, "resample")
    for state in ("init", "settled_like", "all_on"):
        assert_matches_reference("fast", make_params(state, 2, m, 900, 1), data, loss="l1")


def test_fast_l1_where_the_output_equals_the_input__slope_zero_as_autograd():
    """W = 0 and b_j = the value of feature j's first nonzero: there x' = x exactly, and
    |x - x'| has slope 0 (autograd's sign(0)); elsewhere the usual slopes."""
    data = make_data(1, 40, 50, 0.9, 4, "resample")
    x = data.dense(CPU)[0]  # (T, n)
    first = torch.where(x > 0, x, torch.inf).min(0).values
    b = torch.where(torch.isfinite(first), first, torch.tensor(0.3))[None].contiguous()
    p = {"W": torch.zeros(1, 2, 50), "b": b}
    exact = (x == b[0]).sum()
    assert exact >= 30  # the slope-0 case really occurs
    assert_matches_reference("fast", p, data, loss="l1")


@pytest.mark.parametrize("m", [2, 3])
def test_fast_l1_bit_identical_across_thread_counts(m):
    d = CpuData.from_sparse(make_data(2, 300, 2000, 0.995, 1, "resample"))
    p = make_params("init", 2, m, 2000, 1)
    W, b = p["W"].numpy(), p["b"].numpy()
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cpu_loss_and_grads(W, b, d, fb=256, tp=32, skip=True, l1=True)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = cpu_loss_and_grads(W, b, d, fb=256, tp=32, skip=True, l1=True)
    finally:
        numba.set_num_threads(old)
    for a, z in zip(one, two):
        assert np.array_equal(a, z)


def test_fast_l1_skipping_is_exact():
    d = CpuData.from_sparse(make_data(1, 200, 1000, 0.99, 0, "resample"))
    p = make_params("settled_like", 1, 2, 1000, 0)
    W, b = p["W"].numpy(), p["b"].numpy()
    on = cpu_loss_and_grads(W, b, d, fb=64, tp=8, skip=True, l1=True)
    off = cpu_loss_and_grads(W, b, d, fb=64, tp=8, skip=False, l1=True)
    for a, z in zip(on, off):
        np.testing.assert_allclose(a, z, rtol=1e-5, atol=1e-7 * float(np.abs(z).max()))


@pytest.mark.parametrize("hidden", [2, 3])
def test_training_l1_with_fast_equals_reference(hidden):
    base = dict(features=120, sparsity=0.95, train_size=30, steps=300, warmup=30, lr=1e-2)
    runs = {
        e: train(make_config(**base, hidden=hidden, loss="l1", engine=e), progress=False)
        for e in ("reference", "fast")
    }
    ref, fast = runs["reference"], runs["fast"]
    assert fast.engine == "fast" and ref.engine == "reference"
    for k in ("W", "b"):
        scale = np.abs(ref.params[k]).max()
        np.testing.assert_allclose(fast.params[k], ref.params[k], rtol=0, atol=1e-4 * scale)
    assert fast.train_loss == pytest.approx(ref.train_loss, rel=1e-4)
    assert fast.test_loss == pytest.approx(ref.test_loss, rel=1e-4)


def test_l1_engines__auto_and_fast_take_fast_on_cpu_the_others_refuse():
    tied = get_model("tied")
    for name in ("auto", "fast"):
        e = get_engine(name, tied, CPU, shape=(1, 10**5, 1000, 2, 10.0), loss="l1")
        assert isinstance(e, FastEngine) and e.objective == "l1"
    assert get_engine("reference", tied, CPU, loss="l1").name == "reference"
    assert not FastEngine(objective="l1").supports(tied, torch.device("cuda"))
    for name in ("tree", "chunked", "fast_variants"):
        with pytest.raises(ConfigError, match="needs engine reference or fast"):
            make_config(engine=name, loss="l1")
