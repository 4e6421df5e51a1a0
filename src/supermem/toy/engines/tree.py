"""The tree engine: exact loss and gradients of the tied model at a cost of about
n sqrt(T) per step instead of n T (CPU, Numba).

The fast engine visits every (point, feature) pair. Here the T hidden vectors of each
instance sit in a kd-tree whose nodes carry their bounding box and float64 moments
(count, sum h, sum h h^T). For feature j the points with p_tj = W_j . h_t + b_j > 0 form
a half-space: a node wholly off it contributes nothing, a node wholly on it contributes
from its moments in O(m^2), and only the leaves the hyperplane cuts are done point by
point. A hyperplane cuts about sqrt(T / leaf) leaves of a 2-D tree, so the dense part
costs O(T m^2 + n sqrt(T) leaf) (the kernels, and why this is exact, are in
``_tree_kernels``). The sparse correction over the nonzeros of x is the fast engine's.

The tree is kept between steps (in the prepared data): each step refits its boxes and
moments to the new hidden vectors in O(T m^2), which is exact for any point order. As
the points move, the refitted boxes loosen and the walk costs more; the tree is rebuilt
once the work spent beyond the fresh tree's level since the last build exceeds the cost
of a build (``REBUILD_UNITS`` work units per point and level; a rent-or-buy rule, within
2x of the best schedule in hindsight). Work is counted, not timed, so the schedule, and
with it every result, is deterministic. The rule is kept per instance: a tree's
schedule, and so the order of a run's float32 sums, does not depend on the other runs it
is batched with, and a batched run equals its single runs bit for bit.

Best for m <= 3 (the tree prunes less as m grows); ``auto`` picks it from the measured
cost model in ``supermem.toy.engines.cost``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from supermem.toy.data import SparseData
from supermem.toy.engines import _tree_kernels as TK
from supermem.toy.engines import _tree_rows as TR
from supermem.toy.engines import _tree_walk as TW
from supermem.toy.engines.base import Engine
from supermem.toy.engines.chunked import ChunkedEngine
from supermem.toy.engines.fast import CpuData, _threads, angle_order, numpy_step
from supermem.toy.engines.variants import variant_step
from supermem.toy.model import TiedReLUOutput

NPART = 4  # fixed feature parts (results never depend on the thread count)
NCHUNK = 8  # fixed row chunks of the sparse pass, for the same reason
RESORT_MOVES = 16  # feature_order re-sorts from the last order up to this many moves a line


@dataclass
class TreeState:
    """One kd-tree per instance over its T hidden vectors, kept across steps.

    perm (inst, T) int64: the last build's order (tree position -> row before it).
    bstart, bend (nn,): node ranges, breadth-first (for ``build``); start, end, right
    (nn,) and leaves (2^D,): the same nodes in pre-order, as every other kernel reads
    them (``_tree_kernels.preorder``).
    lo, hi (inst, nn, m), S1 (inst, nn, m), S2 (inst, nn, m, m) float64: boxes, moments.
    ghp (inst, NPART, T, m) float64 and cut (inst, NPART, nn) bool: per-part point
    buffers, and nodeA (inst, NPART, nn, m, m), nodea (inst, NPART, nn, m) float64,
    onm (inst, NPART, nn) bool: per-part node buffers; between steps every mark (onm,
    cut) is clear, and an unmarked entry counts as zero whatever it holds.
    built (inst,) bool (False: build at the next step), work0 (inst,) int64 (traversal
    work units of the first step after the build, -1 before it) and excess (inst,) int64
    (work units spent beyond work0 since the build): the rebuild rule's bookkeeping, per
    instance, so no run's schedule depends on what it is batched with.
    """

    D: int
    bstart: np.ndarray
    bend: np.ndarray
    start: np.ndarray
    end: np.ndarray
    right: np.ndarray
    leaves: np.ndarray
    perm: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    S1: np.ndarray
    S2: np.ndarray
    ghp: np.ndarray
    cut: np.ndarray
    nodeA: np.ndarray
    nodea: np.ndarray
    onm: np.ndarray
    built: np.ndarray
    work0: np.ndarray
    excess: np.ndarray
    builds: int = 0  # build events (steps at which any instance's tree was built)
    steps: int = 0

    @classmethod
    def empty(cls, inst: int, T: int, m: int, leaf: int) -> TreeState:
        D = TK.depth_for(T, leaf)
        bstart, bend = TK.node_ranges(T, D)
        start, end, right, leaves = TK.preorder(T, D)
        nn = len(start)
        return cls(
            D,
            bstart,
            bend,
            start,
            end,
            right,
            leaves,
            np.zeros((inst, T), np.int64),
            np.empty((inst, nn, m)),
            np.empty((inst, nn, m)),
            np.empty((inst, nn, m)),
            np.empty((inst, nn, m, m)),
            np.zeros((inst, NPART, T, m)),
            np.zeros((inst, NPART, nn), np.bool_),
            np.zeros((inst, NPART, nn, m, m)),
            np.zeros((inst, NPART, nn, m)),
            np.zeros((inst, NPART, nn), np.bool_),
            np.zeros(inst, np.bool_),
            np.full(inst, -1, np.int64),
            np.zeros(inst, np.int64),
        )


@dataclass
class TreeData:
    """A data set as the tree engine uses it: the fast engine's arrays, their rows put in
    tree order at each build (the loss and gradients do not depend on the order), plus
    the trees (created at the first step, when the hidden dimension is known)."""

    cpu: CpuData
    state: TreeState | None = None
    leaf: int = 16
    log: list = field(default_factory=list)  # (step, "build") entries, for the benchmark
    order: np.ndarray | None = None  # (inst, T) int64: the row of the prepared set at each
    # tree position (all builds composed; None before the first), what a checkpoint keeps
    forder: np.ndarray | None = None  # (inst, n): the last feature order (m = 2), where the
    # next one's re-sort starts (it is the same from anywhere: a checkpoint needs none)
    xx: np.ndarray | None = None  # (inst,) float64: the loss's x^2 terms, from the rows as
    # given (before any tree order), so a resumed run adds the same bits

    def __post_init__(self) -> None:
        if self.xx is None:
            d = self.cpu
            self.xx = TR.row_squares(d.indptr, d.values, d.inst, d.T)


def feature_order(
    W: np.ndarray, b: np.ndarray, radius: np.ndarray, F: int, prev: np.ndarray | None = None
) -> np.ndarray:
    """W (inst, m, n), b (inst, n), radius (inst,) -> (inst, n): an order of the features
    in which F consecutive ones have hyperplanes alike, so a block cuts the same nodes.
    ``prev`` (inst, n): the last step's order, from which m = 2 re-sorts by insertion
    (the same order as from scratch, ~10x cheaper; ``_tree_kernels.resort``).

    For m = 2 a feature's line W_j . h + b_j = 0 has an angle and an offset
    d_j = -b_j / ||W_j||; the line of (angle + pi, -d_j) is the same one with the other
    side on, and cuts the same nodes, so lines are taken with their angle in [0, pi).
    Sorting by angle alone serves while the offsets are alike (at the initial b = 0
    every line passes through the origin), but once they spread a block of
    near-parallel lines at scattered offsets cuts a wide band of the tree. So the
    (radius * angle, offset) plane is cut into angle buckets sized to make each block's
    patch about square, with the offsets sorted within each bucket (alternately up and
    down; equal offsets by angle). radius: the point cloud's RMS radius. Measured at
    T = 10^6: half the walk's work and time of the angle order after 300 early steps,
    and after 500 settled ones; the same at b = 0. Angles in [0, pi) rather than
    [-pi, pi): 22% less work at b = 0 (T = 10^6), 2% at the full run's final state.
    m = 1: by the threshold -b_j / W_j. m >= 3: by the angle of the first two coordinates.
    Any order is exact.
    """
    inst, m, n = W.shape
    if m >= 3:
        return angle_order(W.transpose(0, 2, 1))
    Wd, bd = W.astype(np.float64), b.astype(np.float64)
    norm = np.sqrt((Wd * Wd).sum(1))  # (inst, n)
    d = np.where(norm > 0, -bd / np.where(norm > 0, norm, 1.0), 0.0)  # offset along W_j
    if m == 1:
        return np.argsort(np.where(Wd[:, 0] < 0, -d, d), axis=1, kind="stable")
    if prev is not None and prev.shape != (inst, n):
        prev = None
    out = np.empty((inst, n), np.int64) if prev is None else prev.copy()
    nb = max(1, n // F)
    for i in range(inst):
        angle, off = line_coordinates(Wd[i], d[i])
        q05, q95 = np.quantile(off, [0.05, 0.95])
        arc = np.pi * float(radius[i])
        side = np.sqrt(max(arc * (q95 - q05), 0.0) / nb)  # a block's patch: side x side
        B = nb if not side > 0 else int(np.clip(round(arc / side), 1, nb))
        bucket = np.minimum((angle / np.pi * B).astype(np.int64), B - 1)
        key = np.where(bucket % 2 == 0, off, -off)
        if prev is None or not TK.resort(out[i], angle, key, bucket, RESORT_MOVES * n):
            out[i] = np.lexsort((angle, key, bucket))
    return out


def line_coordinates(W: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (2, n), offsets d (n,) along W_j -> the lines' (angle in [0, pi), signed offset)
    (n,) each: the line of W_j at angle a - pi and offset d_j is the one at a, -d_j."""
    angle = np.nan_to_num(np.arctan2(W[1], W[0]))  # a NaN W: a diverged run
    flip = angle < 0
    return np.where(flip, angle + np.pi, angle), np.where(flip, -d, d)


