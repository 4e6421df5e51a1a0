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


def test_set__every_run_trained_with_it_recorded_and_another_set_refused(
    tiny, tmp_path, capsys, monkeypatch
):
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
    recorded = {"tiny": {"adam_eps": 1e-5, "steps": 40}}
    assert json.loads((out / "reproduce.json").read_text())["sets"] == recorded
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
    # another scale into the same OUT keeps this scale's record: still refused after it
    monkeypatch.setitem(SCALES, "tiny2", TINY_CX)
    assert main([*ARGV[:3], "tiny2", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "reproduce.json").read_text())["sets"] == recorded
    capsys.readouterr()
    assert main([*ARGV, "--out", str(out)]) == 2
    assert "trained with --set adam_eps=1e-05" in capsys.readouterr().err


def test_set__a_value_every_run_has_changes_nothing_and_resumes_the_plain_grid(
    tiny, tmp_path, capsys
):
    out = tmp_path / "cx"
    assert main([*ARGV, "--out", str(out)]) == 0
    assert "sets" not in json.loads((out / "reproduce.json").read_text())
    capsys.readouterr()
    assert main([*ARGV, "--out", str(out), "--set", "adam_eps=1e-8", "--dry-run"]) == 0
    assert "crossover: 2 runs: 2 done, 0 to do" in capsys.readouterr().out


def test_set__a_record_without_runs_binds_nothing_a_bad_record_is_one_line(tiny, tmp_path, capsys):
    out = tmp_path / "cx"
    out.mkdir()
    man = {"recipe": "crossover", "scale": "tiny", "sets": {"tiny": {"steps": 40}}}
    (out / "reproduce.json").write_text(json.dumps(man))  # e.g. a call stopped before a run
    assert main([*ARGV, "--out", str(out), "--set", "steps=30", "--dry-run"]) == 0
    (out / "reproduce.json").write_text(json.dumps({**man, "sets": [1]}))
    capsys.readouterr()
    assert main([*ARGV, "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'sets' is not a table of tables" in err and "\n" not in err


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
        (["init_from=runs/x"], "init_from is set per run"),
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


def test_set__a_field_the_recipes_sweeps_differ_in_is_refused(tmp_path, capsys):
    """discrepancy's variants differ in adam_eps: setting it would make them one."""
    argv = ["reproduce", "discrepancy", "--out", str(tmp_path / "x"), "--set", "adam_eps=1e-5"]
    assert main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--set adam_eps: the recipe's sweeps differ in it" in err and "\n" not in err
    assert not (tmp_path / "x").exists()
