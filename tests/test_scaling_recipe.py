"""The scaling recipe: grids in T(1-S), the jump on known curves, and the recipe at a
tiny scale with its jumps recomputed from the saved feature dims."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import reproduce_at
from test_recipes import TINY

from supermem.recipes import SCALES
from supermem.recipes import scaling as sc
from supermem.recipes.base import grid_configs

TINY_SC = dataclasses.replace(
    TINY, scaling_S=(0.8, 0.9), scaling_x=(1, 4), scaling_wd=(0.1,), scaling_m=(2,)
)


class Fake:
    def __init__(self, T, S, top, wd=0.01, m=2, loss=1.0):
        self.config = dict(train_size=T, sparsity=S, weight_decay=wd, hidden=m)
        self.arrays = {"feature_dims": np.array([top, 0.01])}
        self.metrics = {"test_loss": loss}


def test_grids__same_x_for_every_sparsity_and_decay_sweep_at_the_scale_s():
    for scale in ("quick", "paper"):
        s = SCALES[scale]
        gs = sc.grids(scale)
        assert len(gs) == len(s.scaling_m) * (len(s.scaling_S) + 1)
        for g in gs:
            for c in grid_configs(g):
                x = c["train_size"] * (1 - c["sparsity"])
                assert min(abs(x / v - 1) for v in s.scaling_x) < 0.05
        wd = [g for g in gs if g[0].endswith("-wd")][0]
        assert len({1e-2, *wd[2]["weight_decay"]}) >= 4  # four decays over two decades
        assert max(wd[2]["weight_decay"]) / min(wd[2]["weight_decay"]) >= 100


def test_curve__jump_is_first_x_from_which_max_dim_stays_high():
    runs = [
        Fake(T, 0.9, top) for T, top in [(20, 0.01), (40, 0.3), (80, 0.1), (160, 0.4), (320, 0.4)]
    ]
    c = sc.curve(runs)
    assert c["x"] == pytest.approx([2, 4, 8, 16, 32])
    assert c["jump"] == pytest.approx(16) and c["before"] == pytest.approx(8)
    assert c["at"] == pytest.approx(np.sqrt(16 * 8))
    assert sc.curve([Fake(20, 0.9, 0.01)])["at"] is None


def test_check__lined_up_jumps_hold_and_moved_ones_do_not():
    def sweep(S, jump_x, wd=0.01):
        return [
            Fake(round(x / (1 - S)), S, 0.4 if x >= jump_x else 0.01, wd)
            for x in (2, 5, 10, 20, 40)
        ]

    runs = sweep(0.9, 10) + sweep(0.99, 10) + sweep(0.99, 10, wd=0.1)
    claims = sc.check(runs)
    # jump, peak and settle over S; jump and settle over weight decay
    assert [c.holds for c in claims] == [True, True, True, True, True]
    moved = sweep(0.9, 10) + sweep(0.99, 40) + sweep(0.99, 5, wd=0.1)
    assert [c.holds for c in sc.check(moved)] == [False, True, True, False, True]


def test_check__test_loss_peak_lines_up_in_T1mS_or_not():
    def sweep(S, peak_x):
        return [
            Fake(round(x / (1 - S)), S, 0.4, loss=5.0 if x == peak_x else 1.0)
            for x in (2, 5, 10, 20, 40)
        ]

    def peak_claim(runs):
        return [c for c in sc.check(runs) if "test-loss peak" in c.claim][0]

    c = peak_claim(sweep(0.9, 5) + sweep(0.99, 10))  # x2 apart: within one grid step
    assert c.holds and "0.9: 5, 0.99: 10" in c.measured
    assert not peak_claim(sweep(0.9, 2) + sweep(0.99, 20)).holds  # x10 apart


@pytest.fixture(scope="module")
def tiny_sc(tmp_path_factory):
    out = tmp_path_factory.mktemp("sc") / "scaling"
    return out, reproduce_at("scaling", TINY_SC, out)


def test_reproduce__figures_claims_and_jumps_from_saved_arrays(tiny_sc):
    out, runs = tiny_sc
    assert len(runs) == 2 * 2 + 2  # S sweep: 2 S x 2 x (1 seed); decay 0.1 at 2 x
    assert (out / "figures" / "scaling_m2_sparsity.png").stat().st_size > 5_000
    assert (out / "figures" / "scaling_m2_decay.png").stat().st_size > 5_000
    assert (out / "report.html").is_file()
    text = (out / "claims.json").read_text()
    assert "lines up near T(1-S)" in text and "weight decay does not move" in text
    tab = sc.table(runs)[2]
    for S, c in tab["S"].items():  # recompute each point's max D_i from feature_dims
        for T, v in zip(c["T"], c["max_dim"]):
            fd = [
                r.arrays["feature_dims"].max()
                for r in runs
                if r.config["train_size"] == T
                and r.config["sparsity"] == S
                and r.config["weight_decay"] == 0.01
            ]
            assert v == pytest.approx(float(np.mean(fd)))
    json.loads(text)


def test_check__test_loss_settles_at_the_same_T1mS_or_not():
    def sweep(S, settle_x, level=0.98):
        # above the level (a bump, then 3% over) before settle_x, within 1% from it on
        loss = {2: 3.0, 5: 40.0, 10: level * 1.03, 20: level * 1.005, 40: level}
        return [
            Fake(round(x / (1 - S)), S, 0.4, loss=loss[x] if x < settle_x else level * 1.004)
            for x in (2, 5, 10, 20, 40)
        ]

    def settle_claim(runs):
        return [c for c in sc.check(runs) if "generalising level" in c.claim][0]

    c = settle_claim(sweep(0.9, 10) + sweep(0.99, 20))
    assert c.holds and "0.9: 10, 0.99: 20" in c.measured
    assert sc.curve(sweep(0.9, 10))["settle"] == pytest.approx(10)
    assert not settle_claim(sweep(0.9, 5) + sweep(0.99, 40)).holds  # x8 apart


def test_check__weight_decay_moving_where_the_test_loss_settles_fails_the_claim():
    def sweep(wd, settle_x):
        return [
            Fake(round(x / 0.01), 0.99, 0.4, wd, loss=1.0 if x >= settle_x else 50.0)
            for x in (2, 5, 10, 20, 40)
        ]

    def claim(runs):
        return [c for c in sc.check(runs) if "settles" in c.claim and "decay" in c.claim][0]

    assert claim(sweep(0.01, 10) + sweep(0.1, 20)).holds
    bad = claim(sweep(0.01, 5) + sweep(0.1, 40))
    assert not bad.holds and "0.01: 5, 0.1: 40" in bad.measured
