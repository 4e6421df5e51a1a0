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
