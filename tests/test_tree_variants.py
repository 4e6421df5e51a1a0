"""The tree engine for the untied and relu_hidden models against the reference engine:
loss and every gradient in the states the walk branches on, refits and rebuilds,
thread counts, training, and which engine ``auto`` picks for them."""

import numba
import numpy as np
import pytest
import torch
from conftest import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines import CPU, STATES, assert_matches_reference, assert_trained_alike, make_data
from test_engines import make_params as tied_params
from test_tree_engine import SmallLeaves, at_one_and_two_threads, grid_data

from supermem.toy.engines import ENGINES, get_engine
from supermem.toy.engines.fast import CpuData
from supermem.toy.engines.tree import TreeData, tree_variant_loss_and_grads
from supermem.toy.model import get_model
from supermem.toy.train import train

VARIANTS = ("untied", "relu_hidden")


@pytest.fixture(autouse=True)
def small_leaves(monkeypatch):
    monkeypatch.setitem(ENGINES, "tree_small", SmallLeaves)


def make_params(name: str, state: str, inst: int, m: int, n: int, seed: int) -> dict:
    """The tied model's parameters in ``state`` (test_engines.STATES, or ``origin``: W <= 0,
    so relu_hidden's h is 0 for every point); the untied model's decoder is another draw
    in the same state."""
    p = tied_params("init" if state == "origin" else state, inst, m, n, seed)
    if state == "origin":
        p["W"] = -p["W"].abs()
    if name == "untied":
        p["W_dec"] = tied_params(state, inst, m, n, seed + 1000)["W"]
    return p


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(VARIANTS),
    n=st.integers(1, 400),
    m=st.integers(1, 4),
    T=st.integers(1, 90),
    S=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    inst=st.integers(1, 3),
    state=st.sampled_from((*STATES, "origin")),
    empty=st.sampled_from(["resample", "zero"]),
    seed=st.integers(0, 10_000),
)
def test_tree_variants_match_reference(name, n, m, T, S, inst, state, empty, seed):
    data = make_data(inst, T, n, S, seed, empty)
    p = make_params(name, state, inst, m, n, seed)
    for engine in ("tree", "tree_small"):
        assert_matches_reference(engine, p, data, model=get_model(name))


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("name", VARIANTS)
def test_tree_variants_match_reference_on_deep_trees(name, m):
    data = make_data(2, 400, 700, 0.99, 3, "resample")
    for state in ("init", "settled_like", "all_off", "all_on", "b_zero"):
        p = make_params(name, state, 2, m, 700, 1)
        for engine in ("tree", "tree_small"):
            assert_matches_reference(engine, p, data, model=get_model(name))


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("name", VARIANTS)
def test_duplicates_zero_vectors_and_points_on_splitting_planes(name, m):
    """relu_hidden adds its own ties: every hidden vector with a negative W x coordinate
    lands on an axis, and many at the origin."""
    data = grid_data(120, 40, m)
    for state in ("init", "b_zero", "all_on", "settled_like"):
        p = make_params(name, state, 1, m, 40, 2)
        for k in ("W", "W_dec"):
            if k in p:
                p[k] = torch.round(p[k] * 4) / 4  # coordinates on a grid: ties everywhere
        for engine in ("tree", "tree_small"):
            assert_matches_reference(engine, p, data, model=get_model(name))


@pytest.mark.parametrize("name", VARIANTS)
def test_many_steps_on_one_prepared_set_refit_and_rebuild(name):
    """The rows are permuted at each rebuild: the encoder's and decoder's gradients and
    the ReLU's mask must follow them."""
    model = get_model(name)
    data = make_data(2, 300, 400, 0.98, 5, "resample")
    ref, eng = ENGINES["reference"](), SmallLeaves()
    x, prepared = ref.prepare(data, CPU), eng.prepare(data, CPU)
    base = make_params(name, "init", 2, 2, 400, 0)
    g = torch.Generator().manual_seed(1)
    for step in range(8):  # small moves (refits), then a jump to another state (rebuild)
        noise = {k: torch.randn(v.shape, generator=g) for k, v in base.items()}
        p = {k: v + 0.003 * step * noise[k] * v.abs().mean() for k, v in base.items()}
        if step >= 5:
            p = make_params(name, "settled_like", 2, 2, 400, step)
        lr, gr = ref.loss_and_grads(model, p, x)
        le, ge = eng.loss_and_grads(model, p, prepared)
        np.testing.assert_allclose(le.numpy(), lr.numpy(), rtol=2e-5)
        assert set(ge) == set(gr)
        for k in gr:
            scale = float(gr[k].abs().max()) + 1e-12
            assert float((ge[k] - gr[k]).abs().max()) < 1e-4 * scale, (step, k)
    assert 2 <= prepared.state.builds < 8 and prepared.state.steps == 8


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads to compare")
@pytest.mark.parametrize("name", VARIANTS)
def test_tree_variants_bit_identical_across_thread_counts(name):
    data = make_data(2, 300, 2000, 0.995, 1, "resample")
    p = make_params(name, "init", 2, 3, 2000, 1)
    W, b = p["W"].numpy(), p["b"].numpy()
    D = p["W_dec"].numpy() if "W_dec" in p else None
    relu = get_model(name).relu_hidden

    def step(prepared):
        return tree_variant_loss_and_grads(W, D, b, relu, prepared, 20.0)

    outs = at_one_and_two_threads(step, data)
    for a, z in zip(*outs):
        assert (a is None and z is None) or np.array_equal(a, z)


