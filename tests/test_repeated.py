"""Repeated points as row weights: exactly the loss, gradients and training of the same
data with the rows really duplicated, on every engine; validated, recorded, keyed."""

import json

import numpy as np
import pytest
import torch
from conftest import make_config
from safetensors.numpy import load_file, save_file

from supermem.cli import main
from supermem.config import ConfigError
from supermem.sweeps.checks import DamagedRunError, check_run
from supermem.sweeps.index import config_key
from supermem.sweeps.store import save_run
from supermem.toy import data as data_mod
from supermem.toy import losses
from supermem.toy.data import SparseData, combine, repeat_weights
from supermem.toy.engines import ENGINES
from supermem.toy.engines.weighted import WeightedEngine
from supermem.toy.model import get_model
from supermem.toy.train import train, train_many

TIED = get_model("tied")


def duplicated(X: SparseData, K: int, R: int) -> SparseData:
    """The rows of X with each instance's first K rows appended R - 1 more times."""
    rows = [
        i * X.T + t
        for i in range(X.inst)
        for t in [*range(X.T), *[k for k in range(K) for _ in range(R - 1)]]
    ]
    return X.take(np.asarray(rows), inst=X.inst)


def weighted_set(T=40, K=3, R=4, inst=2, n=50):
    cfg = make_config(features=n, train_size=T, repeat_points=K, repeat_count=R)
    X, _ = data_mod.train_test(cfg, data_seeds=list(range(inst)))
    return X


def params(inst, m, n, seed, bias=0.1):
    g = torch.Generator().manual_seed(seed)
    return {
        "W": torch.randn(inst, m, n, generator=g) * 0.5,
        "b": torch.randn(inst, n, generator=g) * bias,
    }


def test_repeat_weights__first_k_points_weigh_r():
    w = repeat_weights(6, 2, 5)
    assert w.tolist() == [5, 5, 1, 1, 1, 1]
    assert repeat_weights(6, 0, 1) is None and repeat_weights(6, 3, 1) is None


def test_combine__is_the_weighted_mean():
    L = np.array([1.0, 2.0, 3.0, 4.0])  # per-row losses; rows 0 and 1 weigh 3
    w = np.array([3.0, 3.0, 1.0, 1.0])
    got = combine(4, L.mean(), [(2.0, 2, L[:2].mean())])
    assert got == pytest.approx((w * L).sum() / w.sum())


def test_weight_groups__rows_per_weight_value():
    X = weighted_set(T=10, K=3, R=4, inst=2).with_weights(
        np.r_[[4, 4, 2, 1, 1, 1, 1, 1, 1, 1], [4, 4, 2, 1, 1, 1, 1, 1, 1, 1]]
    )
    (e2, g2), (e4, g4) = X.weight_groups()
    assert (e2, g2.inst, g2.T) == (1.0, 2, 1) and (e4, g4.inst, g4.T) == (3.0, 2, 2)
    full = X.to_scipy().toarray()
    assert np.array_equal(g4.to_scipy().toarray(), full[[0, 1, 10, 11]])
    with pytest.raises(ValueError, match="different numbers of rows"):
        X.with_weights(np.r_[[2] + [1] * 9, [1] * 10]).weight_groups()


@pytest.mark.parametrize("engine", ["reference", "fast", "tree", "chunked"])
@pytest.mark.parametrize("m,seed,bias", [(2, 0, 0.1), (1, 1, 0.0), (3, 2, -0.3), (2, 3, 2.0)])
def test_weighted_engine__equals_duplicated_rows(engine, m, seed, bias):
    X = weighted_set(T=40, K=3, R=4, inst=2)
    dup = duplicated(X.with_weights(None), 3, 4)
    p = params(2, m, 50, seed, bias)
    ref = ENGINES["reference"]()
    want_loss, want = ref.loss_and_grads(TIED, p, ref.prepare(dup, "cpu"))
    e = WeightedEngine(ENGINES[engine]())
    loss, got = e.loss_and_grads(TIED, p, e.prepare(X, "cpu"))
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(e.loss(TIED, p, e.prepare(X, "cpu")), want_loss)


def test_engines__refuse_weighted_data_unwrapped():
    X = weighted_set()
    for name in ("reference", "fast", "tree"):
        with pytest.raises(AssertionError, match="WeightedEngine"):
            ENGINES[name]().prepare(X, "cpu")


def test_exact_loss__weighted_equals_duplicated():
    X = weighted_set(T=30, K=2, R=7)
    p = params(2, 2, 50, 4)
    dup = duplicated(X.with_weights(None), 2, 7)
    np.testing.assert_allclose(losses.exact_loss(TIED, p, X), losses.exact_loss(TIED, p, dup))


