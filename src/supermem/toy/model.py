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
    params: ClassVar[tuple[str, ...]]  # the keys of its Params, saved as arrays of a run
    relu_hidden: ClassVar[bool]  # h = ReLU(W x) rather than W x

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


def encode(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """W (inst, m, n), x (inst, T, n) -> W x: (inst, T, m)."""
    return torch.einsum("imn,itn->itm", W, x)


def decode(D: torch.Tensor, h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """D (inst, m, n), h (inst, T, m), b (inst, n) -> ReLU(D^T h + b): (inst, T, n)."""
    return torch.relu(torch.einsum("imn,itm->itn", D, h) + b[:, None, :])


class TiedReLUOutput:
    """The paper's "ReLU output" model: h = W x, x' = ReLU(W^T h + b), W tied.

    Parameters: W (inst, m, n), b (inst, n); b starts at 0.
    """

    name: ClassVar[str] = "tied"
    params: ClassVar[tuple[str, ...]] = ("W", "b")
    relu_hidden: ClassVar[bool] = False

    def init(self, m: int, n: int, init: str, gens: list[torch.Generator]) -> Params:
        W = torch.stack([xavier(m, n, init, g) for g in gens])
        return {"W": W, "b": torch.zeros(len(gens), n)}

    def hidden(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return encode(p["W"], x)

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return decode(p["W"], self.hidden(p, x), p["b"])


class UntiedReLUOutput:
    """Untied decoder: h = W x, x' = ReLU(W_dec^T h + b) (PAPER.md: M. Hobbhahn's variants).

    Parameters: W (inst, m, n) the encoder, W_dec (inst, m, n) the decoder, b (inst, n).
    Both matrices get the same Xavier init from the instance's generator, W drawn first
    and W_dec next, so W equals the tied model's W for the same seed. Feature
    dimensionalities are those of the encoder's columns (what h is made of; the saved
    W_dec gives the decoder's).
    """

    name: ClassVar[str] = "untied"
    params: ClassVar[tuple[str, ...]] = ("W", "W_dec", "b")
    relu_hidden: ClassVar[bool] = False

    def init(self, m: int, n: int, init: str, gens: list[torch.Generator]) -> Params:
        pairs = [(xavier(m, n, init, g), xavier(m, n, init, g)) for g in gens]
        W, W_dec = (torch.stack(list(t)) for t in zip(*pairs))
        return {"W": W, "W_dec": W_dec, "b": torch.zeros(len(gens), n)}

    def hidden(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return encode(p["W"], x)

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return decode(p["W_dec"], self.hidden(p, x), p["b"])


class ReLUHidden:
    """A ReLU between the layers: h = ReLU(W x), x' = ReLU(W^T h + b), W tied.

    Parameters as the tied model's (and the same init). Data dimensionalities use the
    post-ReLU h, the hidden vectors the decoder sees.
    """

    name: ClassVar[str] = "relu_hidden"
    params: ClassVar[tuple[str, ...]] = ("W", "b")
    relu_hidden: ClassVar[bool] = True

    def init(self, m: int, n: int, init: str, gens: list[torch.Generator]) -> Params:
        return TiedReLUOutput().init(m, n, init, gens)

    def hidden(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(encode(p["W"], x))

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        return decode(p["W"], self.hidden(p, x), p["b"])


# ``fast`` and ``chunked`` serve ``tied`` only (they test isinstance(model,
# TiedReLUOutput)); ``tree`` and ``fast_variants`` serve all three on CPU, and ``auto``
# takes one of them for the others there (engines/__init__.py: get_engine).
MODELS: dict[str, ModelVariant] = {
    v.name: v for v in (TiedReLUOutput(), UntiedReLUOutput(), ReLUHidden())
}
for _name in MODELS:
    register("model", _name)


def get_model(name: str) -> ModelVariant:
    return MODELS[name]
