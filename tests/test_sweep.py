"""Sweeps: spec grids, content keys, resume, failure isolation, batching, executors, CLI."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_config

from supermem import load_sweep, run_sweep, sweep_frame
from supermem.cli import main
from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.cost import plan
from supermem.sweeps.executors import Job, LocalExecutor, SerialExecutor, threads_per_worker
from supermem.sweeps.index import (
    INDEX,
    SweepBusyError,
    config_key,
    floats_as_floats,
    rebuild_index,
    sweep_lock,
)
from supermem.sweeps.spec import SweepSpec, groups

TINY = {
    k: v
    for k, v in make_config().to_dict().items()
    if k in ("features", "sparsity", "train_size", "test_size", "steps", "warmup", "engine")
} | {"device": "cpu", "snapshots": 4}

TOML = """
name = "tiny"
[fixed]
features = 50
sparsity = 0.9
test_size = 64
steps = 40
warmup = 5
engine = "reference"
device = "cpu"
[axes]
train_size = [4, 8]
seed = [0, 1, 2]
"""


def spec(name="t", **axes) -> SweepSpec:
    return SweepSpec(name, {k: v for k, v in TINY.items() if k not in axes}, axes)


class CountTrainMany:
    """Wraps train_many to count the configs it is asked to train."""

    def __init__(self, monkeypatch, fail_if=lambda cfg: False):
        train_mod = sys.modules["supermem.toy.train"]  # the package's `train` is the function

        self.real, self.calls, self.fail_if = train_mod.train_many, [], fail_if
        monkeypatch.setattr(train_mod, "train_many", self)

    def __call__(self, cfgs, progress=True, init=None, **kw):
        self.calls.append(list(cfgs))
        if self.fail_if(cfgs[0]):
            raise RuntimeError("boom in this group")
        return self.real(cfgs, progress=progress, init=init, **kw)

    @property
    def trained(self) -> int:
        return sum(len(c) for c in self.calls)


def snapshot(run_dirs) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file in the given run dirs."""
    return {
        str(f): (f.read_bytes(), f.stat().st_mtime_ns)
        for d in run_dirs
        for f in sorted(Path(d).iterdir())
    }


def hidden_dirs(out: Path) -> list[Path]:
    return [
        p
        for sub in ("runs", "failed")
        if (out / sub).is_dir()
        for p in (out / sub).iterdir()
        if p.name.startswith(".")
    ]


# -- spec and keys --------------------------------------------------------------------
def test_spec_from_toml__grid_is_product_of_axes_in_order(tmp_path):
    (tmp_path / "s.toml").write_text(TOML)
    s = SweepSpec.from_toml(tmp_path / "s.toml")
    assert s.name == "tiny" and s.axes == {"train_size": [4, 8], "seed": [0, 1, 2]}
    cfgs = s.configs()
    assert [(c.train_size, c.seed) for c in cfgs] == [
        (4, 0),
        (4, 1),
        (4, 2),
        (8, 0),
        (8, 1),
        (8, 2),
    ]
    assert all(c.features == 50 and c.engine == "reference" and c.hidden == 2 for c in cfgs)
    assert SweepSpec.from_dict(s.to_dict()) == s


def test_spec_from_toml__name_defaults_to_file_stem(tmp_path):
    (tmp_path / "grid.toml").write_text("[axes]\nseed = [0, 1]\n")
    assert SweepSpec.from_toml(tmp_path / "grid.toml").name == "grid"


@pytest.mark.parametrize(
    "d, expect",
    [
        ({"fixed": {"bogus": 1}}, "bogus"),
        ({"axes": {"nope": [1]}}, "nope"),
        ({"axes": {"lr": [1e-3, -1.0]}}, "lr must be > 0"),
        ({"axes": {"lr": [1e-3, -1.0]}}, "lr=-1.0"),
        ({"fixed": {"steps": 10, "warmup": 50}}, "warmup"),
        ({"fixed": {"seed": 0}, "axes": {"seed": [1]}}, "both fixed and an axis"),
        ({"axes": {"seed": []}}, "non-empty list"),
        ({"axes": {"seed": 3}}, "non-empty list"),
        ({"extra": {}}, "extra"),
    ],
)
def test_spec__bad_field_or_value_raises_config_error_naming_it(d, expect):
    with pytest.raises(ConfigError, match=re.escape(expect)):
        SweepSpec.from_dict(d).configs()


def test_config_key__stable_distinct_and_blind_to_int_vs_float():
    cfgs = spec(train_size=[4, 8], seed=[0, 1], lr=[1e-3, 2e-3]).configs()
    keys = [config_key(c) for c in cfgs]
    assert len(set(keys)) == len(cfgs)
    assert all(re.fullmatch(r"[0-9a-f]{16}", k) for k in keys)
    assert keys == [config_key(TrainConfig.from_dict(c.to_dict())) for c in cfgs]
    assert config_key(make_config(lr=1)) == config_key(make_config(lr=1.0))


def test_config_key__unchanged_for_existing_run_dirs():
    # pinned values: existing OUT/runs/<key>/ dirs must keep their names
    d = dict(lr=1, weight_decay=0, sparsity=0.99, train_size=30, hidden=4, steps=100, warmup=5)
    assert config_key(TrainConfig(**d)) == "c4667df2cfd305b3"
    assert config_key(TrainConfig()) == "763ed53061eae5ce"


def test_floats_as_floats__ints_in_float_fields_only_bools_untouched():
    got = floats_as_floats({"lr": 1, "steps": 10, "weight_decay": True, "sparsity": 0.5})
    assert got == {"lr": 1.0, "steps": 10, "weight_decay": True, "sparsity": 0.5}
    assert type(got["lr"]) is float and type(got["steps"]) is int and got["weight_decay"] is True


def test_groups__batch_only_instance_fields_and_cap_size():
    cfgs = spec(train_size=[4, 8], seed=list(range(10))).configs()
    got = groups(cfgs, batch=True, size=8)
    assert [len(g) for g in got] == [8, 2, 8, 2]
    assert all(len({(c.train_size) for c in g}) == 1 for g in got)
    assert len(groups(cfgs, batch=False)) == 20


def test_threads_per_worker__split_cores_at_least_one():
    assert threads_per_worker(2, cores=16) == 8
    assert threads_per_worker(4, cores=2) == 1
    assert threads_per_worker(3, cores=8) == 2


