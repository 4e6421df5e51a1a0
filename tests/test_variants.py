"""Implementation variants of issue 10 (decay mode and target, Adam eps and beta2, init,
precision, initial bias): validated, recorded, keyed, and each changing training."""

import math

import numpy as np
import pytest
import torch
from conftest import make_config

from supermem.cli import main
from supermem.config import ConfigError, TrainConfig
from supermem.sweeps.index import KEY_OMIT_AT_DEFAULT, config_key
from supermem.toy import train as train_mod
from supermem.toy.engines.reference import ReferenceEngine
from supermem.toy.model import get_model, xavier
from supermem.toy.train import train

# config_key of TrainConfig() and of a quick-scale run, computed before the fields existed
DEFAULT_KEY, QUICK_KEY = "763ed53061eae5ce", "71a6b84cfc0fb8dc"
QUICK = dict(features=1000, sparsity=0.99, train_size=244, steps=10000, warmup=500)

NEW = {
    "decay_mode": "l2",
    "decay_params": "W",
    "adam_eps": 1e-5,
    "adam_beta2": 0.99,
    "dtype": "float64",
    "init_bias": 0.1,
}


def test_config_key__unchanged_for_configs_at_the_new_defaults():
    assert config_key(TrainConfig()) == DEFAULT_KEY
    assert config_key(TrainConfig(**QUICK, test_size=5000, data_seed=1)) == QUICK_KEY
    # an explicit default value is the same run
    assert config_key(TrainConfig(adam_eps=1e-8, decay_mode="decoupled")) == DEFAULT_KEY


