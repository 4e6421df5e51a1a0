"""Numba kernels of the tree engine (tied ReLU-output model). See docs/ENGINES.md.

Vocabulary as in ``_numba_kernels``: ``inst`` instances, T points, n features, m hidden
dims, p_tj = W_j . h_t + b_j, c2 = 2/T. Per instance the T hidden vectors sit in a
balanced kd-tree of depth D (every leaf at depth D). ``build`` splits level by level in
the breadth-first numbering of ``node_ranges`` (node v has children 2v+1, 2v+2); every
other kernel reads the nodes stored in depth-first pre-order (``preorder``): node v's
left child is v+1, its right child right[v] (-1 at a leaf), so a walk down the tree, and
with it every read of the node arrays, runs forward through memory. Node v holds the
points at tree positions start[v] <= s < end[v] (these ranges depend on T and D only;
the data decide which point sits at which position, through ``perm``). Each node carries
its bounding box (lo, hi (m,)) and its moments in float64: count, S1 = sum h (m,),
S2 = sum h h^T (m, m).

For feature j a node is
  off  if max over its box of p < -MARGIN * scale (``_tree_walk.MARGIN``): it contributes nothing;
  on   if min over its box of p > +MARGIN * scale: it contributes from its moments,
       loss sum_t p^2 = W_j^T S2 W_j + 2 b_j W_j.S1 + b_j^2 count,
       dL/dW_j += c2 (S2 W_j + b_j S1), dL/db_j += c2 (W_j.S1 + b_j count), and every
       point below gets c2 p_tj W_j = c2 (W_j W_j^T h_t + b_j W_j) in dL/dh_t, kept on
       the node as A += W_j W_j^T, a += b_j W_j and pushed down once per step;
  cut  otherwise: its children are tested, and a cut leaf is done point by point.
scale = |b_j| + sum_k |W_kj| max(|lo_k|, |hi_k|) bounds the terms of p, so float32
rounding of p (relative error ~ (m+1) 6e-8) can never flip the sign the box test
promised: an on point is on, an off point is off, in every kernel (exact).

The walk itself is in ``_tree_walk``, the passes over the nonzeros in ``_tree_rows``.

Determinism: the blocks are split into NPART fixed parts (block B in part B % NPART),
each part accumulates into its own node and point buffers, and the parts are summed in
a fixed order; no result depends on the thread count or the schedule.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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


def preorder(T: int, D: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The nodes of ``node_ranges`` in depth-first pre-order: (start, end, right) (nn,)
    int64, right[v] the right child (the left one is v+1; -1 at a leaf), and leaves
    (2^D,) int64, the pre-order index of the L-th leaf from the left."""
    bstart, bend = node_ranges(T, D)
    nn = len(bstart)
    pos = np.zeros(nn, np.int64)  # breadth-first index -> pre-order index
    right = np.full(nn, -1, np.int64)
    for v in range((1 << D) - 1):  # parents before children
        d = (v + 1).bit_length() - 1  # v's depth
        pos[2 * v + 1] = pos[v] + 1
        pos[2 * v + 2] = pos[v] + (1 << (D - d))  # after the left subtree's 2^(D-d) - 1
        right[pos[v]] = pos[2 * v + 2]
    start, end = np.empty(nn, np.int64), np.empty(nn, np.int64)
    start[pos], end[pos] = bstart, bend
    return start, end, right, pos[(1 << D) - 1 :].copy()