# -- running, resuming, failures ------------------------------------------------------
def test_resume__partial_discarded_finished_untouched_only_missing_trained(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    first = run_sweep(spec(seed=[0, 1]), out, progress=False)
    assert first.ok == 2 and not first.failures
    finished = sorted((out / "runs").iterdir())
    before = snapshot(finished)
    # a run killed while being written leaves a hidden temp dir (store.write_atomic)
    partial = out / "runs" / f".{config_key(spec(seed=[2]).configs()[0])}.tmp-deadbeef"
    partial.mkdir()
    (partial / "config.json").write_text("{")
    counter = CountTrainMany(monkeypatch)
    second = run_sweep(spec(seed=[0, 1, 2]), out, progress=False)
    assert counter.trained == 1 and second.skipped == 2 and second.ok == 1
    assert snapshot(finished) == before
    assert not hidden_dirs(out)
    keys = sorted(p.name for p in (out / "runs").iterdir())
    assert keys == sorted(config_key(c) for c in spec(seed=[0, 1, 2]).configs())
    assert run_sweep(spec(seed=[0, 1, 2]), out, progress=False).skipped == 3
    assert counter.trained == 1


def test_failures__isolated_listed_and_only_crashes_retried(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    s = spec(train_size=[4, 6, 8], lr=[1e-3, 1e30])
    counter = CountTrainMany(monkeypatch, fail_if=lambda c: c.train_size == 6)
    summary = run_sweep(s, out, progress=False)
    assert summary.ok == 2 and len(summary.diverged) == 2 and len(summary.failed) == 2
    assert all("boom in this group" in err for _, err in summary.failed)
    assert len(summary.failures) == 4 and "boom" in str(summary)
    frame = sweep_frame(out)
    assert sorted(frame["status"]) == ["diverged", "diverged", "failed", "failed", "ok", "ok"]
    assert len(load_sweep(out)) == 4  # finished runs only: a crash record is not a run
    assert plan(s, out).todo == 2 and plan(s, out).retry == 2
    # next call: the crashes are retried (and now succeed); the divergences are results
    counter.fail_if = lambda c: False
    again = run_sweep(s, out, progress=False)
    assert again.skipped == 4 and counter.trained == 6 + 2
    assert again.ok == 1 and len(again.diverged) == 1 and not again.failed  # T=6, lr=1e30
    assert sorted(sweep_frame(out)["status"]) == ["diverged"] * 3 + ["ok"] * 3
    assert not list((out / "failed").iterdir())


class DyingWorkers(SerialExecutor):
    """An executor whose worker for T = 8 dies before it can report (like an OOM kill)."""

    def imap_unordered(self, fn, jobs):
        for job in jobs:
            died = job.configs[0].train_size == 8
            yield job, BrokenProcessPool("worker killed") if died else fn(job)


def test_dead_worker__parent_records_failures_and_goes_on(tmp_path):
    out = tmp_path / "sw"
    summary = run_sweep(
        spec(train_size=[4, 8], seed=[0, 1]), out, executor=DyingWorkers(), progress=False
    )
    assert summary.ok == 2 and len(summary.failed) == 2
    assert all(err.startswith("worker died: BrokenProcessPool") for _, err in summary.failed)
    assert sorted(p.name for p in (out / "failed").iterdir()) == sorted(
        k for k, _ in summary.failed
    )
    assert sorted(sweep_frame(out)["status"]) == ["failed", "failed", "ok", "ok"]


class Recording(SerialExecutor):
    """Runs jobs serially, remembering the order they were submitted in."""

    def __init__(self, workers):
        self.workers, self.order = workers, []

    def imap_unordered(self, fn, jobs):
        jobs = list(jobs)
        self.order = [job.configs[0].train_size for job in jobs]
        return super().imap_unordered(fn, jobs)


@pytest.mark.parametrize("workers, order", [(1, [4, 16, 8]), (2, [16, 8, 4])])
def test_job_order__grid_order_serially_longest_first_in_parallel(tmp_path, workers, order):
    ex = Recording(workers)
    run_sweep(spec(train_size=[4, 16, 8]), tmp_path / f"w{workers}", executor=ex, progress=False)
    assert ex.order == order


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "sw"
    run_sweep(
        spec(seed=[0, 1, 2], data_seed=[0, 1], train_size=[4, 8]), out, progress=False, batch=False
    )
    return out


def _weights(out) -> dict[str, np.ndarray]:
    return {r.path.name: r.arrays["W"] for r in load_sweep(out)}


def test_batched_sweep_equals_unbatched(serial_sweep, tmp_path, monkeypatch):
    counter = CountTrainMany(monkeypatch)
    run_sweep(
        spec(seed=[0, 1, 2], data_seed=[0, 1], train_size=[4, 8]), tmp_path / "b", progress=False
    )
    assert len(counter.calls) == 2  # one train_many call per train_size
    a, b = _weights(serial_sweep), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 12
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6)
    fa, fb = sweep_frame(serial_sweep), sweep_frame(tmp_path / "b")
    np.testing.assert_allclose(fa["train_loss"], fb["train_loss"], rtol=1e-4)


def test_workers_2__process_pool_gives_the_serial_results(serial_sweep, tmp_path):
    s = spec(seed=[0, 1, 2], data_seed=[0, 1], train_size=[4, 8])
    with LocalExecutor(2) as ex:
        summary = run_sweep(s, tmp_path / "p", executor=ex, progress=False)
    assert summary.ok == 12 and not summary.failures
    a, b = _weights(serial_sweep), _weights(tmp_path / "p")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_sweep_frame__columns_and_stale_or_missing_index(serial_sweep, tmp_path):
    frame = sweep_frame(serial_sweep)
    want = {f.name for f in fields(TrainConfig)} | {
        "train_loss",
        "test_loss",
        "W_norm",
        "b_norm",
        "status",
        "diverged_step",
        "seconds",
        "data_dims_mean",
        "max_feature_dim",
        "key",
        "path",
    }
    assert want <= set(frame.columns) and len(frame) == 12
    assert (frame["key"] == [Path(p).name for p in frame["path"]]).all()
    # the run dirs are the truth: copy the sweep, drop one run dir and break the index
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(serial_sweep, out)
    shutil.rmtree(out / "runs" / frame["key"][0])
    assert len(sweep_frame(out)) == 11 and len(load_sweep(out)) == 11
    (out / INDEX).unlink()
    assert len(sweep_frame(out)) == 11
    assert rebuild_index(out) == 11 and len(sweep_frame(out)) == 11


def test_plan__counts_and_calibrated_estimate(serial_sweep, tmp_path):
    s = spec(seed=[0, 1, 2, 3], data_seed=[0, 1], train_size=[4, 8])
    p = plan(s, serial_sweep)
    assert (p.total, p.done, p.todo) == (16, 12, 4) and p.calibrated_from == 12
    assert p.seconds > 0 and "16 runs: 12 done, 4 to do" in str(p)
    fresh = plan(s, tmp_path / "none")
    assert fresh.calibrated_from == 0 and fresh.todo == 16
    assert not (tmp_path / "none").exists()


def test_plan__a_sweep_without_runs_calibrates_on_its_siblings_of_the_same_engine(
    serial_sweep, tmp_path
):
    s = spec(seed=[5, 6], train_size=[4, 8])
    own = plan(s, serial_sweep)  # its own runs first, siblings or not
    assert plan(s, serial_sweep, siblings=(tmp_path / "x",)).seconds_per_unit == (
        own.seconds_per_unit
    )
    new = plan(s, tmp_path / "new", siblings=(tmp_path / "new", serial_sweep))
    assert new.from_siblings and new.calibrated_from == 12
    assert new.seconds_per_unit == own.seconds_per_unit
    assert "calibrated on 12 runs of the other sweeps, same engine" in str(new)
    other = spec(seed=[5], engine=["fast"])  # no sibling ran this engine: the default
    ref = plan(other, tmp_path / "new", siblings=(serial_sweep,))
    assert not ref.from_siblings and ref.calibrated_from == 0 and ref.seconds_per_unit is None
    assert not (tmp_path / "new").exists()


def test_plan__each_engine_is_calibrated_on_its_own_runs_the_rest_priced_on_the_default(
    serial_sweep, tmp_path, monkeypatch
):
    # serial_sweep's 12 runs trained on the reference engine; a fast run beside them is
    # not priced on their seconds per unit (the engines differ by 10-100x per unit)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    axes = dict(seed=[5], train_size=[4, 8])
    ref = plan(spec(**axes), serial_sweep, workers=2)
    fast = plan(spec(**axes, engine=["fast"]), serial_sweep, workers=2)
    both = plan(spec(**axes, engine=["reference", "fast"]), serial_sweep, workers=2)
    assert ref.calibrated_from == both.calibrated_from == 12 and fast.calibrated_from == 0
    assert both.seconds == pytest.approx(ref.seconds + fast.seconds)
    assert both.default_seconds == pytest.approx(fast.seconds)
    assert both.seconds_per_unit == ref.seconds_per_unit  # only reference is calibrated
    # spread: the calibrated part divides by the workers, the default part shares the 2 cores
    spread = replace(both, schedule_seconds=None)
    assert spread.wall_seconds == pytest.approx(ref.seconds / 2 + fast.seconds)
    # scheduled group by group on the 2 workers (the default): at least the longest group,
    # at most all of it one after another on one worker's thread (the default c's dense
    # part 2x on 1 thread; the fixed part, measured on one, as it is)
    assert both.schedule_seconds is not None and both.default_seconds is not None
    assert both.longest_seconds <= both.wall_seconds <= both.seconds + both.default_seconds
    assert "on the default" in str(both) and "on the default" not in str(ref)
    # a sibling sweep that ran the fast engine calibrates the fast runs, the own runs the rest
    run_sweep(spec(seed=[0], train_size=[4], engine=["fast"]), tmp_path / "f", progress=False)
    mixed = plan(spec(**axes, engine=["reference", "fast"]), serial_sweep, 2, (tmp_path / "f",))
    assert (mixed.calibrated_from, mixed.sibling_runs, mixed.default_seconds) == (13, 1, 0.0)
    assert "calibrated on 13 runs (1 of them the other sweeps', same engine)" in str(mixed)


def test_plan__calibrated_c_is_scaled_from_the_threads_runs_used_to_a_workers_threads(
    serial_sweep, tmp_path, monkeypatch
):
    # speed is taken as linear in threads: runs that had 2 threads each price a worker
    # with 1 thread at twice their seconds per unit; runs that recorded no threads (older
    # ones) are taken to have had the plan's
    import shutil

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    s = spec(seed=[5], train_size=[4, 8])
    runs = {t: tmp_path / f"t{t}" for t in (1, 2, None)}
    for t, out in runs.items():
        shutil.copytree(serial_sweep, out)
        for m in (out / "runs").glob("*/metrics.json"):
            metrics = json.loads(m.read_text())
            assert metrics["threads"] >= 1  # each records the CPU threads it used
            m.write_text(json.dumps(metrics | {"threads": t}))
    c = {(t, w): plan(s, o, workers=w).seconds_per_unit for t, o in runs.items() for w in (1, 2)}
    assert c[1, 1] == pytest.approx(c[1, 2] / 2)  # the same runs, workers of 2 vs 1 thread
    assert c[2, 2] == pytest.approx(2 * c[1, 2])  # measured on 2 threads, priced on 1
    assert c[None, 1] == pytest.approx(c[None, 2]) == pytest.approx(c[1, 2])


def test_kind__is_the_engine_training_takes():
    from supermem.sweeps.cost import _kind
    from supermem.toy.train import train

    base = dict(features=1000, sparsity=0.99, test_size=10, steps=2, warmup=1, snapshots=0)
    cases = [  # auto crosses from fast to tree with T; float64, other models and losses
        dict(train_size=100),
        dict(train_size=2000),
        dict(train_size=100, model="untied"),
        dict(train_size=100, dtype="float64"),
        dict(train_size=100, loss="l1"),
        dict(train_size=2000, engine="fast"),
    ]
    used = set()
    for kw in cases:
        cfg = TrainConfig(**base, **kw)
        taken = train(cfg, progress=False).engine
        assert _kind(cfg)[0] == taken, kw
        assert _kind(cfg, "tree")[0] == "tree"  # a finished run's recorded engine wins
        used.add(taken)
    assert used == {"fast", "tree", "fast_variants", "reference"}


def test_wall_seconds__default_c_shares_the_cores_calibrated_c_divides(monkeypatch):
    from supermem.sweeps.cost import SweepPlan

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    default = {w: SweepPlan(8, 0, 8, 0, 1000.0, None, 0, workers=w) for w in (1, 2)}
    assert default[1].wall_seconds == default[2].wall_seconds == 1000.0  # same 2 cores
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert default[2].wall_seconds == pytest.approx(1000.0 / 8)  # 2 x 8 threads vs 2
    calibrated = SweepPlan(8, 4, 4, 0, 1000.0, 1e-9, 4, workers=4)
    assert calibrated.wall_seconds == 250.0 and "estimated 4m10s with 4" in str(calibrated)


def test_wall_seconds__never_less_than_the_longest_group(monkeypatch, tmp_path, serial_sweep):
    # one group (the 4 seeds at T = 4,000, batched) costs far more than the rest: more
    # workers spread the rest, but that group trains on one of them, whole
    from supermem.sweeps.cost import STEP_S, run_seconds

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    s = spec(seed=[0, 1, 2, 3], train_size=[4, 8, 16, 4000])
    big = [cfg for cfg in s.configs() if cfg.train_size == 4000]
    # on the default c, for 2 threads; per-step overhead once for the group
    group = sum(run_seconds(cfg) for cfg in big) - 3 * big[0].steps * STEP_S
    p = plan(s, tmp_path, workers=4)  # 4 groups: 4 workers of 2 threads
    assert p.longest_seconds == pytest.approx(group * 2 / 2)
    assert p.wall_seconds == pytest.approx(group)  # reference: no freed cores taken up
    assert p.seconds * 2 / 8 < p.longest_seconds  # what spreading alone would say
    # run_sweep starts no more workers than groups (8 asked: 4, of 2 threads each)
    assert plan(s, tmp_path, workers=8) == p
    one = plan(s, tmp_path, workers=1)  # one worker trains it all: the sum, its dense
    # part (the default c's, for 2 threads) on all 8 threads; the fixed part as it is
    dense = sum(run_seconds(cfg) - fixed(cfg) for cfg in s.configs())
    assert one.wall_seconds == pytest.approx(one.seconds - dense + dense * 2 / 8)
    # on the fast engine the big group takes the 6 cores the small ones free: sooner than
    # alone on its 2 threads, not sooner than its own work spread on all 8 cores
    fast = spec(seed=[0, 1, 2, 3], train_size=[4, 8, 16, 4000], engine=["fast"])
    el, fixed_threads = (
        plan(fast, tmp_path, workers=4),
        plan(fast, tmp_path, workers=4, elastic=False),
    )
    assert fixed_threads.wall_seconds == pytest.approx(fixed_threads.longest_seconds)
    assert fixed_threads.longest_seconds / 4 < el.wall_seconds < fixed_threads.wall_seconds
    # calibrated on serial_sweep's runs (the reference engine): the same bound
    ref = spec(seed=[0, 1, 2, 3], train_size=[4, 8, 16, 4000], engine=["reference"])
    cal = plan(ref, tmp_path / "new", workers=4, siblings=(serial_sweep,))
    assert cal.calibrated_from == 12 and cal.seconds_per_unit is not None
    c = cal.seconds_per_unit
    big = [cfg for cfg in ref.configs() if cfg.train_size == 4000]
    group = sum(run_seconds(cfg, c) for cfg in big) - 3 * big[0].steps * STEP_S
    assert cal.longest_seconds == pytest.approx(group)
    assert cal.wall_seconds == pytest.approx(cal.longest_seconds)


def test_schedule__groups_in_order_on_the_workers_freed_cores_taken_up(monkeypatch):
    """run_sweep's schedule as the plan simulates it: each worker takes the next group
    when free; a group on an elastic engine trains its dense part on the cores over the
    groups training now (its fixed part does not speed up), another keeps its threads."""
    from supermem.sweeps.cost import _schedule

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _schedule([1, 2], [3, 4], [True, True], 1) == pytest.approx(10)  # in turn
    # 2 workers of 1 thread, no freed cores taken up: 4 | 3 then 2
    assert _schedule([0, 0, 0], [4, 3, 2], [False] * 3, 2) == pytest.approx(5)
    # A: 10 s, B: 4 s. Both on 1 thread until B ends; A's last 6 s take 3 on 2 threads
    assert _schedule([0, 0], [10, 4], [True, True], 2) == pytest.approx(7)
    # A: 4 s fixed + 6 s dense; at 4 s 60% is left: 2.4 fixed + 3.6 dense on 2 threads
    assert _schedule([4, 0], [6, 4], [True, True], 2) == pytest.approx(4 + 2.4 + 1.8)
    assert _schedule([0, 0], [10, 4], [False, True], 2) == pytest.approx(10)  # A keeps 1
    assert _schedule([], [], [], 2) == 0.0


def fixed(cfg: TrainConfig) -> float:
    """A run's seconds that do not grow with T: overhead, per step, per parameter, and on
    the tree engine its extra per instance-step."""
    from supermem.sweeps.cost import (
        OVERHEAD_S,
        PARAM_S,
        STEP_S,
        TREE_STEP_S,
        _param_steps,
        engine_used,
    )

    tree = TREE_STEP_S * cfg.steps * cfg.restarts if engine_used(cfg) == "tree" else 0.0
    return OVERHEAD_S + cfg.steps * STEP_S + PARAM_S * _param_steps(cfg) + tree


def test_run_seconds__a_gpu_run_pays_no_per_parameter_work_whatever_its_engine():
    """On a CUDA device the per-parameter term is not counted (docs/SWEEPS.md), also for a
    run there on another engine than cuda (the chunked, fast or reference one): its price
    is its fixed part plus c * units, and the fixed part has no PARAM_S."""
    from supermem.sweeps import cost

    base = dict(features=1000, sparsity=0.99, train_size=2400, steps=1000, warmup=50)
    for engine in ("fast", "chunked", "reference"):
        gpu = TrainConfig(**base, engine=engine, device="cuda")
        name = cost.engine_used(gpu)
        assert cost._param_steps(gpu) == 0.0
        assert cost.run_seconds(gpu, 1e-9) - cost._fixed_seconds(gpu) == pytest.approx(
            1e-9 * cost._units(gpu, name)
        )
        assert cost._fixed_seconds(gpu) == pytest.approx(cost.OVERHEAD_S + 1000 * cost.STEP_S)


def test_plan__tree_runs_that_took_their_price_calibrate_its_c_back(tmp_path, monkeypatch):
    """A tree run's extra per instance-step (TREE_STEP_S) is part of its price and is taken
    out of its seconds before they calibrate c: runs whose recorded seconds are what c
    prices them give c back (and a bigger extra, the same c: it is not in the units)."""
    from supermem.sweeps import cost

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    axes = dict(engine=["tree"], features=[200], restarts=[3])
    s = spec(seed=[0], train_size=[300, 400], **axes)  # unequal seconds: trained apart
    run_sweep(s, tmp_path, progress=False, batch=False)
    keys = set(TrainConfig.__dataclass_fields__)
    for extra in (cost.TREE_STEP_S, 10 * cost.TREE_STEP_S):
        monkeypatch.setattr(cost, "TREE_STEP_S", extra)
        for m in (tmp_path / "runs").glob("*/metrics.json"):
            metrics = json.loads(m.read_text())
            assert metrics["engine"] == "tree"
            saved = json.loads((m.parent / "config.json").read_text())
            cfg = TrainConfig(**{k: v for k, v in saved.items() if k in keys})
            took = cost.run_seconds(cfg, 2e-9) - cost.OVERHEAD_S  # `seconds`: the loop only
            m.write_text(json.dumps(metrics | {"seconds": took, "threads": 1.0}))
        p = cost.plan(spec(seed=[2], train_size=[300], **axes), tmp_path)
        # 2e-9 per thread (the runs recorded 1), on the one worker's 2 threads
        assert p.calibrated_from == 2 and p.seconds_per_unit == pytest.approx(2e-9 / 2)


def test_run_seconds__the_per_parameter_term_is_paid_on_every_instance_whatever_T(monkeypatch):
    """Each step updates every instance's n * (m + 1) parameters, whatever T: at the
    paper's n = 10,000 this outweighs the dense pass at small T (docs/SWEEPS.md)."""
    from supermem.sweeps.cost import PARAM_S, run_seconds

    base = dict(features=10_000, sparsity=0.999, steps=1000, engine="fast")
    one = TrainConfig(**base, train_size=30)
    assert fixed(one) - fixed(one.replace(features=5000)) == pytest.approx(
        PARAM_S * 1000 * 5000 * 3
    )
    four = one.replace(restarts=4)
    assert fixed(four) - fixed(one) == pytest.approx(3 * PARAM_S * 1000 * 10_000 * 3)
    assert fixed(one.replace(train_size=3000)) == fixed(one)  # T is the dense pass's
    assert fixed(one) - fixed(one.replace(engine="cuda")) == pytest.approx(PARAM_S * 3e7)
    dense = run_seconds(one) - fixed(one)
    assert PARAM_S * 1000 * 10_000 * 3 > dense  # at T = 30 the parameters cost more
    # not on a GPU: by the engine a run recorded, or auto resolved on a CUDA device
    from supermem.sweeps import cost

    assert cost._param_steps(one, "cuda") == 0 < cost._param_steps(one, "fast")
    monkeypatch.setattr(cost, "resolve_device", lambda d: torch.device("cuda"))
    assert cost._param_steps(one) == 0.0


def test_run_seconds__generic_kernel_costs_more_per_unit_than_m2():
    from supermem.sweeps.cost import GENERIC_M, run_seconds

    def work(**kw):  # the dense pass's part
        kw = {"engine": "fast", **kw}
        cfg = TrainConfig(
            features=1000, sparsity=0.99, train_size=1000, steps=1000, warmup=50, **kw
        )
        return run_seconds(cfg) - fixed(cfg)

    # the fast engine's generic kernel: affine in m, (m + 1) * GENERIC_M units per T * n
    assert work(hidden=4) == pytest.approx(5 * GENERIC_M / 2 * work(hidden=2))
    assert work(hidden=8) - work(hidden=4) == pytest.approx(work(hidden=5) - work(hidden=1))
    assert work(hidden=1) > work(hidden=2)  # as measured: the m = 2 kernel is that fast
    # m = 3 has its unrolled kernel too: width m, 1.5x m = 2's work
    assert work(hidden=3) == pytest.approx(1.5 * work(hidden=2))
    # fast_variants runs the same dense kernels: generic beyond m = 2, 3
    fv = {"engine": "fast_variants", "model": "untied"}
    assert work(hidden=4, **fv) / work(hidden=2, **fv) == pytest.approx(5 * GENERIC_M / 2)
    assert work(hidden=4, engine="reference") == pytest.approx(2 * work(engine="reference"))
    # the l1 loss runs the fast engine's kernels (the m = 2 one at m = 2), never the tree
    assert work(loss="l1") == pytest.approx(work(hidden=2))
    assert work(loss="l1", hidden=3) == pytest.approx(work(hidden=3))
    big = dict(features=10_000, sparsity=0.999, train_size=10**6, steps=10)
    l1 = run_seconds(TrainConfig(**big, loss="l1"))  # priced as the fast engine, exactly
    assert l1 == pytest.approx(run_seconds(TrainConfig(**big, engine="fast")))
    assert l1 > 5 * run_seconds(TrainConfig(**big))  # where auto's mse runs take the tree


def test_run_seconds__tree_runs_cost_the_engine_models_ratio():
    from supermem.sweeps.cost import run_seconds
    from supermem.toy.engines import cost

    def work(c=None, **kw):
        cfg = TrainConfig(features=10_000, train_size=100_000, steps=100, **kw)
        return run_seconds(cfg, c) - fixed(cfg)

    shape = (1, 100_000, 10_000, 2, 10.0)
    assert cost.pick(*shape) == "tree"  # so auto trains it with the tree, at tree's c
    ratio = cost.tree_step(*shape) / cost.fast_step(*shape)
    assert work(engine="auto") == pytest.approx(work(engine="tree"), rel=1e-3)
    # in units: the fast engine's times the engines' model's ratio (at any one c)
    assert work(1e-9, engine="tree") == pytest.approx(ratio * work(1e-9, engine="fast"), rel=0.01)


def test_run_seconds__priced_on_the_engine_that_trains_it():
    """The default c and the units are those of the engine ``train`` would take: float64
    and an untied model's l1 loss on the reference engine whatever ``engine`` says; the
    tree past the m its cost model is fitted for (m > 3) at the fast kernels' units."""
    from supermem.sweeps.cost import engine_used, run_seconds

    base = dict(features=1000, sparsity=0.99, train_size=2400, steps=1000, warmup=50)
    f64 = TrainConfig(**base, dtype="float64")
    assert engine_used(f64) == "reference"  # it was priced as the tree: 20x too low
    assert run_seconds(f64) == pytest.approx(run_seconds(f64.replace(engine="reference")))
    l1u = TrainConfig(**base, loss="l1", model="untied")
    assert engine_used(l1u) == "reference"
    assert run_seconds(l1u) == pytest.approx(run_seconds(l1u.replace(engine="reference")))
    t4 = TrainConfig(**base, hidden=4, engine="tree")  # was inf, and a plan NaN
    f4 = t4.replace(engine="fast")
    assert run_seconds(t4, 1e-9) - fixed(t4) == pytest.approx(run_seconds(f4, 1e-9) - fixed(f4))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli__a_device_this_machine_lacks__exit_2_one_line_nothing_created(tmp_path, capsys):
    toml = TOML.replace('device = "cpu"', 'device = "cuda"').replace('"reference"', '"auto"')
    (tmp_path / "s.toml").write_text(toml)
    (tmp_path / "c.toml").write_text(toml.replace('engine = "auto"', 'engine = "cuda"'))
    out = tmp_path / "o"
    for argv in (
        ["sweep", str(tmp_path / "s.toml"), "--out", str(out)],
        ["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--dry-run"],
        ["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--executor", "ray"],  # local
        ["reproduce", "demo", "--out", str(out), "--set", "device=cuda"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "no CUDA device" in err, err
        assert not out.exists()
    # a Ray cluster's workers may have the GPUs: its dry run plans them, at the cuda
    # engine's price (what auto takes there), with no engine built here
    ray = ["--out", str(out), "--dry-run", "--executor", "ray", "--address", "10.0.0.1:6379"]
    assert main(["sweep", str(tmp_path / "s.toml"), *ray]) == 0
    auto = capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "c.toml"), *ray]) == 0
    assert "6 runs: 0 done" in auto and auto == capsys.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize(
    ("swap", "says"),
    [
        ({'engine = "reference"': 'engine = "cuda"'}, "engine cuda needs --device cuda"),
        ({'engine = "reference"': 'engine = "fast"\nmodel = "untied"'}, "does not support"),
        ({'engine = "reference"': 'engine = "chunked"\nmodel = "relu_hidden"'}, "does not support"),
        ({'engine = "reference"': 'engine = "fast"\nmodel = "untied"\nloss = "l1"'}, "tied model"),
    ],
)
def test_cli__an_engine_that_cannot_train_the_runs__exit_2_one_line_nothing_created(
    tmp_path, capsys, swap, says
):
    """An engine/model/device mismatch was a failure per run, after OUT was made; now one
    line before anything is (sweep, its dry run, and reproduce with --set)."""
    toml = TOML
    for a, b in swap.items():
        toml = toml.replace(a, b)
    (tmp_path / "s.toml").write_text(toml)
    out = tmp_path / "o"
    for argv in (
        ["sweep", str(tmp_path / "s.toml"), "--out", str(out)],
        ["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--dry-run"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, err
        assert not out.exists()
    cpu = ["--set", "device=cpu", "--set", "engine=cuda"]  # device auto: a GPU host trains
    assert main(["reproduce", "demo", "--out", str(out), *cpu]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "engine cuda" in err and not out.exists()


def test_cli__finished_runs_are_not_checked_for_engines(tmp_path, capsys, monkeypatch):
    """Only the runs still to train are checked: a folder of finished runs (trained on a
    GPU elsewhere, say) re-reports here; an empty one is refused."""
    import supermem.toy.engines as engines
    from supermem.config import ConfigError

    (tmp_path / "s.toml").write_text(TOML)
    out = tmp_path / "o"
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--no-progress"]) == 0

    def refuse(*a, **k):
        raise ConfigError("no engine here")

    monkeypatch.setattr(engines, "get_engine", refuse)
    capsys.readouterr()
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), *extra]) == 0
        assert "6 runs" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "new")]) == 2
    assert "no engine here" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_plan__a_tree_run_past_the_fitted_m_is_priced(tmp_path):
    """The tree engine runs any m; its step-cost model stops at m = 3. A plan of m = 4
    tree runs is finite (it was NaN, and the dry run a traceback)."""
    import math

    s = SweepSpec("t4", {"features": 50, "steps": 40, "engine": "tree", "hidden": 4},
                  {"train_size": [4, 8]})  # fmt: skip
    p = plan(s, tmp_path / "o")
    assert p.todo == 2 and math.isfinite(p.wall_seconds) and p.wall_seconds > 0
    assert "estimated" in str(p) and not (tmp_path / "o").exists()


