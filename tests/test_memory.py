"""The memory guard: a run that cannot fit is refused before anything is written."""

import pytest
from conftest import make_config

from supermem.cli import main
from supermem.config import ConfigError
from supermem.toy.memory import check_memory, estimate, expected_nnz


def test_huge_train_size_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--train-size", "1e12", "--steps", "10", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not enough memory" in err
    assert "T=1,000,000,000,000" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["reference", "fast", "tree", "chunked", "cuda"])
def test_estimate_grows_with_the_data_and_the_guard_uses_it(engine):
    small, big = make_config(train_size=1000), make_config(train_size=100_000)
    s, b = sum(estimate(small, 1, engine).values()), sum(estimate(big, 1, engine).values())
    assert b > s
    check_memory(big, 1, engine, available=int(2 * b))  # fits: no error
    with pytest.raises(ConfigError, match="not enough memory"):
        check_memory(big, 1, engine, available=int(b / 2))


def test_expected_nnz_matches_sampled_data():
    from supermem.toy.data import sample

    for empty in ("resample", "zero"):
        cfg = make_config(features=200, sparsity=0.99, empty=empty)
        d = sample(20_000, 200, 0.99, 0, empty=empty)
        assert d.nnz == pytest.approx(expected_nnz(cfg, 20_000), rel=0.03)


@pytest.mark.parametrize("engine", ["reference", "fast", "cuda"])
def test_device_estimate_grows_and_the_guard_refuses_with_one_gpu_line(engine):
    """No GPU needed: the device's free memory is passed in."""
    from supermem.toy.memory import estimate_device

    small, big = make_config(train_size=1000), make_config(train_size=100_000)
    s = sum(estimate_device(small, 1, engine).values())
    b = sum(estimate_device(big, 1, engine).values())
    assert b > s
    host = 10 * 2**40  # plenty of host memory: only the device can refuse
    check_memory(big, 1, engine, available=host, device="cuda", device_available=int(2 * b))
    with pytest.raises(ConfigError, match="not enough GPU memory") as e:
        check_memory(big, 1, engine, available=host, device="cuda", device_available=int(b / 2))
    assert len(str(e.value).splitlines()) == 1