@pytest.mark.parametrize("engine", ["reference", "fast", "tree"])
def test_training__repeat_count_equals_rows_really_duplicated(engine):
    K, R, T = 2, 5, 30
    cfg = make_config(train_size=T, steps=150, repeat_points=K, repeat_count=R, engine=engine)
    X, test = data_mod.train_test(cfg)
    dup = duplicated(X.with_weights(None), K, R)
    cfg_dup = cfg.replace(train_size=T + K * (R - 1), repeat_points=0, repeat_count=1)
    got = train(cfg, progress=False)
    want = train_many([cfg_dup], progress=False, data=(dup, test))[0]
    np.testing.assert_allclose(got.params["W"], want.params["W"], rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(got.params["b"], want.params["b"], rtol=1e-4, atol=2e-5)
    assert got.train_loss == pytest.approx(want.train_loss, rel=1e-4)
    assert got.test_loss == pytest.approx(want.test_loss, rel=1e-4)


def test_float64_reference__trains_on_weighted_rows():
    cfg = make_config(train_size=20, steps=20, repeat_points=1, repeat_count=3, dtype="float64")
    r = train(cfg, progress=False)
    assert r.params["W"].dtype == np.float64 and np.isfinite(r.train_loss)


@pytest.mark.parametrize(
    "fields,msg",
    [
        (dict(repeat_points=-1), "repeat_points must be in"),
        (dict(repeat_points=9, train_size=8), "repeat_points must be in"),
        (dict(repeat_points=1, repeat_count=0), "repeat_count must be >= 1"),
        (dict(repeat_count=3), "repeats nothing"),
    ],
)
def test_config__bad_repeat_values_refused(fields, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config(**fields)


@pytest.mark.parametrize(
    "flags",
    [["--repeat-points", "-2"], ["--repeat-count", "0"], ["--repeat-count", "4"]],
)
def test_cli__bad_repeat_flags_exit_2_one_line_nothing_written(flags, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--steps", "10", "--out", str(out), *flags]) == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "repeat" in err[0]


def test_config_key__unchanged_when_nothing_repeats():
    cfg = make_config()
    assert config_key(cfg) == config_key(cfg.replace(repeat_points=0, repeat_count=1))
    assert config_key(cfg) != config_key(cfg.replace(repeat_points=1, repeat_count=2))


def test_run__records_repeated_points_and_weights(tmp_path):
    cfg = make_config(train_size=20, steps=30, repeat_points=2, repeat_count=3)
    out = save_run(train(cfg, progress=False), tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    mets = json.loads((out / "metrics.json").read_text())
    assert (config["repeat_points"], config["repeat_count"]) == (2, 3)
    assert mets["repeated_points"] == [0, 1] and len(mets["repeated_data_dims"]) == 2
    assert all(0 <= q <= 1 for q in mets["repeated_dims_quantile"])
    w = load_file(str(out / "train_data.safetensors"))["weights"]
    assert w.tolist() == [3, 3] + [1] * 18
    check_run(out)
    data = load_file(str(out / "train_data.safetensors"))
    save_file({**data, "weights": w[:5]}, str(out / "train_data.safetensors"))
    with pytest.raises(DamagedRunError, match="row weights"):
        check_run(out)


@pytest.mark.parametrize(
    "model,loss,engine",
    [
        ("untied", "mse", "auto"),
        ("relu_hidden", "mse", "auto"),
        ("tied", "l1", "auto"),
        ("untied", "mse", "tree"),
        ("relu_hidden", "mse", "tree"),
    ],
)
def test_training__variants_and_losses_with_repeats_equal_duplicated_rows(model, loss, engine):
    K, R, T = 1, 4, 20
    cfg = make_config(train_size=T, steps=60, repeat_points=K, repeat_count=R, model=model)
    cfg = cfg.replace(loss=loss, engine=engine)
    X, test = data_mod.train_test(cfg)
    dup = duplicated(X.with_weights(None), K, R)
    cfg_dup = cfg.replace(train_size=T + K * (R - 1), repeat_points=0, repeat_count=1)
    got = train(cfg, progress=False)
    want = train_many([cfg_dup], progress=False, data=(dup, test))[0]
    for k in got.params:
        np.testing.assert_allclose(got.params[k], want.params[k], rtol=1e-4, atol=2e-5)
    assert got.train_loss == pytest.approx(want.train_loss, rel=1e-4)
