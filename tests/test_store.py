import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_config

from supermem import load_run, metrics, save_run
from supermem.sweeps.store import RunExistsError
from supermem.toy import losses
from supermem.toy.train import train


@pytest.fixture(scope="module")
def result():
    return train(make_config(steps=60), progress=False)


def test_roundtrip_arrays_config_metrics(result, tmp_path):
    run = load_run(save_run(result, tmp_path / "r"))
    np.testing.assert_array_equal(run.arrays["W"], result.params["W"])
    np.testing.assert_array_equal(run.X_train.toarray(), result.X_train.to_scipy().toarray())
    assert run.train_config == result.config
    for key in ("train_loss", "test_loss", "W_norm", "b_norm", "status"):
        assert key in run.metrics
    for key in ("supermem_version", "git_commit", "init_seeds", "kept_init_seed"):
        assert key in run.config
    # the CPU: the numba engines' float32 sums round as its LLVM target's vector code does
    for key in ("numba_version", "cpu", "cpu_target", "cpu_features", "torch_cpu_capability"):
        assert key in run.config
    assert isinstance(run.config["cpu_target"], str) and run.config["cpu_target"]
    assert isinstance(run.config["cpu_features"], str)
    a = run.arrays
    assert a["W"].shape == (2, 50) and a["b"].shape == (50,) and a["H_train"].shape == (8, 2)
    assert a["feature_dims"].shape == (50,) and a["data_dims"].shape == (8,)


def test_saved_metrics_equal_recomputation_from_saved_arrays(result, tmp_path):
    run = load_run(save_run(result, tmp_path / "r"))
    W, b, X = run.arrays["W"], run.arrays["b"], run.X_train
    H = X @ W.T.astype(np.float64)
    np.testing.assert_allclose(run.arrays["H_train"], H, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run.arrays["feature_dims"], metrics.feature_dims(W), rtol=1e-6)
    np.testing.assert_allclose(run.arrays["data_dims"], metrics.data_dims(H), rtol=1e-4)
    np.testing.assert_allclose(run.arrays["max_data_dims"], metrics.max_data_dims(H), rtol=1e-4)
    assert run.metrics["train_loss"] == pytest.approx(losses.reconstruction_loss(W, b, X), rel=1e-4)
    assert run.metrics["W_norm"] == pytest.approx(np.linalg.norm(W), rel=1e-6)
    assert run.metrics["b_norm"] == pytest.approx(np.linalg.norm(b), rel=1e-6)


def test_existing_run_is_never_overwritten_silently(result, tmp_path):
    out = save_run(result, tmp_path / "r")
    before = (out / "metrics.json").read_text()
    with pytest.raises(RunExistsError):
        save_run(result, out)
    assert (out / "metrics.json").read_text() == before
    save_run(result, out, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_no_pickle_in_saved_files(result, tmp_path):
    out = save_run(result, tmp_path / "r")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["arrays.safetensors", "config.json", "metrics.json", "train_data.safetensors"]
    json.loads((out / "config.json").read_text())


def test_diverged_run_is_recorded_without_arrays(tmp_path):
    r = train(make_config(lr=1e30, steps=200, warmup=0), progress=False)
    run = load_run(save_run(r, tmp_path / "d"))
    assert run.status == "diverged" and run.metrics["diverged_step"] is not None
    assert run.arrays == {} and "train_loss" not in run.metrics


def test_cpu_target_is_numbas_compile_target(tmp_path):
    """NUMBA_CPU_NAME, set to a run's recorded cpu_target, is what the new runs record;
    for generic Numba compiles with no host features, and the record says so."""
    code = (
        "from supermem.provenance import provenance; p = provenance(); "
        "print(p['cpu_target']); print(repr(p['cpu_features']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_FEATURES"}
    env["NUMBA_CPU_NAME"] = "generic"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["generic", "''"]


def test_cpu_target_and_features_are_what_numba_compiles_for():
    """The recorded target and features are the ones Numba's JIT builds its kernels with."""
    from numba.core.registry import cpu_target as numba_cpu

    from supermem.provenance import cpu_features, cpu_target

    codegen = numba_cpu.target_context.codegen()
    assert cpu_target() == codegen._get_host_cpu_name()
    assert cpu_features() == codegen._tm_features


def test_cpu_features_follow_numba_cpu_features():
    """NUMBA_CPU_FEATURES, set to a run's recorded cpu_features, is what new runs record."""
    code = "from supermem.provenance import provenance; print(provenance()['cpu_features'])"
    env = {**os.environ, "NUMBA_CPU_FEATURES": "+64bit,+sse2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "+64bit,+sse2"
