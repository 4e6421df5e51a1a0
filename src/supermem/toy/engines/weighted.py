"""Row weights on top of any engine: repeated points without copies.

A data set whose rows carry weights w_t (``SparseData.weights``: repeated points weigh R)
has the loss sum_t w_t L_t / sum_t w_t, the mean over the duplicated rows. Write it as

    (T * mean_t L_t + sum_v (v - 1) k_v * mean_{t: w_t = v} L_t) / (T + sum_v (v - 1) k_v)

with k_v rows of weight v: the plain mean over all T rows plus, per weight value, the
mean over the few rows that carry extra weight. Both are what any engine computes, and
the gradients combine with the same coefficients (``data.combine``). So every engine
(reference, fast, tree, chunked) trains on weighted data unchanged, at the cost of one
more engine call on the K repeated rows per step; nothing is ever copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from supermem.toy.data import SparseData, combine
from supermem.toy.engines.base import Engine


@dataclass
class WeightedData:
    """full: the inner engine's prepared plain set (T rows per instance); groups: per
    weight value, (extra weight, rows per instance, prepared rows)."""

    full: Any
    T: int
    groups: list[tuple[float, int, Any]]

    def map(self, f) -> WeightedData:
        """The same data with f applied to every prepared part (e.g. a dtype change)."""
        return WeightedData(f(self.full), self.T, [(e, k, f(d)) for e, k, d in self.groups])


class WeightedEngine(Engine):
    """``inner`` on weighted rows; its name is the inner engine's (what trained the run)."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]

    def supports(self, model, device) -> bool:
        return self.inner.supports(model, device)

    def threads(self, device) -> int | None:
        return self.inner.threads(device)

    def set_threads(self, n: int) -> None:
        self.inner.set_threads(n)

    def prepare(self, data: SparseData, device) -> WeightedData:
        groups = [(e, g.T, self.inner.prepare(g, device)) for e, g in data.weight_groups()]
        return WeightedData(self.inner.prepare(data.with_weights(None), device), data.T, groups)

    def loss_and_grads(self, model, p, data: WeightedData):
        loss, grads = self.inner.loss_and_grads(model, p, data.full)
        parts = [(e, k, self.inner.loss_and_grads(model, p, d)) for e, k, d in data.groups]
        loss = combine(data.T, loss, [(e, k, lg[0]) for e, k, lg in parts])
        grads = {
            key: combine(data.T, g, [(e, k, lg[1][key]) for e, k, lg in parts])
            for key, g in grads.items()
        }
        return loss, grads

    def loss(self, model, p, data: WeightedData):
        parts = [(e, k, self.inner.loss(model, p, d)) for e, k, d in data.groups]
        return combine(data.T, self.inner.loss(model, p, data.full), parts)

    def state(self, data: WeightedData) -> dict[str, np.ndarray]:
        parts = [("full", data.full)] + [(f"g{q}", d) for q, (_, _, d) in enumerate(data.groups)]
        return {f"{tag}.{k}": v for tag, d in parts for k, v in self.inner.state(d).items()}

    def restore(self, data: WeightedData, state: dict[str, np.ndarray]) -> None:
        parts = [("full", data.full)] + [(f"g{q}", d) for q, (_, _, d) in enumerate(data.groups)]
        for tag, d in parts:
            mine = {k[len(tag) + 1 :]: v for k, v in state.items() if k.startswith(f"{tag}.")}
            self.inner.restore(d, mine)
