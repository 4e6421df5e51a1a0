"""The engine interface: loss and gradients of a model on a sparse data set.

An engine turns a ``SparseData`` into whatever it computes on (``prepare``), then
returns per-instance losses and, when asked, the gradients of their sum. The loss is
the paper's: for each instance, the mean over its T points of the sum over features of
(x - x')^2. Instances never interact: the gradient of instance i depends only on its
own parameters and data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from supermem.toy.data import SparseData
from supermem.toy.model import ModelVariant, Params


class Engine(ABC):
    name: ClassVar[str]
    pool: ClassVar[str] = "torch"  # whose CPU threads a step runs on: "torch" or "numba"
    # results bit-identical for any thread count (tested), so a run may change its
    # threads between steps (``set_threads``: a sweep's freed cores)
    elastic: ClassVar[bool] = False

    def supports(self, model: ModelVariant, device: torch.device) -> bool:
        """Whether this engine can train ``model`` on ``device``."""
        return True

    @abstractmethod
    def prepare(self, data: SparseData, device: torch.device) -> Any:
        """Move/convert a data set once, before many loss evaluations."""

    @abstractmethod
    def loss_and_grads(
        self, model: ModelVariant, p: Params, data: Any
    ) -> tuple[torch.Tensor, Params]:
        """loss: (inst,); grads: same keys and shapes as ``p``, of ``loss.sum()``."""

    @abstractmethod
    def loss(self, model: ModelVariant, p: Params, data: Any) -> torch.Tensor:
        """loss: (inst,), without gradients."""

    def state(self, data: Any) -> dict[str, np.ndarray]:
        """What ``data`` carries from one step to the next and a checkpoint must keep
        (``supermem.toy.checkpoint``); nothing for an engine whose data never change."""
        return {}

    def threads(self, device: torch.device) -> int | None:
        """The CPU threads a step may use on ``device`` (its wall time scales with them:
        the sweeps' cost model reads it from metrics.json); None off the CPU."""
        if device.type != "cpu":
            return None
        if self.pool == "numba":
            import numba

            return int(numba.get_num_threads())
        return torch.get_num_threads()

    def set_threads(self, n: int) -> None:
        """Let the next steps use up to ``n`` CPU threads (at most the pool's size), where
        the engine is ``elastic``; nothing otherwise."""
        if self.elastic and self.pool == "numba":
            set_numba_threads(n)

    def restore(self, data: Any, state: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Put a ``state`` back into freshly prepared ``data`` (nothing by default)."""


def set_numba_threads(n: int) -> None:
    """numba's threads at ``n``, within 1 and its pool's size (``NUMBA_NUM_THREADS``)."""
    import numba

    # numba.config sets NUMBA_NUM_THREADS at import, from the environment: not in its types
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