def _wb(W: np.ndarray, b: np.ndarray, aligned: bool = True) -> np.ndarray:
    """W (inst, m, n), b (inst, n) float32 -> the row kernels' layout: for m = 2 and
    ``aligned`` (the m = 2 kernels) (inst, n, 4) with W_0j, W_1j, 0, b_j (one aligned
    16-byte slot per feature), else (inst, n, m+1) (the generic kernels)."""
    inst, m, n = W.shape
    if m == 2 and aligned:
        WB = np.zeros((inst, n, 4), np.float32)
        WB[:, :, :2], WB[:, :, 3] = W.transpose(0, 2, 1), b
        return WB
    return np.concatenate([W.transpose(0, 2, 1), b[:, :, None]], axis=2)


def _hidden(WB: np.ndarray, d: CpuData, m: int) -> np.ndarray:
    """h = W x (inst * T, m) float32 over the prepared rows; WB from ``_wb``."""
    h = np.empty((d.inst * d.T, m), np.float32)
    with _threads(_sparse_work(d, m)):
        if m == 2:  # column indices are >= 0: as uint32 the same bits
            TR.hidden_rows_m2(
                d.indptr, d.indices.view(np.uint32), d.values, WB.ravel(), d.T, h.ravel()
            )
        else:
            TR.hidden_rows(d.indptr, d.indices, d.values, WB, h)
    return h


