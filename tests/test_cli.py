import subprocess
import sys

import numpy as np
import pytest

from supermem import load_run
from supermem.cli import main

SMALL = [
    "--features",
    "40",
    "--sparsity",
    "0.9",
    "--train-size",
    "6",
    "--steps",
    "30",
    "--warmup",
    "3",
    "--test-size",
    "32",
    "--engine",
    "reference",
    "--no-progress",
]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "supermem", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "flags, expect",
    [
        (["--train-size", "0"], "train_size"),
        (["--sparsity", "1"], "sparsity"),
        (["--sparsity", "-0.1"], "sparsity"),
        (["--features", "0"], "features"),
        (["--hidden", "0"], "hidden"),
        (["--steps", "0"], "steps"),
        (["--steps", "abc"], "--steps"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "0"], "lr"),
        (["--lr", "-1e-3"], "lr"),
        (["--weight-decay", "-1"], "weight_decay"),
        (["--warmup", "100"], "longer than the run"),
        (["--train-size", "2.5"], "--train-size"),
        (["--bogus", "1"], "unrecognized"),
        (["--engine", "nope"], "engine"),
        (["--init", "he"], "--init"),
    ],
)
def test_bad_input_exits_2_one_line_no_output(tmp_path, flags, expect):
    out = tmp_path / "run"
    args = ["train", *SMALL, "--out", str(out)]
    # later flags win in argparse, so appending overrides the SMALL defaults
    p = run_cli(*args, *flags)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_out_is_refused_then_overwritten_on_request(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    before = (out / "arrays.safetensors").read_bytes()
    p = run_cli("train", *SMALL, "--seed", "1", "--out", str(out))
    assert p.returncode == 2 and "exists" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert (out / "arrays.safetensors").read_bytes() == before
    assert main(["train", *SMALL, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    assert (out / "arrays.safetensors").read_bytes() != before


def test_config_json_has_every_flag_with_defaults(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    cfg = load_run(out).config
    from dataclasses import fields

    from supermem.config import TrainConfig

    for f in fields(TrainConfig):
        assert f.name in cfg
    assert cfg["weight_decay"] == 1e-2 and cfg["lr"] == 1e-3 and cfg["hidden"] == 2


def test_plot_writes_figures(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    assert main(["plot", str(out)]) == 0
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == ["dims.png", "dims.svg", "vectors.png", "vectors.svg"]


def test_plot_missing_run_exits_2(tmp_path):
    p = run_cli("plot", str(tmp_path / "nope"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1


def test_init_from_continues_from_saved_weights(tmp_path):
    a = tmp_path / "a"
    assert main(["train", *SMALL, "--out", str(a)]) == 0
    b = tmp_path / "b"
    assert (
        main(
            [
                "train",
                *SMALL,
                "--steps",
                "1",
                "--warmup",
                "0",
                "--lr",
                "1e-9",
                "--init-from",
                str(a),
                "--out",
                str(b),
            ]
        )
        == 0
    )
    np.testing.assert_allclose(load_run(b).arrays["W"], load_run(a).arrays["W"], atol=1e-6)
    p = run_cli(
        "train", *SMALL, "--init-from", str(tmp_path / "none"), "--out", str(tmp_path / "c")
    )
    assert p.returncode == 2 and not (tmp_path / "c").exists()


def test_pentagon_end_to_end(tmp_path):
    """T=5, n=1000, S=0.99, m=2 is memorised as a regular pentagon.

    Data seed 16 has five points with disjoint supports. With overlapping supports (e.g.
    data seed 0) the two overlapping points sit closer: gaps range 64-78 degrees there.
    """
    out = tmp_path / "t5"
    args = [
        "train",
        "--features",
        "1000",
        "--sparsity",
        "0.99",
        "--train-size",
        "5",
        "--steps",
        "20000",
        "--test-size",
        "500",
        "--data-seed",
        "16",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    run = load_run(out)
    H = run.arrays["H_train"]
    assert run.metrics["train_loss"] < 1e-6
    np.testing.assert_allclose(run.arrays["data_dims"], 2 / 5, atol=0.03)
    ang = np.sort(np.degrees(np.arctan2(H[:, 1], H[:, 0])))
    gaps = np.diff(np.r_[ang, ang[0] + 360])
    np.testing.assert_allclose(gaps, 72, atol=3)


def test_overwrite_replaces_only_run_directories(tmp_path):
    other = tmp_path / "sweep"
    other.mkdir()
    (other / "index.sqlite").write_text("not a run")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (other, afile):
        p = run_cli("train", *SMALL, "--out", str(out), "--overwrite")
        assert p.returncode == 2 and "not a run directory" in p.stderr, p.stderr
    assert (other / "index.sqlite").read_text() == "not a run" and afile.read_text() == "x"


def test_unwritable_out_is_refused_before_training(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    p = run_cli("train", *SMALL, "--out", str(afile / "run"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr


def test_init_from_a_diverged_run_exits_2(tmp_path):
    bad = tmp_path / "bad"
    assert main(["train", *SMALL, "--lr", "1e30", "--warmup", "0", "--out", str(bad)]) == 1
    p = run_cli("train", *SMALL, "--init-from", str(bad), "--out", str(tmp_path / "c"))
    assert p.returncode == 2 and "diverged" in p.stderr and not (tmp_path / "c").exists()


def test_plot_into_an_existing_file_exits_2(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    (tmp_path / "f").write_text("x")
    p = run_cli("plot", str(out), "--out", str(tmp_path / "f"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
