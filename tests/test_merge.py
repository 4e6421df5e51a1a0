"""Merging sweep folders trained apart: the whole grid, nothing replaced, all or nothing."""

import json
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file
from test_sweep import CountTrainMany, snapshot, spec

from supermem import run_sweep, sweep_frame
from supermem.cli import main
from supermem.sweeps.index import done_keys, sweep_lock
from supermem.sweeps.merge import MergeError, merge

AXES = {"train_size": [4, 8]}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The grid seed x train_size trained whole, and as two halves split by seed."""
    root = tmp_path_factory.mktemp("merge")
    run_sweep(spec(seed=[0, 1], **AXES), root / "whole", progress=False)
    run_sweep(spec(seed=[0], **AXES), root / "a", progress=False)
    run_sweep(spec(seed=[1], **AXES), root / "b", progress=False)
    return root


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_merge__halves_give_the_whole_grid_and_a_resume_trains_nothing(
    parts, tmp_path, monkeypatch
):
    before = snapshot((parts / "a" / "runs").iterdir())
    report = merge([parts / "a", parts / "b"], tmp_path / "m")
    assert report.copied == {".": 4} and not report.kept
    m, whole = tmp_path / "m", parts / "whole"
    assert done_keys(m) == done_keys(whole)
    for k in done_keys(m):  # byte for byte the runs trained in one folder
        for f in ("arrays.safetensors", "train_data.safetensors", "metrics.json"):
            got, want = (m / "runs" / k / f).read_bytes(), (whole / "runs" / k / f).read_bytes()
            if f == "metrics.json":  # but for the wall seconds
                got, want = (json.loads(x) for x in (got, want))
                got.pop("seconds", None), want.pop("seconds", None)
            assert got == want, (k, f)
    assert len(sweep_frame(m)) == 4
    assert snapshot((parts / "a" / "runs").iterdir()) == before  # sources only read
    history = [json.loads(x) for x in (m / "spec_history.jsonl").read_text().splitlines()]
    assert {Path(h["merged_from"]).name for h in history} == {"a", "b"}
    count = CountTrainMany(monkeypatch)
    run_sweep(spec(seed=[0, 1], **AXES), m, progress=False)
    assert count.trained == 0


def test_merge__existing_runs_kept_and_different_arrays_reported(parts, tmp_path):
    m = _copy(parts / "a", tmp_path / "m")
    key = sorted(done_keys(m))[0]
    c = _copy(parts / "a", tmp_path / "c")  # the same config, other arrays
    arrays = load_file(str(c / "runs" / key / "arrays.safetensors"))
    save_file({k: v * 2 for k, v in arrays.items()}, str(c / "runs" / key / "arrays.safetensors"))
    before = snapshot((m / "runs").iterdir())
    report = merge([c], m)
    assert report.copied == {".": 0} and report.kept == {".": 2}
    assert report.differ == {".": [key]} and "differ in their arrays" in str(report)
    assert snapshot((m / "runs").iterdir()) == before  # never replaced


@pytest.mark.parametrize("damage", ["truncate", "rename"])
def test_merge__a_damaged_or_misnamed_source_run_stops_it_before_anything(parts, tmp_path, damage):
    b = _copy(parts / "b", tmp_path / "b")
    run = sorted((b / "runs").iterdir())[0]
    if damage == "truncate":
        f = run / "arrays.safetensors"
        f.write_bytes(f.read_bytes()[:-10])
        expect = "arrays.safetensors"
    else:
        run.rename(run.parent / "0123456789abcdef")
        expect = "not 0123456789abcdef"
    with pytest.raises(MergeError, match=expect):
        merge([parts / "a", b], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge__crash_records_not_copied(parts, tmp_path):
    a = _copy(parts / "a", tmp_path / "a")
    (a / "failed" / "ffffffffffffffff").mkdir(parents=True)
    report = merge([a], tmp_path / "m")
    assert report.skipped_failed == 1 and not (tmp_path / "m" / "failed").exists()


def _recipe(
    root: Path, sweep: Path, recipe: str, scale: str = "quick", changes: dict | None = None
) -> Path:
    (root / "sweeps").mkdir(parents=True)
    shutil.copytree(sweep, root / "sweeps" / "part")
    man = {"recipe": recipe, "scale": scale, **({"sets": {scale: changes}} if changes else {})}
    (root / "reproduce.json").write_text(json.dumps(man))
    return root


def test_merge__recipe_folders_sweep_by_sweep_same_recipe_and_scale_only(parts, tmp_path):
    r1 = _recipe(tmp_path / "r1", parts / "a", "demo")
    r2 = _recipe(tmp_path / "r2", parts / "b", "demo")
    report = merge([r1, r2], tmp_path / "m")
    assert report.copied == {"sweeps/part": 4}
    assert done_keys(tmp_path / "m" / "sweeps" / "part") == done_keys(parts / "whole")
    assert json.loads((tmp_path / "m" / "reproduce.json").read_text())["recipe"] == "demo"
    for other, expect in [
        (_recipe(tmp_path / "r3", parts / "b", "fig5"), "not one grid"),
        (_recipe(tmp_path / "r4", parts / "b", "demo", "paper"), "not one grid"),
        (_recipe(tmp_path / "r5", parts / "b", "demo", "quick", {"adam_eps": 1e-5}), "--set"),
        (parts / "b", "is a plain folder"),
        (tmp_path / "r1", "is a recipe folder"),  # into a plain sweep folder, below
        (tmp_path / "nothing", "no such folder"),
    ]:
        into = _copy(parts / "a", tmp_path / "p") if other == tmp_path / "r1" else tmp_path / "m"
        with pytest.raises(MergeError, match=expect):
            merge([other], into)


def test_cli_merge__dry_run_copies_nothing_then_merges_bad_input_exit_2(parts, tmp_path, capsys):
    m = tmp_path / "m"
    srcs = [str(parts / "a"), str(parts / "b")]
    assert main(["merge", *srcs, "--into", str(m), "--dry-run"]) == 0
    assert "would merge" in capsys.readouterr().out and not m.exists()
    assert main(["merge", *srcs, "--into", str(m)]) == 0
    assert ".: 4 run(s) copied" in capsys.readouterr().out
    assert main(["merge", *srcs, "--into", str(m)]) == 0
    assert "0 run(s) copied, 4 already there (kept)" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    for argv, expect in [
        ([str(tmp_path / "nope"), "--into", str(m)], "no such folder"),
        ([str(tmp_path), "--into", str(m)], "not a sweep"),
        ([str(parts / "a"), "--into", str(tmp_path / "file")], "not a folder"),
        ([str(m), "--into", str(m)], "is the destination itself"),
    ]:
        assert main(["merge", *argv]) == 2
        err = capsys.readouterr().err
        assert expect in err and len(err.strip().splitlines()) == 1
    with sweep_lock(m):  # a sweep running into the destination
        assert main(["merge", srcs[0], "--into", str(m)]) == 2
    assert "another sweep is running" in capsys.readouterr().err


def test_merge__plain_and_recipe_sources_never_mix_in_either_order(parts, tmp_path):
    r = _recipe(tmp_path / "r", parts / "a", "demo")
    for srcs in ([parts / "b", r], [r, parts / "b"]):
        with pytest.raises(MergeError, match="not one grid"):
            merge(srcs, tmp_path / "m")
        assert not (tmp_path / "m").exists()


def test_merge__bad_manifest_history_or_destination_stop_it_before_anything(parts, tmp_path):
    bad_list = _recipe(tmp_path / "r1", parts / "a", "demo")
    (bad_list / "reproduce.json").write_text("[1, 2]")
    real = tmp_path / "real"  # a real-network recipe's folder: one run, no sweeps/
    real.mkdir()
    (real / "reproduce.json").write_text(json.dumps({"recipe": "mnist", "scale": "quick"}))
    bad_hist = _copy(parts / "b", tmp_path / "h")
    with (bad_hist / "spec_history.jsonl").open("a") as fh:
        fh.write("{not json\n")
    for src, expect in [
        (bad_list, "not a JSON object"),
        (real, "without sweeps/"),
        (bad_hist, "spec history is unreadable"),
    ]:
        with pytest.raises(MergeError, match=expect):
            merge([src], tmp_path / "m")
        assert not (tmp_path / "m").exists()
    dest = _copy(parts / "a", tmp_path / "d")  # a damaged run already in the destination
    f = sorted((dest / "runs").iterdir())[0] / "arrays.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(MergeError, match="in the destination"):
        merge([parts / "b"], dest)
    assert len(list((dest / "runs").iterdir())) == 2


def test_merge__one_key_in_two_sources_copied_once_and_a_difference_named(parts, tmp_path):
    c = _copy(parts / "a", tmp_path / "c")
    key = sorted(done_keys(c))[0]
    arrays = load_file(str(c / "runs" / key / "arrays.safetensors"))
    save_file({k: v + 1 for k, v in arrays.items()}, str(c / "runs" / key / "arrays.safetensors"))
    report = merge([parts / "a", c], tmp_path / "m")
    assert report.copied == {".": 2} and report.kept == {".": 2}
    assert report.differ == {".": [key]}
    copied = load_file(str(tmp_path / "m" / "runs" / key / "arrays.safetensors"))
    first = load_file(str(parts / "a" / "runs" / key / "arrays.safetensors"))
    assert all((copied[k] == first[k]).all() for k in first)  # the first source's


def test_merge__a_busy_destination_leaves_no_new_folder_behind(parts, tmp_path):
    r = _recipe(tmp_path / "r", parts / "a", "demo")
    shutil.copytree(parts / "b", r / "sweeps" / "part2")
    dest = _recipe(tmp_path / "d", parts / "b", "demo")
    with sweep_lock(dest / "sweeps" / "part"), pytest.raises(Exception, match="another sweep"):
        merge([r], dest)
    assert not (dest / "sweeps" / "part2").exists()
