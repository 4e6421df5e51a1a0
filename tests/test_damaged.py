"""Damaged run dirs and indexes: one line naming the file and the problem, exit 2; a
resumed sweep moves damaged runs aside and trains them again; a damaged index is rebuilt."""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import make_config

from supermem import load_run, load_sweep, run_sweep, save_run, sweep_frame
from supermem.cli import main
from supermem.recipes import SCALES
from supermem.recipes.scales import Scale
from supermem.sweeps.checks import ARRAYS, DATA, DamagedRunError
from supermem.sweeps.cost import plan
from supermem.sweeps.index import INDEX, config_key, index_rows, record
from supermem.sweeps.spec import SweepSpec
from supermem.toy.train import train

FIXED = {
    "features": 50,
    "sparsity": 0.9,
    "train_size": 8,
    "test_size": 64,
    "steps": 40,
    "warmup": 5,
    "engine": "reference",
    "device": "cpu",
    "snapshots": 4,
}
SPEC = SweepSpec("d", FIXED, {"seed": [0, 1]})


def cut(name: str, keep: float = 0.5):
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: int(len(data) * keep)])

    return damage


def write(name: str, text: str):
    return lambda run: (run / name).write_text(text)


def remove(name: str):
    return lambda run: (run / name).unlink()


def edit_config(**changes):
    def damage(run: Path) -> None:
        cfg = json.loads((run / "config.json").read_text())
        for k, v in changes.items():
            if v is None:
                del cfg[k]
            else:
                cfg[k] = v
        (run / "config.json").write_text(json.dumps(cfg))

    return damage


def garbage_header(run: Path) -> None:
    data = (run / ARRAYS).read_bytes()
    (run / ARRAYS).write_bytes(b"\xff" * 8 + data[8:])


