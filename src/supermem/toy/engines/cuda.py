"""The cuda engine: exact loss and gradients of the tied model on an NVIDIA GPU, in fused
Triton kernels that never hold a (T, n) tensor.

The chunked engine (the fast engine's CUDA path) writes dense (inst, C, n) chunks to
memory and reads them back several times per step; here each (point tile, feature block)
pair is computed in registers and reduced on the spot, so a step moves only the data,
W, b and the (T, m) hidden vectors: the work is the n T m multiply-adds of the dense
part, done twice (once per point tile for the loss and gh, once per feature block for
gb and the decoder gradient), plus one pass over the nonzeros each way (row ELL, CSC).
The kernels and the split of the sums are in ``_cuda_kernels``; every sum is in a fixed
order, so results are deterministic.

Needs Triton and a CUDA device (``available``); with ``TRITON_INTERPRET=1`` in the
environment before the first step, Triton's interpreter runs the same kernels on CPU
tensors, which is how they are tested where there is no GPU. Measured on an H200, a
step takes 9-30x less time than the chunked engine's (n = 10,000, T = 10^4-10^6,
m = 1-3; docs/ENGINES.md), so ``auto`` takes it on a CUDA device where Triton is
installed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import torch

from supermem.toy.data import SparseData
from supermem.toy.engines.base import Engine
from supermem.toy.model import TiedReLUOutput

# (points per tile, features per block, warps) of the two dense kernels, where set (the
# benchmark sets them); else ``blocks``' rule
BLOCKS: dict[str, tuple[int, int, int]] = {}
BT_SPARSE = 64  # points per program of the hidden-vector kernel
BS = 64  # nonzeros per vector in the column pass
SEGMENT_PROGRAMS = 4096  # the column kernel splits T until it has about this many programs
# (also keeps each float32 running sum short: ~T / (nseg * tile) additions)


def interpreting() -> bool:
    """Triton's CPU interpreter is on (kernels then take CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device) -> bool:
    """Triton is installed and ``device`` is CUDA (or any device under the interpreter)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return torch.device(device).type == "cuda" or interpreting()


@dataclass(frozen=True)
class GpuData:
    """A data set on the device, as the kernels read it.

    idx (inst*T, K) int32, val (inst*T, K) float32: each row's nonzeros, padded with
    (0, 0.0) to K = the most nonzeros of any row (at least 1) (ELL).
    cptr (inst*n + 1,) int64, crow (nnz,) int64 flat row i*T + t, cval (nnz,) float32:
    the block-diagonal CSC, column i*n + j holding feature j of instance i.
    """

    idx: torch.Tensor
    val: torch.Tensor
    cptr: torch.Tensor
    crow: torch.Tensor
    cval: torch.Tensor
    inst: int
    T: int
    n: int

    @property
    def K(self) -> int:
        return self.idx.shape[1]

    @classmethod
    def from_sparse(cls, d: SparseData, device) -> GpuData:
        assert d.weights is None, "weighted rows: wrap the engine in WeightedEngine"
        R = d.inst * d.T
        counts = np.diff(d.indptr)
        K = max(1, int(counts.max(initial=0)))
        rows = np.repeat(np.arange(R), counts)
        slot = np.arange(len(d.indices)) - np.repeat(d.indptr[:-1], counts)
        idx = np.zeros((R, K), np.int32)
        val = np.zeros((R, K), np.float32)
        idx[rows, slot], val[rows, slot] = d.indices, d.values
        cols = (rows // d.T) * d.n + d.indices  # block-diagonal: instance i's own columns
        order = np.lexsort((rows, cols))  # by column, rows increasing within a column
        cptr = np.zeros(d.inst * d.n + 1, np.int64)
        np.cumsum(np.bincount(cols, minlength=d.inst * d.n), out=cptr[1:])

        def dev(a):
            return torch.as_tensor(np.ascontiguousarray(a), device=device)

        return cls(
            dev(idx), dev(val), dev(cptr), dev(rows[order].astype(np.int64)),
            dev(d.values[order].astype(np.float32)), d.inst, d.T, d.n,
        )  # fmt: skip


def launch(W: torch.Tensor, b: torch.Tensor, d: GpuData, grads: bool):
    """W (inst, m, n), b (inst, n) float32 on the data's device -> loss (inst,) float32 and,
    if ``grads``, gW (inst, m, n), gb (inst, n); else None, None."""
    inst, m, n = W.shape
    if m < hidden_lanes(m):  # every lane real: zero rows of W fill m up to hidden_lanes(m)
        W = torch.cat([W, W.new_zeros(inst, hidden_lanes(m) - m, n)], 1)
    W, b = W.contiguous(), b.contiguous()
    c2 = 2.0 / d.T
    h = hidden_pass(W, d)
    loss_t, gh = rows_pass(W, b, h, d, blocks("rows", m))
    loss = (loss_t.view(inst, d.T).double().sum(1) / d.T).float()
    if not grads:
        return loss, None, None
    pgW, pgb = cols_pass(W, b, h, d.T, blocks("cols", m))
    gWs, gbs = colnz_pass(W, b, h, gh, d)
    return loss, (c2 * pgW.sum(1) + gWs)[:, :m].contiguous(), c2 * pgb.sum(1) + gbs


# The four passes of a step (each one kernel launch; shapes as in ``launch``, with
# R = inst * T). ``cfg``: (points per tile, features per block, warps).


def hidden_pass(W: torch.Tensor, d: GpuData) -> torch.Tensor:
    """-> h (R, m) float32."""
    inst, m, n = W.shape
    h = torch.empty(inst * d.T, m, dtype=torch.float32, device=W.device)
    _k().hidden[(_cdiv(d.T, BT_SPARSE), inst)](
        d.idx, d.val, W, h, d.T, n, d.K, M=m, MP=hidden_lanes(m), BT=BT_SPARSE
    )
    return h


def rows_pass(W, b, h, d: GpuData, cfg: tuple[int, int, int]):
    """-> loss_t (R,) float32 (T times each point's loss), gh (R, m) float32."""
    inst, m, n = W.shape
    bt, bn, warps = cfg
    gh = torch.empty_like(h)
    loss_t = torch.empty(inst * d.T, dtype=torch.float32, device=W.device)
    _k().rows[(_cdiv(d.T, bt), inst)](
        d.idx, d.val, W, b, h, gh, loss_t, d.T, n, d.K, 2.0 / d.T,
        M=m, MP=hidden_lanes(m), BT=bt, BN=bn, num_warps=warps,
    )  # fmt: skip
    return loss_t, gh


def cols_pass(W, b, h, T: int, cfg: tuple[int, int, int]):
    """-> the dense part's partials over T segments, before the factor 2/T: pgW (inst,
    nseg, m, n) = sum_t r_tj h_t, pgb (inst, nseg, n) = sum_t r_tj."""
    inst, m, n = W.shape
    bt, bn, warps = cfg
    nfb = _cdiv(n, bn)
    nseg, seg = segments(T, n, cfg)
    pgW = torch.empty(inst, nseg, m, n, dtype=torch.float32, device=W.device)
    pgb = torch.empty(inst, nseg, n, dtype=torch.float32, device=W.device)
    _k().cols[(nfb, nseg, inst)](
        W, b, h, pgW, pgb, T, n, seg, M=m, MP=hidden_lanes(m), BT=bt, BN=bn, num_warps=warps
    )
    return pgW, pgb


def segments(T: int, n: int, cfg: tuple[int, int, int]) -> tuple[int, int]:
    """(number, points per segment) of the column pass's T segments: about
    SEGMENT_PROGRAMS programs over the feature blocks, whole tiles, never depending on the
    number of instances."""
    bt, bn, _ = cfg
    nseg = max(1, min(_cdiv(T, bt), SEGMENT_PROGRAMS // _cdiv(n, bn)))
    seg = _cdiv(_cdiv(T, nseg), bt) * bt
    return _cdiv(T, seg), seg


def colnz_pass(W, b, h, gh, d: GpuData):
    """-> the sparse part of the gradients plus the encoder gradient: gWs (inst, m, n),
    gbs (inst, n)."""
    inst, m, n = W.shape
    gWs = torch.empty(inst, m, n, dtype=torch.float32, device=W.device)
    gbs = torch.empty(inst, n, dtype=torch.float32, device=W.device)
    _k().colnz[(n, inst)](
        d.cptr, d.crow, d.cval, W, b, h, gh, gWs, gbs, d.T, n, 2.0 / d.T,
        M=m, MP=hidden_lanes(m), BS=BS,
    )  # fmt: skip
    return gWs, gbs


def blocks(kind: str, m: int) -> tuple[int, int, int]:
    """(points per tile, features per block, warps) of dense pass ``kind`` (rows, cols) at
    hidden size m: BLOCKS[kind] where set, else 8 points x 128 features at 4 warps
    (m <= 4; the fastest of nine choices at m = 2 on an H200, and checked there against
    the reference engine: ``benchmarks/bench_cuda.py``), 64 / MP points x 64 features
    beyond. Each program keeps (MP + 1) tile x block float32 accumulators in registers,
    with no spills when compiled for sm_90 (``_cuda_kernels.resources``; docs/ENGINES.md).
    On that H200 some tile choices compiled to wrong results (16 x 64 at 4 warps among
    them), so the benchmark checks every choice before it times one."""
    if kind in BLOCKS:
        return BLOCKS[kind]
    mp = hidden_lanes(m)
    return (8, 128, 4) if mp <= 4 else (max(2, 64 // mp), 64, 4)


def _k():
    from supermem.toy.engines._cuda_kernels import kernels

    return kernels()


def hidden_lanes(m: int) -> int:
    """Tile width over hidden dims: the next power of 2, at least 2. ``launch`` pads W
    with zero rows to this width, so the kernels run with M == MP: that is the code
    measured against the reference on an H200 at m = 1-4 (docs/ENGINES.md). The padded
    lanes were computed anyway (the tiles are MP wide), so padding adds no arithmetic;
    masked lanes (M < MP) gave the same numbers there in a diagnostic, to 1e-7."""
    return max(2, 1 << (m - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def flops_per_step(inst: int, T: int, n: int, m: int) -> float:
    """Floating-point operations of the dense part of one step (loss and gradients), as
    the kernels do them: per (point, feature) pair, p (2m), relu and the loss (3) and gh
    (2m) in the row pass, p (2m), relu, gb and the decoder gradient (2m + 2) in the column
    pass. The sparse passes add O(nnz m), negligible at the sparsities studied."""
    return float(inst) * T * n * (8 * m + 6)


SELF_CHECK_TOL = 1e-4  # largest error (of the scale) the self-check lets pass


def self_check(device, m: int) -> float:
    """The engine's largest loss or gradient error against the reference engine in
    float64, relative to the scale, on a small drawn problem (T = 203, n = 150, S = 0.9:
    a partial point tile and a partial feature block; one instance; a random state with
    b of both signs) at hidden size m, on ``device``, with the tiles now in use; inf if
    anything is not finite. Cached per (device, m, tiles): once per process, including
    the kernels' compile for those shapes.

    Why: on an H200 under Triton 3.6 some tile choices compiled to wrong numbers that
    Triton's interpreter computes right (docs/ENGINES.md); another GPU or Triton version
    could do the same with the defaults, and ``get_engine`` then refuses this engine."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return _self_check(str(dev), m, blocks("rows", m), blocks("cols", m))


@functools.cache
def _self_check(device: str, m: int, rows_cfg, cols_cfg) -> float:
    from supermem.toy.data import sample
    from supermem.toy.engines.reference import ReferenceEngine

    T, n = 203, 150
    data = sample(T, n, 0.9, 7)
    g = torch.Generator().manual_seed(m)
    p = {"W": torch.randn(1, m, n, generator=g) * 0.4, "b": torch.randn(1, n, generator=g) * 0.2}
    ref = ReferenceEngine()
    x = ref.prepare(data, torch.device("cpu")).double()
    want = ref.loss_and_grads(TiedReLUOutput(), {k: v.double() for k, v in p.items()}, x)
    dev = torch.device(device)
    got = CudaEngine().loss_and_grads(
        TiedReLUOutput(), {k: v.to(dev) for k, v in p.items()}, GpuData.from_sparse(data, dev)
    )
    return relative_error(got, want)


def relative_error(got, want) -> float:
    """Largest difference of (loss, {"W", "b": gradient}) ``got`` from ``want`` (the
    reference's), each relative to the largest magnitude in ``want``'s tensor; inf if
    anything is not finite."""
    pairs = [(got[0], want[0])] + [(got[1][k], want[1][k]) for k in want[1]]
    errs = [float((a.cpu().double() - w.cpu()).abs().max() / w.abs().max()) for a, w in pairs]
    return max(errs) if all(np.isfinite(errs)) else float("inf")


class CudaEngine(Engine):
    name = "cuda"

    def supports(self, model, device) -> bool:
        return isinstance(model, TiedReLUOutput) and available(device)

    def prepare(self, data: SparseData, device) -> GpuData:
        return GpuData.from_sparse(data, device)

    def _run(self, p, data: GpuData, grads: bool):
        W = p["W"].detach().to(torch.float32)
        b = p["b"].detach().to(torch.float32)
        loss, gW, gb = launch(W, b, data, grads)
        return loss, {"W": gW, "b": gb}

    def loss_and_grads(self, model, p, data: GpuData):
        return self._run(p, data, grads=True)

    @torch.no_grad()
    def loss(self, model, p, data: GpuData):
        return self._run(p, data, grads=False)[0]
