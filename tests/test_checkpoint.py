"""Checkpoints: a training call stopped after a checkpoint and resumed from it gives the
same numbers, bit for bit, as one that never stopped (every engine, the tree engine's
rebuilds, repeated points, the CLI and sweeps); other configs' checkpoints are refused."""

import json

import numpy as np
import pytest
import torch
from conftest import make_config

from supermem.cli import main
from supermem.config import ConfigError
from supermem.provenance import cpu_features, cpu_target
from supermem.sweeps.executors import Job, run_group
from supermem.sweeps.index import PARTIAL, RUNS, config_key
from supermem.sweeps.store import load_run
from supermem.toy import checkpoint as ckpt
from supermem.toy import train as train_mod
from supermem.toy.engines import TreeEngine
from supermem.toy.train import train, train_many


class Stop(BaseException):
    """Stands for the process being killed (no ``except Exception`` catches it)."""


@pytest.fixture
def stop_after_checkpoint(monkeypatch):
    """Make training stop right after it writes the checkpoint at step ``at``."""
    real = ckpt.save

    def arm(at: int):
        def save(path, cfgs, state):
            real(path, cfgs, state)
            if state.step == at:
                raise Stop

        monkeypatch.setattr(train_mod.ckpt, "save", save)

    yield arm
    monkeypatch.setattr(train_mod.ckpt, "save", real)


def assert_same(a, b):
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
        assert np.array_equal(a.snapshots[k], b.snapshots[k]), k
    assert np.array_equal(a.snapshot_steps, b.snapshot_steps)
    assert np.array_equal(a.loss_history, b.loss_history)
    assert a.train_loss == b.train_loss and a.test_loss == b.test_loss
    assert a.diverged_step == b.diverged_step


CASES = {
    "reference": dict(engine="reference"),
    "fast": dict(engine="fast", hidden=3),
    "tree": dict(engine="tree", train_size=300, lr=3e-2),
    "tree-repeated": dict(engine="tree", train_size=200, repeat_points=2, repeat_count=4),
    "untied": dict(engine="reference", model="untied"),
    "restarts": dict(engine="fast", restarts=3),
}


@pytest.mark.parametrize("case", CASES)
def test_resumed_training_equals_training_in_one_go(
    case, tmp_path, stop_after_checkpoint, monkeypatch
):
    cfg = make_config(**{**dict(steps=500, warmup=50, train_size=40, snapshots=8), **CASES[case]})
    if cfg.engine == "tree":  # leaves of 2 points: deep trees, rebuilt as points move
        monkeypatch.setattr(TreeEngine, "LEAF", 2)
    want = train(cfg, progress=False)
    ck = tmp_path / "ck"
    stop_after_checkpoint(300)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    saved = ckpt.load(ck, [cfg])
    assert saved is not None and saved.step == 300
    if cfg.engine == "tree":  # the tree was rebuilt before the stop, and its order kept
        scalars = next(v for k, v in saved.engine_state.items() if k.endswith("scalars"))
        assert scalars[1] >= 2  # (m, builds, steps)
    got = train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)[0]
    assert got.resumed == [300]
    assert_same(want, got)


def test_auto_resumes_on_the_engine_that_began_the_run(
    tmp_path, stop_after_checkpoint, monkeypatch
):
    """Under engine auto a checkpoint resumes on the engine that wrote it, even where auto
    would now pick another (a changed cost model; the cuda engine on a GPU), with the same
    numbers as never stopping."""
    from supermem.toy.engines import cost

    cfg = make_config(engine="auto", steps=300, warmup=30, train_size=40)
    want = train(cfg, progress=False)
    ck = tmp_path / "ck"
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    other = "tree" if want.engine == "fast" else "fast"
    monkeypatch.setattr(cost, "pick", lambda *shape: other)
    got = train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)[0]
    assert got.resumed == [100] and got.engine == want.engine
    assert_same(want, got)


def test_a_checkpoint_of_other_configs_is_refused(tmp_path, stop_after_checkpoint):
    cfg = make_config(steps=300)
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=tmp_path / "ck", checkpoint_every=0)
    with pytest.raises(ConfigError, match="belongs to another run"):
        train_many([cfg.replace(seed=1)], progress=False, checkpoint=tmp_path / "ck")