@njit(cache=True)
def _select(pts, perm, axis, a, z, kth):
    """Reorder rows a:z of pts (T, m) float32, and perm with them, so that
    pts[a:kth, axis] <= pts[kth, axis] <= pts[kth+1:z, axis].

    Three-way quickselect (median-of-three pivot): O(z - a) expected, and a run of equal
    keys (duplicate or zero hidden vectors) ends it in one pass. The points travel with
    their indices, so every pass reads memory in order.
    """
    m = pts.shape[1]
    lo, hi = a, z  # the k-th element lies in rows lo:hi
    while hi - lo > 1:
        x, y, w = pts[lo, axis], pts[(lo + hi) // 2, axis], pts[hi - 1, axis]
        piv = max(min(x, y), min(max(x, y), w))
        lt, i, gt = lo, lo, hi  # [lo,lt) < piv, [lt,i) == piv, [gt,hi) > piv
        while i < gt:
            v = pts[i, axis]
            if v < piv:
                _swap(pts, perm, m, lt, i)
                lt += 1
                i += 1
            elif v > piv:
                gt -= 1
                _swap(pts, perm, m, gt, i)
            else:
                i += 1
        if kth < lt:
            hi = lt
        elif kth >= gt:
            lo = gt
        else:
            return


@njit(cache=True, inline="always")
def _swap(pts, perm, m, r, s):
    perm[r], perm[s] = perm[s], perm[r]
    for k in range(m):
        pts[r, k], pts[s, k] = pts[s, k], pts[r, k]


@njit(parallel=True, cache=True)
def build(h, T, D, start, end, perm):
    """A fresh kd-tree order: perm (inst, T) int64 (tree position -> row of the
    instance) from h (inst*T, m) float32; returns h's rows in that order (inst*T, m).

    Level by level, each node splits its points at its size's midpoint along the
    widest axis of their bounding box (ties broken by the lowest axis).
    """
    inst = perm.shape[0]
    m = h.shape[1]
    pts = h.copy()  # moved along with perm
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
            P = pts[i * T : (i + 1) * T]
            best, axis = -1.0, 0
            for k in range(m):
                mn, mx = np.inf, -np.inf
                for s in range(a, z):
                    x = P[s, k]
                    mn = min(mn, x)
                    mx = max(mx, x)
                if mx - mn > best:
                    best, axis = mx - mn, k
            _select(P, perm[i], axis, a, z, start[2 * v + 2])
    return pts


@njit(parallel=True, cache=True)
def permute_rows(indptr, indices, values, perm, T):
    """Put each instance's data rows in tree order: new row i*T + s is old row
    i*T + perm[i, s]. indptr (R+1,), indices/values (nnz,): CSR. Returns the new
    (indptr, indices, values)."""
    R = perm.shape[0] * T
    ptr = np.empty(R + 1, np.int64)
    ptr[0] = 0
    for r in range(R):
        o = r - r % T + perm[r // T, r % T]
        ptr[r + 1] = ptr[r] + indptr[o + 1] - indptr[o]
    idx = np.empty_like(indices)
    val = np.empty_like(values)
    nchunks = min(R, 256)
    for c in prange(nchunks):
        for r in range(c * R // nchunks, (c + 1) * R // nchunks):
            o = r - r % T + perm[r // T, r % T]
            q0, e0 = ptr[r], indptr[o]
            for q in range(indptr[o + 1] - e0):
                idx[q0 + q] = indices[e0 + q]
                val[q0 + q] = values[e0 + q]
    return ptr, idx, val


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


SPLIT = 6  # refit and push_down run the subtrees below this depth in parallel


@njit(cache=True)
def _levels(right, K):
    """The pre-order indices of the nodes of depth < K, then of those of depth K, level by
    level (parents before children): (2^(K+1) - 1,) int64. Node v's subtree is the
    pre-order range v <= u < v + 2^(D - depth + 1) - 1."""
    out = np.zeros((1 << (K + 1)) - 1, np.int64)
    for q in range((1 << K) - 1):  # breadth-first: q's children are 2q+1, 2q+2
        out[2 * q + 1], out[2 * q + 2] = out[q] + 1, right[out[q]]
    return out


@njit(parallel=True, cache=True)
def refit(hs, start, end, right, leaves, lo, hi, S1, S2):
    """Boxes lo, hi (inst, nn, m) and moments S1 (inst, nn, m), S2 (inst, nn, m, m) of
    every node (pre-order arrays, see ``preorder``) from the points hs (inst, T, m) in
    tree order: leaves from their points, every parent from its two children (children
    first). The subtrees below depth ``SPLIT`` in parallel, each in reverse pre-order
    (its memory in one stretch), then the nodes above them. Exact for any order of the
    points; each node's sums are the same whatever the schedule."""
    inst, nleaves = hs.shape[0], len(leaves)
    D = int(np.log2(nleaves) + 0.5)
    K = min(D, SPLIT)
    lev = _levels(right, K)
    top, nroots, size = (1 << K) - 1, 1 << K, (1 << (D - K + 1)) - 1
    for q in prange(inst * nroots):
        i, r = q // nroots, lev[top + q % nroots]
        _fit_range(hs, start, end, right, lo, hi, S1, S2, i, r, r + size)
    for i in prange(inst):
        for q in range(top - 1, -1, -1):
            v = lev[q]
            _fit_parent(lo, hi, S1, S2, i, v, v + 1, right[v])


@njit(cache=True)
def _fit_range(hs, start, end, right, lo, hi, S1, S2, i, a, z):
    """``refit`` for the nodes a <= v < z (a subtree in pre-order), in reverse order."""
    for v in range(z - 1, a - 1, -1):
        if right[v] >= 0:
            _fit_parent(lo, hi, S1, S2, i, v, v + 1, right[v])
        elif hs.shape[2] == 2:
            _fit_leaf_m2(hs, start, end, lo, hi, S1, S2, i, v)
        else:
            _fit_leaf(hs, start, end, lo, hi, S1, S2, i, v)


@njit(cache=True)
def _fit_leaf(hs, start, end, lo, hi, S1, S2, i, v):
    """Box and moments of leaf v of instance i from its points (``refit``'s first pass;
    kept out of the parallel loop, where Numba's lowering is several times slower)."""
    m = hs.shape[2]
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


@njit(cache=True)
def _fit_leaf_m2(hs, start, end, lo, hi, S1, S2, i, v):
    """``_fit_leaf`` for m = 2, the sums in registers: the same sums in the same order."""
    l0, l1, u0, u1 = np.inf, np.inf, -np.inf, -np.inf
    s0, s1, q00, q01, q11 = 0.0, 0.0, 0.0, 0.0, 0.0
    nan = False
    for s in range(start[v], end[v]):
        x, y = np.float64(hs[i, s, 0]), np.float64(hs[i, s, 1])
        nan = nan or np.isnan(x) or np.isnan(y)
        l0, u0 = min(l0, x), max(u0, x)
        l1, u1 = min(l1, y), max(u1, y)
        s0 += x
        s1 += y
        q00 += x * x
        q01 += x * y
        q11 += y * y
    if nan:
        l0, l1, u0, u1 = np.nan, np.nan, np.nan, np.nan
    lo[i, v, 0], lo[i, v, 1], hi[i, v, 0], hi[i, v, 1] = l0, l1, u0, u1
    S1[i, v, 0], S1[i, v, 1] = s0, s1
    S2[i, v, 0, 0], S2[i, v, 0, 1], S2[i, v, 1, 0], S2[i, v, 1, 1] = q00, q01, q01, q11


@njit(cache=True)
def _fit_parent(lo, hi, S1, S2, i, v, c0, c1):
    """Node v's box and moments from its two children c0, c1."""
    m = lo.shape[2]
    for k in range(m):
        lo[i, v, k], hi[i, v, k] = lo[i, c0, k], hi[i, c0, k]
        S1[i, v, k] = S1[i, c0, k] + S1[i, c1, k]
        for l in range(m):
            S2[i, v, k, l] = S2[i, c0, k, l] + S2[i, c1, k, l]
    _combine_box(lo, hi, i, v, c1)


@njit(parallel=True, cache=True)
def push_down(nodeA, nodea, onm, ghp, cut, hs, start, end, right, leaves, c2, gh_tree):
    """dL/dh of the dense part per point, in tree order: gh_tree (inst, 1, T, m) float32.

    Sums the parts of nodeA, nodea into part 0 in a fixed order, adds each node's A, a
    to its children's (pre-order: parents first), then for each leaf point
    gh = c2 (A h + a) + sum over parts of ghp. Only nodes marked in onm (inst, NPART,
    nn), and below them, hold anything: the others are skipped (adding zeros would
    change no value), which is most of the tree once training has settled. The
    buffers hold values only where marked: an entry written while unmarked starts from
    0 (a select at each write, here and in the walk), so nothing is zeroed between steps
    (at T = 10^6, up to ~80 MB of writes a step); the marks are cleared, ready for the
    next step. Zeroing a node's entries at its first mark instead (one call, then plain
    +=) measured slower: walk 42-43 -> 52-64 ms, push-down 13 -> 16 ms at T = 10^6.
    """
    inst, nparts, nn, m = nodea.shape
    for q in prange(inst * nn):
        i, v = q // nn, q % nn
        for P in range(1, nparts):
            if onm[i, P, v]:
                was = onm[i, 0, v]
                onm[i, 0, v], onm[i, P, v] = True, False
                for k in range(m):
                    nodea[i, 0, v, k] = (nodea[i, 0, v, k] if was else 0.0) + nodea[i, P, v, k]
                    for l in range(m):
                        x = nodeA[i, 0, v, k, l] if was else 0.0
                        nodeA[i, 0, v, k, l] = x + nodeA[i, P, v, k, l]
    D = int(np.log2(len(leaves)) + 0.5)
    K = min(D, SPLIT)
    lev = _levels(right, K)
    top, nroots, size = (1 << K) - 1, 1 << K, (1 << (D - K + 1)) - 1
    for i in prange(inst):  # the nodes above the subtrees, parents first
        for q in range(top):
            _push_from(nodeA, nodea, onm, right, i, lev[q])
    for q in prange(inst * nroots):  # each subtree in pre-order: its memory in one stretch
        i, r = q // nroots, lev[top + q % nroots]
        for v in range(r, r + size):
            if right[v] >= 0:
                _push_from(nodeA, nodea, onm, right, i, v)
            elif m == 2 and nparts == 4:
                _push_leaf_m2(nodeA, nodea, onm, ghp, cut, hs, start, end, c2, gh_tree, i, v)
            else:
                _push_leaf(nodeA, nodea, onm, ghp, cut, hs, start, end, c2, gh_tree, i, v)


@njit(cache=True)
def _push_from(nodeA, nodea, onm, right, i, v):
    """Push inner node v's A, a (part 0) to its children, if anything is on v or above."""
    if onm[i, 0, v]:
        _push_node(nodeA, nodea, onm, i, v, v + 1)
        _push_node(nodeA, nodea, onm, i, v, right[v])
        onm[i, 0, v] = False


@njit(cache=True)
def _push_node(nodeA, nodea, onm, i, u, v):
    """Add node u's A, a (part 0) to its child v's (v's own, or 0 where v is unmarked)."""
    m = nodea.shape[3]
    was = onm[i, 0, v]
    onm[i, 0, v] = True
    for k in range(m):
        nodea[i, 0, v, k] = (nodea[i, 0, v, k] if was else 0.0) + nodea[i, 0, u, k]
        for l in range(m):
            x = nodeA[i, 0, v, k, l] if was else 0.0
            nodeA[i, 0, v, k, l] = x + nodeA[i, 0, u, k, l]


@njit(cache=True)
def _push_leaf(nodeA, nodea, onm, ghp, cut, hs, start, end, c2, gh_tree, i, v):
    """``push_down``'s last step for leaf v of instance i (out of the parallel loop)."""
    nparts, m = nodea.shape[1], nodea.shape[3]
    on = onm[i, 0, v]
    for s in range(start[v], end[v]):
        for k in range(m):
            acc = 0.0
            if on:
                acc = nodea[i, 0, v, k]
                for l in range(m):
                    acc += nodeA[i, 0, v, k, l] * np.float64(hs[i, s, l])
                acc *= c2
            for P in range(nparts):
                if cut[i, P, v]:
                    acc += ghp[i, P, s, k]
            gh_tree[i, 0, s, k] = acc
    for P in range(nparts):
        cut[i, P, v] = False
    onm[i, 0, v] = False


@njit(cache=True)
def _push_leaf_m2(nodeA, nodea, onm, ghp, cut, hs, start, end, c2, gh_tree, i, v):
    """``_push_leaf`` for m = 2 and 4 parts: the leaf's A, a and marks read once, not per
    point (the writes to gh_tree could alias them for the compiler); the same sums in the
    same order."""
    on = onm[i, 0, v]
    A00, A01, A10, A11, a0, a1 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if on:
        A00, A01 = nodeA[i, 0, v, 0, 0], nodeA[i, 0, v, 0, 1]
        A10, A11 = nodeA[i, 0, v, 1, 0], nodeA[i, 0, v, 1, 1]
        a0, a1 = nodea[i, 0, v, 0], nodea[i, 0, v, 1]
    k0, k1, k2, k3 = cut[i, 0, v], cut[i, 1, v], cut[i, 2, v], cut[i, 3, v]
    for s in range(start[v], end[v]):
        h0, h1 = np.float64(hs[i, s, 0]), np.float64(hs[i, s, 1])
        x0, x1 = 0.0, 0.0
        if on:
            x0 = c2 * (a0 + A00 * h0 + A01 * h1)
            x1 = c2 * (a1 + A10 * h0 + A11 * h1)
        if k0:
            x0 += ghp[i, 0, s, 0]
            x1 += ghp[i, 0, s, 1]
        if k1:
            x0 += ghp[i, 1, s, 0]
            x1 += ghp[i, 1, s, 1]
        if k2:
            x0 += ghp[i, 2, s, 0]
            x1 += ghp[i, 2, s, 1]
        if k3:
            x0 += ghp[i, 3, s, 0]
            x1 += ghp[i, 3, s, 1]
        gh_tree[i, 0, s, 0] = x0
        gh_tree[i, 0, s, 1] = x1
    cut[i, 0, v], cut[i, 1, v], cut[i, 2, v], cut[i, 3, v] = False, False, False, False
    onm[i, 0, v] = False


@njit(cache=True, inline="always")
def _lt(x, y):
    """x < y as NumPy's sorts order floats: NaN after every number, NaNs alike."""
    return x < y or (y != y and x == x)


@njit(cache=True)
def resort(order, angle, key, bucket, budget):
    """Re-sort ``order`` (n,) int64 in place into the order of
    ``np.lexsort((angle, key, bucket))`` (by bucket, then key, then angle, then index) by
    insertion from where it stands; angle, key (n,) float64, bucket (n,) int64. The
    result is the one total order whatever the start, so it equals lexsort's; from
    the last step's order (the lines barely move) it costs O(n + moves). Returns False,
    leaving ``order`` some permutation, once more than ``budget`` moves were needed."""
    moves = 0
    for q in range(1, len(order)):
        j = order[q]
        bj, kj, aj = bucket[j], key[j], angle[j]
        p = q - 1
        while p >= 0:
            o = order[p]
            if bj != bucket[o]:
                if bj > bucket[o]:
                    break
            elif _lt(key[o], kj):
                break
            elif not _lt(kj, key[o]):  # equal keys: by angle, then index
                if _lt(angle[o], aj) or (not _lt(aj, angle[o]) and o < j):
                    break
            order[p + 1] = o
            p -= 1
            moves += 1
            if moves > budget:
                order[p + 1] = j  # the hole: order stays a permutation
                return False
        order[p + 1] = j
    return True
