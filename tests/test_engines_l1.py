"""The fast engine's l1 loss (|x - x'| summed over features): where x' = x exactly
(slope 0, as autograd), and which engines compute it. Drawn shapes and states, skipping,
thread counts and 300 training steps against the reference: tests/test_engines.py."""

import pytest
import torch
from conftest import make_config
from test_engines import assert_matches_reference, make_data

from supermem.config import ConfigError
from supermem.toy.engines import FastEngine, get_engine
from supermem.toy.model import get_model

CPU = torch.device("cpu")


def test_fast_l1_where_the_output_equals_the_input__slope_zero_as_autograd():
    """W = 0 and b_j = the value of feature j's first nonzero: there x' = x exactly, and
    |x - x'| has slope 0 (autograd's sign(0)); elsewhere the usual slopes."""
    data = make_data(1, 40, 50, 0.9, 4, "resample")
    x = data.dense(CPU)[0]  # (T, n)
    first = torch.where(x > 0, x, torch.inf).min(0).values
    b = torch.where(torch.isfinite(first), first, torch.tensor(0.3))[None].contiguous()
    p = {"W": torch.zeros(1, 2, 50), "b": b}
    exact = (x == b[0]).sum()
    assert exact >= 30  # the slope-0 case really occurs
    assert_matches_reference("fast", p, data, loss="l1")


def test_l1_engines__auto_and_fast_take_fast_on_cpu_the_others_refuse():
    tied = get_model("tied")
    for name in ("auto", "fast"):
        e = get_engine(name, tied, CPU, shape=(1, 10**5, 1000, 2, 10.0), loss="l1")
        assert isinstance(e, FastEngine) and e.objective == "l1"
    assert get_engine("reference", tied, CPU, loss="l1").name == "reference"
    assert not FastEngine(objective="l1").supports(tied, torch.device("cuda"))
    for name in ("tree", "chunked", "fast_variants"):
        with pytest.raises(ConfigError, match="needs engine reference or fast"):
            make_config(engine=name, loss="l1")
