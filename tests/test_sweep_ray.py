"""Sweeps on Ray: a real local Ray cluster (2 CPUs), not a mock.

The Ray tests are skipped, saying why, where Ray is not installed (it is in the test
extra); the CLI's error tests run either way.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_sweep import TINY, TOML, hidden_dirs, snapshot, spec

from supermem import run_sweep, sweep_frame
from supermem.cli import main
from supermem.sweeps.checks import check_run
from supermem.sweeps.executors import limit_threads
from supermem.sweeps.index import config_key, index_rows
from supermem.sweeps.spec import SweepSpec

# the test cluster binds to 127.0.0.1 only (set before Ray is first imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def long_spec(train_sizes: list[int]) -> SweepSpec:
    """One group per train size, each about a second of training."""
    fixed = {k: v for k, v in TINY.items() if k != "train_size"} | {"steps": 2000, "warmup": 50}
    return SweepSpec("long", fixed, {"train_size": train_sizes})


@pytest.fixture(scope="module")
def ray_cluster():
    """A fresh local Ray instance for this module; yields its address (HOST:PORT)."""
    try:
        import ray
    except ImportError as e:
        pytest.skip(f"Ray is not installed ({e}); pip install -c constraints.txt -e '.[ray]'")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), f"test cluster not on loopback: {address}"
    yield address
    ray.shutdown()


def ray_executor(**kw):
    from supermem.sweeps.ray_executor import RayExecutor

    return RayExecutor(**kw)


def running_tasks() -> list[int]:
    """PIDs of Ray workers running a sweep task (Ray titles them ray::<function name>)."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes().startswith(b"ray::train_group"):
                pids.append(int(p.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


def wait_for(cond, timeout=180.0):
    """Poll ``cond`` until it is truthy. The timeout only guards against a hang: on free
    cores these conditions come in seconds, on busy ones (a sweep beside the tests) in
    more than a minute."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := cond():
            return got
        time.sleep(0.02)
    ps = subprocess.run(["ps", "-eo", "pid,etime,args"], capture_output=True, text=True).stdout
    tasks = [line for line in ps.splitlines() if "ray::" in line]
    raise AssertionError(f"timed out after {timeout} s waiting for {cond.__name__}: {tasks}")


def visible(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").iterdir() if not p.name.startswith("."))


def files(run: Path) -> dict[str, object]:
    """A run dir's files: array files as bytes, JSON as dicts less the training time."""
    got: dict[str, object] = {p.name: p.read_bytes() for p in run.glob("*.safetensors")}
    mets = json.loads((run / "metrics.json").read_text())
    mets.pop("seconds")
    config = json.loads((run / "config.json").read_text())
    config.pop("git_commit")  # cached per process: a commit made meanwhile is not a result
    return got | {"metrics": mets, "config": config}


# -- a sweep through Ray --------------------------------------------------------------
@pytest.fixture
def one_thread():
    """This process trains as a LocalExecutor worker on 2 cores does: with 1 thread."""
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    limit_threads(1)
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])


def test_ray_sweep__runs_equal_the_local_executors_bit_for_bit(ray_cluster, tmp_path, one_thread):
    s = spec(seed=[0, 1, 2], train_size=[4, 8])
    keys = sorted(config_key(c) for c in s.configs())
    # the local executor's workers at one thread each (LocalExecutor(2) on 2 cores), in this
    # process to spare two process starts: a worker runs run_group after limit_threads(1)
    local = run_sweep(s, tmp_path / "local", progress=False)
    with ray_executor() as ex:
        assert ex.workers == 2 and ex.threads == 1 and not ex.own  # the fixture's instance
        shared = run_sweep(s, tmp_path / "shared", executor=ex, progress=False)
    with ray_executor(shared_fs=False) as ex:  # files sent back, written by the driver
        sent = run_sweep(s, tmp_path / "sent", executor=ex, progress=False)
    assert local.ok == shared.ok == sent.ok == 6 and not (shared.failures or sent.failures)
    for out in ("shared", "sent"):
        runs = visible(tmp_path / out)
        assert [p.name for p in runs] == keys and not hidden_dirs(tmp_path / out)
        for run in runs:
            check_run(run)
            assert files(run) == files(tmp_path / "local" / "runs" / run.name), run
        rows = index_rows(tmp_path / out)  # written by the driver; fresh, paths as given
        assert rows is not None and sorted(r["path"] for r in rows) == [str(p) for p in runs]
    again = run_sweep(s, tmp_path / "shared", executor=ray_executor(), progress=False)
    assert again.skipped == 6 and again.ok == 0


