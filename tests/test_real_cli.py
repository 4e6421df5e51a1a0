"""``supermem dims``: outputs match an independent leverage; bad input exits 2, writes nothing."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from supermem.cli import main


def planted(tmp_path, T=3000, m=24, k=8):
    rng = np.random.default_rng(0)
    H = rng.normal(size=(T, m))
    rows = rng.choice(T, k, replace=False)
    H[rows] *= 25
    np.save(tmp_path / "h.npy", H.astype(np.float32))
    return H.astype(np.float32).astype(np.float64), rows


def test_dims__csv_equals_lstsq_leverage_and_finds_planted_rows(tmp_path, capsys):
    H, rows = planted(tmp_path)
    labels = np.arange(len(H)) % 3
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "out" / "d.csv"
    args = ["dims", str(tmp_path / "h.npy"), "--out", str(out), "--labels", str(tmp_path / "y.npy")]
    assert main([*args, "--data-dims", "--no-progress"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["index", "dstar", "rank", "data_dim", "label"]
    X = np.linalg.lstsq(H.T @ H, H.T, rcond=None)[0]  # (m, T): (H^T H)^-1 h_t
    np.testing.assert_allclose(df["dstar"], np.einsum("tm,mt->t", H, X), atol=1e-9)
    assert set(df.nlargest(len(rows), "dstar")["index"]) == set(rows)
    assert (df["rank"] == 24).all() and (df["label"] == labels).all()
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["rank"] == 24 and summary["cutoff"] == pytest.approx(1e-10 * summary["eig_max"])
    assert out.with_suffix(".png").stat().st_size > 0
    assert "rank 24" in capsys.readouterr().out


def test_dims__refuses_existing_output_unless_overwrite(tmp_path, capsys):
    planted(tmp_path)
    out = tmp_path / "d.csv"
    out.write_text("keep me\n")
    assert main(["dims", str(tmp_path / "h.npy"), "--out", str(out), "--no-progress"]) == 2
    assert out.read_text() == "keep me\n" and not out.with_suffix(".png").exists()
    assert "--overwrite" in capsys.readouterr().err
    assert main(["dims", str(tmp_path / "h.npy"), "--out", str(out), "--overwrite"]) == 0
    assert len(pd.read_csv(out)) == 3000


def _nan(p):
    a = np.ones((5, 3))
    a[2, 1] = np.nan
    np.save(p / "a.npy", a)
    return ["a.npy"]


BAD = {
    "nan": (_nan, "NaN"),
    "inf": (lambda p: np.save(p / "a.npy", np.full((4, 2), np.inf)) or ["a.npy"], "inf"),
    "1-d": (lambda p: np.save(p / "a.npy", np.ones(7)) or ["a.npy"], "two dimensions"),
    "empty": (lambda p: np.save(p / "a.npy", np.ones((0, 4))) or ["a.npy"], "empty"),
    "key": (
        lambda p: (
            save_file({"x": np.ones((4, 2), np.float32)}, str(p / "a.safetensors"))
            or ["a.safetensors", "--key", "y"]
        ),
        "no array 'y'",
    ),
    "labels": (
        lambda p: (
            (np.save(p / "a.npy", np.eye(4)), (p / "y.txt").write_text("1\n2\n"))
            and ["a.npy", "--labels", str(p / "y.txt")]
        ),
        "2 labels for 4 examples",
    ),
    "missing": (lambda p: ["nope.npy"], "no such file"),
    "rcond": (lambda p: np.save(p / "a.npy", np.eye(3)) or ["a.npy", "--rcond", "2"], "rcond"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_dims__bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    make, expect = BAD[case]
    src = tmp_path / "in"
    src.mkdir()
    first, *rest = make(src)
    out = tmp_path / "out" / "d.csv"
    assert main(["dims", str(src / first), *rest, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and "\n" not in err and err.startswith("supermem dims: error:")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_dims__subprocess_no_traceback(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[np.nan, 1.0]]))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "supermem",
            "dims",
            str(tmp_path / "a.npy"),
            "--out",
            str(tmp_path / "d.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1
    assert not (tmp_path / "d.csv").exists()
