import pytest
from hypothesis import settings

from supermem.config import TrainConfig

# Property tests draw the same examples on every run (the default tier, and CI, are
# reproducible: a failure there is a failure here). To hunt for new counterexamples,
# draw fresh ones on each run: `pytest --hypothesis-profile=explore tests/test_engines.py`
# (repeat it; each test keeps its own example count). A counterexample found that way
# becomes an @example of its test.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")

SMALL = dict(
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


def make_config(**overrides) -> TrainConfig:
    """A small, fast config; override any field."""
    return TrainConfig(**{**SMALL, **overrides})


@pytest.fixture
def small_config():
    return make_config()


def reproduce_at(recipe: str, scale, out) -> list:
    """Run ``supermem reproduce RECIPE`` at a test-only scale into ``out``; its runs."""
    from supermem.cli import main
    from supermem.recipes import RECIPES, SCALES
    from supermem.recipes.base import spec_runs

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCALES, "tiny", scale)
        argv = ["reproduce", recipe, "--scale", "tiny", "--out", str(out), "--no-progress"]
        assert main(argv) == 0
        return spec_runs(out, RECIPES[recipe].specs("tiny"))


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """A real sweep folder: ``SMALL`` runs (m = 2, 40 steps) at T in (3, 5, 8) x data
    seeds (0, 1)."""
    from supermem import SweepSpec, run_sweep

    out = tmp_path_factory.mktemp("explore") / "sweep"
    axes = {"train_size": [3, 5, 8], "data_seed": [0, 1]}
    fixed = {k: v for k, v in SMALL.items() if k not in axes}
    run_sweep(SweepSpec("tiny", fixed, axes), out, progress=False)
    return out
