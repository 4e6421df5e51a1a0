"""supermem explore without a browser: folder detection, lazy listing, the 2-D plane,
snapshot frames, the T walk, the page's callbacks in-process, and the CLI's errors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from supermem import load_run
from supermem.cli import main
from supermem.config import TrainConfig
from supermem.report import explorer_data as xd
from supermem.sweeps.checks import ARRAYS
from supermem.sweeps.index import INDEX


def a_run(sweep: Path) -> Path:
    return sorted((sweep / "runs").iterdir())[0]


def fake_run(path: Path, T: int, seed: int, status: str = "ok") -> None:
    """config.json and metrics.json only, plus a garbage arrays file nobody may open."""
    path.mkdir(parents=True)
    cfg = {**TrainConfig(train_size=T, seed=seed).to_dict(), "lr": 1e-3 * (1 + seed % 2)}
    mets = {"status": status, "test_loss": 1.0 / T, "top_feature_dims": [0.9, 0.5]}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "metrics.json").write_text(json.dumps(mets))
    (path / ARRAYS).write_bytes(b"not safetensors")


def test_open_catalog__detects_run_sweep_and_reproduce_folders(tiny_sweep, tmp_path):
    run = xd.open_catalog(a_run(tiny_sweep))
    assert (run.kind, len(run.rows)) == ("run", 1)
    sweep = xd.open_catalog(tiny_sweep)
    assert (sweep.kind, len(sweep.rows)) == ("sweep", 6)
    shutil.copytree(tiny_sweep, tmp_path / "out" / "sweeps" / "tiny")
    (tmp_path / "out" / "reproduce.json").write_text("{}")
    repro = xd.open_catalog(tmp_path / "out")
    assert repro.kind == "reproduce"
    assert {r["run"].split("/")[0] for r in repro.rows} == {"tiny"}


def test_open_catalog__rows_sorted_by_T_with_settings_and_results(tiny_sweep):
    rows = xd.open_catalog(tiny_sweep).rows
    assert [r["T"] for r in rows] == [3, 3, 5, 5, 8, 8]
    cols = xd.table_columns(rows)
    assert cols[:3] == ["run", "status", "T"] and {"test_loss", "max_D_i", "data_seed"} <= set(cols)
    assert all(r["status"] == "ok" and r["test_loss"] > 0 for r in rows)


def test_sweep_rows__the_index_and_the_json_files_give_the_same_rows(tiny_sweep, tmp_path):
    assert (tiny_sweep / INDEX).is_file()
    from_index = xd.sweep_rows(tiny_sweep)
    copy = shutil.copytree(tiny_sweep, tmp_path / "s")
    (copy / INDEX).unlink()
    from_json = xd.sweep_rows(copy)
    strip = [{k: v for k, v in r.items() if k != "path"} for r in from_index]
    assert strip == [{k: v for k, v in r.items() if k != "path"} for r in from_json]


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p / "missing", "no such folder"),
        (lambda p: p, "not a supermem run, sweep or reproduce folder"),
        (lambda p: (p / "runs").mkdir() or p, "no runs yet"),
    ],
)
def test_open_catalog__bad_folder_raises_a_one_line_error(tmp_path, make, says):
    with pytest.raises(xd.ExploreError, match=says):
        xd.open_catalog(make(tmp_path))


def test_listing_hundreds_of_runs_reads_json_only(tmp_path, monkeypatch):
    for i in range(300):
        fake_run(tmp_path / "runs" / f"k{i:04d}", T=3 + i % 30, seed=i)
    opened: list[str] = []
    real_open = io.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", spy)
    cat = xd.open_catalog(tmp_path)
    monkeypatch.undo()
    assert len(cat.rows) == 300
    assert opened and not [f for f in opened if f.endswith(".safetensors")]
    assert len(opened) == 600  # config.json and metrics.json of each run, nothing else
    assert "lr" in cat.rows[0]  # a config field that varies gets its own column


def test_plane__identity_at_m2_top_pca_plane_above_and_padded_at_m1():
    rng = np.random.default_rng(0)
    W2 = rng.normal(size=(2, 7))
    assert np.allclose(xd.plane(W2), np.eye(2))
    # W = U diag(5, 3, 0.1) V^T: the plane is spanned by U's first two columns
    U, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    V, _ = np.linalg.qr(rng.normal(size=(7, 3)))
    P = xd.plane(U @ np.diag([5.0, 3.0, 0.1]) @ V.T)
    assert P.shape == (3, 2) and np.allclose(P.T @ P, np.eye(2))
    assert np.allclose(np.abs(P.T @ U[:, :2]), np.eye(2), atol=1e-9)
    assert np.allclose(xd.plane(np.ones((1, 4))), [[1.0, 0.0]])


def test_run_frames__last_frame_is_the_saved_final_geometry(tiny_sweep):
    run = load_run(a_run(tiny_sweep))
    fr = xd.run_frames(run)
    assert fr is not None
    k, T, n = len(fr.steps), run.config["train_size"], run.config["features"]
    assert k > 1 and fr.steps[-1] == run.config["steps"]
    assert fr.W2.shape == (k, 2, n) and fr.H2.shape == (k, T, 2)
    assert fr.feature_dims.shape == (k, n) and fr.data_dims.shape == (k, T)
    assert np.allclose(fr.W2[-1], run.arrays["W"], atol=1e-6)
    assert np.allclose(fr.H2[-1], run.arrays["H_train"], atol=1e-5)
    assert np.allclose(fr.feature_dims[-1], run.arrays["feature_dims"], atol=1e-5)
    assert np.allclose(fr.data_dims[-1], run.arrays["data_dims"], atol=1e-4)
    assert not np.allclose(fr.W2[0], fr.W2[-1])  # training moved the features


def test_run_frames__large_T_draws_evenly_spaced_points_with_dims_over_all(tiny_sweep):
    run = load_run(sorted((tiny_sweep / "runs").iterdir())[-1])
    full, some = xd.run_frames(run), xd.run_frames(run, most=2)
    assert full is not None and some is not None
    T = run.config["train_size"]
    assert list(some.points) == [0, T - 1] and some.H2.shape == (len(full.steps), 2, 2)
    assert np.allclose(some.H2, full.H2[:, [0, T - 1]])
    assert np.allclose(some.data_dims, full.data_dims[:, [0, T - 1]])  # measured over all T


def test_t_walk__one_run_per_T_ascending_holding_the_seeds(tiny_sweep):
    rows = xd.open_catalog(tiny_sweep).rows
    here = next(r for r in rows if r["T"] == 5 and r["data_seed"] == 1)
    walk = xd.t_walk(rows, here)
    assert [r["T"] for r in walk] == [3, 5, 8]
    assert all(r["data_seed"] == 1 for r in walk) and here in walk


def test_explorer__sliders_change_the_drawn_data(tiny_sweep):
    pytest.importorskip("panel", reason="supermem explore needs the explore extra (Panel)")
    from supermem.report.explorer import Explorer

    page = Explorer(xd.open_catalog(tiny_sweep))
    page.layout()
    assert page.rows[page.current]["T"] == 3 and "step 40" in page.status.object
    last = np.array(page.w_src.data["x"])
    page.snap.value = 1
    assert not np.allclose(page.w_src.data["x"], last) and "snapshot 2 of" in page.status.object
    seed = page.rows[page.current]["data_seed"]
    page.t_slider.value = 8
    now = page.rows[page.current]
    assert (now["T"], now["data_seed"]) == (8, seed)
    assert page.table.selection == [page.current] and "T = 8" in page.status.object


def test_explorer__a_run_without_arrays_says_why(tiny_sweep, tmp_path):
    pytest.importorskip("panel", reason="supermem explore needs the explore extra (Panel)")
    from supermem.report.explorer import Explorer

    run = tmp_path / "d"
    run.mkdir()
    shutil.copy(a_run(tiny_sweep) / "config.json", run)
    (run / "metrics.json").write_text(json.dumps({"status": "diverged", "diverged_step": 5}))
    page = Explorer(xd.open_catalog(run))
    assert "status diverged: nothing to draw" in page.status.object
    assert len(page.w_src.data["x"]) == 0


@pytest.mark.parametrize("what", ["missing", "plain", "damaged"])
def test_cli_explore__bad_dir_exits_2_with_one_line(tiny_sweep, tmp_path, capsys, what):
    path = tmp_path / what
    if what == "plain":
        path.mkdir()
    elif what == "damaged":
        shutil.copytree(a_run(tiny_sweep), path)
        data = (path / ARRAYS).read_bytes()
        (path / ARRAYS).write_bytes(data[: len(data) // 2])
    assert main(["explore", str(path), "--no-show"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("supermem explore: error:")
    assert "Traceback" not in err


def test_cli_explore__port_out_of_range_exits_2(tiny_sweep, capsys):
    assert main(["explore", str(tiny_sweep), "--port", "70000", "--no-show"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_explorer__a_damaged_run_in_a_sweep_shows_its_error_when_selected(tiny_sweep, tmp_path):
    pytest.importorskip("panel", reason="supermem explore needs the explore extra (Panel)")
    from supermem.report.explorer import Explorer

    copy = shutil.copytree(tiny_sweep, tmp_path / "s")
    (copy / INDEX).unlink()
    page = Explorer(xd.open_catalog(copy))  # listing reads JSON only: the damage is unseen
    bad = len(page.rows) - 1
    arrays = Path(page.rows[bad]["path"]) / ARRAYS
    arrays.write_bytes(arrays.read_bytes()[:100])
    page.table.selection = [bad]
    assert "truncated" in page.status.object and len(page.w_src.data["x"]) == 0


def test_cli_explore__without_panel_says_which_extra_to_install(tiny_sweep, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "panel", None)  # `import panel` now fails
    monkeypatch.delitem(sys.modules, "supermem.report.explorer", raising=False)
    assert main(["explore", str(tiny_sweep), "--no-show"]) == 2
    assert "pip install 'supermem[explore]'" in capsys.readouterr().err


def test_cli_explore__port_in_use_exits_2_with_one_line(tiny_sweep, capsys):
    pytest.importorskip("panel", reason="supermem explore needs the explore extra (Panel)")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", str(tiny_sweep), "--port", str(port), "--no-show"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot serve on 127.0.0.1:{port}" in err
