"""The reference engine: plain dense PyTorch and autograd. The executable spec.

Every fast path is tested against this. It materialises (inst, T, n) tensors, so it is
slow and memory-hungry at paper scale; that is the point of the fast engine.
"""

from __future__ import annotations

import torch

from supermem.toy.data import SparseData
from supermem.toy.engines.base import Engine
from supermem.toy.model import ModelVariant, Params


def reference_loss(model: ModelVariant, p: Params, x: torch.Tensor) -> torch.Tensor:
    """x: (inst, T, n) -> (inst,) mean over points of the summed squared error."""
    return ((x - model.forward(p, x)) ** 2).sum(-1).mean(-1)


class ReferenceEngine(Engine):
    name = "reference"

    def prepare(self, data: SparseData, device: torch.device) -> torch.Tensor:
        assert data.weights is None, "weighted rows: wrap the engine in WeightedEngine"
        return data.dense(device)  # (inst, T, n)

    def loss_and_grads(self, model, p, x):
        leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        loss = reference_loss(model, leaves, x)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        return loss.detach(), dict(zip(leaves, grads))

    @torch.no_grad()
    def loss(self, model, p, x):
        return reference_loss(model, p, x)
