"""Model variants of issue 11 (untied decoder, ReLU between the layers, L1 loss): their
gradients, their relation to the tied model, saving and loading, CLI errors, run keys,
and the variants recipe end to end at a tiny scale."""

import numpy as np
import pytest
import torch
from conftest import make_config

from supermem.cli import main
from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.checks import DamagedRunError, check_run
from supermem.sweeps.index import KEY_OMIT_AT_DEFAULT, config_key
from supermem.sweeps.store import load_run, save_run
from supermem.toy import losses
from supermem.toy.data import SparseData
from supermem.toy.engines import ENGINES, get_engine
from supermem.toy.engines.reference import ReferenceEngine, reference_loss
from supermem.toy.engines.variants import FastVariantsEngine
from supermem.toy.model import MODELS, get_model
from supermem.toy.train import train

# config_key of TrainConfig() before the loss field existed (tests/test_variants.py)
DEFAULT_KEY = "763ed53061eae5ce"
NEW_MODELS = ("untied", "relu_hidden")
CPU = torch.device("cpu")


def params(name: str, m: int, n: int, inst: int = 2, dtype=torch.float64) -> dict:
    p = get_model(name).init(
        m, n, "xavier_normal", [torch.Generator().manual_seed(s) for s in range(inst)]
    )
    p["b"] = p["b"] + 0.1 * torch.randn(p["b"].shape, generator=torch.Generator().manual_seed(9))
    return {k: v.to(dtype) for k, v in p.items()}


def sparse_x(inst: int, T: int, n: int, seed: int = 0) -> SparseData:
    c = make_config(features=n, train_size=T, sparsity=0.8, data_seed=seed)
    from supermem.toy.data import train_test

    return SparseData.stack([train_test(c.replace(data_seed=seed + i))[0] for i in range(inst)])


# -- the models ---------------------------------------------------------------------------
def test_registry__has_the_variants_and_config_accepts_them():
    assert set(NEW_MODELS) < set(MODELS)
    for name in NEW_MODELS:
        assert make_config(model=name).model == name
    with pytest.raises(ConfigError, match="model must be one of"):
        make_config(model="nope")


def test_untied__init_draws_W_as_tied_then_W_dec_from_the_same_stream():
    tied, untied = params("tied", 2, 30), params("untied", 2, 30)
    assert torch.equal(tied["W"], untied["W"])
    assert not torch.equal(untied["W"], untied["W_dec"])
    assert untied["W_dec"].shape == untied["W"].shape


def test_untied__with_W_dec_equal_to_W_is_the_tied_model():
    p = params("untied", 3, 20)
    p["W_dec"] = p["W"].clone()
    x = sparse_x(2, 7, 20).dense(CPU).double()
    tied = {"W": p["W"], "b": p["b"]}
    assert torch.allclose(get_model("untied").forward(p, x), get_model("tied").forward(tied, x))


def test_relu_hidden__equals_tied_where_W_x_is_nonnegative():
    p = params("tied", 2, 20)
    p["W"] = p["W"].abs()  # x >= 0, so W x >= 0 and the hidden ReLU is the identity
    x = sparse_x(2, 7, 20).dense(CPU).double()
    a, b = get_model("relu_hidden"), get_model("tied")
    assert torch.equal(a.hidden(p, x), b.hidden(p, x))
    assert torch.equal(a.forward(p, x), b.forward(p, x))
    p["W"] = -p["W"]  # and gives h = 0 where W x <= 0
    assert (a.hidden(p, x) == 0).all()


