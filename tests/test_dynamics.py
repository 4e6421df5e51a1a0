"""Issue 11 part 3: the snapshot schedule option and the training-dynamics measures
(trajectories, near misses, forgotten features) on trajectories with known answers."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_config

from supermem import metrics
from supermem.cli import main
from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.index import KEY_OMIT_AT_DEFAULT, config_key
from supermem.toy import dynamics as dyn
from supermem.toy.train import snapshot_steps, train


# -- the snapshot schedule --------------------------------------------------------------
def test_snapshot_steps__linear_is_evenly_spaced_with_both_ends():
    np.testing.assert_array_equal(snapshot_steps(100, 11, "linear"), np.arange(0, 101, 10))
    s = snapshot_steps(10_000, 60, "linear")
    assert len(s) == 60 and s[0] == 0 and s[-1] == 10_000
    assert np.ptp(np.diff(s)) <= 1  # rounding only
    assert snapshot_steps(5, 60, "linear").tolist() == [0, 1, 2, 3, 4, 5]  # distinct steps
    for k in (0, 1, 2):
        assert snapshot_steps(100, k, "linear").tolist() == snapshot_steps(100, k).tolist()


def test_snapshot_steps__log_is_the_default_and_unchanged():
    s = snapshot_steps(50_000, 24)
    np.testing.assert_array_equal(s, snapshot_steps(50_000, 24, "log"))
    assert s[1] == 1 and np.diff(s)[-1] > np.diff(s)[1]  # dense early, sparse late


def test_snapshot_schedule__trainer_saves_at_the_linear_steps():
    r = train(make_config(steps=40, snapshots=5, snapshot_schedule="linear"), progress=False)
    assert r.snapshot_steps.tolist() == [0, 10, 20, 30, 40]
    assert r.snapshots["W"].shape == (5, 2, 50)
    np.testing.assert_array_equal(r.snapshots["W"][-1], r.params["W"])


@pytest.mark.parametrize("bad", ["cubic", "", "Log", 3])
def test_snapshot_schedule__bad_values_raise_config_error(bad):
    with pytest.raises(ConfigError, match="snapshot_schedule must be"):
        TrainConfig(snapshot_schedule=bad)


def test_snapshot_schedule__bad_flag_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--snapshot-schedule", "cubic", "--out", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cubic" in err


def test_snapshot_schedule__bad_value_in_a_sweep_file_exits_2_with_one_line(tmp_path, capsys):
    toml = tmp_path / "s.toml"
    toml.write_text('name = "s"\n[fixed]\nsnapshot_schedule = "cubic"\n[axes]\nseed = [0]\n')
    assert main(["sweep", str(toml), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "snapshot_schedule must be one of log, linear" in err


def test_snapshot_schedule__default_keeps_old_run_keys_linear_changes_them():
    c = TrainConfig()
    old = {k: v for k, v in c.to_dict().items() if k not in KEY_OMIT_AT_DEFAULT}
    blob = json.dumps(old, sort_keys=True, separators=(",", ":"))
    assert config_key(c) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert config_key(c.replace(snapshot_schedule="linear")) != config_key(c)
    assert TrainConfig.from_dict(old) == c  # a config.json written before the field loads


# -- trajectories -----------------------------------------------------------------------
def test_trajectories__shapes_and_values_match_metrics_per_snapshot():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 2, 30))  # (k, m, n)
    X = sp.random(12, 30, density=0.2, random_state=1, format="csr")  # (T, n)
    Dt, Di = dyn.data_dim_trajectory(W, X), dyn.feature_dim_trajectory(W)
    assert Dt.shape == (5, 12) and Di.shape == (5, 30)
    for j in range(5):
        np.testing.assert_allclose(Dt[j], metrics.data_dims(metrics.hidden(W[j], X)))
        np.testing.assert_allclose(Di[j], metrics.feature_dims(W[j]))
    np.testing.assert_allclose(dyn.data_dim_trajectory(W, X.toarray()), Dt)


def test_thresholds__point_one_and_a_quarter_of_it_at_m2_and_detectable_from_T200():
    assert dyn.thresholds(2) == pytest.approx((0.1, 0.025))
    assert dyn.detectable(2, 200) and not dyn.detectable(2, 199)
    assert dyn.detectable(2, 1_000) and not dyn.detectable(2, 20)


# -- near misses and forgotten features on synthetic trajectories ----------------------
STEPS = np.array([0, 10, 20, 30, 40, 50])


def _traj(*cols) -> np.ndarray:
    return np.array(cols, dtype=float).T  # (k, N)


def test_lost_after_reaching__finds_the_stored_then_dropped_one_with_its_steps():
    D = _traj(
        [0.01, 0.05, 0.2, 0.3, 0.01, 0.0],  # near miss: stored 20, peak 30, lost 40
        [0.01, 0.2, 0.3, 0.3, 0.3, 0.3],  # stored to the end
        [0.01, 0.01, 0.01, 0.01, 0.01, 0.01],  # never stored
        [0.01, 0.09, 0.09, 0.09, 0.01, 0.0],  # close to hi, never reaches it
    )
    (e,) = dyn.lost_after_reaching(D, STEPS, 0.1, 0.025)
    assert (e.index, e.stored_step, e.peak_step, e.lost_step) == (0, 20, 30, 40)
    assert e.peak == 0.3 and e.final == 0.0


def test_lost_after_reaching__hysteresis_and_recovery():
    D = _traj(
        [0.0, 0.2, 0.05, 0.05, 0.05, 0.05],  # falls below hi but never below lo: kept
        [0.0, 0.2, 0.01, 0.2, 0.2, 0.2],  # dropped, stored again by the end: no event
        [0.0, 0.2, 0.05, 0.2, 0.05, 0.01],  # stored twice, lost after the second time
    )
    (e,) = dyn.lost_after_reaching(D, STEPS, 0.1, 0.025)
    assert e.index == 2 and e.stored_step == 10 and e.lost_step == 50


def test_lost_after_reaching__a_high_value_at_step_0_is_not_learning():
    D = _traj([0.5, 0.01, 0.01, 0.01, 0.01, 0.01])  # random init high, then low
    assert dyn.lost_after_reaching(D, STEPS, 0.1, 0.025) == []
    assert dyn.lost_after_reaching(D[:0], STEPS[:0], 0.1, 0.025) == []


def test_lost_after_reaching__bad_arguments_raise():
    with pytest.raises(ValueError, match="lo"):
        dyn.lost_after_reaching(np.zeros((6, 2)), STEPS, 0.1, 0.2)
    with pytest.raises(ValueError, match="k = len"):
        dyn.lost_after_reaching(np.zeros((5, 2)), STEPS, 0.1, 0.025)


def test_near_misses_and_forgotten_features__use_the_m_thresholds():
    D = _traj([0.0, 0.12, 0.02, 0.02, 0.02, 0.02], [0.0, 0.08, 0.0, 0.0, 0.0, 0.0])
    assert [e.index for e in dyn.near_misses(D, STEPS, 2)] == [0]
    assert dyn.forgotten_features(D, STEPS, 4) == []  # hi = 0.2 at m = 4
    assert dyn.stored_counts(D, 0.1).tolist() == [0, 1, 0, 0, 0, 0]


def test_near_miss__a_polygon_that_loses_a_vertex():
    """Hidden vectors: 8 stored points on a regular octagon among 400 tiny ones; at the
    end point 0 has shrunk into the cloud. Its D_t goes 2/8 -> ~0: one near miss."""
    rng = np.random.default_rng(0)
    a = 2 * np.pi * np.arange(8) / 8
    gon = np.stack([np.cos(a), np.sin(a)], 1)
    cloud = 0.01 * rng.normal(size=(400, 2))
    H0 = np.r_[0.01 * rng.normal(size=(8, 2)), cloud]
    H1 = np.r_[gon, cloud]
    H2 = H1.copy()
    H2[0] *= 0.005
    Dt = metrics.data_dims(np.stack([H0, H1, H2]))  # (3, 408)
    assert Dt[1, :8] == pytest.approx(0.25, rel=0.02)  # the cloud takes a little
    (e,) = dyn.near_misses(Dt, np.array([0, 50, 100]), 2)
    assert (e.index, e.stored_step, e.lost_step) == (0, 50, 100)


# -- the dynamics recipe at a tiny scale, recomputed from the saved arrays -------------
@pytest.fixture(scope="module")
def tiny_dyn(tmp_path_factory):
    import dataclasses

    from test_recipes import TINY

    from supermem.recipes import SCALES
    from supermem.recipes import dynamics as recipe
    from supermem.report import fig_dynamics

    out = tmp_path_factory.mktemp("dyn") / "d"
    with pytest.MonkeyPatch.context() as mp:
        # S = 0.9: T = 33, 58 and 100, one data seed and one init each, 60 steps
        mp.setitem(SCALES, "tiny", dataclasses.replace(TINY, data_seeds=1))
        mp.setattr(recipe, "FRAMES", 13)
        mp.setattr(fig_dynamics, "GIF_FRAMES", 4)
        mp.setattr(fig_dynamics, "N_FRAMES", 3)
        mp.setattr(dyn, "HI_PER_M", 0.02)  # hi 0.04, lo 0.01: tiny runs reach them
        argv = ["reproduce", "dynamics", "--scale", "tiny", "--out", str(out), "--no-progress"]
        assert main(argv) == 0
    return out


def test_dynamics_recipe__figures_gif_claims_and_report(tiny_dyn):
    from PIL import Image

    figs = {p.name for p in (tiny_dyn / "figures").iterdir()}
    for f in ("dynamics_trajectories", "dynamics_frames"):
        assert {f"{f}.png", f"{f}.svg"} <= figs
    gif = Image.open(tiny_dyn / "figures" / "dynamics_animation.gif")
    assert gif.format == "GIF" and gif.n_frames == 4
    claims = json.loads((tiny_dyn / "claims.json").read_text())
    assert [c["claim"].split(":")[0] for c in claims] == [
        "Near misses",
        "Features learned, then forgotten during mid-regime training (m = 2)",
    ]
    page = (tiny_dyn / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "data:image/gif;base64," in page
    assert "forgotten_features" in page


def _dims(V: np.ndarray) -> np.ndarray:
    """Dimensionality of each row of V (..., N, m), written out again from the paper."""
    unit = V / np.maximum(np.linalg.norm(V, axis=-1, keepdims=True), 1e-300)
    overlap = np.einsum("...im,...jm->...ij", unit, V) ** 2  # (..., N, N)
    return np.where(
        np.linalg.norm(V, axis=-1) > 0, np.linalg.norm(V, axis=-1) ** 2, 0
    ) / np.maximum(overlap.sum(-1), 1e-300)


def test_dynamics_recipe__counts_recomputed_from_the_saved_arrays(tiny_dyn):
    from safetensors.numpy import load_file

    saved = json.loads((tiny_dyn / "figures" / "dynamics_measures.json").read_text())
    hi, lo = saved["hi"], saved["lo"]
    assert (hi, lo) == pytest.approx((0.04, 0.01))
    runs = sorted((tiny_dyn / "sweeps" / "dyn-mid-T" / "runs").iterdir())
    assert len(runs) == len(saved["runs"]) == 3
    total = 0
    for d in runs:
        cfg = json.loads((d / "config.json").read_text())
        a = load_file(str(d / "arrays.safetensors"))
        csr = load_file(str(d / "train_data.safetensors"))
        X = sp.csr_matrix(
            (csr["values"], csr["indices"], csr["indptr"]),
            shape=(cfg["train_size"], cfg["features"]),
        )
        steps, W = a["snapshot_steps"], a["snapshot_W"].astype(np.float64)
        assert (
            cfg["snapshot_schedule"] == "linear"
            and steps.tolist() == snapshot_steps(60, 13, "linear").tolist()
        )
        H = np.stack([X @ w.T for w in W])  # (k, T, 2)
        counts, most = [], []
        for D in (_dims(H), _dims(W.transpose(0, 2, 1))):  # D_t (k, T), D_i (k, n)
            reached = ((D >= hi) & (steps > 0)[:, None]).any(0)
            counts.append(int((reached & (D[-1] < lo)).sum()))
            most.append(int((D >= hi).sum(1).max()))
        row = next(
            r
            for r in saved["runs"]
            if (r["T"], r["data_seed"], r["seed"])
            == (cfg["train_size"], cfg["data_seed"], cfg["seed"])
        )
        assert [row["near_misses"], row["forgotten_features"]] == counts
        assert [row["stored_points_max"], row["stored_features_max"]] == most
        assert min(most) > 0  # the tiny runs do store points and features at hi = 0.04
        total += counts[0]
    claims = json.loads((tiny_dyn / "claims.json").read_text())
    if claims[0]["holds"] is not None:
        assert claims[0]["holds"] == (total > 0)
