"""Recipes, claims and the report: registry, grids, claims with known answers, HTML."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field

import numpy as np
import pytest

from supermem import metrics
from supermem.cli import main
from supermem.recipes import RECIPES, SCALES, claims, load_runs
from supermem.recipes.scales import Scale, log_grid

ALL = {"demo", "fig2", "fig3", "fig4", "fig5", "appendix-m4", "discrepancy", "dynamics", "circles"}
ALL |= {"repeated", "scaling", "crossover"}
ALL |= {"variants"}


@dataclass
class FakeRun:
    """Quacks like store.Run: config, metrics, arrays, status."""

    config: dict
    metrics: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    status: str = "ok"


def fake(T: int, m: int = 2, H=None, fd=None, seed: int = 0, **mets) -> FakeRun:
    H = np.random.default_rng(seed).normal(size=(T, m)) if H is None else np.asarray(H)
    fd = np.full(100, 0.01) if fd is None else np.asarray(fd)
    cfg = dict(train_size=T, hidden=m, sparsity=0.99, data_seed=seed, seed=0, steps=100)
    cfg["weight_decay"] = mets.pop("weight_decay", 0.01)
    cfg["steps"] = mets.pop("steps", 100)
    arrays = dict(H_train=H, data_dims=metrics.data_dims(H), feature_dims=fd)
    return FakeRun(cfg, {"test_loss": 1.0, "W_norm": 1.0, "b_norm": 1.0, **mets}, arrays)


def polygon(T: int) -> np.ndarray:
    a = 2 * np.pi * np.arange(T) / T
    return np.stack([np.cos(a), np.sin(a)], 1)  # (T, 2)


# -- registry and grids -----------------------------------------------------------------
def test_registry__lists_every_recipe_with_costs_for_every_scale():
    assert set(RECIPES) == ALL
    for r in RECIPES.values():
        assert r.name and r.title
        assert all(f"{s}:" in r.description or f"{s} ~" in r.description for s in SCALES)


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("name", sorted(ALL))
def test_specs__expand_to_valid_configs_at_the_scales_settings(name, scale):
    specs = RECIPES[name].specs(scale)
    assert specs and len({s.name for s in specs}) == len(specs)
    for spec in specs:
        cfgs = spec.configs()  # raises ConfigError on any invalid grid point
        assert len(cfgs) == math.prod(len(v) for v in spec.axes.values())
        s = SCALES[scale]
        sparsities = set(s.scaling_S) if name == "scaling" else {s.sparsity}  # it sweeps S
        assert {c.features for c in cfgs} == {s.features}
        assert {c.sparsity for c in cfgs} <= sparsities


def test_demo_quick__log_spaced_T_from_3_to_10000_with_two_seeds():
    cfgs = [c for s in RECIPES["demo"].specs("quick") for c in s.configs()]
    Ts = sorted({c.train_size for c in cfgs})
    assert 10 <= len(Ts) <= 14 and Ts[0] == 3 and Ts[-1] == 10_000
    ratios = np.diff(np.log(Ts))
    assert ratios.max() / ratios.min() < 1.6  # evenly spread in log T
    assert {c.data_seed for c in cfgs} == {0, 1} and {c.hidden for c in cfgs} == {2}
    assert all(c.restarts > 1 for c in cfgs if c.train_size < SCALES["quick"].small_T)


def test_figs_2_to_4_and_demo_share_one_sweep():
    names = {n: [s.name for s in RECIPES[n].specs("quick")] for n in ("demo", "fig2", "fig3")}
    assert names["demo"] == names["fig2"] == names["fig3"]


def test_unknown_scale__raises_key_error():
    with pytest.raises(KeyError, match="scale"):
        RECIPES["fig2"].specs("huge")


def test_log_grid__ends_included_and_increasing():
    g = log_grid(3, 10_000, 13)
    assert g[0] == 3 and g[-1] == 10_000 and list(g) == sorted(set(g))


# -- claims on runs with known answers --------------------------------------------------
def test_polygon__regular_T_gons_hold_uneven_points_and_random_clouds_fail():
    good = claims.polygon([fake(5, H=polygon(5)), fake(10, H=polygon(10)), fake(500)])
    assert good.holds is True and "T=5: 1.00, T=10: 1.00" in good.measured
    assert "T=500" not in good.measured  # beyond 30x the smallest T: not "small"
    bad = claims.polygon([fake(4, H=[[1, 0], [0, 1], [0, 1], [0, 1]])])  # D_t = 1, 1/3 x 3
    assert bad.holds is False
    # a random cloud averages m/T too, but its median sits well below m/T
    cloud = claims.polygon([fake(5, H=polygon(5))] + [fake(60, seed=s) for s in range(3)])
    assert cloud.holds is False and "T=60" in cloud.measured


def test_pentagon__five_large_features_hold_six_equal_fail():
    five = np.r_[np.full(5, 0.35), np.full(995, 0.001)]
    six = np.r_[np.full(6, 0.3), np.full(994, 0.001)]
    assert claims.pentagon([fake(3), fake(1000, fd=five)]).holds is True
    c = claims.pentagon([fake(3), fake(1000, fd=six)])
    assert c.holds is False and "ratio 1" in c.measured


@pytest.mark.parametrize(
    "losses, holds, like",
    [
        ([1.0, 1.012, 1.005, 0.6], True, "the paper"),
        ([1.0, 4_000.0, 30.0, 0.6], True, "the replication"),
        ([1.0, 0.9, 0.8, 0.6], False, "the paper"),
    ],
)
def test_test_loss_peak__finds_the_bump_and_its_height(losses, holds, like):
    runs = [
        fake(T, seed=s, test_loss=v) for T, v in zip([3, 30, 300, 3000], losses) for s in (0, 1)
    ]
    c = claims.test_loss_peak(runs)
    assert c.holds is holds and f"resembles {like}" in c.measured
    assert f"at T={[3, 30, 300, 3000][int(np.argmax(losses))]};" in c.measured


def test_norm_peak__near_30_holds_at_the_edge_fails():
    Ts = [3, 10, 30, 100, 1000]
    mid = [fake(T, W_norm=w) for T, w in zip(Ts, [1, 2, 3, 2, 2.2])]
    edge = [fake(T, b_norm=w) for T, w in zip(Ts, [3, 2, 1, 1, 1])]
    assert claims.norm_peak(mid, "W_norm").holds is True
    assert claims.norm_peak(edge, "b_norm").holds is False


def test_w_norm_large_T__sqrt5_holds_half_fails():
    assert claims.w_norm_large_T([fake(3), fake(1000, W_norm=2.2)]).holds is True
    assert claims.w_norm_large_T([fake(3), fake(1000, W_norm=1.1)]).holds is False


@pytest.mark.parametrize("peak, scale", [(135.0, "log"), (4.2, "linear")])
def test_loss_panel__log_axis_only_when_the_bump_spans_decades(peak, scale):
    import matplotlib.pyplot as plt

    from supermem.report import figures

    runs = [fake(T, test_loss=v) for T, v in [(3, 1.1), (300, peak), (3000, 0.99)]]
    fig, ax = plt.subplots()
    figures.loss_panel(ax, runs)
    figures.log_if_wide(ax)
    assert ax.get_yscale() == scale
    plt.close(fig)


@pytest.mark.parametrize("k, image", [(50, False), (20_000, True)])
def test_vectors__svg_keeps_few_vectors_as_paths_and_many_as_one_image(k, image, tmp_path):
    import matplotlib.pyplot as plt

    from supermem.report import plots

    V = np.random.default_rng(0).normal(size=(k, 2))
    fig, axes = plt.subplots(1, 2)
    plots.vector_pair(axes, V.T, V)
    svg = plots.save(fig, tmp_path, "v")[1].read_text()
    assert ("<image" in svg) == image
    # paths per vector: 20,000 of them as SVG paths would be megabytes
    assert len(svg) < (2_000_000 if image else 200_000)


def test_hurts__finds_the_rise_along_T_at_fixed_m():
    loss = {(1, 3): 1.0, (1, 30): 1.2, (2, 3): 1.0, (2, 30): 0.5}
    runs = [fake(T, m=m, test_loss=v) for (m, T), v in loss.items()]
    c = claims.hurts(runs, along="train_size", across="hidden")
    assert c.holds is True and "+20.0%" in c.measured and "m=1" in c.measured
    assert claims.hurts(runs, along="hidden", across="train_size").holds is False


def test_hurts__one_m_leaves_the_bigger_model_claim_undecided():
    runs = [fake(T, m=1, test_loss=v) for T, v in ((3, 1.0), (30, 1.5), (300, 0.9))]
    assert claims.hurts(runs, along="train_size", across="hidden").holds is True
    c = claims.hurts(runs, along="hidden", across="train_size")
    assert c.holds is None and "nothing to compare" in c.measured


def test_appendix_claims__bump_grows_with_steps_and_decay_removes_it():
    curve = {100: [1, 1.1, 0.5], 1000: [1, 1.5, 0.5]}
    runs = [
        fake(T, m=4, steps=s, test_loss=v)
        for s, c in curve.items()
        for T, v in zip([3, 30, 300], c)
    ]
    assert claims.bump_grows(runs).holds is True
    flat = [
        fake(T, m=4, steps=1000, weight_decay=1.0, test_loss=v)
        for T, v in zip([3, 30, 300], [1, 0.9, 0.8])
    ]
    at = [r for r in runs if r.config["steps"] == 1000] + flat
    assert claims.decay_removes_bump(at).holds is True
    assert claims.decay_removes_bump([r for r in runs if r.config["steps"] == 1000]).holds is None


# -- reproduce, report, CLI -------------------------------------------------------------
TINY = Scale(
    features=40,
    sparsity=0.9,
    steps=60,
    warmup=3,
    test_size=64,
    T_grid=(3, 6, 12, 24),
    data_seeds=2,
    small_T=10,
    restarts=2,
    fig5_T=(3, 12),
    fig5_m=(1, 2),
    m4_T=(3, 12),
    m4_steps=(30, 60),
    overrides={"engine": "reference", "device": "cpu", "snapshots": 0},
)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """`supermem reproduce demo` at a tiny scale (reference engine, 8 runs of 60 steps)."""
    out = tmp_path_factory.mktemp("repro") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCALES, "tiny", TINY)
        rc = main(["reproduce", "demo", "--scale", "tiny", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_reproduce__writes_sweeps_figures_claims_and_report(demo_dir):
    assert {p.name for p in (demo_dir / "sweeps").iterdir()} == {"m2-T-small-T", "m2-T-large-T"}
    names = {p.name for p in (demo_dir / "figures").iterdir()}
    for fig in ("fig2_vectors", "fig3_dims_loss", "fig4_norms"):
        assert {f"{fig}.png", f"{fig}.svg"} <= names
    saved = json.loads((demo_dir / "claims.json").read_text())
    assert len(saved) == 6 and all(set(c) >= {"claim", "paper", "measured", "holds"} for c in saved)
    page = (demo_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'class="claims"' in page and saved[0]["claim"] in page
    assert "8 runs (8 ok)" in page and "git_commit" in page


def test_reproduce__rerun_trains_nothing_new(demo_dir, capsys):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCALES, "tiny", TINY)
        rc = main(["reproduce", "demo", "--scale", "tiny", "--out", str(demo_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and out.count("4 already done, 0 trained") == 2


def test_report_cli__on_a_plain_sweep_folder(demo_dir, capsys):
    sweep = demo_dir / "sweeps" / "m2-T-large-T"
    assert main(["report", str(sweep)]) == 0
    page = (sweep / "report.html").read_text()
    assert "Per-T summary" in page and "m2-T-large-T" in page and "<td>24</td>" in page


def test_reproduce__second_scale_into_one_out_uses_only_its_own_runs(demo_dir, tmp_path):
    out = tmp_path / "both"
    shutil.copytree(demo_dir, out)  # holds the 8 runs of scale tiny
    other = dataclasses.replace(TINY, steps=40, warmup=2, data_seeds=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCALES, "tiny", TINY)
        mp.setitem(SCALES, "other", other)
        argv = ["reproduce", "demo", "--scale", "other", "--out", str(out), "--no-progress"]
        assert main(argv) == 0
    # both scales' runs sit in the same OUT/sweeps/<spec>/ folders
    assert len(load_runs(out)) == 12
    mine = [r for r in load_runs(out) if r.config["steps"] == 40]
    expect = [c.to_dict() for c in RECIPES["demo"].claims(mine)]
    assert json.loads((out / "claims.json").read_text()) == expect
    assert "4 runs (4 ok)" in (out / "report.html").read_text()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0  # the scale recorded in reproduce.json
    page = (out / "report.html").read_text()
    assert "4 runs (4 ok)" in page and "<code>other</code>" in page


def test_report_cli__recipe_without_matching_runs_exit_2_one_line(demo_dir, capsys):
    sweep = demo_dir / "sweeps" / "m2-T-large-T"
    assert main(["report", str(sweep), "--recipe", "appendix-m4"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{sweep}: no m = 4 runs for recipe appendix-m4" in err and "\n" not in err


@pytest.mark.parametrize("scale", [*SCALES, "tiny"])
def test_appendix_m4__decay_runs_differ_from_their_baseline_only_in_weight_decay(
    scale, monkeypatch
):
    from supermem.sweeps.index import config_key

    monkeypatch.setitem(SCALES, "tiny", TINY)
    lengths, decay = RECIPES["appendix-m4"].specs(scale)
    baseline = {config_key(c) for c in lengths.configs()}
    assert decay.configs()
    for c in decay.configs():
        assert c.weight_decay == 1.0 and c.steps == SCALES[scale].steps
        assert config_key(c.replace(weight_decay=1e-2)) in baseline


def test_reproduce_list__names_every_recipe(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALL)


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["reproduce", "nope", "--out", "x"], "unknown recipe 'nope'"),
        (["reproduce", "demo", "--scale", "huge", "--out", "x"], "unknown scale 'huge'"),
        (["report", "/no/such/folder"], "no such folder"),
    ],
)
def test_bad_input__exits_2_with_one_line(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "name, figures, n_claims",
    [("fig5", ("fig5_loss_map", "fig5_loss_curves"), 2), ("appendix-m4", ("appendix_m4",), 2)],
)
def test_reproduce__map_and_appendix_recipes_end_to_end(
    name, figures, n_claims, tmp_path, monkeypatch
):
    monkeypatch.setitem(SCALES, "tiny", TINY)
    assert (
        main(["reproduce", name, "--scale", "tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    )
    assert all((tmp_path / "figures" / f"{f}.svg").is_file() for f in figures)
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert len(saved) == n_claims and all(c["holds"] in (True, False, None) for c in saved)
