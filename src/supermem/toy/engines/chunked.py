"""The chunked engine: dense PyTorch over chunks of points, gradients by hand.

This is the fast engine's CUDA path (a GPU multiplies dense chunks faster than it
follows sparse bounds), registered under its own name so CI tests it on CPU against the
reference. Memory is O(inst * chunk * n) for a chunk of points, never (inst, T, n).

Per chunk of points (shapes inst, C points, n, m), with the tied model:
    h = x W^T (inst, C, m); p = h W + b (inst, C, n); e = relu(p) - x
    loss += sum e^2; g = (2/T) e 1[p > 0]
    gb += sum_t g; gW += h^T g (decoder use of W) + (g W^T)^T x (encoder use of W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from supermem.toy.data import SparseData
from supermem.toy.engines.base import Engine
from supermem.toy.model import TiedReLUOutput


@dataclass(frozen=True)
class Chunks:
    """Per chunk of points [a, z) of every instance: where its nonzeros go in a dense
    (inst, z - a, n) buffer (flat positions (nnz_c,) int64) and their values (nnz_c,)."""

    bounds: list[tuple[int, int]]
    positions: list[torch.Tensor]
    values: list[torch.Tensor]
    inst: int
    T: int
    n: int


def chunk_rows(inst: int, n: int, max_elems: int) -> int:
    """Points per chunk so that one (inst, C, n) float32 tensor has <= max_elems entries."""
    return max(1, max_elems // (inst * n))


class ChunkedEngine(Engine):
    name = "chunked"
    MAX_ELEMS = 2**24  # per (inst, C, n) tensor; a step holds about five of them

    def supports(self, model, device) -> bool:
        return isinstance(model, TiedReLUOutput)

    def prepare(self, data: SparseData, device) -> Chunks:
        assert data.weights is None, "weighted rows: wrap the engine in WeightedEngine"
        C = chunk_rows(data.inst, data.n, self.MAX_ELEMS)
        rows = np.repeat(np.arange(data.inst * data.T), np.diff(data.indptr))
        inst_of, t_of = rows // data.T, rows % data.T
        # the nonzeros of each chunk, in their CSR order (a stable sort by chunk, one
        # pass, instead of a mask over all nonzeros per chunk)
        chunk_of = t_of // C
        order = np.argsort(chunk_of, kind="stable")
        edges = np.searchsorted(chunk_of[order], np.arange(-(-data.T // C) + 1))
        bounds, positions, values = [], [], []
        for q, a in enumerate(range(0, data.T, C)):
            z = min(a + C, data.T)
            sel = order[edges[q] : edges[q + 1]]
            flat = (inst_of[sel] * (z - a) + (t_of[sel] - a)) * data.n + data.indices[sel]
            bounds.append((a, z))
            positions.append(torch.as_tensor(flat.astype(np.int64), device=device))
            values.append(torch.as_tensor(data.values[sel], device=device))
        return Chunks(bounds, positions, values, data.inst, data.T, data.n)

    def _run(self, p, ch: Chunks, grads: bool):
        W, b = p["W"].detach(), p["b"].detach()  # (inst, m, n), (inst, n)
        loss = torch.zeros(ch.inst, dtype=torch.float32, device=W.device)
        gW, gb = torch.zeros_like(W), torch.zeros_like(b)
        for (a, z), pos, val in zip(ch.bounds, ch.positions, ch.values):
            x = torch.zeros(ch.inst * (z - a) * ch.n, dtype=W.dtype, device=W.device)
            x[pos] = val
            x = x.view(ch.inst, z - a, ch.n)  # (inst, C, n)
            h = torch.bmm(x, W.transpose(1, 2))  # (inst, C, m)
            pre = torch.baddbmm(b[:, None, :], h, W)  # (inst, C, n)
            e = torch.relu(pre) - x
            loss += (e * e).sum((1, 2))
            if grads:
                g = e.mul_((2.0 / ch.T) * (pre > 0))  # (inst, C, n), e is not needed again
                gb += g.sum(1)
                gh = torch.bmm(g, W.transpose(1, 2))  # (inst, C, m)
                gW += torch.bmm(h.transpose(1, 2), g) + torch.bmm(gh.transpose(1, 2), x)
        return loss / ch.T, {"W": gW, "b": gb}

    def loss_and_grads(self, model, p, data: Chunks):
        return self._run(p, data, grads=True)

    @torch.no_grad()
    def loss(self, model, p, data: Chunks):
        return self._run(p, data, grads=False)[0]
