"""supermem: memorization as superposition, after Henighan et al. (2023).

Python API (the CLI is a thin layer over it)::

    from supermem import TrainConfig, train, save_run, load_run
    result = train(TrainConfig(features=1000, sparsity=0.99, train_size=5, steps=20_000))
    run = load_run(save_run(result, "runs/t5"))
"""

__version__ = "0.1.0"

import supermem.toy  # noqa: E402,F401  (fills the model and engine registries first)
from supermem.api import train, train_many  # noqa: E402
from supermem.config import ConfigError, TrainConfig, make_config  # noqa: E402
from supermem.sweeps.checks import DamagedRunError  # noqa: E402
from supermem.sweeps.index import load_sweep, sweep_frame  # noqa: E402
from supermem.sweeps.run import run_sweep  # noqa: E402
from supermem.sweeps.spec import SweepSpec  # noqa: E402
from supermem.sweeps.store import Run, load_run, save_run  # noqa: E402

__all__ = [
    "ConfigError",
    "DamagedRunError",
    "Run",
    "SweepSpec",
    "TrainConfig",
    "__version__",
    "load_run",
    "load_sweep",
    "make_config",
    "run_sweep",
    "save_run",
    "sweep_frame",
    "train",
    "train_many",
]
