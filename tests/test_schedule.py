import numpy as np
import pytest

from supermem.toy.train import snapshot_steps
from supermem.toy.train import warmup_then_cosine_to_zero as lr_at


def test_warmup_starts_small_and_reaches_peak_at_boundary():
    assert lr_at(0, 50_000, 2_500, 1e-3) == pytest.approx(1e-3 / 2_500)
    assert lr_at(2_499, 50_000, 2_500, 1e-3) == pytest.approx(1e-3)
    assert lr_at(2_500, 50_000, 2_500, 1e-3) == pytest.approx(1e-3)


def test_warmup_is_linear():
    vals = [lr_at(s, 100, 10, 1.0) for s in range(10)]
    np.testing.assert_allclose(np.diff(vals), 0.1)


def test_cosine_reaches_zero_at_end_and_halfway_is_half():
    assert lr_at(50_000, 50_000, 2_500, 1e-3) == pytest.approx(0.0, abs=1e-18)
    assert 0 < lr_at(49_999, 50_000, 2_500, 1e-3) < 1e-11
    assert lr_at(2_500 + 47_500 // 2, 50_000, 2_500, 1e-3) == pytest.approx(5e-4)


@pytest.mark.parametrize("warmup", [0, 100])
def test_schedule_rises_through_warmup_then_falls_monotonically(warmup):
    vals = [lr_at(s, 1000, warmup, 1.0) for s in range(1000)]
    assert all(a < b for a, b in zip(vals[:warmup], vals[1:warmup]))  # strictly rising
    after = vals[max(warmup - 1, 0) :]
    assert after[0] == 1.0 and all(a >= b for a, b in zip(after, after[1:]))


def test_snapshot_steps_log_spaced_with_ends():
    s = snapshot_steps(50_000, 24)
    assert s[0] == 0 and s[-1] == 50_000 and len(s) <= 24 and (np.diff(s) > 0).all()
    assert snapshot_steps(10, 0).size == 0
    for k in (1, 2, 3, 5):  # never more than k
        s = snapshot_steps(100, k)
        assert len(s) <= k and (k < 2 or (s[0] == 0 and s[-1] == 100))


def test_lr_at__cosine_is_the_papers_schedule_and_linear_and_constant_share_its_warmup():
    from supermem.toy.train import lr_at as at

    for s in (0, 1, 99, 100, 550, 999, 1000):
        assert at(s, 1000, 100, 1.0, "cosine") == lr_at(s, 1000, 100, 1.0)
    for s in range(100):  # the same warm-up
        assert (
            at(s, 1000, 100, 1.0, "linear")
            == at(s, 1000, 100, 1.0, "constant")
            == lr_at(s, 1000, 100, 1.0)
        )
    assert at(100, 1000, 100, 2.0, "linear") == 2.0 and at(550, 1000, 100, 2.0, "linear") == 1.0
    assert at(1000, 1000, 100, 2.0, "linear") == 0.0
    assert {at(s, 1000, 100, 2.0, "constant") for s in range(99, 1000)} == {2.0}
    with pytest.raises(ValueError, match="unknown lr schedule"):
        at(5, 10, 0, 1.0, "step")


def test_lr_schedule__validated_and_left_out_of_the_run_key_at_its_default():
    from supermem.config import ConfigError, TrainConfig
    from supermem.sweeps.index import config_key

    with pytest.raises(ConfigError, match="lr_schedule must be one of cosine, constant, linear"):
        TrainConfig(lr_schedule="step")
    base = TrainConfig(features=50, train_size=10, steps=20)
    d = base.to_dict()
    del d["lr_schedule"]  # a config.json written before the field existed
    assert TrainConfig(**d) == base and config_key(TrainConfig(**d)) == config_key(base)
    assert config_key(TrainConfig(**(d | {"lr_schedule": "constant"}))) != config_key(base)


def test_lr_schedule__changes_training_only_after_the_warmup():
    from supermem.config import TrainConfig
    from supermem.toy.train import train

    kw = dict(features=60, sparsity=0.9, train_size=12, steps=40, warmup=10, snapshots=0)
    runs = {s: train(TrainConfig(**kw, lr_schedule=s), progress=False) for s in LR}
    hist = {s: np.asarray(r.loss_history) for s, r in runs.items()}
    for s in LR:  # identical through the warm-up (the loss at step k is before update k)
        np.testing.assert_array_equal(hist[s][:11], hist["cosine"][:11])
    assert not np.array_equal(hist["constant"], hist["cosine"])
    assert not np.array_equal(hist["linear"], hist["cosine"])


LR = ("cosine", "linear", "constant")