def test_a_checkpoint_written_before_a_config_field_existed_still_resumes(
    tmp_path, stop_after_checkpoint
):
    """A field added to TrainConfig later (here lr_schedule) is absent from an older
    checkpoint's config dicts; at its default it is the same run, so the training and the
    plan resume from it; the field at another value is another run."""
    from supermem.sweeps.cost import resumed_steps

    cfg = make_config(steps=300, warmup=30)
    want = train(cfg, progress=False)
    ck = tmp_path / "out" / PARTIAL / config_key(cfg)
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    meta = json.loads((ck / ckpt.META).read_text())
    for d in meta["configs"]:
        del d["lr_schedule"]
    (ck / ckpt.META).write_text(json.dumps(meta))
    assert resumed_steps(tmp_path / "out", [cfg]) == {config_key(cfg): 100}
    with pytest.raises(ConfigError, match="belongs to another run"):
        ckpt.load(ck, [cfg.replace(lr_schedule="constant")])
    got = train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)[0]
    assert got.resumed == [100]
    assert_same(want, got)


def test_a_run_records_the_cpu_threads_its_segments_used(
    tmp_path, stop_after_checkpoint, monkeypatch
):
    """metrics.json's ``threads`` (the sweeps' cost model scales by it): the threads of a
    run in one go; the seconds-weighted mean over segments that had different ones; None
    where a segment's checkpoint predates the record."""
    import numba

    from supermem.toy.engines.base import Engine

    cfg = make_config(engine="fast", steps=300, warmup=30, train_size=40)
    assert train(cfg, progress=False).threads == pytest.approx(numba.get_num_threads())
    ck = tmp_path / "ck"
    monkeypatch.setattr(Engine, "threads", lambda self, device: 2)  # whatever the machine has
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    saved = ckpt.load(ck, [cfg])
    assert saved is not None and saved.thread_seconds == pytest.approx(2 * saved.seconds)
    monkeypatch.setattr(Engine, "threads", lambda self, device: 1)
    got = train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)[0]
    later = got.seconds - saved.seconds
    assert got.threads == pytest.approx((2 * saved.seconds + later) / got.seconds)
    assert 1 < got.threads < 2
    # its last checkpoint (step 200) as written before runs recorded threads
    meta = json.loads((ck / ckpt.META).read_text())
    del meta["thread_seconds"]
    (ck / ckpt.META).write_text(json.dumps(meta))
    assert train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)[0].threads is None


def test_checkpoints_are_written_only_as_often_as_asked(tmp_path):
    cfg = make_config(steps=300)
    train_many([cfg], progress=False, checkpoint=tmp_path / "ck", checkpoint_every=1e9)
    assert not (tmp_path / "ck").exists()  # never due; nothing is left behind


ARGS = ["--features", "40", "--sparsity", "0.9", "--train-size", "6", "--steps", "400"]
ARGS += ["--warmup", "20", "--test-size", "32", "--engine", "fast", "--no-progress"]


