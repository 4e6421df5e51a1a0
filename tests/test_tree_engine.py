"""The tree engine against the reference engine (the spec): loss and every gradient, in
the states its box tests branch on, across refits and rebuilds of its kd-trees."""

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines import (
    CPU,
    MODEL,
    STATES,
    assert_matches_reference,
    assert_trained_alike,
    make_data,
    make_params,
)

from supermem.toy.data import SparseData
from supermem.toy.engines import ENGINES, TreeEngine
from supermem.toy.engines import _tree_kernels as TK
from supermem.toy.engines.tree import TreeData, tree_loss_and_grads
from supermem.toy.train import train


class SmallLeaves(TreeEngine):
    """Leaves of 2 points, so that small test sets still give deep trees."""

    LEAF = 2


@pytest.fixture(autouse=True)
def small_leaves(monkeypatch):
    monkeypatch.setitem(ENGINES, "tree_small", SmallLeaves)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 500),
    m=st.integers(1, 4),
    T=st.integers(1, 90),
    S=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    inst=st.integers(1, 3),
    state=st.sampled_from(STATES),
    empty=st.sampled_from(["resample", "zero"]),
    seed=st.integers(0, 10_000),
)
def test_tree_matches_reference(n, m, T, S, inst, state, empty, seed):
    data = make_data(inst, T, n, S, seed, empty)
    p = make_params(state, inst, m, n, seed)
    for name in ("tree", "tree_small"):
        assert_matches_reference(name, p, data)


@pytest.mark.parametrize("m", [1, 2, 3])
def test_tree_matches_reference_on_deep_trees(m):
    data = make_data(2, 400, 700, 0.99, 3, "resample")
    for state in ("init", "settled_like", "all_off", "all_on", "b_zero"):
        assert_matches_reference("tree", make_params(state, 2, m, 700, 1), data)
        assert_matches_reference("tree_small", make_params(state, 2, m, 700, 1), data)