@pytest.mark.parametrize("loss", ["mse", "l1"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_gradients__match_finite_differences(name, loss):
    p = params(name, 2, 12)
    x = sparse_x(2, 5, 12).dense(CPU).double()
    keys = list(p)

    def f(*vals):
        return reference_loss(get_model(name), dict(zip(keys, vals)), x, loss)

    leaves = [p[k].clone().requires_grad_(True) for k in keys]
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_variants_engine__equals_the_reference(name, m):
    p = params(name, m, 300, dtype=torch.float32)
    X = sparse_x(2, 40, 300)
    ref, fast = ReferenceEngine(), FastVariantsEngine()
    model = get_model(name)
    lr, gr = ref.loss_and_grads(model, p, ref.prepare(X, CPU))
    lf, gf = fast.loss_and_grads(model, p, fast.prepare(X, CPU))
    assert torch.allclose(lr, lf, rtol=1e-5, atol=1e-6)
    assert set(gf) == set(gr)
    for k in gr:
        assert torch.allclose(gr[k], gf[k], rtol=1e-4, atol=1e-6 * gr[k].abs().max()), k


# -- engines and losses -------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW_MODELS)
def test_auto__picks_a_fast_engine_for_the_variants_on_cpu_and_the_reference_on_cuda(name):
    model = get_model(name)
    assert not ENGINES["fast"]().supports(model, CPU)
    assert get_engine("auto", model, CPU, shape=(1, 100, 1000, 2, 10.0)).name == "fast_variants"
    for engine in ("fast_variants", "tree"):  # CPU kernels only
        assert not ENGINES[engine]().supports(model, torch.device("cuda"))
    with pytest.raises(ConfigError, match="does not support model"):
        get_engine("fast", model, CPU)


def test_loss_l1__auto_takes_fast_for_tied_reference_for_the_others_and_some_refuse():
    tied = get_model("tied")
    engine = get_engine("auto", tied, CPU, shape=(1, 100, 1000, 2, 10.0), loss="l1")
    assert engine.name == "fast" and engine.objective == "l1"
    for name in NEW_MODELS:
        engine = get_engine("auto", get_model(name), CPU, loss="l1")
        assert isinstance(engine, ReferenceEngine) and engine.objective == "l1"
    for name in ("tree", "fast_variants"):
        with pytest.raises(ConfigError, match="loss l1"):
            make_config(engine=name, loss="l1")
    with pytest.raises(ConfigError, match="loss must be one of"):
        make_config(loss="huber")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exact_loss__l1_and_mse_are_the_direct_float64_sums(name):
    p = params(name, 2, 25)
    X = sparse_x(2, 9, 25)
    x = X.dense(CPU).double()
    for loss in ("mse", "l1"):
        want = reference_loss(get_model(name), p, x, loss).numpy()
        got = losses.exact_loss(get_model(name), p, X, loss=loss)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_training__l1_records_its_loss_and_trains_on_fast():
    r = train(make_config(loss="l1", engine="auto", steps=30), progress=False)
    assert r.engine == "fast" and r.config.loss == "l1"
    assert r.train_loss < r.loss_history[0]  # the float32 l1 loss it trained on fell


# -- save, load, keys ---------------------------------------------------------------------
@pytest.mark.parametrize("name, loss", [("untied", "mse"), ("relu_hidden", "mse"), ("tied", "l1")])
def test_save_load__round_trips_each_variant(tmp_path, name, loss):
    r = train(make_config(model=name, loss=loss, steps=30), progress=False)
    run = load_run(save_run(r, tmp_path / "run"))
    assert run.train_config == r.config
    for k, v in r.params.items():
        np.testing.assert_array_equal(run.arrays[k], v)
    assert ("W_dec" in run.arrays) == (name == "untied")
    if name == "untied":
        assert run.arrays["snapshot_W_dec"].shape == run.arrays["snapshot_W"].shape
        assert run.metrics["W_dec_norm"] == pytest.approx(np.linalg.norm(r.params["W_dec"]))
    H = run.arrays["H_train"]
    if name == "relu_hidden":  # the hidden vectors the decoder sees: post-ReLU
        assert (H >= 0).all()
    want = run.X_train @ run.arrays["W"].T
    np.testing.assert_allclose(H, np.maximum(want, 0) if name == "relu_hidden" else want, 1e-5)


def test_checks__a_W_dec_of_the_wrong_shape_is_damage(tmp_path):
    from safetensors.numpy import load_file, save_file

    r = train(make_config(model="untied", steps=10), progress=False)
    path = save_run(r, tmp_path / "run")
    arrays = load_file(str(path / "arrays.safetensors"))
    arrays["W_dec"] = arrays["W_dec"][:, :-1].copy()
    save_file(arrays, str(path / "arrays.safetensors"))
    with pytest.raises(DamagedRunError, match="W_dec"):
        check_run(path)


def test_init_from__carries_the_untied_decoder(tmp_path):
    a = save_run(train(make_config(model="untied", steps=20), progress=False), tmp_path / "a")
    cfg = make_config(model="untied", steps=2, warmup=0, init_from=str(a))
    from supermem.api import train as api_train

    b = api_train(cfg, progress=False)
    assert b.snapshots["W_dec"].shape[0] >= 1
    np.testing.assert_array_equal(b.snapshots["W_dec"][0], load_run(a).arrays["W_dec"])


def test_config_key__default_unchanged_and_new_values_name_other_runs():
    assert "loss" in KEY_OMIT_AT_DEFAULT
    assert config_key(TrainConfig()) == DEFAULT_KEY
    assert config_key(TrainConfig(loss="mse")) == DEFAULT_KEY
    keys = {config_key(TrainConfig(loss="l1"))} | {
        config_key(TrainConfig(model=m)) for m in NEW_MODELS
    }
    assert len(keys) == 3 and DEFAULT_KEY not in keys
    c = TrainConfig(model="untied", loss="l1")
    assert TrainConfig.from_dict(c.to_dict()) == c


# -- the CLI ------------------------------------------------------------------------------
SMALL = ["train", "--features", "20", "--sparsity", "0.9", "--train-size", "4", "--steps", "5"]


@pytest.mark.parametrize(
    "flags, expect",
    [
        (["--model", "nope"], "model must be one of"),
        (["--loss", "nope"], "--loss"),
        (["--engine", "fast", "--model", "untied"], "engine fast does not support model untied"),
        (["--engine", "chunked", "--model", "relu_hidden"], "does not support model relu_hidden"),
        (["--engine", "tree", "--loss", "l1"], "loss l1 needs engine reference or fast"),
    ],
)
def test_cli__bad_variant_flags_exit_2_with_one_line(tmp_path, capsys, flags, expect):
    out = tmp_path / "run"
    args = [*SMALL, "--test-size", "8", "--no-progress", "--out", str(out), *flags]
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own errors (choices)
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expect in err and "\n" not in err and not out.exists()
