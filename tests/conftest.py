import pytest

from supermem.config import TrainConfig


def make_config(**overrides) -> TrainConfig:
    """A small, fast config; override any field."""
    base = dict(
        features=50,
        sparsity=0.9,
        hidden=2,
        train_size=8,
        test_size=64,
        steps=40,
        warmup=5,
        engine="reference",
        device="cpu",
        snapshots=6,
    )
    return TrainConfig(**{**base, **overrides})


@pytest.fixture
def small_config():
    return make_config()