def test_ray_sweep__a_worker_that_cannot_see_out_stops_the_sweep_writing_nothing(
    ray_cluster, tmp_path
):
    from supermem.sweeps.ray_executor import NotSharedError

    out = tmp_path / "sw"
    with ray_executor() as ex:  # as if OUT were a local disk: the probe is not where tasks look
        ex.probes[str(out.absolute())] = out / "runs" / ".ray-elsewhere.tmp-probe"
        with pytest.raises(NotSharedError, match="not on a file system shared with node"):
            run_sweep(spec(seed=[0], train_size=[4, 8]), out, executor=ex, progress=False)
    assert not (out / "runs").exists() and not (out / "failed").exists()


# -- a worker killed mid-run ----------------------------------------------------------
def sweep_killing_one_worker(s, out, retries: int):
    """run_sweep through Ray in a thread while this one SIGKILLs the first Ray worker seen
    training, once it has trained for a moment; the sweep's summary."""
    got = {}

    def sweep():
        with ray_executor(retries=retries) as ex:
            got["summary"] = run_sweep(s, out, executor=ex, progress=False)

    t = threading.Thread(target=sweep)
    t.start()
    pid = wait_for(running_tasks)[0]
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    t.join(300)
    assert not t.is_alive(), "the sweep did not finish within 300 s of the kill"
    return got["summary"]


def test_ray_worker_killed__its_runs_fail_and_resume_trains_only_them(ray_cluster, tmp_path):
    s, out = long_spec([3, 4, 5]), tmp_path / "sw"
    first = sweep_killing_one_worker(s, out, retries=0)
    # the driver recorded the dead task's run as failed; the other tasks went on
    assert first.ok == 2 and len(first.failed) == 1, first
    assert "WorkerCrashedError" in first.failed[0][1]
    assert [p.name for p in (out / "failed").iterdir()] == [first.failed[0][0]]
    finished = visible(out)
    before = snapshot(finished)
    second = run_sweep(s, out, executor=ray_executor(), progress=False)
    assert second.skipped == 2 and second.ok == 1 and not second.failures
    assert snapshot(finished) == before  # nothing complete was trained or written again
    keys = sorted(config_key(c) for c in s.configs())
    assert [p.name for p in visible(out)] == keys and not hidden_dirs(out)
    assert not list((out / "failed").iterdir())
    assert sorted(sweep_frame(out)["status"]) == ["ok"] * 3


@pytest.mark.slow
def test_ray_worker_killed__with_retries_ray_reruns_it_in_the_same_sweep(ray_cluster, tmp_path):
    s, out = long_spec([3, 4, 5]), tmp_path / "sw"
    summary = sweep_killing_one_worker(s, out, retries=1)
    assert summary.ok == 3 and not summary.failures, summary
    assert [p.name for p in visible(out)] == sorted(config_key(c) for c in s.configs())
    assert not (out / "failed").exists() and not hidden_dirs(out)


