"""Numba kernels of the tree engine (tied ReLU-output model). See docs/ENGINES.md.

Vocabulary as in ``_numba_kernels``: ``inst`` instances, T points, n features, m hidden
dims, p_tj = W_j . h_t + b_j, c2 = 2/T. Per instance the T hidden vectors sit in an
implicit balanced kd-tree of depth D: node 0 is the root, node v has children 2v+1 and
2v+2, the leaves are nodes 2^D - 1 ... 2^(D+1) - 2, and node v holds the points at tree
positions start[v] <= s < end[v] (these ranges depend on T and D only; the data decide
which point sits at which position, through ``perm``). Each node carries its bounding
box (lo, hi (m,)) and its moments in float64: count, S1 = sum h (m,), S2 = sum h h^T
(m, m).

For feature j a node is
  off  if max over its box of p < -MARGIN * scale: it contributes nothing;
  on   if min over its box of p > +MARGIN * scale: it contributes from its moments,
       loss sum_t p^2 = W_j^T S2 W_j + 2 b_j W_j.S1 + b_j^2 count,
       dL/dW_j += c2 (S2 W_j + b_j S1), dL/db_j += c2 (W_j.S1 + b_j count), and every
       point below gets c2 p_tj W_j = c2 (W_j W_j^T h_t + b_j W_j) in dL/dh_t, kept on
       the node as A += W_j W_j^T, a += b_j W_j and pushed down once per step;
  cut  otherwise: its children are tested, and a cut leaf is done point by point.
scale = |b_j| + sum_k |W_kj| max(|lo_k|, |hi_k|) bounds the terms of p, so float32
rounding of p (relative error ~ (m+1) 6e-8) can never flip the sign the box test
promised: an on point is on, an off point is off, in every kernel (exact).

Features walk the tree in blocks of F (at most 63, lanes of a bit mask), in an order
the caller chooses so that a block's hyperplanes are alike and cut the same nodes.

Determinism: the blocks are split into NPART fixed parts (block B in part B % NPART),
each part accumulates into its own node and point buffers, and the parts are summed in
a fixed order; no result depends on the thread count or the schedule.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_HOT = {"reassoc", "nsz"}  # as in _numba_kernels: no contraction, NaN and inf propagate
MARGIN = 1e-5  # >> float32 rounding of p relative to scale, << any useful p


def depth_for(T: int, leaf: int) -> int:
    """The smallest depth D whose leaves hold at most ``leaf`` points."""
    D = 0
    while -(-T // (1 << D)) > leaf:
        D += 1
    return D


def node_ranges(T: int, D: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) (2^(D+1) - 1,) int64 of every node: each split gives the left child
    the larger half, so sizes on a level differ by at most one."""
    nn = (1 << (D + 1)) - 1
    start = np.zeros(nn, np.int64)
    end = np.zeros(nn, np.int64)
    end[0] = T
    for v in range((1 << D) - 1):
        mid = start[v] + (end[v] - start[v] + 1) // 2
        start[2 * v + 1], end[2 * v + 1] = start[v], mid
        start[2 * v + 2], end[2 * v + 2] = mid, end[v]
    return start, end