def test_cli_resumes_a_stopped_run_and_cleans_up(tmp_path, stop_after_checkpoint, capsys):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--out", str(tmp_path / "whole")]) == 0
    stop_after_checkpoint(200)
    with pytest.raises(Stop):
        main(["train", *ARGS, "--out", str(out), "--checkpoint-every", "0"])
    assert not out.exists() and (tmp_path / ".run.checkpoint").is_dir()
    capsys.readouterr()
    # another config cannot use it: one line, exit 2, nothing written
    assert main(["train", *ARGS, "--seed", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "belongs to another run" in err and not out.exists()
    stop_after_checkpoint(-1)
    assert main(["train", *ARGS, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "resuming from step 200" in err and "warning" not in err
    assert not (tmp_path / ".run.checkpoint").exists()
    a, b = load_run(tmp_path / "whole"), load_run(out)
    for k in ("W", "b", "snapshot_W", "loss_history"):
        assert np.array_equal(a.arrays[k], b.arrays[k]), k
    assert b.metrics["resumed_at_steps"] == [200]
    assert b.metrics["segment_commits"] == [b.config["git_commit"]] * 2
    assert b.metrics["segment_cpu_targets"] == [b.config["cpu_target"]] * 2
    assert b.metrics["segment_cpu_features"] == [b.config["cpu_features"]] * 2


def _resume_with_recorded(tmp_path, stop_after_checkpoint, capsys, key, value):
    """Stop a CLI run at its step-100 checkpoint, set the checkpoint's per-segment record
    ``key`` to ``value`` (as another host or source would have), and resume it; returns
    (the record as saved, stderr of the resume, the run)."""
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        main(["train", *ARGS, "--out", str(tmp_path / "run"), "--checkpoint-every", "0"])
    meta_path = tmp_path / ".run.checkpoint" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, key: value}))
    stop_after_checkpoint(-1)
    capsys.readouterr()
    assert main(["train", *ARGS, "--out", str(tmp_path / "run")]) == 0
    return meta[key], capsys.readouterr().err, load_run(tmp_path / "run")


def test_cli_warns_when_earlier_segments_ran_other_source(tmp_path, stop_after_checkpoint, capsys):
    _, err, run = _resume_with_recorded(
        tmp_path, stop_after_checkpoint, capsys, "commits", ["0123abc"]
    )
    assert "warning: earlier segments ran other source (0123abc;" in err
    assert run.metrics["segment_commits"][0] == "0123abc"


@pytest.mark.parametrize("recorded", [["no-such-cpu"], None])
def test_cli_warns_when_earlier_segments_ran_on_another_cpu_target(
    tmp_path, stop_after_checkpoint, capsys, recorded
):
    """A checkpoint from another CPU target warns (its float32 sums round otherwise); one
    saved before targets were recorded resumes without the warning, its target None."""
    saved, err, run = _resume_with_recorded(
        tmp_path, stop_after_checkpoint, capsys, "cpu_targets", recorded
    )
    assert saved == [cpu_target()]
    warned = "warning: earlier segments ran on another CPU target (no-such-cpu;" in err
    assert warned == (recorded is not None) and "other source" not in err
    targets = run.metrics["segment_cpu_targets"]
    assert targets == [recorded[0] if recorded else None, cpu_target()]


def test_cli_warns_when_earlier_segments_ran_with_other_cpu_features(
    tmp_path, stop_after_checkpoint, capsys
):
    """The same target name compiled with other features is other code: that warns too."""
    saved, err, run = _resume_with_recorded(
        tmp_path, stop_after_checkpoint, capsys, "cpu_features", ["+no-such-feature"]
    )
    assert saved == [cpu_features()]
    assert f"warning: earlier segments ran on the CPU target {cpu_target()} with other" in err
    assert "another CPU target" not in err
    assert run.metrics["segment_cpu_features"] == ["+no-such-feature", cpu_features()]


def test_cli_overwrite_discards_a_checkpoint_of_other_configs(tmp_path, stop_after_checkpoint):
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        main(["train", *ARGS, "--out", str(tmp_path / "run"), "--checkpoint-every", "0"])
    stop_after_checkpoint(-1)
    argv = ["train", *ARGS, "--seed", "3", "--out", str(tmp_path / "run"), "--overwrite"]
    assert main(argv) == 0
    assert "resumed_at_steps" not in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_sweep_group_resumes_mid_run(tmp_path, monkeypatch, stop_after_checkpoint):
    monkeypatch.setattr("supermem.sweeps.executors.CHECKPOINT_EVERY", 0.0)
    cfgs = tuple(make_config(steps=400, engine="fast", seed=s) for s in (0, 1))
    want = train_many(list(cfgs), progress=False)
    stop_after_checkpoint(300)
    with pytest.raises(Stop):
        run_group(Job(cfgs, str(tmp_path)))
    partial = tmp_path / PARTIAL / config_key(cfgs[0])
    assert partial.is_dir() and not (tmp_path / RUNS).exists()
    stop_after_checkpoint(-1)
    outcomes = run_group(Job(cfgs, str(tmp_path)))
    assert [o.status for o in outcomes] == ["ok", "ok"] and not partial.exists()
    for cfg, r in zip(cfgs, want):
        run = load_run(tmp_path / RUNS / config_key(cfg))
        assert np.array_equal(run.arrays["W"], r.params["W"])
        assert run.metrics["resumed_at_steps"] == [300]


def test_checkpoint_files_hold_no_pickle(tmp_path, stop_after_checkpoint):
    cfg = make_config(steps=300)
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=tmp_path / "ck", checkpoint_every=0)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["checkpoint.json", "checkpoint.safetensors"]
    state = ckpt.load(tmp_path / "ck", [cfg])
    assert state is not None and isinstance(state.history, torch.Tensor)
    assert state.history.shape == (100, 1)


