"""`supermem reproduce --set FIELD=VALUE`: a recipe's whole grid trained with a TrainConfig
field changed (e.g. Adam's eps), recorded, never mixed with the grid trained without it."""

import json

import pytest
from test_crossover_recipe import TINY_CX

from supermem.cli import main
from supermem.recipes import RECIPES, SCALES
from supermem.recipes.base import spec_runs
from supermem.sweeps.index import done_keys

ARGV = ["reproduce", "crossover", "--scale", "tiny", "--no-progress"]


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(SCALES, "tiny", TINY_CX)


def test_set__every_run_trained_with_it_recorded_and_another_set_refused(tiny, tmp_path, capsys):
    out = tmp_path / "cx"
    sets = ["--set", "adam_eps=1e-5", "--set", "steps=40"]
    assert main([*ARGV, "--out", str(out), *sets]) == 0
    whole = [
        s.with_fixed({"adam_eps": 1e-5, "steps": 40}) for s in RECIPES["crossover"].specs("tiny")
    ]
    runs = spec_runs(out, whole)
    assert len(runs) == 4  # the whole grid (2 T x 2 lr), each with the change
    assert {(r.config["adam_eps"], r.config["steps"]) for r in runs} == {(1e-5, 40)}
    assert {r.config["warmup"] for r in runs} == {TINY_CX.warmup}  # the scale's, kept
    assert json.loads((out / "reproduce.json").read_text())["set"] == {
        "adam_eps": 1e-5,
        "steps": 40,
    }
    assert not spec_runs(out, RECIPES["crossover"].specs("tiny"))  # not the plain grid's runs
    capsys.readouterr()
    manifest = (out / "reproduce.json").read_bytes()
    keys = done_keys(out / "sweeps" / "crossover")
    for other in ([], ["--set", "adam_eps=1e-4", "--set", "steps=40"], sets[:2]):
        assert main([*ARGV, "--out", str(out), *other]) == 2
        err = capsys.readouterr().err.strip()
        assert "trained with --set adam_eps=1e-05 --set steps=40" in err and "\n" not in err
    assert (out / "reproduce.json").read_bytes() == manifest
    assert done_keys(out / "sweeps" / "crossover") == keys
    capsys.readouterr()
    assert main([*ARGV, "--out", str(out), *sets[2:], *sets[:2], "--dry-run"]) == 0  # any order
    assert "crossover: 2 runs: 2 done, 0 to do" in capsys.readouterr().out


@pytest.mark.parametrize(
    "sets, msg",
    [
        (["lr=0.1"], "lr is an axis of sweep crossover"),
        (["nope=1"], "unknown TrainConfig field 'nope'"),
        (["adam_eps=abc"], "not a number: 'abc'"),
        (["adam_eps"], "expected FIELD=VALUE"),
        (["dtype=float16"], "choose dtype from float32, float64"),
        (["steps=2.5"], "not an integer"),
        (["steps=2"], "warmup (3) is longer than the run"),
        (["adam_eps=1e-5", "adam-eps=1e-6"], "adam_eps is set twice"),
    ],
)
def test_set__bad_values_exit_2_with_one_line_nothing_written(tiny, tmp_path, capsys, sets, msg):
    argv = [*ARGV, "--out", str(tmp_path / "x")] + [a for s in sets for a in ("--set", s)]
    for extra in ([], ["--dry-run"]):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_set__dry_run_plans_the_changed_grid_and_writes_nothing(tiny, tmp_path, capsys):
    assert main([*ARGV, "--out", str(tmp_path / "x"), "--set", "steps=40", "--dry-run"]) == 0
    got = capsys.readouterr().out
    assert (
        "crossover-small-T: 2 runs: 0 done, 2 to do" in got and "crossover: 2 runs: 0 done" in got
    )
    assert not (tmp_path / "x").exists()


def test_set__refused_by_the_recipes_that_train_their_own_models(tmp_path, capsys):
    argv = ["reproduce", "mnist", "--out", str(tmp_path / "x"), "--set", "steps=10"]
    assert main(argv) == 2
    assert "drop --set" in capsys.readouterr().err
