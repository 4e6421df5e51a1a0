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