def grid_data(T: int, n: int, seed: int) -> SparseData:
    """Points with one nonzero of value 1 among few features: many exact duplicates, and
    hidden vectors that sit exactly on each other's splitting planes."""
    rng = np.random.default_rng(seed)
    X = np.zeros((T, n), np.float32)
    X[np.arange(T), rng.integers(0, 3, T)] = 1.0
    X[: T // 4] = 0.0  # zero data points: zero hidden vectors
    return SparseData.from_scipy(sp.csr_matrix(X))


@pytest.mark.parametrize("m", [1, 2, 3])
def test_duplicates_zero_vectors_and_points_on_splitting_planes(m):
    data = grid_data(120, 40, m)
    for state in ("init", "b_zero", "all_on", "settled_like"):
        p = make_params(state, 1, m, 40, 2)
        p["W"] = torch.round(p["W"] * 4) / 4  # coordinates on a grid: ties everywhere
        for name in ("tree", "tree_small"):
            assert_matches_reference(name, p, data)


def test_many_steps_on_one_prepared_set_refit_and_rebuild():
    """The kept trees stay exact as the hidden vectors move: refits, and rebuilds."""
    data = make_data(2, 300, 400, 0.98, 5, "resample")
    ref, eng = ENGINES["reference"](), SmallLeaves()
    x, prepared = ref.prepare(data, CPU), eng.prepare(data, CPU)
    base = make_params("init", 2, 2, 400, 0)
    g = torch.Generator().manual_seed(1)
    for step in range(8):  # small moves (refits), then a jump to another state (rebuild)
        noise = {k: torch.randn(v.shape, generator=g) for k, v in base.items()}
        p = {k: v + 0.003 * step * noise[k] * v.abs().mean() for k, v in base.items()}
        if step >= 5:
            p = make_params("settled_like", 2, 2, 400, step)
        lr, gr = ref.loss_and_grads(MODEL, p, x)
        le, ge = eng.loss_and_grads(MODEL, p, prepared)
        np.testing.assert_allclose(le.numpy(), lr.numpy(), rtol=2e-5)
        for k in ("W", "b"):
            scale = float(gr[k].abs().max()) + 1e-12
            assert float((ge[k] - gr[k]).abs().max()) < 1e-4 * scale
    assert 2 <= prepared.state.builds < 8 and prepared.state.steps == 8
    # the jump at step 5 makes the walk dearer; the work beyond the fresh tree's level
    # pays for a rebuild within a step or two
    assert prepared.log[0] == (0, "build") and 5 < prepared.log[1][0] <= 7
    st = prepared.state
    assert not st.cut.any() and not st.onm.any()  # every mark cleared between steps
    # an unmarked buffer entry counts as zero whatever it holds: NaN in every buffer
    # (a read of one would poison the loss) gives the same bits
    want = eng.loss_and_grads(MODEL, p, prepared)
    assert st.ghp.any()  # the last step left its values in place (nothing zeroed)
    for buf in (st.ghp, st.nodeA, st.nodea):
        buf[...] = np.nan
    got = eng.loss_and_grads(MODEL, p, prepared)
    assert torch.equal(got[0], want[0])
    assert all(torch.equal(got[1][k], want[1][k]) for k in ("W", "b"))


def test_permute_rows_puts_each_instance_rows_in_tree_order():
    """Row i*T + s of the result is row i*T + perm[i, s] of the input, empty rows too."""
    rng = np.random.default_rng(1)
    inst, T, n = 3, 50, 20
    X = sp.random(inst * T, n, density=0.1, format="csr", random_state=2, dtype=np.float32)
    perm = np.stack([rng.permutation(T) for _ in range(inst)])
    ptr, idx, val = TK.permute_rows(
        X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, perm, T
    )
    want = X[(np.arange(inst)[:, None] * T + perm).ravel()]
    got = sp.csr_matrix((val, idx, ptr), shape=X.shape)
    assert np.diff(X.indptr).min() == 0  # some rows are empty
    assert np.array_equal(got.indptr, want.indptr) and (got != want).nnz == 0


def test_refit_equals_fresh_moments_and_boxes():
    """Refitted boxes and moments are those of the points below each node; the
    pre-order nodes are the breadth-first ones, children after their parent."""
    rng = np.random.default_rng(0)
    T, m, D = 37, 2, 3
    h = rng.normal(size=(T, m)).astype(np.float32)
    bstart, bend = TK.node_ranges(T, D)
    perm = np.zeros((1, T), np.int64)
    in_order = TK.build(h, T, D, bstart, bend, perm)
    assert sorted(perm[0]) == list(range(T))
    assert np.array_equal(in_order, h[perm[0]])  # the points come back in tree order
    hs = h[perm]  # (1, T, m): the points in tree order
    start, end, right, leaves = TK.preorder(T, D)
    nn = len(start)
    assert sorted(zip(start, end)) == sorted(zip(bstart, bend))
    assert list(start[leaves]) == list(bstart[(1 << D) - 1 :])  # leaves left to right
    lo, hi = np.empty((1, nn, m)), np.empty((1, nn, m))
    S1, S2 = np.empty((1, nn, m)), np.empty((1, nn, m, m))
    TK.refit(hs, start, end, right, leaves, lo, hi, S1, S2)
    for v in range(nn):
        pts = hs[0, start[v] : end[v]].astype(np.float64)
        np.testing.assert_allclose(lo[0, v], pts.min(0))
        np.testing.assert_allclose(hi[0, v], pts.max(0))
        np.testing.assert_allclose(S1[0, v], pts.sum(0))
        np.testing.assert_allclose(S2[0, v], pts.T @ pts)
        if right[v] >= 0:  # children split v's range; a kd split on some axis
            assert right[v] > v + 1 and start[v + 1] == start[v] and end[right[v]] == end[v]
            assert end[v + 1] == start[right[v]]
            L, R = hs[0, start[v + 1] : end[v + 1]], hs[0, start[right[v]] : end[right[v]]]
            assert any(L[:, k].max() <= R[:, k].min() for k in range(m))
    assert (right >= 0).sum() == (1 << D) - 1


def at_one_and_two_threads(step, data: SparseData) -> list:
    """``step(prepared)`` on a fresh TreeData of ``data`` (leaves of 4) at 1 thread, then at
    2 (or as many as Numba has): the two outputs."""
    from supermem.toy.engines.fast import CpuData

    old = numba.get_num_threads()
    try:
        outs = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            outs.append(step(TreeData(CpuData.from_sparse(data), leaf=4)))
    finally:
        numba.set_num_threads(old)
    return outs


@pytest.mark.parametrize("m", [1, 2, 3])
def test_tree_bit_identical_across_thread_counts(m):
    data = make_data(2, 300, 2000, 0.995, 1, "resample")
    p = make_params("init", 2, m, 2000, 1)
    W, b = p["W"].numpy(), p["b"].numpy()
    outs = at_one_and_two_threads(lambda prepared: tree_loss_and_grads(W, b, prepared, 20.0), data)
    for a, z in zip(*outs):
        assert np.array_equal(a, z)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(hidden=1, weight_decay=1e-2),
        dict(hidden=2, weight_decay=1e-2),
        dict(hidden=3, weight_decay=0.0, restarts=2),
        dict(hidden=2, point_norm="raw"),  # points not rescaled to unit norm
    ],
)
def test_training_with_tree_equals_reference(overrides):
    base = dict(features=120, sparsity=0.95, train_size=60, steps=300, warmup=30, lr=1e-2)
    runs = {
        e: train(make_config(**base, **overrides, engine=e), progress=False)
        for e in ("reference", "tree")
    }
    ref, tree = runs["reference"], runs["tree"]
    assert_trained_alike(ref, tree)


