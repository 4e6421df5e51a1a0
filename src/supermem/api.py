"""The Python API's training entry points: ``train`` and ``train_many`` from configs.

The trainer (``supermem.toy.train``) takes its starting weights as arrays; these read
them from the run directory a config's ``init_from`` names, so that the trainer never
reads run directories itself.
"""

from __future__ import annotations

from pathlib import Path

from supermem.config import TrainConfig
from supermem.sweeps.store import init_weights
from supermem.toy import train as toy_train
from supermem.toy.train import InstanceResult


def train_many(
    cfgs: list[TrainConfig],
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 600.0,
) -> list[InstanceResult]:
    """Train configs that differ only in seeds together; one result per config.
    ``checkpoint``: a directory to resume from and save to (``supermem.toy.train``)."""
    return toy_train.train_many(
        list(cfgs),
        progress=progress,
        init=init_weights(cfgs[0]),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )


def train(
    cfg: TrainConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 600.0,
) -> InstanceResult:
    """Train one model (its restarts as instances) and return the best restart."""
    return train_many([cfg], progress, checkpoint, checkpoint_every)[0]
