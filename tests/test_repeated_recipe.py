"""The repeated recipe: its measures on known arrays, the boundary fit, and the whole
recipe at a tiny scale with its claims recomputed from the saved arrays."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import reproduce_at
from test_recipes import TINY

from supermem.recipes import repeated as rep

TINY_REP = dataclasses.replace(
    TINY, data_seeds=1, rep_T=30, rep_K=(1, 2), rep_phase_T=(20, 40), rep_phase_R=(1, 4)
)


def test_features_held__counts_dims_at_or_above_threshold():
    assert rep.features_held(np.array([0.4, 0.4, 0.2, 0.19, 0.0])) == 3


def test_stored_points__top_fraction_for_one_point_top_k_for_many():
    dd = np.linspace(0, 1, 5000)[::-1].copy()  # point 0 has the largest D_t
    assert rep.stored_points(dd, 1) == [True]
    dd[0] = dd[10]  # 10 points above it: outside the top 0.1% (5 of 5,000)
    assert rep.stored_points(dd, 1) == [False]
    dd = np.r_[[0.9, 0.8, 0.01], np.full(97, 0.1)]  # 3 repeated, the third sits low
    assert rep.stored_points(dd, 3) == [True, True, False]


def test_fit_boundary__separable_points_give_the_interval_between_classes():
    # memorised iff R > 0.5 T/n; nearest ratios on either side: 0.4 (not) and 2/3 (yes)
    pts = [(tn, R, R > 0.5 * tn) for tn in (1.5, 3.0, 6.0) for R in (1, 2, 3, 5, 8)]
    b = rep.fit_boundary(pts)
    assert b["errors"] == 0 and b["runs"] == 15
    assert b["c_lo"] == pytest.approx(0.5) and b["c_hi"] == pytest.approx(2 / 3)
    assert b["c"] == pytest.approx(np.sqrt(0.5 * 2 / 3))


def test_fit_boundary__one_sided_or_noisy():
    assert rep.fit_boundary([(1.0, 1, True), (2.0, 1, True)])["c"] is None
    noisy = [(1.0, 1, False), (1.0, 2, True), (1.0, 3, False), (1.0, 4, True), (1.0, 8, True)]
    b = rep.fit_boundary(noisy)  # c in (1, 2) and in (3, 4) both misclassify one run
    assert b["errors"] == 1 and b["c_lo"] == 1 and b["c_hi"] == 4


def test_grids__control_many_and_phase_at_each_scale():
    for scale in ("quick", "paper"):
        names = [g[0] for g in rep.grids(scale)]
        assert names == ["repeated-control", "repeated-many", "repeated-phase"]
    f, axes = rep.grids("paper")[1][1:]
    assert (f["features"], f["sparsity"], f["train_size"], f["repeat_count"]) == (
        10_000,
        0.999,
        30_000,
        5,
    )
    assert axes["repeat_points"] == [1, 2, 3, 4, 5, 6, 7]


@pytest.fixture(scope="module")
def tiny_rep(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "repeated"
    return out, reproduce_at("repeated", TINY_REP, out)


def test_reproduce__figures_claims_and_report(tiny_rep):
    out, runs = tiny_rep
    assert len(runs) == 1 + 2 + 4  # control, K = 1 and 2, the 2 x 2 phase grid
    for name in ("repeated_single", "repeated_many", "repeated_phase"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000
    claims = json.loads((out / "claims.json").read_text())
    texts = [c["claim"] for c in claims["repeated"]] if isinstance(claims, dict) else claims
    assert any("R > c T/n" in str(t) for t in texts)
    assert (out / "report.html").is_file()


def test_reproduce__claims_recomputed_from_saved_arrays(tiny_rep):
    _, runs = tiny_rep
    t = rep.table(runs)
    for r in runs:  # the stored-point decision from data_dims alone
        K = r.config["repeat_points"]
        dd = r.arrays["data_dims"]
        for k in range(K):
            above = int((dd > dd[k]).sum())
            assert (above < max(K, int(np.ceil(0.001 * len(dd))))) == rep.measure(r)["stored"][k]
    one = [r.config for r in runs if r.config["repeat_points"] == 1 and r.config["data_seed"] == 0]
    cells = {(c["train_size"] / c["features"], c["repeat_count"]) for c in one}
    assert {(tn, R) for tn, R, _ in t["phase"]} == cells  # the phase grid and K = 1 at R = 5
    assert sorted(t["many"]) == [1, 2]


def test_table__a_config_trained_in_two_grids_counts_once(tiny_rep):
    _, runs = tiny_rep
    one = [r for r in runs if r.config["repeat_points"] == 1 and r.config["repeat_count"] == 5]
    assert len(rep.table(runs + one)["many"][1]["per_seed"]) == 1