def test_training_batched_tree_equals_single_runs_bit_for_bit():
    """Each instance's tree is rebuilt on its own schedule, so a run's float32 sums do not
    depend on the runs it is batched with (with one rebuild rule for the batch this config
    gave other last bits, up to 4.8e-6 in W, and long middle-regime runs amplify that)."""
    from supermem.toy.train import train_many

    base = dict(features=2000, sparsity=0.99, hidden=2, train_size=500, steps=300)
    cfgs = [
        make_config(**base, engine="tree", point_norm="raw", lr_schedule="constant", data_seed=d)
        for d in (0, 1, 2)
    ]
    for cfg, r in zip(cfgs, train_many(cfgs, progress=False)):
        single = train(cfg, progress=False)
        np.testing.assert_array_equal(r.params["W"], single.params["W"])
        np.testing.assert_array_equal(r.params["b"], single.params["b"])
        assert r.train_loss == single.train_loss


def test_restore_reads_the_state_saved_when_the_rule_was_shared():
    """Checkpoints written before the rebuild rule was per instance hold one (m, built,
    work0, excess, builds, steps); for one instance that is the same bookkeeping."""
    data = make_data(1, 300, 400, 0.98, 5, "resample")
    eng = TreeEngine()
    p = make_params("init", 1, 2, 400, 0)
    going = eng.prepare(data, CPU)
    for _ in range(3):
        eng.loss_and_grads(MODEL, p, going)
    st = going.state
    old = [2, 1, int(st.work0[0]), int(st.excess[0]), st.builds, st.steps]
    resumed = eng.prepare(data, CPU)
    eng.restore(resumed, {"order": going.order, "scalars": np.array(old, np.int64)})
    got = resumed.state
    assert got.built.all() and (got.builds, got.steps) == (st.builds, st.steps)
    assert (got.work0 == st.work0).all() and (got.excess == st.excess).all()
    (la, ga), (lb, gb) = (eng.loss_and_grads(MODEL, p, d) for d in (going, resumed))
    assert torch.equal(la, lb) and all(torch.equal(ga[k], gb[k]) for k in ga)