@njit(cache=True)
def _select(perm, key, a, z, kth):
    """Reorder perm[a:z] so that key[perm[a:kth]] <= key[perm[kth]] <= key[perm[kth+1:z]].

    Three-way quickselect (median-of-three pivot): O(z - a) expected, and a run of equal
    keys (duplicate or zero hidden vectors) ends it in one pass. key (T,) float32.
    """
    lo, hi = a, z  # the k-th element lies in perm[lo:hi]
    while hi - lo > 1:
        x, y, w = key[perm[lo]], key[perm[(lo + hi) // 2]], key[perm[hi - 1]]
        piv = max(min(x, y), min(max(x, y), w))
        lt, i, gt = lo, lo, hi  # [lo,lt) < piv, [lt,i) == piv, [gt,hi) > piv
        while i < gt:
            v = key[perm[i]]
            if v < piv:
                perm[lt], perm[i] = perm[i], perm[lt]
                lt += 1
                i += 1
            elif v > piv:
                gt -= 1
                perm[gt], perm[i] = perm[i], perm[gt]
            else:
                i += 1
        if kth < lt:
            hi = lt
        elif kth >= gt:
            lo = gt
        else:
            return


@njit(parallel=True, cache=True)
def build(h, T, D, start, end, perm):
    """A fresh kd-tree order: perm (inst, T) int64 from h (inst*T, m) float32.

    Level by level, each node splits its points at its size's midpoint along the
    widest axis of their bounding box (ties broken by the lowest axis).
    """
    inst = perm.shape[0]
    m = h.shape[1]
    for i in range(inst):
        for s in range(T):
            perm[i, s] = s
    for lev in range(D):
        first, count = (1 << lev) - 1, 1 << lev
        for q in prange(inst * count):
            i, v = q // count, first + q % count
            a, z = start[v], end[v]
            if z - a < 2:
                continue
            best, axis = -1.0, 0
            for k in range(m):
                mn, mx = np.inf, -np.inf
                for s in range(a, z):
                    x = h[i * T + perm[i, s], k]
                    mn = min(mn, x)
                    mx = max(mx, x)
                if mx - mn > best:
                    best, axis = mx - mn, k
            key = h[i * T : (i + 1) * T, axis]
            _select(perm[i], key, a, z, start[2 * v + 2])


@njit(parallel=True, cache=True)
def gather(h, perm, hs):
    """hs (inst, T, m) = h (inst*T, m) in tree order."""
    inst, T, m = hs.shape
    for r in prange(inst * T):
        i, s = r // T, r % T
        src = i * T + perm[i, s]
        for k in range(m):
            hs[i, s, k] = h[src, k]


@njit(cache=True)
def _combine_box(lo, hi, i, v, c):
    """Grow node v's box by child c's; a NaN bound (a NaN point below) stays NaN."""
    for k in range(lo.shape[2]):
        a, b = lo[i, c, k], hi[i, c, k]
        if np.isnan(a) or np.isnan(lo[i, v, k]):
            lo[i, v, k] = np.nan
            hi[i, v, k] = np.nan
        else:
            lo[i, v, k] = min(lo[i, v, k], a)
            hi[i, v, k] = max(hi[i, v, k], b)


@njit(parallel=True, cache=True)
def refit(hs, D, start, end, lo, hi, S1, S2):
    """Boxes lo, hi (inst, nn, m) and moments S1 (inst, nn, m), S2 (inst, nn, m, m) of
    every node from the points hs (inst, T, m) in tree order: leaves from their points,
    then each level up from its children. Exact for any order of the points."""
    inst, T, m = hs.shape
    first_leaf, nleaves = (1 << D) - 1, 1 << D
    for q in prange(inst * nleaves):
        i, v = q // nleaves, first_leaf + q % nleaves
        nan = False
        for k in range(m):
            lo[i, v, k], hi[i, v, k] = np.inf, -np.inf
            S1[i, v, k] = 0.0
            for l in range(m):
                S2[i, v, k, l] = 0.0
        for s in range(start[v], end[v]):
            for k in range(m):
                x = np.float64(hs[i, s, k])
                nan = nan or np.isnan(x)
                lo[i, v, k] = min(lo[i, v, k], x)
                hi[i, v, k] = max(hi[i, v, k], x)
                S1[i, v, k] += x
                for l in range(m):
                    S2[i, v, k, l] += x * np.float64(hs[i, s, l])
        if nan:
            for k in range(m):
                lo[i, v, k], hi[i, v, k] = np.nan, np.nan
    for lev in range(D - 1, -1, -1):
        first, count = (1 << lev) - 1, 1 << lev
        for q in prange(inst * count):
            i, v = q // count, first + q % count
            c0, c1 = 2 * v + 1, 2 * v + 2
            for k in range(m):
                lo[i, v, k], hi[i, v, k] = lo[i, c0, k], hi[i, c0, k]
                S1[i, v, k] = S1[i, c0, k] + S1[i, c1, k]
                for l in range(m):
                    S2[i, v, k, l] = S2[i, c0, k, l] + S2[i, c1, k, l]
            _combine_box(lo, hi, i, v, c1)


@njit(cache=True)
def leaf_spread(lo, hi, D):
    """(inst,) sum over leaves of their box extents divided by the root's: how loose
    the tree has become (the rebuild rule compares it with its value after a build)."""
    inst, m = lo.shape[0], lo.shape[2]
    out = np.zeros(inst)
    for i in range(inst):
        root = 0.0
        for k in range(m):
            root += hi[i, 0, k] - lo[i, 0, k]
        tot = 0.0
        for v in range((1 << D) - 1, (1 << (D + 1)) - 1):
            for k in range(m):
                tot += hi[i, v, k] - lo[i, v, k]
        out[i] = tot / root if root > 0 else 0.0
    return out


@njit(parallel=True, cache=True)
def traverse(
    Ws, bs, hs, D, start, end, lo, hi, S1, S2, c2, F, gW, gb, lossf, nodeA, nodea, ghp, cut
):
    """The dense part of loss and gradients, a block of F features at a time down the tree.

    Ws (inst, m, n), bs (inst, n) float32, features in the caller's (sorted) order: F
    consecutive ones walk the tree together, so neighbours in that order should cut the
    same nodes. hs (inst, T, m) float32 in tree order; boxes and moments as from
    ``refit``; c2 = 2/T. Writes, per feature j (same order as Ws),
      gW (inst, m, n) float32 = c2 sum_{t on} p_tj h_t, gb (inst, n) = c2 sum_{t on} p_tj,
      lossf (inst, n) float64 = sum_{t on} p_tj^2,
    and per part P (block B in part B % NPART; NPART = nodeA.shape[1]), zero on entry:
      nodeA (inst, NPART, nn, m, m) += W_j W_j^T, nodea (..., m) += b_j W_j on each on
      node, ghp (inst, NPART, T, m) float64 += c2 p_tj W_j for each on point of a cut
      leaf, and cut (inst, NPART, 2^D) bool marks the leaves whose ghp was written
      (``push_down`` reads and clears exactly those, so ghp stays zero between steps).
    """
    inst, n, nparts = Ws.shape[0], Ws.shape[2], nodeA.shape[1]
    nblk = -(-n // F)
    for q in prange(inst * nparts):
        i, part = q // nparts, q % nparts
        for B in range(part, nblk, nparts):
            _traverse_block(
                Ws, bs, hs, D, start, end, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA, nodea,
                ghp, cut, i, part, B * F, min(n, B * F + F),
            )  # fmt: skip


@njit(fastmath=_HOT, cache=True)
def _traverse_block(
    Ws, bs, hs, D, start, end, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA, nodea, ghp, cut,
    i, part, j0, j1,
):  # fmt: skip
    """``traverse`` for features j0 <= j < j1 (at most 63) of instance i, part ``part``.

    A stack holds (node, lanes): the features still cut at the node's parent, as bits.
    At a node every lane's box bounds are computed at once (vectorised), then each live
    lane is off (dropped), on (moments; dropped) or cut (kept); a leaf does its cut
    lanes point by point, vectorised over the lanes.
    """
    m = Ws.shape[1]
    F = j1 - j0
    first_leaf = (1 << D) - 1
    w = np.empty((m, F))  # float64 copies for the box tests and moments
    bj = np.empty(F)
    pmin = np.empty(F)
    pmax = np.empty(F)
    scale = np.empty(F)
    loss = np.zeros(F)
    gbl = np.zeros(F)
    gwl = np.zeros((m, F))
    isOn = np.zeros(F, np.bool_)
    s1w = np.empty(F)
    quad = np.empty(F)
    lane = np.empty(F, np.int64)  # the cut lanes of a leaf, compacted
    cw = np.empty((m, F), np.float32)
    cb = np.empty(F, np.float32)
    cp = np.empty(F, np.float32)
    cl = np.empty(F, np.float32)
    cg = np.empty(F, np.float32)
    cgw = np.empty((m, F), np.float32)
    for f in range(F):
        bj[f] = bs[i, j0 + f]
        for k in range(m):
            w[k, f] = Ws[i, k, j0 + f]
    node = np.empty(2 * D + 4, np.int64)
    mask = np.empty(2 * D + 4, np.int64)
    node[0], mask[0] = 0, (1 << F) - 1
    sp = 1
    while sp > 0:
        sp -= 1
        v, live = node[sp], mask[sp]
        for f in range(F):
            pmin[f] = bj[f]
            pmax[f] = bj[f]
            scale[f] = abs(bj[f])
        for k in range(m):
            lk, hk = lo[i, v, k], hi[i, v, k]
            for f in range(F):
                x, y = w[k, f] * lk, w[k, f] * hk
                pmin[f] += min(x, y)
                pmax[f] += max(x, y)
                scale[f] += max(abs(x), abs(y))
        keep, on = 0, 0
        for f in range(F):
            tol = MARGIN * scale[f]
            if (live >> f) & 1 and not (pmax[f] < -tol):  # live and not off
                if pmin[f] > tol:
                    on |= 1 << f  # on: from the moments
                else:
                    keep |= 1 << f  # cut (or NaN): look closer
        if on:  # the on lanes' moment terms, vectorised over all lanes, kept where on
            for f in range(F):
                isOn[f] = (on >> f) & 1
            cnt = np.float64(end[v] - start[v])
            for f in range(F):
                s1w[f] = 0.0
                quad[f] = 0.0
            for k in range(m):
                s1k = S1[i, v, k]
                for f in range(F):
                    s1w[f] += w[k, f] * s1k
                for f in range(F):
                    acc = 0.0
                    for l in range(m):
                        acc += S2[i, v, k, l] * w[l, f]
                    quad[f] += w[k, f] * acc
                    g = acc + bj[f] * s1k
                    gwl[k, f] += g if isOn[f] else 0.0
            for f in range(F):
                x = quad[f] + 2.0 * bj[f] * s1w[f] + bj[f] * bj[f] * cnt
                loss[f] += x if isOn[f] else 0.0
                y = s1w[f] + bj[f] * cnt
                gbl[f] += y if isOn[f] else 0.0
            for k in range(m):
                acc = 0.0
                for f in range(F):
                    x = bj[f] * w[k, f]
                    acc += x if isOn[f] else 0.0
                nodea[i, part, v, k] += acc
                for l in range(m):
                    acc = 0.0
                    for f in range(F):
                        x = w[k, f] * w[l, f]
                        acc += x if isOn[f] else 0.0
                    nodeA[i, part, v, k, l] += acc
        if keep == 0:
            continue
        if v < first_leaf:
            node[sp], mask[sp] = 2 * v + 2, keep
            node[sp + 1], mask[sp + 1] = 2 * v + 1, keep
            sp += 2
            continue
        # a cut leaf: its cut lanes point by point, p rounded as _pre (b, then + W_k h_k)
        cut[i, part, v - first_leaf] = True
        L = 0
        for f in range(F):
            if (keep >> f) & 1:
                lane[L] = f
                cb[L] = bs[i, j0 + f]
                for k in range(m):
                    cw[k, L] = Ws[i, k, j0 + f]
                L += 1
        cl[:L] = 0.0
        cg[:L] = 0.0
        cgw[:, :L] = 0.0
        for s in range(start[v], end[v]):
            for c in range(L):
                cp[c] = cb[c]
            for k in range(m):
                hk = hs[i, s, k]
                for c in range(L):
                    cp[c] = cp[c] + cw[k, c] * hk
            for c in range(L):
                r = cp[c]
                r = np.float32(0.0) if r <= 0 else r  # relu that keeps NaN
                cl[c] += r * r
                cg[c] += r
                cp[c] = r
            for k in range(m):
                hk = hs[i, s, k]
                acc = np.float32(0.0)
                for c in range(L):
                    cgw[k, c] += cp[c] * hk
                    acc += cp[c] * cw[k, c]
                ghp[i, part, s, k] += c2 * np.float64(acc)
        for c in range(L):
            f = lane[c]
            loss[f] += cl[c]
            gbl[f] += cg[c]
            for k in range(m):
                gwl[k, f] += cgw[k, c]
    for f in range(F):
        lossf[i, j0 + f] = loss[f]
        gb[i, j0 + f] = c2 * gbl[f]
        for k in range(m):
            gW[i, k, j0 + f] = c2 * gwl[k, f]


@njit(parallel=True, cache=True)
def push_down(nodeA, nodea, ghp, cut, hs, D, start, end, c2, gh_tree):
    """dL/dh of the dense part per point, in tree order: gh_tree (inst, 1, T, m) float32.

    Sums the parts of nodeA, nodea (in place, into part 0) and of ghp in a fixed order,
    adds each node's A, a to its children's (root first), then for each leaf point
    gh = c2 (A h + a) + sum over parts of ghp. The ghp entries read are set back to 0
    and ``cut`` cleared.
    """
    inst, nparts, nn, m = nodea.shape
    for q in prange(inst * nn):
        i, v = q // nn, q % nn
        for P in range(1, nparts):
            for k in range(m):
                nodea[i, 0, v, k] += nodea[i, P, v, k]
                for l in range(m):
                    nodeA[i, 0, v, k, l] += nodeA[i, P, v, k, l]
    for i in range(inst):
        for v in range(1, nn):
            u = (v - 1) // 2
            for k in range(m):
                nodea[i, 0, v, k] += nodea[i, 0, u, k]
                for l in range(m):
                    nodeA[i, 0, v, k, l] += nodeA[i, 0, u, k, l]
    first_leaf, nleaves = (1 << D) - 1, 1 << D
    for q in prange(inst * nleaves):
        i, L = q // nleaves, q % nleaves
        v = first_leaf + L
        for s in range(start[v], end[v]):
            for k in range(m):
                acc = nodea[i, 0, v, k]
                for l in range(m):
                    acc += nodeA[i, 0, v, k, l] * np.float64(hs[i, s, l])
                acc *= c2
                for P in range(nparts):
                    if cut[i, P, L]:
                        acc += ghp[i, P, s, k]
                        ghp[i, P, s, k] = 0.0
                gh_tree[i, 0, s, k] = acc
        for P in range(nparts):
            cut[i, P, L] = False
