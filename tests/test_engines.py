"""Fast engines against the reference engine (the spec): loss and every gradient."""

import numba
import numpy as np
import pytest
import torch
from conftest import make_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supermem.toy.data import SparseData, sample
from supermem.toy.engines import ENGINES, FastEngine, get_engine
from supermem.toy.engines.fast import CpuData, cpu_loss_and_grads
from supermem.toy.model import get_model
from supermem.toy.train import train, train_many

CPU = torch.device("cpu")
MODEL = get_model("tied")
# How the parameters are set, beyond the init: the regimes the kernels branch on.
STATES = ("init", "all_off", "all_on", "zero_rows", "b_zero", "large", "settled_like")


def make_params(state: str, inst: int, m: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """W (inst, m, n), b (inst, n) in one of STATES."""
    g = torch.Generator().manual_seed(seed)
    p = MODEL.init(
        m, n, "xavier_normal", [torch.Generator().manual_seed(seed + i) for i in range(inst)]
    )
    W, b = p["W"], 0.1 * torch.randn(inst, n, generator=g)
    if state == "all_off":
        b = b - 10.0  # every p_tj < 0: only the sparse terms remain
    elif state == "all_on":
        b = b + 10.0  # every p_tj > 0
    elif state == "zero_rows":
        W[:, :, : n // 2] = 0.0  # features with W_j = 0 (and rows of W zero when m > 1)
        W[:, 0] = 0.0
    elif state == "b_zero":
        b = torch.zeros(inst, n)
    elif state == "large":
        W, b = 30.0 * W * (n**0.5), 5.0 * b
    elif state == "settled_like":
        W, b = 3.0 * W * (n**0.5) / (1 + torch.rand(inst, 1, n, generator=g)), b.abs() * -1 - 0.05
    return {"W": W.contiguous(), "b": b.contiguous()}


def make_data(inst: int, T: int, n: int, S: float, seed: int, empty: str) -> SparseData:
    return SparseData.stack([sample(T, n, S, seed + i, empty=empty) for i in range(inst)])


def terms(p, data: SparseData, loss: str = "mse", model=MODEL) -> float:
    """The largest over instances of (1/T) sum over pairs of relu(p)^2 + x^2 (l1:
    relu(p) + |x|): the size of the terms the engines' loss sums."""
    X = torch.zeros(data.inst * data.T, data.n)
    rows = np.repeat(np.arange(data.inst * data.T), np.diff(data.indptr))
    X[rows, data.indices] = torch.as_tensor(data.values, dtype=torch.float32)
    X = X.reshape(data.inst, data.T, data.n)
    pre = model.forward(p, X)  # relu(p)
    t = pre + X.abs() if loss == "l1" else pre**2 + X**2
    return float(t.sum((1, 2)).max()) / data.T


def kink_slopes(p, data: SparseData) -> list[dict[str, torch.Tensor]]:
    """l1 on the tied model: for each pair (i, t, j) whose pre-activation p_tj = W_j.h_t + b_j
    sits within float32 rounding of a kink of |x - relu(p)| (p = x, or p = 0), the
    gradient of p_tj / T (float64). The slope there is 1 or -1 (or 0) by a rounding: two
    correct engines may take different sides, and then the exact p_tj lies within the
    larger of their two rounding bounds of the kink. That bound is the float32 one for the
    dot products that make p_tj, (n + m + 2) 2^-24 sum |terms| (the reference's; fast
    sums h in float64); a p_tj computed without rounding (W = 0: p_tj = b_j) has none."""
    X = data.dense(CPU).double()
    W, b = p["W"].double().requires_grad_(True), p["b"].double().requires_grad_(True)
    pre = torch.einsum("imn,itm->itn", W, torch.einsum("imn,itn->itm", W, X)) + b[:, None]
    with torch.no_grad():
        aW = W.abs()
        terms = torch.einsum("imn,itm->itn", aW, torch.einsum("imn,itn->itm", aW, X.abs()))
        band = (data.n + W.shape[1] + 2) * 2.0**-24 * (terms + b.abs()[:, None]) * (terms > 0)
        near = ((pre - X).abs() < band) | (pre.abs() < band)
    out = []
    for i, t, j in near.nonzero().tolist():
        gW, gb = torch.autograd.grad(pre[i, t, j] / data.T, (W, b), retain_graph=True)
        out.append({"W": gW, "b": gb})
    return out


def grad_error(ge, gr, slopes: list[dict[str, torch.Tensor]]) -> float:
    """Largest over parameters of max |ge - gr - sum_p c_p slopes_p| / max |gr|, with c_p
    in {-2, -1, 0, 1, 2} (a kink pair's slope taken on the other side, or as 0) fitted by
    least squares and rounded: the engines agree but for the side each took at pairs within
    rounding of a kink. A wrong gradient is not such a sum, and fails; so does a fit whose
    coefficients are not near whole numbers (a difference the kinks explain only in part)."""
    keys = sorted(gr)
    scale = {k: float(gr[k].abs().max()) + 1e-12 for k in keys}
    diff = torch.cat([(ge[k] - gr[k]).double().flatten() / scale[k] for k in keys])
    if slopes:
        A = torch.stack([torch.cat([s[k].flatten() / scale[k] for k in keys]) for s in slopes], 1)
        fit = torch.linalg.lstsq(A, diff[:, None]).solution[:, 0]
        c = fit.round().clamp(-2, 2)
        if float((fit - c).abs().max()) > 0.25:
            return float((fit - c).abs().max())
        diff = diff - A @ c
    return float(diff.abs().max())


def assert_matches_reference(
    name: str, p, data: SparseData, loss: str = "mse", model=MODEL
) -> None:
    """Loss and gradients of engine ``name`` equal the reference's to float32 tolerance,
    measured relative to the scale of each tensor (a gradient near zero is compared
    against the largest entry, not itself). ``loss``: TrainConfig.loss; ``model``: a
    model variant (``toy.model``), whose every parameter's gradient is compared."""
    ref = ENGINES["reference"](objective=loss)
    eng = ENGINES[name]() if loss == "mse" else ENGINES[name](objective=loss)
    lr, gr = ref.loss_and_grads(model, p, ref.prepare(data, CPU))
    le, ge = eng.loss_and_grads(model, p, eng.prepare(data, CPU))
    # the engines sum relu(p)^2 - 2 relu(p) x + x^2 (l1: its terms) over the pairs: their
    # float32 rounding is relative to the terms' size, which a fitted point's tiny loss
    # (the terms cancelling) does not show, so atol is taken on the terms
    np.testing.assert_allclose(
        le.numpy(), lr.numpy(), rtol=2e-5, atol=1e-6 * terms(p, data, loss, model)
    )
    assert set(ge) == set(gr) == set(model.params)
    for k in gr:
        assert ge[k].shape == gr[k].shape and ge[k].dtype == torch.float32
    assert loss == "mse" or isinstance(model, type(MODEL)), "kink_slopes: the tied model's p"
    err = grad_error(ge, gr, kink_slopes(p, data) if loss == "l1" else [])
    assert err < 1e-4, f"{name}: grads differ from reference by {err:.2e} of their scale"
    assert np.allclose(eng.loss(model, p, eng.prepare(data, CPU)).numpy(), le.numpy(), rtol=1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 700),
    m=st.integers(1, 4),
    T=st.integers(1, 70),
    S=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    inst=st.integers(1, 3),
    state=st.sampled_from(STATES),
    empty=st.sampled_from(["resample", "zero"]),
    seed=st.integers(0, 10_000),
    loss=st.sampled_from(["mse", "l1"]),
)
# a point whose p sits 2e-6 from x, within float32 rounding (the float32 reference's own p
# is 3e-6 off the exact one): l1's sign(p - x) is a rounding's choice there (kink_slopes)
@example(
    n=568, m=2, T=24, S=0.0, inst=2, state="settled_like", empty="resample", seed=4011, loss="l1"
)
def test_fast_and_chunked_match_reference(n, m, T, S, inst, state, empty, seed, loss):
    """mse on both engines; l1 (TrainConfig.loss) on fast, the one that computes it."""
    data = make_data(inst, T, n, S, seed, empty)
    p = make_params(state, inst, m, n, seed)
    for name in ("fast", "chunked") if loss == "mse" else ("fast",):
        assert_matches_reference(name, p, data, loss)


@pytest.mark.parametrize("loss", ["mse", "l1"])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_fast_matches_reference_with_many_blocks_and_tiles(m, loss):
    """Sizes past one feature block (256 features) and one point tile (32 points)."""
    data = make_data(2, 150, 900, 0.99, 3, "resample")
    for state in ("init", "settled_like", "all_off", "all_on"):
        assert_matches_reference("fast", make_params(state, 2, m, 900, 1), data, loss)


def skipped_fraction(W, b, d, fb: int, tp: int) -> float:
    """Share of (feature block, point tile) pairs the skip bound drops, as the engine sorts
    and tiles them (W (inst, m, n), b (inst, n); the engine's own building blocks)."""
    from supermem.toy.engines import _numba_kernels as K
    from supermem.toy.engines.fast import angle_order

    inst, m, n = W.shape
    h = np.empty((inst * d.T, m), np.float32)
    K.hidden(d.indptr, d.indices, d.values, W, d.T, h)
    fperm, pperm = angle_order(W.transpose(0, 2, 1)), angle_order(h.reshape(inst, d.T, m))
    Ws = np.ascontiguousarray(np.take_along_axis(W, fperm[:, None, :], axis=2))
    bs = np.ascontiguousarray(np.take_along_axis(b, fperm, axis=1))
    hs = np.ascontiguousarray(np.take_along_axis(h.reshape(inst, d.T, m), pperm[..., None], 1))
    ntiles = -(-d.T // tp)
    centre, radius = np.zeros((inst, ntiles, m)), np.zeros((inst, ntiles))
    K.tile_balls(hs, tp, centre, radius)
    Wnorm = np.sqrt((Ws * Ws).sum(1))
    off = [
        K._block_is_off(Ws, bs, Wnorm, i, j0, min(n, j0 + fb), centre[i, P], radius[i, P])
        for i in range(inst)
        for j0 in range(0, n, fb)
        for P in range(ntiles)
    ]
    return float(np.mean(off))


@pytest.mark.parametrize("l1", [False, True])
@pytest.mark.parametrize("m, state, lo, hi", [(2, "settled_like", 0.05, 0.5), (3, "all_off", 1, 1)])
def test_skipping_is_exact(m, state, lo, hi, l1):
    """The skip bound only drops pairs whose every p_tj <= 0: same result as no skipping,
    in states where it really drops some pairs (settled-like) or all (all off)."""
    d = CpuData.from_sparse(make_data(1, 200, 1000, 0.99, 0, "resample"))
    p = make_params(state, 1, m, 1000, 0)
    W, b = p["W"].numpy(), p["b"].numpy()
    assert lo <= skipped_fraction(W, b, d, fb=64, tp=8) <= hi
    on = cpu_loss_and_grads(W, b, d, fb=64, tp=8, skip=True, l1=l1)
    off = cpu_loss_and_grads(W, b, d, fb=64, tp=8, skip=False, l1=l1)
    for a, z in zip(on, off):
        np.testing.assert_allclose(a, z, rtol=1e-5, atol=1e-7 * float(np.abs(z).max()))


@pytest.mark.parametrize("m", [1, 4])
def test_unrolled_dense_pass_refuses_other_hidden_sizes(m):
    """dense_pass_unrolled has kernels for m in UNROLLED_M only; another m is an error,
    not a read past the hidden vectors."""
    from supermem.toy.engines import _numba_kernels as K

    assert m not in K.UNROLLED_M
    n, T, z = 8, 4, np.zeros
    with pytest.raises(ValueError, match="m must be 2 or 3"):
        K.dense_pass_unrolled(
            z((1, m, n), np.float32), z((1, n), np.float32), z((1, T, m), np.float32),
            np.float32(0.5), n, T, False, z((1, 1, m)), z((1, 1)), z((1, n), np.float32),
            z((1, m, n), np.float32), z((1, n), np.float32), z((1, 1, T, m), np.float32),
            z((1, 1, T), np.float32),
        )  # fmt: skip


def test_empty_data_rows_and_empty_columns():
    X = np.zeros((6, 40), np.float32)
    X[1, 3], X[4, [0, 39]] = 1.0, [0.6, 0.8]  # most rows and columns empty
    import scipy.sparse as sp

    data = SparseData.from_scipy(sp.csr_matrix(X), inst=2)
    for state in ("init", "all_on", "b_zero"):
        for name in ("fast", "chunked"):
            assert_matches_reference(name, make_params(state, 2, 2, 40, 5), data)


def test_batched_equals_per_instance():
    data = make_data(3, 40, 300, 0.98, 7, "resample")
    p = make_params("init", 3, 2, 300, 7)
    for name in ("fast", "chunked"):
        eng = ENGINES[name]()
        lb, gb = eng.loss_and_grads(MODEL, p, eng.prepare(data, CPU))
        for i in range(3):
            pi = {k: v[i : i + 1] for k, v in p.items()}
            li, gi = eng.loss_and_grads(MODEL, pi, eng.prepare(data.instance(i), CPU))
            np.testing.assert_allclose(lb[i : i + 1].numpy(), li.numpy(), rtol=1e-6)
            for k in ("W", "b"):
                np.testing.assert_allclose(
                    gb[k][i : i + 1].numpy(), gi[k].numpy(), rtol=1e-5, atol=1e-9
                )


@pytest.mark.parametrize("m, l1", [(2, False), (3, False), (2, True), (3, True)])
def test_gradients_bit_identical_across_thread_counts(m, l1):
    d = CpuData.from_sparse(make_data(2, 300, 2000, 0.995, 1, "resample"))
    p = make_params("init", 2, m, 2000, 1)
    W, b = p["W"].numpy(), p["b"].numpy()
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cpu_loss_and_grads(W, b, d, fb=256, tp=32, skip=True, l1=l1)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = cpu_loss_and_grads(W, b, d, fb=256, tp=32, skip=True, l1=l1)
    finally:
        numba.set_num_threads(old)
    for a, z in zip(one, two):
        assert np.array_equal(a, z)


def assert_trained_alike(ref, other) -> None:
    """Two training results (InstanceResult) agree: weights to 1e-4 of each tensor's
    scale, train and test losses to 1e-4 relative."""
    assert set(other.params) == set(ref.params)
    for k in ref.params:
        scale = np.abs(ref.params[k]).max()
        np.testing.assert_allclose(other.params[k], ref.params[k], rtol=0, atol=1e-4 * scale)
    assert other.train_loss == pytest.approx(ref.train_loss, rel=1e-4)
    assert other.test_loss == pytest.approx(ref.test_loss, rel=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(hidden=2, weight_decay=1e-2),
        dict(hidden=3, weight_decay=0.0, restarts=2),
        dict(hidden=2, loss="l1"),
        dict(hidden=3, loss="l1"),
        dict(hidden=2, point_norm="raw"),  # points not rescaled to unit norm
    ],
)
def test_training_with_fast_equals_reference(overrides):
    base = dict(features=120, sparsity=0.95, train_size=30, steps=300, warmup=30, lr=1e-2)
    runs = {
        e: train(make_config(**base, **overrides, engine=e), progress=False)
        for e in ("reference", "fast")
    }
    ref, fast = runs["reference"], runs["fast"]
    assert_trained_alike(ref, fast)


def test_training_batched_fast_equals_single_runs_bit_for_bit():
    # nothing couples instances and the kernels sum each instance's terms in one fixed
    # order, so a run gives the same bits in a batch as alone (docs/CORE.md, "Instances")
    cfgs = [make_config(engine="fast", seed=s, data_seed=d) for s, d in [(0, 0), (1, 2), (2, 3)]]
    for cfg, r in zip(cfgs, train_many(cfgs, progress=False)):
        single = train(cfg, progress=False)
        for k in ("W", "b"):
            np.testing.assert_array_equal(r.params[k], single.params[k])
        assert r.train_loss == single.train_loss and r.test_loss == single.test_loss


def test_non_finite_parameters_give_non_finite_loss():
    data = make_data(1, 10, 30, 0.8, 0, "resample")
    p = make_params("init", 1, 2, 30, 0)
    p["W"][0, 0, 0] = float("nan")
    eng = FastEngine()
    assert not torch.isfinite(eng.loss(MODEL, p, eng.prepare(data, CPU))).all()


def test_auto_picks_fast_and_fast_registry():
    assert get_engine("auto", MODEL, CPU).name == "fast"
    assert {"reference", "fast", "chunked"} <= set(ENGINES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_on_cuda_matches_reference():
    cuda = torch.device("cuda")
    data = make_data(2, 50, 400, 0.98, 0, "resample")
    p = make_params("settled_like", 2, 2, 400, 0)
    ref, eng = ENGINES["reference"](), FastEngine()
    lr, gr = ref.loss_and_grads(MODEL, p, ref.prepare(data, CPU))
    pc = {k: v.to(cuda) for k, v in p.items()}
    le, ge = eng.loss_and_grads(MODEL, pc, eng.prepare(data, cuda))
    assert ge["W"].device.type == "cuda"
    np.testing.assert_allclose(le.cpu().numpy(), lr.numpy(), rtol=1e-4)
    for k in ("W", "b"):
        assert float((ge[k].cpu() - gr[k]).abs().max()) < 1e-4 * float(gr[k].abs().max())


@pytest.mark.parametrize("L", [0, 1, 7, 8, 9, 208, 256])
def test_dot8_sums_in_its_documented_order(L):
    """The dense pass's sums over a block's features have one order, whatever the heap
    (a reassociated loop once changed with buffer addresses: thread-count identity)."""
    from supermem.toy.engines._numba_kernels import _dot8

    rng = np.random.default_rng(L)
    a, b = rng.standard_normal((2, L)).astype(np.float32)
    f = np.float32
    lanes = [f(0.0)] * 8
    for j in range(L - L % 8):
        lanes[j % 8] = f(lanes[j % 8] + f(a[j] * b[j]))
    s = f(
        f(f(lanes[0] + lanes[1]) + f(lanes[2] + lanes[3]))
        + f(f(lanes[4] + lanes[5]) + f(lanes[6] + lanes[7]))
    )
    for j in range(L - L % 8, L):
        s = f(s + f(a[j] * b[j]))
    assert _dot8(a, b) == s


def test_engine_cuda_without_a_gpu_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    from supermem.cli import main

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # tests/test_cuda_engine.py sets it
    out = tmp_path / "run"
    argv = ["train", "--engine", "cuda", "--device", "cpu", "--train-size", "10", "--out"]
    assert main([*argv, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "engine cuda needs --device cuda" in err
    assert not out.exists()


_GRADS_SCRIPT = """
import hashlib, torch
from supermem.toy.data import SparseData, sample
from supermem.toy.engines import get_engine
from supermem.toy.model import get_model
model, cpu = get_model("tied"), torch.device("cpu")
for m in (2, 3):
    data = SparseData.stack([sample(300, 600, 0.98, 5)])
    g = torch.Generator().manual_seed(m)
    W, b = torch.randn(1, m, 600, generator=g) * 0.5, torch.randn(1, 600, generator=g) * 0.1
    eng = get_engine("fast", model, cpu)
    loss, grads = eng.loss_and_grads(model, {"W": W, "b": b}, eng.prepare(data, cpu))
    h = hashlib.sha256(loss.numpy().tobytes())
    for k in sorted(grads):
        h.update(grads[k].numpy().tobytes())
    print(m, h.hexdigest())
"""


def test_fast_gives_the_same_bits_compiled_fresh_or_loaded_from_numbas_cache(tmp_path):
    # two processes on one empty cache directory: the first compiles (and writes the
    # cache), the second loads what was cached; the unrolled dense pass once differed
    import os
    import subprocess
    import sys

    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _GRADS_SCRIPT]
    first, second = (subprocess.run(cmd, env=env, capture_output=True, text=True) for _ in "ab")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert any(tmp_path.rglob("*.nbi")), "the first process wrote no cache"
    assert first.stdout == second.stdout and first.stdout.count("\n") == 2