# -- CLI --------------------------------------------------------------------------------
def test_cli_dry_run__prints_plan_creates_nothing(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(TOML)
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "6 runs: 0 done, 6 to do" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


def test_restrict__the_matching_part_of_the_grid_with_the_whole_grids_keys():
    spec = SweepSpec(
        "s", {"lr": 1e-3, "features": 20}, {"train_size": [10, 20, 30], "data_seed": [0, 1]}
    )
    part = spec.restrict("train_size", ["20", "3e1"])  # numbers compare as numbers
    assert part is not None and part.axes["train_size"] == [20, 30]
    assert part.axes["data_seed"] == [0, 1] and part.fixed == spec.fixed
    whole = {config_key(c) for c in spec.configs()}
    keys = {config_key(c) for c in part.configs()}
    assert len(keys) == 4 and keys < whole  # the part's runs are the whole grid's
    assert spec.restrict("lr", ["0.001"]) is spec  # a fixed field: all or nothing
    assert spec.restrict("lr", ["0.01"]) is None
    assert spec.restrict("train_size", ["15"]) is None
    assert spec.restrict("engine", ["auto"]) is spec  # a field at its default
    steps = SweepSpec("s", {"features": 20}, {"steps": [100, 200]})
    assert steps.restrict("warmup", ["7"]) is None  # warmup resolves to 5% of steps
    with pytest.raises(ConfigError, match="warmup varies with the axes"):
        steps.restrict("warmup", ["10"])  # 10 for steps 200, 5 for 100
    assert SweepSpec("s", {"steps": 100}, {}).restrict("warmup", ["5"]) is not None
    with pytest.raises(ConfigError, match="stepz"):
        spec.restrict("stepz", ["1"])


def test_cli_reproduce_specs_and_only__plan_the_part_or_exit_2(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["reproduce", "discrepancy", "--scale", "paper", "--out", str(out), "--dry-run"]
    sel = ["--specs", "disc-baseline-large-T,disc-l2-large-T", "--only", "train_size=1800,4.2e3"]
    assert main([*argv, *sel, "--only", "data_seed=0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = ["disc-baseline-large-T", "disc-l2-large-T", "total"]
    assert [x.split(":")[0] for x in lines] == names
    assert all(": 2 runs: 0 done, 2 to do" in x for x in lines[:2])
    assert lines[2].startswith("total: 4 runs: 0 done, 4 to do; estimated ")
    for bad, expect in [
        (["--specs", "nope"], "unknown sweep(s) nope"),
        (["--only", "stepz=1"], "unknown TrainConfig field 'stepz'"),
        (["--only", "train_size"], "expected FIELD=V1,V2"),
        (["--only", "train_size=7"], "no run of the selected sweeps has train_size 7"),
        (["--only", "train_size=1800,4201"], "has train_size 4201 (they have 30, 68,"),
        (["--only", "hidden=2,train_size=30"], "one field per --only"),
        (["--specs", "disc-baseline-large-T", "--only", "train_size=30"], "has train_size 30"),
    ]:
        assert main([*argv[:-1], *bad]) == 2
        err = capsys.readouterr().err
        assert expect in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "text, expect",
    [
        (None, "no such spec file"),
        ("[fixed\nx = 1", "not valid TOML"),
        (TOML.replace("steps = 40", "stepz = 40"), "stepz"),
        (TOML.replace("seed = [0, 1, 2]", "seed = [0, -1]"), "seed"),
    ],
)
def test_cli_bad_spec__exit_2_one_line_nothing_created(tmp_path, capsys, text, expect):
    if text is not None:
        (tmp_path / "s.toml").write_text(text)
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "text, expect",
    [
        ("fixed = 3\n[axes]\nseed = [0]\n", "fixed must be a table"),
        ("axes = [1]\n[fixed]\nsteps = 40\n", "axes must be a table"),
        (b"name = '\xff\xfe'\n", "not UTF-8"),
        ("DIR", "is a directory"),
    ],
)
def test_cli_bad_spec_file__exit_2_one_line_nothing_created(tmp_path, capsys, text, expect):
    path = tmp_path / "s.toml"
    if text == "DIR":
        path.mkdir()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_results__unwritable_csv_exit_2_one_line(serial_sweep, tmp_path, capsys):
    bad = tmp_path / "nonexistent" / "x.csv"
    assert main(["results", str(serial_sweep), "--csv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1
    assert not bad.parent.exists()


def test_concurrent_sweep__refused_while_another_holds_the_lock(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    in_flight = out / "runs" / ".abc.tmp-1234"  # another sweep's run being written
    in_flight.mkdir(parents=True)
    with sweep_lock(out):
        with pytest.raises(SweepBusyError, match="another sweep is running into"):
            run_sweep(spec(seed=[0]), out, progress=False)
        (tmp_path / "s.toml").write_text(TOML)
        assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "another sweep is running into" in err and len(err.strip().splitlines()) == 1
    assert in_flight.is_dir() and not (out / "spec.json").exists()
    assert run_sweep(spec(seed=[0]), out, progress=False).ok == 1  # free again: runs


def test_cli_results__table_of_axes_and_csv(serial_sweep, tmp_path, capsys):
    assert main(["results", str(serial_sweep), "--csv", str(tmp_path / "r.csv")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == [
        "train_size",
        "seed",
        "data_seed",
        "status",
        "train_loss",
        "test_loss",
        "W_norm",
        "b_norm",
    ]
    assert len(lines) == 13
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "r.csv")) == 12
    assert main(["results", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_sigkill_mid_sweep__rerun_keeps_finished_bytes_and_completes(tmp_path):
    toml = TOML.replace("steps = 40", "steps = 1500").replace("warmup = 5", "warmup = 50")
    toml = toml.replace("train_size = [4, 8]\nseed = [0, 1, 2]", "train_size = [3, 4, 5, 6, 7, 8]")
    (tmp_path / "s.toml").write_text(toml)
    out = tmp_path / "sw"
    cmd = [
        sys.executable,
        "-m",
        "supermem",
        "sweep",
        str(tmp_path / "s.toml"),
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "runs").is_dir() and [p for p in (out / "runs").iterdir() if p.name[0] != "."]:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"sweep ended before the kill: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [p for p in (out / "runs").iterdir() if p.name[0] != "."]
    assert 1 <= len(finished) < 6
    before = snapshot(finished)
    summary = run_sweep(SweepSpec.from_toml(tmp_path / "s.toml"), out, progress=False)
    assert summary.skipped == len(finished) and summary.ok == 6 - len(finished)
    assert snapshot(finished) == before
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 6 == len(set(runs)) and not hidden_dirs(out)
    assert len(sweep_frame(out)) == 6


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            if (
                p.name.isdigit()
                and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            ):
                out.append(int(p.name))
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
def test_sigterm_to_the_parent_ends_the_workers_exit_143_and_resume_completes(tmp_path):
    """A SIGTERM to the sweep alone (kill, a batch scheduler), not to its workers: the
    parent ends its workers, exits 143 saying so, leaves nothing half-written visible,
    and the same sweep then trains the rest. Before, the workers trained on for nobody."""
    toml = TOML.replace("steps = 40\n", "").replace("warmup = 5", "warmup = 200")
    toml = toml.replace("train_size = [4, 8]\nseed = [0, 1, 2]", "train_size = [3, 4, 5, 6]")
    toml = toml.replace("[axes]", "[axes]\nsteps = [10000]")
    (tmp_path / "s.toml").write_text(toml)
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "supermem", "sweep", str(tmp_path / "s.toml"), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
        workers = [
            c
            for c in _children(proc.pid)
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        time.sleep(0.05)
    assert proc.poll() is None and workers, f"sweep ended early: {proc.stderr.read()!r}"
    time.sleep(5.0)  # the workers have started their groups (each ~15 s of training)
    runs = out / "runs"

    def landed() -> list[Path]:
        return [p for p in runs.iterdir() if p.name[0] != "."] if runs.is_dir() else []

    before = landed()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err, err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    assert not alive, f"workers still running after the parent ended: {alive}"
    finished = landed()
    assert finished == before  # ended, not waited for: no group ran on to land its runs
    summary = run_sweep(SweepSpec.from_toml(tmp_path / "s.toml"), out, workers=2, progress=False)
    assert summary.ok == 4 - len(finished) and not summary.failures
    assert len(sweep_frame(out)) == 4 and not hidden_dirs(out)


@pytest.mark.slow
def test_real_small_sweep__memorising_models_fit_train_better_than_test(tmp_path):
    s = SweepSpec(
        "real",
        {
            "features": 500,
            "sparsity": 0.99,
            "test_size": 2000,
            "steps": 3000,
            "warmup": 150,
            "engine": "reference",
            "device": "cpu",
            "snapshots": 6,
        },
        {"train_size": [5, 20], "seed": [0, 1], "data_seed": [0, 1]},
    )
    summary = run_sweep(s, tmp_path / "sw", workers=2, progress=False)
    assert summary.ok == 8 and not summary.failures
    frame = sweep_frame(tmp_path / "sw")
    # small T is the memorising regime: training points are fit, fresh points are not (a
    # zero output already scores 1 on unit-norm points), and fewer points fit better in m=2
    assert (frame["train_loss"] < 0.9 * frame["test_loss"]).all()
    assert (frame["test_loss"] > 0.95).all()
    by_T = frame.groupby("train_size")["train_loss"].mean()
    assert by_T[5] < by_T[20]
    first_loss = [r.arrays["loss_history"][0] for r in load_sweep(tmp_path / "sw")]
    assert (frame.sort_values("path")["train_loss"].to_numpy() < np.array(first_loss)).all()
    assert run_sweep(s, tmp_path / "sw", progress=False).skipped == 8


def test_elastic_threads__a_worker_left_alone_takes_the_cores(monkeypatch):
    """LocalExecutor's workers share a count of the groups training now: each may use
    the cores over that count, so the last big group does not train on one core beside
    idle ones. Outside such a worker: None (threads as they are)."""
    import multiprocessing

    from supermem.sweeps import executors as ex

    assert ex.elastic_threads() is None
    busy = multiprocessing.get_context("spawn").Value("i", 0)
    import numba

    monkeypatch.setattr(ex, "_SHARED", (busy, 4, 1))
    old = numba.get_num_threads()
    with ex._training():
        assert busy.value == 1 and ex.elastic_threads() == 4  # alone: all 4 cores
        with ex._training():  # a second group starts in another worker
            assert ex.elastic_threads() == 2
            busy.value += 1  # and a third
            assert ex.elastic_threads() == 1
            busy.value -= 1
        assert ex.elastic_threads() == 4
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))  # as a group may
    assert busy.value == 0
    assert numba.get_num_threads() == 1  # the worker's own again, for the next group
    numba.set_num_threads(old)
    with LocalExecutor(2, elastic=False) as fixed:  # workers keep their threads
        assert fixed.busy is None


def _add_to_progress(job: Job) -> bool:
    """In a LocalExecutor worker: add 1 to the executor's progress, if the worker has it."""
    from supermem.sweeps import executors as ex

    if ex._PROGRESS is None:
        return False
    with ex._PROGRESS.get_lock():
        ex._PROGRESS.value += 1.0
    return True


def test_local_executor__its_spawned_workers_share_its_progress(tmp_path):
    """What a worker adds to its ``_PROGRESS`` is what the parent's bar reads."""
    jobs = [Job((TrainConfig(features=4, hidden=2),), str(tmp_path)) for _ in range(3)]
    with LocalExecutor(2) as ex:
        got = [r for _, r in ex.imap_unordered(_add_to_progress, jobs)]
        assert got == [True, True, True] and ex.progress.value == 3.0


def test_sweep_progress__a_worker_reports_the_runs_worth_of_steps_its_group_trained(
    tmp_path, monkeypatch
):
    """At every finiteness check run_group adds to the executor's progress the group's
    runs times the share of their steps trained since it started (a resumed group counts
    from its checkpoint's step); when the group ends it takes that back, as the sweep then
    counts its runs whole."""
    import multiprocessing

    from supermem.sweeps import executors as ex

    shared = multiprocessing.Value("d", 0.0)
    monkeypatch.setattr(ex, "_PROGRESS", shared)
    real, seen = ex.train_mod.train_many, []

    def spy(cfgs, on_check=None, **kw):
        def hook(step):
            on_check(step)
            seen.append((step, shared.value))

        return real(cfgs, on_check=hook, **kw)

    monkeypatch.setattr(ex.train_mod, "train_many", spy)
    cfgs = tuple(make_config(steps=400, warmup=40, seed=s) for s in (0, 1))
    job = ex.Job(cfgs, str(tmp_path))
    assert [o.status for o in ex.run_group(job)] == ["ok", "ok"]
    assert seen == [(0, 0.0), (100, 0.5), (200, 1.0), (300, 1.5), (400, 2.0)]
    assert shared.value == 0.0
    with ex._reporting(job) as hook:  # resumed at step 200: what it trains from there
        hook(200)
        assert shared.value == 0.0
        hook(300)
        assert shared.value == 0.5
    assert shared.value == 0.0
    monkeypatch.setattr(ex, "_PROGRESS", None)
    with ex._reporting(job) as hook:  # outside a sweep: no hook, nothing to train_many
        assert hook is None


def test_sweep_bar__finished_runs_plus_the_part_trained_before_and_in_flight_never_back():
    """The sweep's bar counts finished runs, the runs' worth of steps their checkpoints
    had when the sweep started, and what the workers report (polled from a thread); a
    finished job's share moves to the finished runs, and the bar never goes back."""
    import io
    import multiprocessing

    from tqdm import tqdm

    from supermem.sweeps.run import _Bar

    shared = multiprocessing.Value("d", 0.0)
    bar = _Bar(tqdm(total=6, file=io.StringIO()), {"a": 1.5, "b": 0.0}, shared, every=0.01)
    try:
        assert bar.bar.n == 1.5  # job a's 3 runs were half-trained before this sweep
        shared.value = 0.75
        bar.show()
        assert bar.bar.n == 2.25
        shared.value = 0.0  # a's worker took its share back; its results not in yet
        bar.show()
        assert bar.bar.n == 2.25
        bar.finished("a", 3, failed=0, diverged=0)
        assert bar.bar.n == 3
        shared.value = 1.5  # job b, half-way: the thread redraws the bar
        deadline = time.monotonic() + 10
        while bar.bar.n != 4.5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bar.bar.n == 4.5
        shared.value = 0.0
        bar.finished("b", 3, failed=1, diverged=0)
        assert bar.bar.n == 6
    finally:
        bar.close()
    assert not bar.thread.is_alive()
    one = _Bar(tqdm(total=1, file=io.StringIO()), {"a": 0.999}, None)
    assert one.bar.n == 0.99  # floored: not 1/1 while the run trains
    one.close()


def test_run_sweep__starts_its_executors_progress_from_zero(tmp_path):
    ex = SerialExecutor()
    ex.progress.value = 5.0  # left by an earlier sweep whose worker died mid-group
    run_sweep(spec(seed=[0, 1], train_size=[4]), tmp_path / "sw", executor=ex, progress=False)
    assert ex.progress.value == 0.0


def test_run_sweep__the_bar_ends_at_all_runs(tmp_path, capsys):
    run_sweep(spec(seed=[0, 1], train_size=[4, 8]), tmp_path / "sw", progress=True)
    assert "4/4" in capsys.readouterr().err


def test_total__sums_the_sweeps_and_names_the_most_workers_any_starts():
    from supermem.sweeps.cost import SweepPlan, total

    one = SweepPlan(3, 1, 2, 0, 60.0, None, 0, workers=1, schedule_seconds=60.0)  # one group
    two = SweepPlan(8, 0, 8, 0, 600.0, None, 0, workers=2, schedule_seconds=300.0)
    assert total([one, two]) == (
        "11 runs: 1 done, 10 to do; estimated 6m00s with 2 worker(s), "
        "the 2 sweeps one after another"
    )


def test_spec_module__the_names_it_held_before_the_split_still_import():
    from supermem.sweeps import cost, index, run
    from supermem.sweeps.spec import SweepSummary, load_sweep, plan, run_sweep

    assert (plan, run_sweep, SweepSummary, load_sweep) == (
        cost.plan, run.run_sweep, run.SweepSummary, index.load_sweep
    )  # fmt: skip
    with pytest.raises(ImportError):
        from supermem.sweeps.spec import no_such_name  # noqa: F401


def test_cli__a_run_too_big_for_this_machine__exit_2_one_line_nothing_created(
    tmp_path, capsys, monkeypatch
):
    """A run that alone needs more memory than is available failed run by run after OUT
    was made; now one line before anything is (its dry run too)."""
    import supermem.toy.memory as memory

    (tmp_path / "s.toml").write_text(TOML)
    out = tmp_path / "o"
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)  # 1 MiB free
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "not enough memory" in err, err
        assert not out.exists()


def test_cli__a_ray_cluster__refuses_only_what_no_device_trains(tmp_path, capsys):
    """At --address the workers' devices and memory are unknown here: engine cuda on
    device cuda plans from a head without CUDA; what no worker could train (fast for the
    untied model; engine cuda on device cpu) is one line."""
    ray = ["--dry-run", "--executor", "ray", "--address", "10.0.0.1:6379"]
    out = tmp_path / "o"
    gpu = TOML.replace('"reference"', '"cuda"').replace('device = "cpu"', 'device = "cuda"')
    for name, toml, rc in [
        ("gpu", gpu, 0),
        ("gpu-auto", gpu.replace('device = "cuda"', 'device = "auto"'), 0),
        ("untied", TOML.replace('"reference"', '"fast"\nmodel = "untied"'), 2),
        ("cuda-on-cpu", TOML.replace('"reference"', '"cuda"'), 2),
    ]:
        (tmp_path / f"{name}.toml").write_text(toml)
        assert main(["sweep", str(tmp_path / f"{name}.toml"), "--out", str(out), *ray]) == rc
        got = capsys.readouterr()
        if rc == 0:
            assert "6 runs: 0 done" in got.out
        else:
            assert len(got.err.strip().splitlines()) == 1 and "no worker could" in got.err
        assert not out.exists()
