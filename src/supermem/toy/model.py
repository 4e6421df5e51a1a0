"""Model variants behind one interface, and a registry mapping names to them.

A variant knows its parameters' shapes, how to initialise them, and its forward pass
on a dense batch. Engines other than the reference may support only some variants
(the fast engine implements the tied model's gradients by hand).

Shapes: ``inst`` model instances, T points, n features, m hidden dimensions.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

import torch

from supermem.config import register

Params = dict[str, torch.Tensor]


class ModelVariant(Protocol):
    name: ClassVar[str]

    def init(self, m: int, n: int, init: str, gens: list[torch.Generator]) -> Params:
        """One parameter set per generator, stacked along a leading ``inst`` dimension."""
        ...

    def hidden(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """x: (inst, T, n) -> h: (inst, T, m)."""
        ...

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """x: (inst, T, n) -> reconstruction x': (inst, T, n)."""
        ...


COLAB_INSTANCES = 10  # n_instances of the "Toy Models" colab's first experiments


def xavier(m: int, n: int, kind: str, gen: torch.Generator) -> torch.Tensor:
    """(m, n) Xavier/Glorot init of the m x n matrix of h = W x: fan_in n, fan_out m.

    ``xavier_normal_colab``: the "Toy Models of Superposition" colab applies
    ``xavier_normal_`` to a (inst, n, m) tensor, where torch takes fan_in = n*m and
    fan_out = inst*m: std sqrt(2 / (m (n + inst))), about 1/sqrt(m) of the 2-D one for
    n >> inst (inst = COLAB_INSTANCES; its exact value hardly matters there).
    """
    if kind == "xavier_normal":
        return torch.randn(m, n, generator=gen) * math.sqrt(2.0 / (n + m))
    if kind == "xavier_normal_colab":
        return torch.randn(m, n, generator=gen) * math.sqrt(2.0 / (m * (n + COLAB_INSTANCES)))
    if kind == "xavier_uniform":
        a = math.sqrt(6.0 / (n + m))
        return (torch.rand(m, n, generator=gen) * 2 - 1) * a
    raise ValueError(f"unknown init {kind!r}")


class TiedReLUOutput:
    """The paper's "ReLU output" model: h = W x, x' = ReLU(W^T h + b), W tied.

    Parameters: W (inst, m, n), b (inst, n); b starts at 0.
    """

    name: ClassVar[str] = "tied"

    def init(self, m: int, n: int, init: str, gens: list[torch.Generator]) -> Params:
        W = torch.stack([xavier(m, n, init, g) for g in gens])
        return {"W": W, "b": torch.zeros(len(gens), n)}

    def hidden(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("imn,itn->itm", p["W"], x)

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(p, x)
        return torch.relu(torch.einsum("imn,itm->itn", p["W"], h) + p["b"][:, None, :])


MODELS: dict[str, ModelVariant] = {v.name: v for v in (TiedReLUOutput(),)}
for _name in MODELS:
    register("model", _name)


def get_model(name: str) -> ModelVariant:
    return MODELS[name]