# (damage, file it names, problem it states)
DAMAGES = {
    "truncated-arrays": (cut(ARRAYS), ARRAYS, "truncated safetensors file"),
    "truncated-data": (cut(DATA, 0.9), DATA, "truncated safetensors file"),
    "arrays-cut-to-3-bytes": (cut(ARRAYS, 0.0005), ARRAYS, "truncated safetensors file"),
    "garbage-header": (garbage_header, ARRAYS, "unparseable safetensors header"),
    "garbage-config": (write("config.json", "{not json"), "config.json", "not valid JSON"),
    "config-a-list": (write("config.json", "[1, 2]"), "config.json", "not a JSON object"),
    "garbage-metrics": (write("metrics.json", "\x00\x01"), "metrics.json", "not valid JSON"),
    "missing-metrics": (remove("metrics.json"), "metrics.json", "missing"),
    "missing-arrays": (remove(ARRAYS), ARRAYS, "missing"),
    "config-missing-key": (edit_config(hidden=None), "config.json", "missing key(s) hidden"),
    "config-bad-size": (edit_config(features="50"), "config.json", "not a positive integer"),
    "shape-vs-config": (edit_config(train_size=9), ARRAYS, "H_train has shape (8, 2)"),
}
RESUMED = ["truncated-arrays", "garbage-config", "missing-metrics", "shape-vs-config"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return save_run(train(make_config(), progress=False), tmp_path_factory.mktemp("r") / "run")


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s") / "sweep"
    assert run_sweep(SPEC, out, progress=False).ok == 2
    return out


def damaged_copy(src: Path, dst: Path, case: str, key: str = "") -> tuple[Path, str]:
    """A copy of ``src`` with ``case`` done to it (to run dir ``runs/key`` if a key is
    given): (the damaged file, its problem). Copies keep mtimes: an index stays fresh."""
    shutil.copytree(src, dst)
    damage, name, problem = DAMAGES[case]
    run = dst / "runs" / key if key else dst
    damage(run)
    return run / name, problem


def one_line(capsys) -> str:
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert "\n" not in err and "Traceback" not in err and not cap.out
    return err


# -- load_run ---------------------------------------------------------------------------
def test_load_run__intact_run_loads(saved):
    run = load_run(saved)
    assert run.status == "ok" and run.arrays["W"].shape == (2, 50) and run.X_train.shape == (8, 50)


@pytest.mark.parametrize("case", DAMAGES)
def test_load_run__damage_raises_naming_file_and_problem(saved, tmp_path, case):
    bad, problem = damaged_copy(saved, tmp_path / "r", case)
    with pytest.raises(DamagedRunError) as info:
        load_run(tmp_path / "r")
    assert str(info.value).startswith(f"{bad}: ") and problem in str(info.value)
    assert info.value.path == bad


def test_load_run__column_index_past_n_is_damage(saved, tmp_path):
    from safetensors.numpy import load_file, save_file

    shutil.copytree(saved, tmp_path / "r")
    d = load_file(str(tmp_path / "r" / DATA))
    d["indices"][0] = 50  # n = 50: one past the last column; sizes unchanged
    save_file(d, str(tmp_path / "r" / DATA), metadata={"shape": "8,50"})
    with pytest.raises(DamagedRunError, match="not a valid CSR matrix"):
        load_run(tmp_path / "r")


def test_damaged_run_error__pickles_for_worker_processes(tmp_path):
    e = pickle.loads(pickle.dumps(DamagedRunError(tmp_path / "x.json", "missing")))
    assert (e.path, e.problem, str(e)) == (
        tmp_path / "x.json",
        "missing",
        f"{tmp_path}/x.json: missing",
    )


# -- commands that read runs: one line, exit 2, nothing written ----------------------------
@pytest.mark.parametrize("case", DAMAGES)
def test_cli_plot__damaged_run_exit_2_one_line(saved, tmp_path, capsys, case):
    bad, problem = damaged_copy(saved, tmp_path / "r", case)
    assert main(["plot", str(tmp_path / "r")]) == 2
    err = one_line(capsys)
    assert err.startswith(f"supermem plot: error: {bad}: ") and problem in err
    assert not (tmp_path / "r" / "figures").exists()


@pytest.mark.parametrize("case", ["truncated-arrays", "garbage-config", "missing-metrics"])
def test_cli_train_init_from__damaged_run_exit_2_nothing_written(saved, tmp_path, capsys, case):
    bad, problem = damaged_copy(saved, tmp_path / "r", case)
    argv = ["train", "--features", "50", "--sparsity", "0.9", "--train-size", "8"]
    argv += ["--steps", "10", "--warmup", "1", "--engine", "reference", "--no-progress"]
    assert main([*argv, "--init-from", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = one_line(capsys)
    assert f"{bad}: " in err and problem in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["truncated-arrays", "garbage-config", "missing-metrics"])
def test_cli_results__damage_after_indexing_exit_2_one_line(swept, tmp_path, capsys, case):
    out = tmp_path / "sweep"
    assert index_rows(swept) is not None  # fresh: the index alone could answer
    bad, problem = damaged_copy(swept, out, case, key=config_key(SPEC.configs()[0]))
    assert main(["results", str(out)]) == 2
    err = one_line(capsys)
    assert err.startswith(f"supermem results: error: {bad}: ") and problem in err
    with pytest.raises(DamagedRunError):
        sweep_frame(out)


@pytest.mark.parametrize("case", ["truncated-data", "shape-vs-config"])
def test_cli_report__damaged_run_exit_2_no_report(swept, tmp_path, capsys, case):
    out = tmp_path / "sweep"
    bad, problem = damaged_copy(swept, out, case, key=config_key(SPEC.configs()[1]))
    assert main(["report", str(out)]) == 2
    err = one_line(capsys)
    assert err.startswith(f"supermem report: error: {bad}: ") and problem in err
    assert not (out / "report.html").exists() and not (out / "figures").exists()


def test_cli_report__broken_manifest_exit_2_one_line(swept, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    (out / "spec.json").write_text('{"name": "d", ')
    assert main(["report", str(out)]) == 2
    assert f"{out / 'spec.json'}: not valid JSON" in one_line(capsys)


# -- resume: damaged runs are moved aside and trained again ------------------------------
@pytest.mark.parametrize("case", RESUMED)
def test_resume__damaged_run_reported_moved_aside_and_retrained(swept, tmp_path, capsys, case):
    out, keys = tmp_path / "sweep", [config_key(c) for c in SPEC.configs()]
    bad, problem = damaged_copy(swept, out, case, key=keys[1])
    intact = (out / "runs" / keys[0] / ARRAYS).read_bytes()
    p = plan(SPEC, out)
    assert (p.done, p.todo, p.damaged) == (1, 1, 1) and "1 damaged" in str(p)
    summary = run_sweep(SPEC, out, progress=False)
    assert summary.skipped == 1 and summary.ok == 1 and not summary.failures
    (line,) = summary.damaged
    assert line.startswith(f"{bad}: ") and problem in line
    assert line.endswith("training it again")
    assert capsys.readouterr().err.strip() == f"supermem: {line}"
    (aside,) = (out / "damaged").iterdir()
    assert aside.name.startswith(keys[1] + ".")
    assert {r.path.name for r in load_sweep(out)} == set(keys)  # all whole again
    assert (out / "runs" / keys[0] / ARRAYS).read_bytes() == intact
    assert sorted(sweep_frame(out)["key"]) == sorted(keys)
    assert index_rows(out) is not None


def test_resume__damaged_crash_record_moved_aside_and_retried(swept, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    key = config_key(SPEC.configs()[0])
    (out / "failed").mkdir()
    (out / "failed" / key).mkdir()  # as write_failure leaves it, but cut short
    (out / "failed" / key / "config.json").write_text("{")
    shutil.rmtree(out / "runs" / key)
    assert main(["results", str(out)]) == 2
    assert f"{out / 'failed' / key / 'config.json'}: not valid JSON" in one_line(capsys)
    summary = run_sweep(SPEC, out, progress=False)
    assert summary.ok == 1 and len(summary.damaged) == 1 and not (out / "failed" / key).exists()
    assert sorted(sweep_frame(out)["status"]) == ["ok", "ok"]


def test_resume__reproduce_retrains_a_damaged_run(tmp_path, capsys, monkeypatch):
    tiny = Scale(
        features=40,
        sparsity=0.9,
        steps=40,
        warmup=3,
        test_size=64,
        T_grid=(3, 12),
        data_seeds=1,
        small_T=10,
        restarts=1,
        fig5_T=(3,),
        fig5_m=(1,),
        m4_T=(3,),
        m4_steps=(40,),
        overrides={"engine": "reference", "device": "cpu", "snapshots": 0},
    )
    monkeypatch.setitem(SCALES, "tiny", tiny)
    argv = ["reproduce", "demo", "--scale", "tiny", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    (run,) = (tmp_path / "sweeps" / "m2-T-large-T" / "runs").iterdir()
    cut(ARRAYS)(run)
    capsys.readouterr()
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert f"supermem: {run / ARRAYS}: truncated safetensors file" in cap.err
    assert "1 already done, 0 trained" in cap.out and "0 already done, 1 trained" in cap.out
    assert load_run(run).status == "ok"


# -- the SQLite index ----------------------------------------------------------------------
@pytest.mark.parametrize("junk", [b"garbage " * 100, b""], ids=["garbage", "empty"])
def test_corrupt_index__readers_use_the_dirs_resume_rebuilds_it(swept, tmp_path, capsys, junk):
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    (out / INDEX).write_bytes(junk)
    assert len(sweep_frame(out)) == 2  # read from the run dirs
    assert main(["results", str(out)]) == 0
    capsys.readouterr()
    summary = run_sweep(SPEC, out, progress=False)
    assert summary.skipped == 2 and summary.ok == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"supermem: {out / INDEX}: unreadable (") and "rebuilt from 2 dirs" in err
    assert "\n" not in err
    rows = index_rows(out)
    assert rows is not None and sorted(r["key"] for r in rows) == sorted(
        config_key(c) for c in SPEC.configs()
    )
    con = sqlite3.connect(out / INDEX)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


def test_index_row__records_every_file_of_the_run(swept):
    key = config_key(SPEC.configs()[0])
    stamp = json.loads(record(swept / "runs" / key)["stamp"])
    assert [name for name, *_ in stamp] == sorted(["config.json", "metrics.json", ARRAYS, DATA])
