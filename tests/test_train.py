import numpy as np
import pytest
import torch
from conftest import make_config

from supermem.config import ConfigError
from supermem.toy.train import train, train_many


def test_same_seeds_give_bit_identical_weights():
    a, b = train(make_config(), progress=False), train(make_config(), progress=False)
    for k in ("W", "b"):
        assert np.array_equal(a.params[k], b.params[k])


def test_other_init_seed_gives_other_weights_same_data():
    a, b = train(make_config(seed=0), progress=False), train(make_config(seed=1), progress=False)
    assert not np.allclose(a.params["W"], b.params["W"])
    assert np.array_equal(a.X_train.indices, b.X_train.indices)


def test_other_data_seed_gives_other_data():
    a = train(make_config(data_seed=0), progress=False)
    b = train(make_config(data_seed=1), progress=False)
    assert not np.array_equal(a.X_train.to_scipy().toarray(), b.X_train.to_scipy().toarray())


def test_batched_training_equals_loop_of_single_runs():
    cfgs = [make_config(seed=s, data_seed=d) for s, d in [(0, 0), (1, 0), (2, 3)]]
    batched = train_many(cfgs, progress=False)
    for cfg, r in zip(cfgs, batched):
        single = train(cfg, progress=False)
        np.testing.assert_allclose(r.params["W"], single.params["W"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.params["b"], single.params["b"], rtol=1e-5, atol=1e-6)
        assert r.train_loss == pytest.approx(single.train_loss, rel=1e-5)


def test_restarts_keep_lowest_training_loss():
    r = train(make_config(restarts=3), progress=False)
    assert len(r.restart_train_losses) == 3 and len(set(r.restart_seeds)) == 3
    assert r.train_loss == min(r.restart_train_losses)
    # restart 0 of seed s is exactly the single-restart run of seed s
    single = train(make_config(restarts=1), progress=False)
    assert r.restart_train_losses[0] == pytest.approx(single.train_loss, rel=1e-6)


def test_snapshots_and_history_recorded():
    r = train(make_config(steps=100, snapshots=8), progress=False)
    assert r.snapshot_steps[0] == 0 and r.snapshot_steps[-1] == 100
    assert r.snapshots["W"].shape == (len(r.snapshot_steps), 2, 50)
    np.testing.assert_array_equal(r.snapshots["W"][-1], r.params["W"])
    assert np.all(np.isfinite(r.loss_history)) and r.loss_steps[-1] == 99


def test_training_lowers_the_loss():
    r = train(make_config(steps=500, lr=1e-2), progress=False)
    assert r.train_loss < 0.5 * r.loss_history[0]


def test_divergence_is_recorded_with_its_step():
    r = train(make_config(lr=1e30, steps=300, warmup=0), progress=False)
    assert r.diverged and 0 <= r.diverged_step < 300


def test_configs_trained_together_must_share_shapes():
    with pytest.raises(ConfigError):
        train_many([make_config(), make_config(train_size=9)], progress=False)


def test_init_variants_have_xavier_scale():
    from supermem.toy.model import xavier

    g = torch.Generator().manual_seed(0)
    n, m = 4000, 2
    for kind in ("xavier_normal", "xavier_uniform"):
        w = xavier(m, n, kind, g)
        assert w.std().item() == pytest.approx(np.sqrt(2 / (n + m)), rel=0.05)
    assert xavier(m, n, "xavier_uniform", g).abs().max() <= np.sqrt(6 / (n + m))


@pytest.mark.parametrize("engine", ["fast", "tree"])
def test_threads_changed_between_steps_leave_every_number_as_it_is(engine):
    """A sweep's worker may take the cores another freed (``threads``, asked at every
    finiteness check): the elastic engines give the same bits for any thread count, and
    the run records the seconds-weighted threads it had."""
    import numba

    cfg = make_config(engine=engine, steps=600, warmup=60, train_size=300, lr=3e-2)
    want = train(cfg, progress=False)
    pool = numba.config.NUMBA_NUM_THREADS
    asked = iter([1, 2] * 10)  # before the first step, then at each of the 6 checks
    old = numba.get_num_threads()
    try:
        got = train_many([cfg], progress=False, threads=lambda: next(asked))[0]
    finally:
        numba.set_num_threads(old)
    for k in want.params:
        assert np.array_equal(want.params[k], got.params[k]), k
    assert np.array_equal(want.loss_history, got.loss_history)
    assert got.engine == engine and got.threads is not None
    if pool >= 2:  # half the steps on 1 thread, half on 2 (by time: in between)
        assert 1 < got.threads < 2
    else:
        assert got.threads == 1


def test_threads_asked_leave_a_non_elastic_engine_alone():
    import torch as t

    before = t.get_num_threads()
    got = train_many(
        [make_config(engine="reference", steps=200)], progress=False, threads=lambda: 1
    )
    assert t.get_num_threads() == before and got[0].threads == pytest.approx(before)
