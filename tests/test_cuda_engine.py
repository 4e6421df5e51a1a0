"""The cuda engine (fused Triton kernels) against the reference engine (the spec).

On a machine with a CUDA device and Triton the kernels run on the GPU. Without a GPU but
with Triton installed, they run under Triton's CPU interpreter (small shapes: it is
slow). Without Triton (CI) every test here is skipped.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

GPU = torch.cuda.is_available()
if not GPU and importlib.util.find_spec("triton") is not None:
    os.environ["TRITON_INTERPRET"] = "1"  # Triton reads it when first imported
pytest.importorskip("triton")

from conftest import make_config  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_engines import (  # noqa: E402
    CPU,
    MODEL,
    STATES,
    assert_trained_alike,
    make_data,
    make_params,
    terms,
)

from supermem.toy.data import SparseData  # noqa: E402
from supermem.toy.engines import ENGINES, get_engine  # noqa: E402
from supermem.toy.engines.cuda import CudaEngine, GpuData  # noqa: E402
from supermem.toy.train import train  # noqa: E402

DEV = torch.device("cuda" if GPU else "cpu")


@pytest.fixture(autouse=True, scope="module")
def numpy_safe_interpreter():
    """Triton 3.6's interpreter turns a loop bound into an int with int() of a 1-element
    array, which NumPy >= 2.4 refuses; take .item() instead (interpreter only)."""
    if GPU:
        yield
        return
    from triton.runtime import interpreter

    if not hasattr(interpreter, "_patch_lang_tensor"):
        pytest.skip("this Triton's interpreter is not the one the fix is written for")
    orig = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    interpreter._patch_lang_tensor = patched
    yield
    interpreter._patch_lang_tensor = orig


def assert_cuda_matches_reference(p, data: SparseData) -> None:
    """As test_engines.assert_matches_reference, with the cuda engine on DEV."""
    ref, eng = ENGINES["reference"](), CudaEngine()
    lr, gr = ref.loss_and_grads(MODEL, p, ref.prepare(data, CPU))
    pd = {k: v.to(DEV) for k, v in p.items()}
    prepared = eng.prepare(data, DEV)
    le, ge = eng.loss_and_grads(MODEL, pd, prepared)
    le = le.cpu()
    np.testing.assert_allclose(le.numpy(), lr.numpy(), rtol=2e-5, atol=1e-6 * terms(p, data))
    for k in ("W", "b"):
        scale = float(gr[k].abs().max()) + 1e-12
        g = ge[k].cpu()
        assert g.shape == gr[k].shape and g.dtype == torch.float32
        err = float((g - gr[k]).abs().max()) / scale
        assert err < 1e-4, f"cuda: grad {k} differs from reference by {err:.2e} of its scale"
    assert np.allclose(eng.loss(MODEL, pd, prepared).cpu().numpy(), le.numpy(), rtol=1e-6)


@settings(
    max_examples=40 if GPU else 6, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    n=st.integers(1, 700 if GPU else 60),
    m=st.integers(1, 4),
    T=st.integers(1, 90 if GPU else 40),
    S=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    inst=st.integers(1, 3),
    state=st.sampled_from(STATES),
    empty=st.sampled_from(["resample", "zero"]),
    seed=st.integers(0, 10_000),
)
def test_cuda_matches_reference(n, m, T, S, inst, state, empty, seed):
    assert_cuda_matches_reference(
        make_params(state, inst, m, n, seed), make_data(inst, T, n, S, seed, empty)
    )


@pytest.mark.parametrize("m", [1, 2, 3, 6])
def test_cuda_matches_reference_past_one_tile_block_and_segment(m):
    """More points than one tile, features than one block (64), several segments of the
    column pass, m = 6 (hidden dims padded to 8, smaller tiles), and (on a GPU) a larger
    set."""
    T, n = (5000, 1000) if GPU else (150, 200)
    data = make_data(2, T, n, 0.99, 3, "resample")
    states = ("init", "settled_like", "all_off", "all_on", "b_zero") if GPU else ("init", "all_on")
    for state in states:
        assert_cuda_matches_reference(make_params(state, 2, m, n, 1), data)


def test_long_segments_of_the_column_pass(monkeypatch):
    """One segment of many tiles per feature block (the running sums over tiles)."""
    from supermem.toy.engines import cuda

    monkeypatch.setattr(cuda, "SEGMENT_PROGRAMS", 1)
    data = make_data(2, 150, 100, 0.95, 5, "resample")
    for state in ("init", "all_on"):
        assert_cuda_matches_reference(make_params(state, 2, 2, 100, 6), data)


def test_non_finite_parameters_give_non_finite_loss():
    """So that training records the run as diverged (the fast engine's test, here)."""
    data = make_data(1, 10, 30, 0.8, 0, "resample")
    p = {k: v.to(DEV) for k, v in make_params("init", 1, 2, 30, 0).items()}
    p["W"][0, 0, 0] = float("nan")
    eng = CudaEngine()
    assert not torch.isfinite(eng.loss(MODEL, p, eng.prepare(data, DEV))).all()


def test_empty_rows_and_one_busy_row():
    """Rows with no nonzeros (ELL all padding) beside a row with every feature."""
    X = np.zeros((20, 30), np.float32)
    X[3] = np.linspace(0.1, 1.0, 30)
    X[7, [2, 5]] = 0.5
    import scipy.sparse as sp

    data = SparseData.from_scipy(sp.csr_matrix(X))
    d = GpuData.from_sparse(data, DEV)
    assert d.K == 30 and int(d.cptr[-1]) == 32
    for state in ("init", "all_on", "settled_like"):
        assert_cuda_matches_reference(make_params(state, 1, 2, 30, 4), data)


def test_deterministic():
    data = make_data(2, 80, 200, 0.95, 1, "resample")
    p = {k: v.to(DEV) for k, v in make_params("init", 2, 2, 200, 1).items()}
    eng = CudaEngine()
    prepared = eng.prepare(data, DEV)
    a = eng.loss_and_grads(MODEL, p, prepared)
    b = eng.loss_and_grads(MODEL, p, prepared)
    assert torch.equal(a[0], b[0])
    assert all(torch.equal(a[1][k], b[1][k]) for k in ("W", "b"))


def test_auto_takes_cuda_only_on_a_cuda_device():
    """On CPU ``auto`` never takes the cuda engine (its interpreter is a test tool)."""
    assert get_engine("auto", MODEL, CPU, shape=(1, 1000, 100, 2, 1.0)).name != "cuda"


@pytest.mark.parametrize("hidden", [1, 3])
def test_a_few_training_steps_with_cuda_equal_the_reference(hidden):
    """m = 1 and 3 run on W padded to 2 and 4 lanes: 20 steps still equal the
    reference's (under the interpreter where there is no GPU; the 300-step test below
    needs one)."""
    base = dict(
        features=40, sparsity=0.9, train_size=12, test_size=20, steps=20, warmup=2, lr=1e-2,
        hidden=hidden, weight_decay=1e-2, snapshots=0,
    )  # fmt: skip
    ref = train(make_config(**base, engine="reference", device="cpu"), progress=False)
    got = train(make_config(**base, engine="cuda", device=DEV.type), progress=False)
    assert got.engine == "cuda"
    assert_trained_alike(ref, got)


@pytest.mark.skipif(not GPU, reason="300 training steps take minutes under the interpreter")
@pytest.mark.parametrize("hidden", [1, 2, 3])
def test_training_with_cuda_equals_reference(hidden):
    base = dict(
        features=120, sparsity=0.95, train_size=30, steps=300, warmup=30, lr=1e-2,
        hidden=hidden, weight_decay=1e-2,
    )  # fmt: skip
    ref = train(make_config(**base, engine="reference", device="cpu"), progress=False)
    gpu = train(make_config(**base, engine="cuda", device="cuda"), progress=False)
    assert gpu.engine == "cuda"
    assert_trained_alike(ref, gpu)


def test_dense_passes_compile_for_hopper_without_spills():
    """At the default tiles, the dense passes compiled for sm_90 (ahead of time, no GPU
    needed) keep their accumulators in registers: no stack (spills), <= 128 registers.
    Compiled in a fresh process: this module runs the kernels under the interpreter."""
    code = (
        "import json\n"
        "from supermem.toy.engines._cuda_kernels import resources\n"
        "from supermem.toy.engines.cuda import blocks, hidden_lanes\n"
        "out = {}\n"
        "for m in (1, 2, 3, 4, 8):\n"
        "    for kind in ('rows', 'cols'):\n"
        "        bt, bn, w = blocks(kind, m)\n"
        "        c = {'M': hidden_lanes(m), 'MP': hidden_lanes(m), 'BT': bt, 'BN': bn}\n"
        "        out[f'{kind} m={m}'] = resources(kind, c, w)\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    for name, r in json.loads(run.stdout.splitlines()[-1]).items():
        assert r["stack"] == 0 and r["registers"] <= 128, (name, r)


@pytest.mark.skipif(not GPU, reason="auto picks cuda on a CUDA device only")
def test_auto_picks_cuda_on_a_gpu():
    """On a CUDA device with Triton, ``auto`` trains the tied mse model on the cuda engine
    (measured faster than the chunked code: docs/ENGINES.md); the variants keep theirs."""
    assert isinstance(get_engine("auto", MODEL, DEV), CudaEngine)
    from supermem.toy.model import get_model

    assert not isinstance(get_engine("auto", get_model("untied"), DEV), CudaEngine)


def test_self_check_passes_and_a_wrong_kernel_is_refused(monkeypatch):
    """The self-check finds the engine right (here: under the interpreter, or on the GPU),
    and a kernel that computes wrong numbers makes ``--engine cuda`` refuse with one line
    (a ConfigError) before anything is trained."""
    from supermem.config import ConfigError
    from supermem.toy.engines import cuda

    assert cuda.self_check(DEV, 2) < cuda.SELF_CHECK_TOL
    rows = cuda.rows_pass

    def wrong_rows(*a, **k):
        loss_t, gh = rows(*a, **k)
        return 2 * loss_t, gh

    def nan_rows(*a, **k):
        loss_t, gh = rows(*a, **k)
        return loss_t * float("nan"), gh

    shape = (1, 100, 50, 2, 1.0)
    cuda._self_check.cache_clear()
    try:
        for bad, err, why in (
            (wrong_rows, 0.5, "of their scale off"),
            (nan_rows, 1e300, "not finite"),
        ):
            monkeypatch.setattr(cuda, "rows_pass", bad)
            cuda._self_check.cache_clear()
            assert cuda.self_check(DEV, 2) > err
            with pytest.raises(ConfigError, match=f"failed its self-check.*{why}"):
                get_engine("cuda", MODEL, DEV, shape=shape)
    finally:
        cuda._self_check.cache_clear()


def test_kernels_that_do_not_run_are_refused(monkeypatch):
    """A self-check that cannot run (Triton failing to compile, say) refuses the engine
    with one line naming the error."""
    from supermem.config import ConfigError
    from supermem.toy import engines

    def broken(device, m):
        raise RuntimeError("PassManager::run failed\nmore lines")

    monkeypatch.setattr(engines, "self_check", broken)
    with pytest.raises(ConfigError, match="did not run: RuntimeError: PassManager::run failed;"):
        get_engine("cuda", MODEL, DEV, shape=(1, 100, 50, 2, 1.0))