def test_the_variant_path_with_the_tied_decoder_is_the_tied_model():
    """D = None, no ReLU: the tied model's loss and gradient through the variant kernels."""
    data = make_data(2, 200, 300, 0.95, 2, "resample")
    p = tied_params("settled_like", 2, 2, 300, 4)
    W, b = p["W"].numpy(), p["b"].numpy()
    prepared = TreeData(CpuData.from_sparse(data), leaf=4)
    loss, gW, gD, gb = tree_variant_loss_and_grads(W, None, b, False, prepared, 20.0)
    ref = ENGINES["reference"]()
    lr, gr = ref.loss_and_grads(get_model("tied"), p, ref.prepare(data, CPU))
    assert gD is None
    np.testing.assert_allclose(loss, lr.numpy(), rtol=2e-5)
    for got, k in ((gW, "W"), (gb, "b")):
        scale = float(gr[k].abs().max())
        assert float(np.abs(got - gr[k].numpy()).max()) < 1e-4 * scale


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("untied", dict(hidden=2, weight_decay=1e-2)),
        ("relu_hidden", dict(hidden=2, weight_decay=1e-2)),
        ("untied", dict(hidden=3, weight_decay=0.0, restarts=2)),
        ("relu_hidden", dict(hidden=1, weight_decay=0.0)),
    ],
)
def test_training_with_tree_equals_reference(name, overrides):
    base = dict(features=120, sparsity=0.95, train_size=60, steps=300, warmup=30, lr=1e-2)
    runs = {
        e: train(make_config(**base, **overrides, model=name, engine=e), progress=False)
        for e in ("reference", "tree")
    }
    assert runs["tree"].engine == "tree"
    assert_trained_alike(runs["reference"], runs["tree"])


@pytest.mark.parametrize("name", VARIANTS)
def test_auto_picks_tree_or_fast_variants_for_the_variants(name):
    model = get_model(name)
    assert ENGINES["tree"]().supports(model, CPU)
    assert not ENGINES["tree"]().supports(model, torch.device("cuda"))
    assert get_engine("auto", model, CPU, shape=(1, 100_000, 10_000, 2, 10.0)).name == "tree"
    assert get_engine("auto", model, CPU, shape=(1, 100, 1000, 2, 10.0)).name == "fast_variants"
    assert get_engine("auto", model, CPU, shape=(1, 100_000, 10_000, 4, 10.0)).name == (
        "fast_variants"
    )
    assert get_engine("auto", model, CPU).name == "fast_variants"
    cuda = torch.device("cuda")  # neither CPU engine serves it there (no GPU needed)
    assert get_engine("auto", model, cuda, shape=(1, 100_000, 10_000, 2, 10.0)).name == (
        "reference"
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_non_finite_parameters_give_non_finite_loss(name):
    data = make_data(1, 40, 30, 0.8, 0, "resample")
    for key in ("W", "W_dec", "b"):
        p = make_params(name, "init", 1, 2, 30, 0)
        if key not in p:
            continue
        p[key].view(-1)[3] = float("nan")
        eng = SmallLeaves()
        assert not torch.isfinite(eng.loss(get_model(name), p, eng.prepare(data, CPU))).all()


def test_sweeps_cost_model_prices_what_auto_takes_for_the_variants():
    from supermem.sweeps.cost import SECONDS_PER_UNIT, _units, engine_used, run_seconds

    small = make_config(model="untied", engine="auto", features=1000, sparsity=0.99)
    small = small.replace(train_size=30)
    assert engine_used(small) == "fast_variants"  # auto: fast_variants, priced as such
    rate = (run_seconds(small) - run_seconds(small, 0.0)) / _units(small)
    assert rate == pytest.approx(SECONDS_PER_UNIT["fast_variants"])
    large = small.replace(features=10_000, sparsity=0.999, train_size=100_000)
    assert engine_used(large) == "tree"  # auto: the tree, priced as the tied model's tree
    assert _units(large) < 0.5 * _units(large.replace(engine="fast_variants"))
    tied = large.replace(model="tied")
    assert run_seconds(large) == run_seconds(tied)


def test_memory_estimate_counts_fast_variants_copies():
    from supermem.toy.memory import estimate

    c = make_config(model="untied", features=1000, train_size=10_000)
    fv, fast = estimate(c, 1, "fast_variants")["engine"], estimate(c, 1, "fast")["engine"]
    assert fv > fast