def _sparse_work(d: CpuData, m: int) -> int:
    """Work of a pass over the nonzeros (``_threads``' measure)."""
    return len(d.indices) * m + d.inst * (d.T + d.n)


def _dense_part(h: np.ndarray, D: np.ndarray, b: np.ndarray, data: TreeData, rebuild_units: float):
    """The dense part of the loss over the tree: h (inst * T, m) float32 the hidden
    vectors in the prepared rows' order, D (inst, m, n) the decoder, b (inst, n) ->
    h (inst * T, m) in tree order (after a rebuild, a permuted copy, and data.cpu's rows
    permuted alike), lossf (inst, n) float64 per feature, gD (inst, m, n) and gb (inst, n)
    of the dense part, gh_tree (inst, 1, T, m) its dL/dh per point in tree order."""
    d = data.cpu
    inst, m, n = D.shape
    T = d.T
    c2 = np.float32(2.0 / T)
    if data.state is None or data.state.lo.shape[2] != m:
        data.state = TreeState.empty(inst, T, m, data.leaf)
    st = data.state
    tree_work = inst * T * m * m
    hs = h.reshape(inst, T, m)  # the rows are kept in tree order
    with _threads(tree_work):
        # ski rental, per instance: rebuild a tree once the work it has cost beyond its
        # fresh level since its last build exceeds what a build costs (all in
        # deterministic units)
        st.built &= st.excess <= rebuild_units * T * st.D
        if st.built.all():
            TK.refit(hs, st.start, st.end, st.right, st.leaves, st.lo, st.hi, st.S1, st.S2)
        else:
            due = np.flatnonzero(~st.built)
            st.perm[:] = np.arange(T)  # the trees kept stay in their order
            sub = np.empty((len(due), T), np.int64)
            built = TK.build(
                np.ascontiguousarray(hs[due]).reshape(-1, m), T, st.D, st.bstart, st.bend, sub
            )
            st.perm[due] = sub
            hs = hs.copy()
            hs[due] = built.reshape(len(due), T, m)
            h = hs.reshape(inst * T, m)
            prev = data.order
            data.order = st.perm.copy() if prev is None else np.take_along_axis(prev, st.perm, 1)
            ptr, idx, val = TK.permute_rows(d.indptr, d.indices, d.values, st.perm, T)
            data.cpu = dataclasses.replace(d, indptr=ptr, indices=idx, values=val)
            TK.refit(hs, st.start, st.end, st.right, st.leaves, st.lo, st.hi, st.S1, st.S2)
            st.built[due], st.work0[due], st.excess[due] = True, -1, 0
            st.builds += 1
            data.log.append((st.steps, "build"))
    st.steps += 1
    radius = np.sqrt(np.trace(st.S2[:, 0], axis1=1, axis2=2) / T)  # (inst,): root's moments
    fperm = feature_order(D, b, radius, TW.FB, data.forder)  # (inst, n): a block's lines alike
    data.forder = fperm if m == 2 else None
    Ds = np.ascontiguousarray(np.take_along_axis(D, fperm[:, None, :], axis=2))
    bs = np.ascontiguousarray(np.take_along_axis(b, fperm, axis=1))
    gDs = np.empty((inst, m, n), np.float32)
    gbs = np.empty((inst, n), np.float32)
    lossf = np.empty((inst, n))
    work = np.zeros((inst, NPART), np.int64)
    with _threads(inst * n * int(np.sqrt(T * data.leaf))):  # ~ lanes tested and pairs
        TW.traverse(
            Ds, bs, hs, st.D, st.start, st.end, st.right, st.lo, st.hi, st.S1, st.S2, c2, TW.FB,
            gDs, gbs, lossf, st.nodeA, st.nodea, st.onm, st.ghp, st.cut, work,
        )  # fmt: skip
    units = work.sum(1)  # (inst,)
    fresh = st.work0 < 0
    st.work0[fresh] = units[fresh]  # the fresh trees' cost
    st.excess += np.maximum(units - st.work0, 0)
    gD = np.empty_like(gDs)  # back to the caller's feature order
    np.put_along_axis(gD, fperm[:, None, :], gDs, axis=2)
    gb = np.empty_like(gbs)
    np.put_along_axis(gb, fperm, gbs, axis=1)
    gh_tree = np.empty((inst, 1, T, m), np.float32)
    with _threads(tree_work):
        TK.push_down(
            st.nodeA, st.nodea, st.onm, st.ghp, st.cut, hs, st.start, st.end, st.right, st.leaves,
            c2, gh_tree,
        )  # fmt: skip
    return h, lossf, gD, gb, gh_tree