@pytest.mark.parametrize("name", sorted(NEW))
def test_config_key__new_field_off_default_names_another_run(name):
    assert name in KEY_OMIT_AT_DEFAULT
    assert config_key(TrainConfig(**{name: NEW[name]})) != DEFAULT_KEY


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"decay_mode": "adam"}, "decay_mode must be one of"),
        ({"decay_params": "b"}, "decay_params must be one of"),
        ({"adam_eps": 0.0}, "adam_eps must be > 0"),
        ({"adam_beta2": 1.0}, "adam_beta2 must be in"),
        ({"adam_beta2": math.nan}, "adam_beta2 must be a finite number"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"dtype": "float64", "engine": "fast"}, "dtype float64 needs engine reference"),
        ({"init_bias": True}, "init_bias must be a number"),
        ({"init": "he"}, "init must be one of"),
    ],
)
def test_new_fields_are_validated(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(**bad)


def test_new_fields_round_trip_through_config_dict():
    c = TrainConfig(**NEW, engine="reference")
    assert TrainConfig.from_dict(c.to_dict()) == c


def test_cli_flags_follow_the_fields(tmp_path):
    out = tmp_path / "r"
    args = ["train", "--features", "20", "--sparsity", "0.9", "--train-size", "4", "--steps"]
    args += ["50", "--test-size", "16", "--snapshots", "0", "--no-progress", "--out", str(out)]
    args += ["--decay-mode", "l2", "--decay-params", "W", "--adam-eps", "1e-6"]
    args += ["--adam-beta2", "0.95", "--dtype", "float64", "--init-bias", "-0.5"]
    assert main(args) == 0
    text = (out / "config.json").read_text()
    for s in ('"decay_mode": "l2"', '"adam_eps": 1e-06', '"dtype": "float64"'):
        assert s in text


def test_cli_bad_variant_flag_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--decay-mode", "sgd", "--out", "x"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _old_optimizer(c, p):
    """The optimiser the trainer built before the variant fields existed."""
    return torch.optim.AdamW(
        list(p.values()), lr=c.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=c.weight_decay
    )


def test_defaults_train_exactly_as_before(monkeypatch):
    cfg = make_config(steps=60, weight_decay=0.1)
    new = train(cfg, progress=False)
    monkeypatch.setattr(train_mod, "make_optimizer", _old_optimizer)
    old = train(cfg, progress=False)
    for k in ("W", "b"):
        assert np.array_equal(new.params[k], old.params[k])


def _run(**kw):
    return train(make_config(steps=200, warmup=10, weight_decay=0.5, **kw), progress=False)


@pytest.mark.parametrize(
    "change",
    [{k: NEW[k]} for k in ("decay_mode", "decay_params", "adam_eps", "adam_beta2", "init_bias")]
    + [{"init": "xavier_normal_colab"}, {"decay_mode": "decoupled_unscaled"}],
)
def test_each_field_changes_training(change):
    base, other = _run(), _run(**change)
    assert not np.allclose(base.params["W"], other.params["W"], rtol=1e-3, atol=1e-5)


def test_decay_on_W_only_leaves_b_undecayed():
    # with lr -> tiny the loss gradient hardly moves b, so only decay could shrink it
    kw = dict(steps=50, warmup=0, lr=1e-6, weight_decay=1e3, init_bias=1.0)
    Wb = train(make_config(**kw, decay_params="Wb"), progress=False)
    W = train(make_config(**kw, decay_params="W"), progress=False)
    assert np.abs(W.params["b"] - 1.0).max() < 1e-3
    assert Wb.params["b"].mean() < 0.99  # AdamW: b *= (1 - lr_t wd) each step


def test_l2_mode_equals_adam_on_loss_plus_half_wd_norm():
    """One step of mode l2 = one Adam step on the gradient of loss + wd/2 (|W|^2 + |b|^2).

    Adam's first step moves each coordinate by lr * g / (|g| + eps).
    """
    cfg = make_config(steps=1, warmup=0, weight_decay=0.3, decay_mode="l2", init_bias=0.2)
    r = train(cfg, progress=False)
    p0 = {k: torch.tensor(v[:1]) for k, v in r.snapshots.items()}  # step 0: (1, ...)
    x = ReferenceEngine().prepare(r.X_train, torch.device("cpu"))  # (1, T, n)
    _, g = ReferenceEngine().loss_and_grads(get_model("tied"), p0, x)
    for k in ("W", "b"):
        gk = (g[k] + 0.3 * p0[k])[0].numpy()
        want = p0[k][0].numpy() - cfg.lr * gk / (np.abs(gk) + cfg.adam_eps)
        np.testing.assert_allclose(r.params[k], want, rtol=1e-5, atol=1e-7)


def test_decoupled_unscaled_decays_by_schedule_multiplier_not_lr():
    # lr tiny: decoupled decay lr*wd per step is ~0, the unscaled form wd per step is not
    kw = dict(steps=20, warmup=0, lr=1e-9, weight_decay=0.01, init_bias=1.0)
    scaled = train(make_config(**kw), progress=False).params["b"]
    unscaled = train(make_config(**kw, decay_mode="decoupled_unscaled"), progress=False).params["b"]
    assert np.abs(scaled - 1).max() < 1e-6
    # product over steps of (1 - wd * (1 + cos(pi s / 20)) / 2)
    mult = np.prod([1 - 0.01 * 0.5 * (1 + math.cos(math.pi * s / 20)) for s in range(20)])
    np.testing.assert_allclose(unscaled, mult, rtol=1e-3)


def test_float64_trains_in_float64_with_the_reference_engine():
    r = train(make_config(dtype="float64", engine="auto", steps=30), progress=False)
    assert r.engine == "reference" and r.params["W"].dtype == np.float64
    r32 = train(make_config(steps=30), progress=False)
    diff = np.abs(r.params["W"] - r32.params["W"]).max()
    assert 0 < diff < 1e-3  # the same training, up to float32 rounding


def test_init_bias_sets_b_at_step_zero():
    r = train(make_config(init_bias=-0.25, snapshots=4), progress=False)
    assert np.all(r.snapshots["b"][0] == np.float32(-0.25))


def test_colab_init_has_the_3d_fan_std():
    m, n = 2, 4000
    W = xavier(m, n, "xavier_normal_colab", torch.Generator().manual_seed(0))
    assert W.std().item() == pytest.approx(math.sqrt(2 / (m * (n + 10))), rel=0.03)
    W2 = xavier(m, n, "xavier_normal", torch.Generator().manual_seed(0))
    assert W.std().item() / W2.std().item() == pytest.approx(1 / math.sqrt(m), rel=0.01)
