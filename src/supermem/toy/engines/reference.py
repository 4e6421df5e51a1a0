"""The reference engine: plain dense PyTorch and autograd. The executable spec.

Every fast path is tested against this. It materialises (inst, T, n) tensors, so it is
slow and memory-hungry at paper scale; that is the point of the fast engine.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from supermem.toy.data import SparseData
from supermem.toy.engines.base import Engine
from supermem.toy.model import ModelVariant, Params

# TrainConfig.loss -> the error of one feature of one point, from x - x'. mse is the
# paper's; l1 is one of the other losses M. Hobbhahn reports the same picture for (PAPER.md).
ELEMENT_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mse": torch.square,
    "l1": torch.abs,
}


def reference_loss(
    model: ModelVariant, p: Params, x: torch.Tensor, loss: str = "mse"
) -> torch.Tensor:
    """x: (inst, T, n) -> (inst,) mean over points of the error summed over features."""
    return ELEMENT_LOSSES[loss](x - model.forward(p, x)).sum(-1).mean(-1)


class ReferenceEngine(Engine):
    """``objective``: the TrainConfig.loss it computes (the fast engines: mse only)."""

    name = "reference"

    def __init__(self, objective: str = "mse"):
        self.objective = objective

    def prepare(self, data: SparseData, device: torch.device) -> torch.Tensor:
        assert data.weights is None, "weighted rows: wrap the engine in WeightedEngine"
        return data.dense(device)  # (inst, T, n)

    def loss_and_grads(self, model, p, x):
        leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        loss = reference_loss(model, leaves, x, self.objective)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        return loss.detach(), dict(zip(leaves, grads))

    @torch.no_grad()
    def loss(self, model, p, x):
        return reference_loss(model, p, x, self.objective)