def tree_loss_and_grads(W: np.ndarray, b: np.ndarray, data: TreeData, rebuild_units: float):
    """W (inst, m, n), b (inst, n) float32 -> loss (inst,) f64, gW (inst, m, n), gb (inst, n)."""
    inst, m, n = W.shape
    T = data.cpu.T
    c2 = np.float32(2.0 / T)
    WB = _wb(W, b)
    h, lossf, gW, gb, gh_tree = _dense_part(_hidden(WB, data.cpu, m), W, b, data, rebuild_units)
    d = data.cpu
    gWBc = np.zeros((inst, NCHUNK, n, WB.shape[2]), np.float32)
    loss_t = np.empty(inst * T)
    with _threads(_sparse_work(d, m)):
        if m == 2:
            TR.sparse_rows_m2(
                d.indptr, d.indices.view(np.uint32), d.values, WB.ravel(), h.ravel(), T, c2,
                gh_tree.ravel(), gWBc.reshape(inst, NCHUNK, -1), loss_t,
            )  # fmt: skip
        else:
            TR.sparse_rows(d.indptr, d.indices, d.values, WB, h, T, c2, gh_tree[:, 0], gWBc, loss_t)
    for c in range(NCHUNK):  # fixed order: independent of the thread count
        gW += gWBc[:, c, :, :m].transpose(0, 2, 1)
        gb += gWBc[:, c, :, -1]
    return (lossf.sum(1) + loss_t.reshape(inst, T).sum(1) + data.xx) / T, gW, gb


def tree_variant_loss_and_grads(
    W: np.ndarray,
    D: np.ndarray | None,
    b: np.ndarray,
    relu: bool,
    data: TreeData,
    rebuild_units: float,
):
    """The untied and relu_hidden models (``toy.model``): h = W x, or ReLU(W x) when
    ``relu``; x' = ReLU(D^T h + b) with D the decoder, or W when None (tied).
    W, D (inst, m, n), b (inst, n) float32 -> loss (inst,) f64, gW (inst, m, n), gD
    (inst, m, n) or None (tied: both in gW), gb (inst, n). The tree holds h (after the
    ReLU), the walk reads the decoder; the encoder's gradient comes from the row pass."""
    inst, m, n = W.shape
    T = data.cpu.T
    c2 = np.float32(2.0 / T)
    dec = W if D is None else D
    h = _hidden(_wb(W, b), data.cpu, m)
    if relu:
        np.maximum(h, np.float32(0.0), out=h)
    h, lossf, gD, gb, gh_tree = _dense_part(h, dec, b, data, rebuild_units)
    d = data.cpu
    DB = _wb(dec, b, aligned=False)
    gDc = np.zeros((inst, NCHUNK, n, m + 1), np.float32)
    gEc = np.zeros((inst, NCHUNK, n, m), np.float32)
    loss_t = np.empty(inst * T)
    with _threads(_sparse_work(d, m)):
        TR.sparse_rows_split(
            d.indptr, d.indices, d.values, DB, h, T, c2, relu, gh_tree[:, 0], gDc, gEc, loss_t
        )
    gW = np.zeros((inst, m, n), np.float32)
    for c in range(NCHUNK):  # fixed order: independent of the thread count
        gD += gDc[:, c, :, :m].transpose(0, 2, 1)
        gb += gDc[:, c, :, m]
        gW += gEc[:, c].transpose(0, 2, 1)
    loss = (lossf.sum(1) + loss_t.reshape(inst, T).sum(1) + data.xx) / T
    if D is None:
        return loss, gW + gD, None, gb
    return loss, gW, gD, gb


