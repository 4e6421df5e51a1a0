import pytest

from supermem.cli import main
from supermem.config import ConfigError, TrainConfig, default_warmup


def test_default_warmup_is_five_percent_of_the_run():
    assert TrainConfig().warmup == 2_500  # the paper's 2,500 of 50,000
    assert TrainConfig(steps=1000).warmup == 50
    assert TrainConfig(steps=10).warmup == default_warmup(10) == 0
    assert TrainConfig(steps=1000, warmup=7).warmup == 7  # an explicit value is kept


def test_resolved_warmup_round_trips_through_config_json():
    c = TrainConfig(steps=1000)
    assert c.to_dict()["warmup"] == 50
    assert TrainConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("bad", [1.5, "3", True])
def test_warmup_must_be_an_integer(bad):
    with pytest.raises(ConfigError, match="warmup must be an integer"):
        TrainConfig(warmup=bad)


def test_short_cli_run_needs_no_warmup_flag(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "--features", "20", "--sparsity", "0.9", "--train-size", "4"]
    args += ["--test-size", "16", "--steps", "1000", "--engine", "reference", "--snapshots", "0"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    assert '"warmup": 50' in (out / "config.json").read_text()


def test_init_from_with_restarts_is_refused_by_the_config(tmp_path, capsys):
    """Restarts from one saved W and b would be identical copies: refused where configs
    are made (a sweep's spec, the CLI), not run by run inside training."""
    with pytest.raises(ConfigError, match="identical copies"):
        TrainConfig(init_from="some/run", restarts=2)
    assert TrainConfig(init_from="some/run").restarts == 1
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "t"\n[fixed]\ninit_from = "some/run"\nrestarts = 2\n[axes]\nseed = [0]\n'
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "identical copies" in err
    assert not (tmp_path / "o").exists()