# -- Ctrl-C ---------------------------------------------------------------------------
def test_ray_ctrl_c__no_half_written_run_no_task_left_and_resume_completes(ray_cluster, tmp_path):
    # six groups of clearly different lengths, longest first on the 2 CPUs: when the first
    # (4,000 steps) lands and Ctrl-C goes, no other task is near its end. Ray 2.60's driver
    # aborts ("Tried to complete task that was not pending") when a cancel races a task's
    # completion, which groups of equal length, started together, made likely here.
    toml = TOML.replace("steps = 40\n", "").replace("warmup = 5", "warmup = 200")
    steps = "steps = [8000, 4000, 3000, 2500, 2000, 1500]"
    toml = toml.replace("train_size = [4, 8]\nseed = [0, 1, 2]", f"train_size = [4]\n{steps}")
    (tmp_path / "s.toml").write_text(toml)
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "supermem", "sweep", str(tmp_path / "s.toml")]
    cmd += ["--out", str(out), "--executor", "ray", "--address", ray_cluster, "--no-progress"]
    # a shell's Ctrl-C reaches a process whose SIGINT is at its default; an earlier test in
    # the same pytest process may have left it ignored, which a child would inherit
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def first_run_done_and_tasks_in_flight():
        assert proc.poll() is None, f"sweep ended before Ctrl-C: {proc.stderr.read()!r}"
        return (out / "runs").is_dir() and visible(out) and running_tasks()

    wait_for(first_run_done_and_tasks_in_flight)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    # the driver cancelled its tasks (Ray also ends a gone driver's tasks, slower under load)
    wait_for(lambda: not running_tasks(), timeout=30)
    finished = visible(out)
    assert 1 <= len(finished) < 6
    for run in finished:
        check_run(run)  # whole: parses, every array complete
    before = snapshot(finished)
    with ray_executor() as ex:
        summary = run_sweep(
            SweepSpec.from_toml(tmp_path / "s.toml"), out, executor=ex, progress=False
        )
    assert summary.skipped == len(finished) and summary.ok == 6 - len(finished)
    assert snapshot(finished) == before
    assert len(visible(out)) == 6 and not hidden_dirs(out)


# -- command-line errors (with or without Ray) ----------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", ["sweep", "reproduce"])
def test_cli_ray__unreachable_or_bad_address_exit_2_one_line_nothing_created(
    tmp_path, capsys, command
):
    (tmp_path / "s.toml").write_text(TOML)
    out = tmp_path / "o"
    first = [command, str(tmp_path / "s.toml") if command == "sweep" else "demo"]
    port = closed_port()
    for address, expect in [
        (f"127.0.0.1:{port}", f"no Ray cluster answers at 127.0.0.1:{port}"),
        ("nohostport", "is not HOST:PORT"),
    ]:
        argv = first + ["--out", str(out), "--executor", "ray", "--address", address]
        assert expect in cli_error(capsys, argv)
        assert not out.exists()


def test_cli_ray__without_ray_installed_exit_2_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "s.toml").write_text(TOML)
    out = tmp_path / "o"
    err = cli_error(
        capsys, ["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--executor", "ray"]
    )
    assert "needs Ray" in err and "supermem[ray]" in err and not out.exists()


def test_cli_ray__ray_flags_need_executor_ray(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(TOML)
    base = ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]
    assert "--address is for --executor ray" in cli_error(capsys, base + ["--address", "auto"])
    assert "--no-shared-fs is for" in cli_error(capsys, base + ["--no-shared-fs"])
    err = cli_error(
        capsys, ["reproduce", "mnist", "--out", str(tmp_path / "m"), "--executor", "ray"]
    )
    assert "trains in one process; drop --executor" in err


def test_cli_ray_dry_run__plans_the_workers_ray_would_start_without_ray(
    tmp_path, capsys, monkeypatch
):
    (tmp_path / "s.toml").write_text(TOML)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    base = ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--dry-run"]
    base += ["--no-batch"]  # 6 groups: the plan counts at most one worker per group
    assert main(base + ["--executor", "ray"]) == 0  # a local Ray: one task per CPU
    assert "with 3 worker(s)" in capsys.readouterr().out
    assert main(base + ["--executor", "ray", "--workers", "2"]) == 0
    assert "with 2 worker(s)" in capsys.readouterr().out
    assert main(base + ["--executor", "ray", "--address", "10.0.0.1:6379"]) == 0
    out, err = capsys.readouterr()  # a cluster's size is unknown without connecting
    assert "with 1 worker(s)" in out and "pass --workers N" in err and "10.0.0.1:6379" in err
    assert main(base) == 0 and "with 1 worker(s)" in capsys.readouterr().out  # local: 1
    assert not (tmp_path / "o").exists()