def test_non_finite_parameters_give_non_finite_loss():
    data = make_data(1, 40, 30, 0.8, 0, "resample")
    for where in ((0, 0, 0), (0, 1, 7)):
        p = make_params("init", 1, 2, 30, 0)
        p["W"][where] = float("nan")
        eng = SmallLeaves()
        assert not torch.isfinite(eng.loss(MODEL, p, eng.prepare(data, CPU))).all()


def test_auto_picks_tree_where_the_cost_model_says_it_is_cheaper():
    from supermem.toy.engines import cost, get_engine

    # the paper's setting at large T: the tree; small T, m > 3 or no shape: fast
    assert get_engine("auto", MODEL, CPU, shape=(1, 100_000, 10_000, 2, 10.0)).name == "tree"
    assert get_engine("auto", MODEL, CPU, shape=(1, 30, 1_000, 2, 10.0)).name == "fast"
    assert get_engine("auto", MODEL, CPU, shape=(1, 100_000, 10_000, 4, 10.0)).name == "fast"
    assert get_engine("auto", MODEL, CPU).name == "fast"
    for T in (10, 1_000, 100_000, 1_000_000):  # a consistent crossover: tree from some T on
        picks = [cost.pick(1, t, 10_000, 2, 10.0) for t in (T, 10 * T)]
        assert picks != ["tree", "fast"]
    # m = 3 at the paper's n, S where it was measured on trained states (docs/ENGINES.md):
    # fast ahead at T = 10^4; the tree 2-2.7x ahead at 2.5 x 10^4, 3.2-3.4x at 5 x 10^4
    # (fig. 5's runs, past their first 1,000 steps) and 5.6x at 10^5
    m3 = {T: cost.pick(1, T, 10_000, 3, 10.0) for T in (10_000, 25_000, 50_000, 100_000)}
    assert m3 == {10_000: "fast", 25_000: "tree", 50_000: "tree", 100_000: "tree"}

    # at n <= 1,000 (the quick and cpu scales) the m = 3 walk keeps its earlier 1.8e-8
    # per feature, so those runs keep the engine they were trained on; m = 1, 2 have no n term
    walk = cost.tree_walk
    for n in (200, 1_000):
        assert walk(n, 3) == pytest.approx(1.8e-8, rel=0.01)
    assert walk(10_000, 3) == pytest.approx(walk(40_000, 3)) == pytest.approx(cost.TREE_WALK[3])
    for m in (1, 2):
        assert walk(1_000, m) == pytest.approx(walk(10_000, m)) == pytest.approx(cost.TREE_WALK[m])


def test_runs_record_the_engine_auto_chose(tmp_path):
    from supermem import load_run, save_run

    r = train(make_config(engine="auto", features=60, train_size=20, steps=5), progress=False)
    assert r.engine in ("fast", "tree")
    assert load_run(save_run(r, tmp_path / "r")).metrics["engine"] == r.engine


