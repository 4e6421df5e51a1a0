"""The variants recipe (issue 11): its grids, its regime rule, and a tiny end-to-end run."""

import json

from supermem.cli import main
from supermem.recipes import RECIPES, SCALES
from supermem.recipes import variants as recipe
from supermem.recipes.scales import Scale

TINY = Scale(
    features=30,
    sparsity=0.9,
    steps=40,
    warmup=2,
    test_size=32,
    T_grid=(3, 6, 12),
    data_seeds=1,
    small_T=5,
    restarts=2,
    fig5_T=(3,),
    fig5_m=(2,),
    m4_T=(3,),
    m4_steps=(40,),
    overrides={"device": "cpu", "snapshots": 0},
)


def test_recipe__grids_give_each_variant_its_model_loss_and_engine():
    specs = RECIPES["variants"].specs("quick")
    cfgs = {s.name: s.configs() for s in specs}
    assert {"m2-T-small-T", "m2-T-large-T"} <= set(cfgs)  # tied: the demo's own sweep
    for name, model, loss, engine in [
        ("untied", "untied", "mse", "auto"),
        ("relu_hidden", "relu_hidden", "mse", "auto"),
        ("l1", "tied", "l1", "fast"),
    ]:
        cs = cfgs[f"variant-{name}-small-T"] + cfgs.get(f"variant-{name}-large-T", [])
        assert all((c.model, c.loss, c.engine) == (model, loss, engine) for c in cs)
        assert {recipe.variant_of(type("R", (), {"config": c.to_dict()})) for c in cs} == {name}
    l1_T = {c.train_size for c in cfgs["variant-l1-large-T"]}
    assert l1_T == {c.train_size for c in cfgs["m2-T-large-T"]}  # the whole T grid


def test_recipe__regimes_from_the_largest_dims():
    assert recipe.regime(0.5, 0.1) == "memorising"
    assert recipe.regime(0.01, 0.3) == "generalising"
    assert recipe.regime(0.01, 0.02) == "middle"
    assert recipe.three_regimes(["memorising", "middle", "generalising"])
    assert not recipe.three_regimes(["memorising", "generalising", "generalising"])
    assert not recipe.three_regimes(["middle", "middle", "generalising"])


def test_recipe__reproduce_end_to_end_at_a_tiny_scale(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(SCALES, "tiny", TINY)
    out = tmp_path / "v"
    argv = ["reproduce", "variants", "--scale", "tiny", "--out", str(out), "--no-progress"]
    assert main([*argv, "--dry-run"]) == 0 and not (out / "sweeps").exists()
    assert main(argv) == 0
    saved = json.loads((out / "claims.json").read_text())
    assert len(saved) == 2 * len(recipe.VARIANTS)
    assert all(c["holds"] in (True, False, None) for c in saved)
    assert (out / "figures" / "variants.png").is_file()
    table = json.loads((out / "figures" / "variants_table.json").read_text())
    assert list(table) == list(recipe.VARIANTS)
    capsys.readouterr()
    assert main(argv) == 0  # resumable: everything already done
    assert "0 trained" in capsys.readouterr().out
