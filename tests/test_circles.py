"""Issue 11 part 4: the two-circle detector on synthetic one- and two-circle hidden
vectors (T, 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from supermem.toy.circles import two_circles


def _pts(radii, degrees) -> np.ndarray:
    a = np.radians(np.asarray(degrees, dtype=float))
    return np.asarray(radii, dtype=float)[:, None] * np.stack([np.cos(a), np.sin(a)], 1)


def _two(inner=6, outer=4, r_out=2.0, step=30.0, start=225.0) -> np.ndarray:
    """Inner arc from 0 deg and outer arc from ``start`` deg, both ``step`` apart."""
    deg = np.r_[np.arange(inner) * step, start + np.arange(outer) * step]
    return _pts(np.r_[np.ones(inner), np.full(outer, r_out)], deg)


def test_regular_polygon__one_circle_is_not_caught():
    c = two_circles(_pts(np.ones(12), np.arange(12) * 30))
    assert not c.caught and c.radius_ratio == pytest.approx(1.0)


def test_two_circles_with_a_wide_gap__caught_with_its_numbers():
    c = two_circles(_two())  # inner 0..150 deg, outer 225..315 deg; gaps 75 and 45 deg
    assert c.caught and (c.inner, c.outer, c.changes, c.unstored) == (6, 4, 2, 0)
    assert c.radius_ratio == pytest.approx(2.0) and (c.r_inner, c.r_outer) == (1.0, 2.0)
    assert c.gap_ratio == pytest.approx(75 / 30) and c.meet_gap == pytest.approx(math.radians(75))
    assert c.meet_angle == pytest.approx(math.radians(150 + 37.5))


@pytest.mark.parametrize("angle, scale", [(0.7, 1.0), (2.0, 1e-3), (-1.0, 50.0)])
def test_verdict__invariant_to_rotation_scale_and_point_order(angle, scale):
    H = _two()
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    H2 = scale * H[np.random.default_rng(0).permutation(len(H))] @ R.T
    a, b = two_circles(H), two_circles(H2)
    assert b.caught and b.gap_ratio == pytest.approx(a.gap_ratio)
    assert b.radius_ratio == pytest.approx(a.radius_ratio)


@pytest.mark.parametrize(
    "H, why",
    [
        (_two(r_out=1.2), "radii too close: ratio 1.2 < 1.25"),
        (_two(outer=6, start=180.0), "no gap where the circles meet: every gap 30 deg"),
        (_two(inner=9, outer=1, start=300.0), "one outer point is not a circle"),
        (_pts([1, 2] * 5, np.arange(10) * 36), "interleaved radii: not two arcs"),
        (np.zeros((3, 2)), "nothing stored"),
        (_pts([1, 2, 2], [0, 120, 240]), "T = 3: no room for two circles of two"),
    ],
)
def test_not_two_circles__rejected(H, why):
    assert not two_circles(H).caught, why


def test_start_180__the_gap_ratio_measures_the_meeting_gap():
    # inner 0..150 and outer 180..270: meeting gaps 30 and 90 deg, same-group gaps 30
    assert two_circles(_two(start=180.0)).gap_ratio == pytest.approx(3.0)
    assert two_circles(_two(start=180.0)).caught  # the 90-degree gap where they meet
    assert not two_circles(_two(start=175.0, outer=6)).caught  # meeting gaps 25 and 35


def test_one_weak_point__does_not_hide_the_split_of_the_others():
    # a lone point at radius 0.4 is the largest jump (x2.5) but no circle: the split of
    # the rest (1 | 2) is found, and the lone point makes the inner group no circle
    H = np.r_[_two(), _pts([0.4], [90.0])]
    c = two_circles(H)
    assert c.radius_ratio == pytest.approx(2.0) and c.spread == pytest.approx(2.5)
    assert not c.caught
    H = np.r_[_two(r_out=1.6), _pts([0.3], [75.0])]  # stored (>= 10% of 1.6): spreads the inner
    assert not two_circles(H).caught


def test_loose_groups__not_circles():
    radii = np.r_[np.linspace(1.0, 1.6, 6), np.full(4, 2.0)]  # inner spread 1.6 > jump 1.25
    assert not two_circles(_pts(radii, np.r_[np.arange(6) * 30, 225 + np.arange(4) * 30])).caught


def test_points_near_the_origin__unstored_and_ignored():
    H = np.r_[_pts(np.ones(8), np.arange(8) * 45), [[1e-3, 0.0], [0.0, -2e-3]]]
    c = two_circles(H)
    assert not c.caught and c.unstored == 2 and c.radius_ratio == pytest.approx(1.0)
    c = two_circles(np.r_[_two(), [[1e-3, 0.0]]])
    assert c.caught and c.unstored == 1


def test_bad_shape_raises():
    with pytest.raises(ValueError, match=r"\(T, 2\)"):
        two_circles(np.zeros((5, 3)))


# -- the circles recipe at a tiny scale, recomputed from the saved arrays --------------
@pytest.fixture(scope="module")
def tiny_circles(tmp_path_factory):
    from test_recipes import TINY

    from supermem.cli import main
    from supermem.recipes import SCALES
    from supermem.recipes import circles as recipe

    out = tmp_path_factory.mktemp("circles") / "c"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCALES, "tiny", TINY)  # 60 steps, best of 2 restarts
        mp.setattr(recipe, "CIRCLE_T", (6, 8))
        mp.setitem(recipe.INIT_SEEDS, "tiny", 2)
        mp.setattr(recipe, "SNAPSHOTS", 3)
        argv = ["reproduce", "circles", "--scale", "tiny", "--out", str(out), "--no-progress"]
        assert main(argv) == 0
    return out


def test_circles_recipe__figure_claims_and_report(tiny_circles):
    import json

    figs = {p.name for p in (tiny_circles / "figures").iterdir()}
    assert {"circles.png", "circles.svg", "circles_measures.json"} <= figs
    claims = json.loads((tiny_circles / "claims.json").read_text())
    assert len(claims) == 4 and all(c["holds"] in (True, False, None) for c in claims)
    page = (tiny_circles / "report.html").read_text()
    assert "two circles" in page and page.count("data:image/png;base64,") == 1


def test_circles_recipe__rates_recomputed_from_the_saved_arrays(tiny_circles):
    import json

    import scipy.sparse as sp
    from safetensors.numpy import load_file

    caught: dict[int, list[bool]] = {1: [], 2: []}
    for spec in ("circles-single", "circles-restarts"):
        for d in sorted((tiny_circles / "sweeps" / spec / "runs").iterdir()):
            cfg = json.loads((d / "config.json").read_text())
            W = load_file(str(d / "arrays.safetensors"))["W"].astype(np.float64)
            csr = load_file(str(d / "train_data.safetensors"))
            X = sp.csr_matrix(
                (csr["values"], csr["indices"], csr["indptr"]),
                shape=(cfg["train_size"], cfg["features"]),
            )
            caught[cfg["restarts"]].append(two_circles(X @ W.T).caught)  # H = X W^T (T, 2)
    assert [len(v) for v in caught.values()] == [4, 4]
    claims = json.loads((tiny_circles / "claims.json").read_text())
    k, n = sum(caught[1]), len(caught[1])
    assert claims[0]["measured"].startswith(f"caught {k}/{n} ")
    assert claims[0]["holds"] == (k > 0)
    assert f"best of 2: {sum(caught[2])}/4 " in claims[1]["measured"]
    saved = json.loads((tiny_circles / "figures" / "circles_measures.json").read_text())
    assert sorted(r["caught"] for r in saved["runs"]) == sorted(caught[1] + caught[2])


def test_loss_claim__higher_means_above_rounding():
    from supermem.recipes import circles

    def tab(caught_loss, other_loss):
        runs = [dict(T=8, caught=True, train_loss=caught_loss)] * 3
        return {"runs": runs + [dict(T=8, caught=False, train_loss=other_loss)] * 3}

    assert circles._loss_claim(tab(0.09, 0.01)).holds
    assert not circles._loss_claim(tab(4.5e-13, 2.8e-14)).holds  # both memorised: equal
    assert not circles._loss_claim(tab(0.01, 0.09)).holds