def stop_between_renames(monkeypatch, ck):
    """Make the next ``save`` of ``ck`` stop after moving the old checkpoint aside."""
    real = ckpt.os.rename

    def rename(src, dst):
        if str(dst) == str(ck):
            raise Stop
        real(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename)


def test_a_stop_between_the_renames_keeps_the_previous_checkpoint(
    tmp_path, stop_after_checkpoint, monkeypatch
):
    cfg = make_config(steps=300)
    whole = train(cfg, progress=False)
    ck = tmp_path / "ck"
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    stop_after_checkpoint(-1)
    with monkeypatch.context() as m:
        stop_between_renames(m, ck)
        with pytest.raises(Stop):  # the save at step 200 dies between its renames
            train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    assert not ck.exists() and len(list(tmp_path.glob(".ck.old-*"))) == 1
    info = ckpt.info(ck, [cfg])  # the step-100 checkpoint is put back
    assert info is not None and info.step == 100 and ck.is_dir()
    resumed = train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)[0]
    assert_same(whole, resumed)
    assert resumed.resumed == [100]
    ckpt.remove(ck)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_start_puts_back_a_checkpoint_caught_between_renames(
    tmp_path, monkeypatch, stop_after_checkpoint
):
    from supermem.sweeps.index import remove_partial

    monkeypatch.setattr("supermem.sweeps.executors.CHECKPOINT_EVERY", 0.0)
    cfgs = (make_config(steps=300, engine="fast"),)
    stop_after_checkpoint(100)
    with pytest.raises(Stop):
        run_group(Job(cfgs, str(tmp_path)))
    partial = tmp_path / PARTIAL / config_key(cfgs[0])
    stop_after_checkpoint(-1)
    with monkeypatch.context() as m:
        stop_between_renames(m, partial)
        with pytest.raises(Stop):
            run_group(Job(cfgs, str(tmp_path)))
    assert not partial.exists()
    remove_partial(tmp_path)  # what a sweep does first
    assert ckpt.info(partial, list(cfgs)).step == 100
    assert [p.name for p in (tmp_path / PARTIAL).iterdir()] == [partial.name]