@pytest.mark.parametrize("m", [1, 2, 3])
def test_feature_order_is_a_permutation_that_keeps_blocks_compact(m):
    """Any order is exact; this one makes F consecutive hyperplanes alike. For m = 2 with
    spread offsets a block's patch of (radius * angle, offset), the lines taken with
    their angle in [0, pi), is under half that of the angle order alone, and at b = 0
    its blocks are those of the lines' angle order."""
    from supermem.toy.engines.tree import feature_order, line_coordinates

    rng = np.random.default_rng(0)
    n, F = 4096, 32
    W = rng.normal(size=(2, m, n)).astype(np.float32)
    b = rng.normal(size=(2, n)).astype(np.float32)
    radius = np.array([1.0, 2.0])
    order = feature_order(W, b, radius, F)
    assert all(sorted(o) == list(range(n)) for o in order)
    if m != 2:
        return

    def lines(i):
        return line_coordinates(W[i].astype(float), -b[i] / np.hypot(W[i, 0], W[i, 1]))

    def patch(o, i):  # mean over blocks of the (radius * angle) span plus the offset span
        ang, off = lines(i)
        ang, off = ang[o] * radius[i], off[o]
        blocks = [slice(k, k + F) for k in range(0, n - F + 1, F)]
        return np.mean([np.ptp(ang[s]) + np.ptp(off[s]) for s in blocks])

    by_angle = [np.argsort(lines(i)[0], kind="stable") for i in range(2)]
    for i in range(2):
        assert patch(order[i], i) < 0.5 * patch(by_angle[i], i)
        ang, off = lines(i)  # the same line: the angle a - pi and offset d is a, -d
        assert (0 <= ang).all() and (ang < np.pi).all()
        a0 = np.arctan2(W[i, 1], W[i, 0])
        assert np.allclose(np.where(a0 < 0, -off, off), -b[i] / np.hypot(W[i, 0], W[i, 1]))
    zero = feature_order(W, np.zeros_like(b), radius, F)  # every line through the origin
    blocks = lambda o: [set(o[k : k + F]) for k in range(0, n, F)]  # noqa: E731
    assert all(blocks(zero[i]) == blocks(by_angle[i]) for i in range(2))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    B=st.integers(1, 20),
    ties=st.sampled_from(["none", "angle", "key", "zero", "nan"]),
    start=st.sampled_from(["random", "near"]),
    seed=st.integers(0, 2**16),
)
def test_resort_gives_lexsorts_order_from_any_start(n, B, ties, start, seed):
    """The re-sort by insertion is the one total order of np.lexsort((angle, key,
    bucket)), index last, whatever it starts from: NaN keys last, -0.0 equal to 0.0."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    key = rng.normal(size=n)
    if ties == "angle":
        angle = np.round(angle, 1)
    elif ties == "key":
        key = np.round(key, 1)
    elif ties == "zero":  # b = 0: every offset 0, half of them -0.0
        key = np.where(rng.random(n) < 0.5, -0.0, 0.0)
    elif ties == "nan":
        key[rng.integers(0, n, 3)] = np.nan
    bucket = np.minimum((angle / np.pi * B).astype(np.int64), B - 1)
    want = np.lexsort((angle, key, bucket))
    if start == "random":
        order = rng.permutation(n).astype(np.int64)
    else:
        order = want.copy()
        i, j = rng.integers(0, n, 2)
        order[i], order[j] = order[j], order[i]
    assert TK.resort(order, angle, key, bucket, n * n)
    assert np.array_equal(order, want)
    order = rng.permutation(n).astype(np.int64)
    if n > 8 and not TK.resort(order, angle, key, bucket, 0):  # out of budget: still a perm.
        assert sorted(order) == list(range(n))


def test_feature_order_from_the_last_order_is_the_same_order():
    """feature_order re-sorts from the last step's order (``prev``): the same order as
    from scratch, for lines that moved a little (re-sorted) or a lot (out of budget)."""
    from supermem.toy.engines.tree import feature_order

    rng = np.random.default_rng(3)
    n, F = 4096, 32
    W = rng.normal(size=(2, 2, n)).astype(np.float32)
    b = rng.normal(size=(2, n)).astype(np.float32)
    radius = np.array([1.0, 2.0])
    prev = feature_order(W, b, radius, F)
    for scale in (1e-3, 1e-1, 10.0):
        W2 = W + scale * rng.normal(size=W.shape).astype(np.float32)
        b2 = b + scale * rng.normal(size=b.shape).astype(np.float32)
        fresh = feature_order(W2, b2, radius, F)
        assert np.array_equal(feature_order(W2, b2, radius, F, prev), fresh)
        assert np.array_equal(feature_order(W2, b2, radius, F, prev[:1]), fresh)  # bad shape