class TreeEngine(Engine):
    """Exact engine whose dense part walks a kd-tree of the hidden vectors. The tied
    model on CPU (on CUDA it runs the ``chunked`` engine's code, as ``fast`` does), and
    the untied and relu_hidden models on CPU (``tree_variant_loss_and_grads``)."""

    name = "tree"
    pool = "numba"
    elastic = True  # thread-count independent, bit for bit (tested)
    LEAF = 16  # points per leaf (docs/ENGINES.md: measured)
    # a build costs about this many traversal work units per point and tree level
    # (measured: docs/ENGINES.md); the rebuild rule compares the excess work with it
    REBUILD_UNITS = 20.0

    def supports(self, model, device) -> bool:
        kind = torch.device(device).type
        if isinstance(model, TiedReLUOutput):
            return kind in ("cpu", "cuda")
        return set(model.params) <= {"W", "W_dec", "b"} and kind == "cpu"

    def prepare(self, data: SparseData, device):
        if torch.device(device).type == "cuda":
            return ChunkedEngine().prepare(data, device)
        return TreeData(CpuData.from_sparse(data, csc=False), leaf=self.LEAF)

    def loss_and_grads(self, model, p, data):
        if not isinstance(data, TreeData):
            return ChunkedEngine().loss_and_grads(model, p, data)
        if isinstance(model, TiedReLUOutput):
            return numpy_step(p, lambda W, b: tree_loss_and_grads(W, b, data, self.REBUILD_UNITS))
        return variant_step(
            p,
            lambda W, D, b: tree_variant_loss_and_grads(
                W, D, b, model.relu_hidden, data, self.REBUILD_UNITS
            ),
        )

    def loss(self, model, p, data):
        return self.loss_and_grads(model, p, data)[0]

    def state(self, data) -> dict[str, np.ndarray]:
        """The point order and the rebuild rule's bookkeeping: the boxes and moments are
        refitted from them at the next step, exactly as they would have been."""
        st = getattr(data, "state", None)
        if not isinstance(data, TreeData) or st is None or data.order is None:
            return {}
        m = st.lo.shape[2]
        return {
            "order": data.order,
            "scalars": np.array([m, st.builds, st.steps], np.int64),
            "built": st.built.astype(np.int64),
            "work0": st.work0.copy(),
            "excess": st.excess.copy(),
        }

    def restore(self, data, state: dict[str, np.ndarray]) -> None:
        if not isinstance(data, TreeData) or "order" not in state:
            return
        order = np.ascontiguousarray(state["order"], dtype=np.int64)
        d = data.cpu
        if order.shape != (d.inst, d.T):
            raise ValueError(f"tree state of shape {order.shape} for data {(d.inst, d.T)}")
        ptr, idx, val = TK.permute_rows(d.indptr, d.indices, d.values, order, d.T)
        data.cpu = dataclasses.replace(d, indptr=ptr, indices=idx, values=val)
        data.order = order
        scalars = [int(x) for x in state["scalars"]]
        st = data.state = TreeState.empty(d.inst, d.T, scalars[0], data.leaf)
        if "built" in state:
            st.builds, st.steps = scalars[1:]
            st.built[:] = np.asarray(state["built"]) != 0
            st.work0[:], st.excess[:] = state["work0"], state["excess"]
        else:  # saved before the rule was per instance (one shared work0 and excess)
            built, work0, excess, st.builds, st.steps = scalars[1:]
            st.built[:] = bool(built)
            if d.inst == 1:  # the same bookkeeping
                st.work0[:], st.excess[:] = work0, excess
            # else the shared numbers do not split by instance: each tree's starts afresh