def test_plan_prices_only_the_steps_left_to_a_checkpoint_and_reads_only(
    tmp_path, monkeypatch, stop_after_checkpoint
):
    from supermem.sweeps.cost import (
        OVERHEAD_S,
        PARAM_S,
        STEP_S,
        _param_steps,
        _units,
        plan,
        run_seconds,
    )
    from supermem.sweeps.executors import threads_per_worker
    from supermem.sweeps.spec import SweepSpec

    monkeypatch.setattr("supermem.sweeps.executors.CHECKPOINT_EVERY", 0.0)
    fixed = {
        k: v for k, v in make_config(steps=400, engine="fast").to_dict().items() if k != "seed"
    }
    spec = SweepSpec("t", fixed, {"seed": [0, 1]})
    cfgs = tuple(spec.configs())
    fresh = plan(spec, tmp_path)
    stop_after_checkpoint(300)
    with pytest.raises(Stop):
        run_group(Job(cfgs, str(tmp_path)))
    before = sorted(p.name for p in (tmp_path / PARTIAL).iterdir())
    p = plan(spec, tmp_path)
    assert (p.todo, p.resuming) == (2, 2) and "2 resuming from checkpoints" in str(p)
    # priced on what the checkpoint shows (its seconds over the 300 steps' units, taken
    # from its threads to the plan's), for the 100 steps left; a run's fixed overhead again
    assert fresh.calibrated_from == 0 and (p.calibrated_from, p.in_flight_runs) == (2, 2)
    assert "2 of them part-trained, from their checkpoints" in str(p)
    meta = ckpt.peek_meta(tmp_path / PARTIAL / config_key(cfgs[0]))
    assert meta is not None and meta["step"] == 300
    used = meta["thread_seconds"] / meta["seconds"] / threads_per_worker(1)
    per_param = 2 * PARAM_S * _param_steps(cfgs[0]) * 300 / 400  # not scaled by threads
    c = (meta["seconds"] - 300 * STEP_S - per_param) * used / (2 * _units(cfgs[0]) * 300 / 400)
    # a kind's c per thread is floored at 1e-13 (a tiny run can train faster than its
    # fixed terms say), then taken to the plan's threads
    c = max(c * threads_per_worker(1), 1e-13) / threads_per_worker(1)
    assert p.seconds_per_unit == pytest.approx(c)
    # the group's per-step overhead once (one train_many call trains both)
    left = [run_seconds(cfg, c) - OVERHEAD_S for cfg in cfgs]
    left[1] -= cfgs[1].steps * STEP_S
    assert p.seconds - 2 * OVERHEAD_S == pytest.approx(sum(left) * (1 - 300 / 400))
    # a stop between the checkpoint's two renames: still found, and nothing is moved back
    partial = tmp_path / PARTIAL / config_key(cfgs[0])
    partial.rename(partial.with_name(f".{partial.name}.old-x"))
    moved = sorted(p.name for p in (tmp_path / PARTIAL).iterdir())
    caught = plan(spec, tmp_path)
    assert (caught.resuming, caught.in_flight_runs) == (2, 2)
    assert sorted(p.name for p in (tmp_path / PARTIAL).iterdir()) == moved != before
    # other groupings, whose sweep discards the checkpoint, count it for none: a spec of
    # one of the two configs, one with a third (its group grows), one config per group
    for s in ([0], [0, 1, 2]):
        assert plan(SweepSpec("t", fixed, {"seed": s}), tmp_path).resuming == 0
    assert plan(spec, tmp_path, batch=False).resuming == 0


def test_plan_does_not_count_a_checkpoint_its_finished_runs_left_behind(
    tmp_path, monkeypatch, stop_after_checkpoint
):
    """A stop between saving a group's runs and removing its checkpoint leaves both: the
    plan calibrates on the finished runs and not again on the checkpoint."""
    from supermem.sweeps.cost import plan
    from supermem.sweeps.spec import SweepSpec

    monkeypatch.setattr("supermem.sweeps.executors.CHECKPOINT_EVERY", 0.0)
    fixed = {
        k: v for k, v in make_config(steps=400, engine="fast").to_dict().items() if k != "seed"
    }
    cfgs = tuple(SweepSpec("t", fixed, {"seed": [0, 1]}).configs())
    stop_after_checkpoint(300)
    with pytest.raises(Stop):
        run_group(Job(cfgs, str(tmp_path)))
    before = plan(SweepSpec("t", fixed, {"seed": [0, 1, 2]}), tmp_path)
    assert (before.calibrated_from, before.in_flight_runs) == (2, 2)
    stop_after_checkpoint(-1)
    monkeypatch.setattr("supermem.sweeps.executors.checkpoint.remove", lambda path: None)
    run_group(Job(cfgs, str(tmp_path)))  # finishes, and its checkpoint stays
    assert (tmp_path / PARTIAL / config_key(cfgs[0])).is_dir()
    after = plan(SweepSpec("t", fixed, {"seed": [0, 1, 2]}), tmp_path)
    assert (after.done, after.calibrated_from, after.in_flight_runs) == (2, 2, 0)


def test_on_check_hears_the_step_training_starts_from_then_every_check(
    tmp_path, stop_after_checkpoint
):
    cfg = make_config(steps=350, warmup=30)
    seen: list[int] = []
    train_many([cfg], progress=False, on_check=seen.append)
    assert seen == [0, 100, 200, 300, 350]
    ck = tmp_path / "ck"
    stop_after_checkpoint(200)
    with pytest.raises(Stop):
        train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0)
    seen.clear()
    train_many([cfg], progress=False, checkpoint=ck, checkpoint_every=0, on_check=seen.append)
    assert seen == [200, 300, 350]
