"""The crossover recipe: the solution kinds, the crossover on known runs, the cluster
detector on known geometry, and the recipe at a tiny scale recomputed from saved arrays."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import reproduce_at
from test_recipes import TINY

from supermem import metrics
from supermem.recipes import clusters as cl
from supermem.recipes import crossover as cx

TINY_CX = dataclasses.replace(TINY, cross_T=(6, 24), cross_lr=(1e-3, 1e-2))
PENTAGON = np.r_[[0.4] * 5, [0.01] * 20]
SPREAD = np.r_[[0.05] * 25]


class Fake:
    def __init__(self, T, lr, loss, fd, S=0.99, status="ok"):
        H = np.random.default_rng(T).normal(size=(T, 2))
        self.config = dict(train_size=T, lr=lr, hidden=2, sparsity=S)
        self.metrics = {"train_loss": loss, "status": status}
        self.arrays = dict(feature_dims=fd, H_train=H, data_dims=metrics.data_dims(H))
        self.status = status


def test_kind__five_features_generalise_spread_ones_memorise():
    assert cx.kind(Fake(10, 1e-3, 1.0, PENTAGON)) == "generalising"
    assert cx.kind(Fake(10, 1e-3, 1.0, SPREAD)) == "memorising"
    weak = np.r_[[0.1] * 5, [0.001] * 20]  # five stand out but hold a tenth of the space
    assert cx.kind(Fake(10, 1e-3, 1.0, weak)) == "memorising"


def test_table__lowest_loss_over_lrs_and_the_crossover_bracket():
    runs = []
    for T, (mem_loss, gen_loss) in {100: (0.1, 0.5), 300: (0.2, 0.4), 1000: (0.5, 0.3)}.items():
        runs += [Fake(T, 1e-3, mem_loss, SPREAD), Fake(T, 1e-2, gen_loss, PENTAGON)]
    t = cx.table(runs)
    assert [r["best_kind"][:3] for r in t["rows"]] == ["mem", "mem", "gen"]
    assert [r["best_lr"] for r in t["rows"]] == [1e-3, 1e-3, 1e-2]
    assert (t["before"], t["crossover"]) == (300, 1000)
    assert t["at"] == pytest.approx(np.sqrt(300 * 1000))
    assert t["rows"][0]["best_of_kind"] == {"memorising": 0.1, "generalising": 0.5}
    claim = cx.check(runs)[0]
    assert claim.holds is False  # expected ~50,000 at S = 0.99: far from 300-1,000
    assert cx.expected_T(0.99) == pytest.approx(50_000)


def _with_weights(run, W, b, X=None):
    run.arrays |= {"W": W, "b": b}
    run.X_train = X
    return run


def test_table__a_generalising_solution_of_a_smaller_T_counts_on_this_T_s_data():
    from supermem.toy.losses import reconstruction_loss

    rng = np.random.default_rng(0)
    n = 25
    X = sp.random(400, n, density=0.2, random_state=1, format="csr", data_rvs=rng.random)
    W, b = rng.normal(size=(2, n)) * 0.1, np.zeros(n)
    here = reconstruction_loss(W, b, X)  # the donor's loss on T = 400's training set
    for gap, winner in [(+0.01, "generalising"), (-0.01, "memorising")]:
        runs = [
            _with_weights(Fake(100, 1e-3, 0.3, PENTAGON), W, b),
            _with_weights(Fake(100, 1e-2, 0.2, SPREAD), W * 2, b),  # memorising: not carried
            _with_weights(Fake(400, 1e-2, here + gap, SPREAD), W, b, X),
        ]
        t = cx.table(runs)
        row = t["rows"][1]
        assert row["carried"] == {"T": 100, "lr": 1e-3, "train_loss": pytest.approx(here)}
        assert row["best_kind"] == winner and row["carried_won"] == (winner == "generalising")
        assert row["best_loss"] == pytest.approx(min(here, here + gap))
        assert row["best_of_kind"]["generalising"] == pytest.approx(here)
        assert t["crossover"] == (400 if gap > 0 else None)
        measured = cx.check(runs)[0].measured
        assert ("carried from T=100 lr 0.001" in measured) == (gap > 0)
        assert "T=400: " + winner[:3] in measured and "1 of 2 rates trained" in measured
    # runs saved without weights or data (Fake): nothing is carried
    bare = cx.table([Fake(100, 1e-3, 0.3, PENTAGON), Fake(400, 1e-3, 0.9, SPREAD)])
    assert bare["rows"][1]["carried"] is None


def test_margins__memorising_minus_generalising_only_where_both_were_reached():
    runs = [Fake(50, 1e-3, 0.05, SPREAD), Fake(50, 1e-2, 0.07, SPREAD)]  # no generalising
    for T, (mem_loss, gen_loss) in {100: (0.1, 0.5), 1000: (0.5, 0.3)}.items():
        runs += [Fake(T, 1e-3, mem_loss, SPREAD), Fake(T, 1e-2, gen_loss, PENTAGON)]
    t = cx.table(runs)
    got = cx.margins(t)
    assert [T for T, _ in got] == [100, 1000]
    assert [g for _, g in got] == pytest.approx([-0.4, 0.2])  # crosses zero at the crossover
    # zero crossing, linear in log T: two thirds of the way from -0.4 to 0.2 over 100..1000
    assert t["at_margin"] == pytest.approx(100 * 10 ** (0.4 / 0.6))
    assert "margin zero at ~464" in cx.check(runs)[0].measured
    # a bracket whose lower end reached no generalising solution: no interpolation
    low = [Fake(100, 1e-3, 0.1, SPREAD), *runs[-2:]]
    t = cx.table(low)
    assert (t["before"], t["crossover"], t["at_margin"]) == (100, 1000, None)
    assert "margin zero" not in cx.check(low)[0].measured


def test_check__memorising_winners_throughout_decide_only_past_the_expected_T():
    def grid(Ts):
        return [
            Fake(T, lr, 0.1 if lr == 1e-3 else 0.5, SPREAD if lr == 1e-3 else PENTAGON)
            for T in Ts
            for lr in (1e-3, 1e-2)
        ]

    part = cx.check(grid([1000, 3200]))[0]  # a partial grid: the crossover may lie beyond
    assert part.holds is None and "not decided" in part.measured and "T = 3,200" in part.measured
    full = cx.check(grid([1000, 20_000, 160_000]))[0]  # reaches past 50,000 x 3: refuted
    assert full.holds is False and "no crossover up to T = 160,000" in full.measured


def test_shared_null__uniform_directions_share_as_often_as_it_says():
    rng = np.random.default_rng(0)
    for count in (50, 300):
        a = rng.uniform(0, 2 * np.pi, (200, count))
        got = [cl.summary(np.c_[np.cos(x), np.sin(x)], np.ones(count))["shared_share"] for x in a]
        want = cl.shared_null(count, 2)  # 1 - (1 - 1/180)^(count - 1)
        assert want == pytest.approx(1 - (1 - 1 / 180) ** (count - 1))
        assert np.mean(got) == pytest.approx(want, abs=0.02)  # 3+ standard errors
    assert cl.shared_null(1, 2) == 0.0
    assert cl.shared_null(2, 3) == pytest.approx((1 - np.cos(np.radians(1))) / 2)


def test_clusters__points_sharing_a_direction_are_one_cluster():
    angles = [0.0, 0.01, 0.02, 1.5, 1.51, 3.0]  # clusters of 3, 2 and 1 stored points
    H = np.c_[np.cos(angles), np.sin(angles)]
    H = np.r_[H, 0.01 * np.random.default_rng(0).normal(size=(200, 2))]  # small, unstored
    dd = metrics.data_dims(H)
    got = sorted(sorted(c.tolist()) for c in cl.clusters(H, dd))
    assert got == [[0, 1, 2], [3, 4], [5]]
    X = sp.random(206, 30, density=0.2, random_state=1, format="csr")
    X = sp.csr_matrix(X.multiply(1 / np.sqrt(X.multiply(X).sum(1) + 1e-12)))
    s = cl.summary(H, dd, X)
    assert (s["stored"], s["clusters"], s["largest"]) == (6, 3, 3)
    assert s["shared_share"] == pytest.approx(5 / 6)
    assert s["within_cos"] is not None and s["between_cos"] is not None


def test_clusters__a_ring_of_many_stored_points_is_found_in_pairs():
    # the memorising winners above 1k points: ~100 stored points on a ring, each with a
    # small D_t (~0.02, under the first version's absolute 0.05), 900 points near 0
    pairs = np.repeat(np.radians(np.arange(50) * 7.2), 2) + np.tile([0.0, 0.003], 50)
    H = np.c_[np.cos(pairs), np.sin(pairs)]
    H = np.r_[H, 0.02 * np.random.default_rng(0).normal(size=(900, 2))]
    dd = metrics.data_dims(H)
    assert dd[:100].max() < 0.05 and (dd[:100] >= cl.STORED_SHARE * 2 / 1000).all()
    got = cl.clusters(H, dd)
    assert len(got) == 50 and all(len(c) == 2 and abs(c[0] - c[1]) == 1 for c in got)
    # correlated: each pair shares its data features, pairs share none
    X = sp.lil_matrix((1000, 200))
    for k in range(50):
        X[2 * k, 2 * k : 2 * k + 2] = 1.0
        X[2 * k + 1, 2 * k : 2 * k + 2] = 1.0
    for t in range(100, 1000):
        X[t, 100 + t % 100] = 1.0
    X = sp.csr_matrix(X.multiply(1 / np.sqrt(X.multiply(X).sum(1))))
    s = cl.summary(H, dd, X)
    assert s["shared_share"] == 1.0 and s["within_cos"] == pytest.approx(1.0)
    assert s["between_cos"] == pytest.approx(0.0) and cx._correlated(s)


def test_clusters__points_along_a_feature_holding_its_dimension_are_left_out():
    angles = [0.0, 0.01, 0.02, 1.5, 1.51, 3.0]  # clusters of 3, 2 and 1 stored points
    H = np.c_[np.cos(angles), np.sin(angles)]
    H = np.r_[H, 0.01 * np.random.default_rng(0).normal(size=(200, 2))]
    dd = metrics.data_dims(H)
    W = np.array([[1.0, 0.7, 0.3], [0.0, 0.7, 0.3]])  # features along 0 deg, 45 deg, weak
    F = cl.feature_directions(W, np.array([0.9, 0.9, 0.05]))
    assert F.shape == (2, 2)  # the weak third feature holds no dimension of its own
    got = sorted(sorted(c.tolist()) for c in cl.clusters(H, dd, F))
    assert got == [[3, 4], [5]]  # the cluster along feature 0 is that feature's
    s = cl.summary(H, dd, None, F)
    assert (s["stored"], s["clusters"]) == (3, 2)


@pytest.fixture(scope="module")
def tiny_cx(tmp_path_factory):
    out = tmp_path_factory.mktemp("cx") / "crossover"
    return out, reproduce_at("crossover", TINY_CX, out)


def test_reproduce__winners_recomputed_from_saved_runs(tiny_cx):
    out, runs = tiny_cx
    assert len(runs) == 4 and (out / "figures" / "crossover.png").stat().st_size > 5_000
    assert "memorising solution has the lowest training loss" in (out / "claims.json").read_text()
    t = cx.table(runs)
    for row in t["rows"]:
        mine = [r for r in runs if r.config["train_size"] == row["T"]]
        best = min(mine, key=lambda r: r.metrics["train_loss"])
        assert row["best_lr"] == best.config["lr"] and row["best_kind"] == cx.kind(best)
    assert [r.config["restarts"] for r in runs if r.config["train_size"] == 6] == [2, 2]
