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
FB = 32  # features per block; the m = 2 kernel's lane loops have this compile-time length


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
    """A fresh kd-tree order: perm (inst, T) int64 (tree position -> row of the
    instance) from h (inst*T, m) float32.

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


@njit(cache=True)
def permute_rows(indptr, indices, values, perm, T):
    """Put each instance's data rows in tree order: new row i*T + s is old row
    i*T + perm[i, s]. indptr (R+1,), indices/values (nnz,): CSR. Returns the new
    (indptr, indices, values, flat), flat (R,) the old row of each new row."""
    inst = perm.shape[0]
    R = inst * T
    flat = np.empty(R, np.int64)
    for i in range(inst):
        for s in range(T):
            flat[i * T + s] = i * T + perm[i, s]
    ptr = np.empty(R + 1, np.int64)
    ptr[0] = 0
    for r in range(R):
        o = flat[r]
        ptr[r + 1] = ptr[r] + indptr[o + 1] - indptr[o]
    idx = np.empty_like(indices)
    val = np.empty_like(values)
    for r in range(R):
        o = flat[r]
        q0 = ptr[r]
        for q in range(indptr[o], indptr[o + 1]):
            idx[q0 + q - indptr[o]] = indices[q]
            val[q0 + q - indptr[o]] = values[q]
    return ptr, idx, val, flat


@njit(parallel=True, cache=True)
def hidden_rows(indptr, indices, values, WB, h):
    """h (R, m) = W x per row. indptr (R+1,), indices/values (nnz,); WB (inst, n, m+1)
    float32 (W_j and b_j side by side: one cache line per nonzero); R = inst * T."""
    R = h.shape[0]
    T = R // WB.shape[0]
    nchunks = min(R, 256)
    for c in prange(nchunks):
        _hidden_chunk(indptr, indices, values, WB, h, T, c * R // nchunks, (c + 1) * R // nchunks)


@njit(cache=True)
def _hidden_chunk(indptr, indices, values, WB, h, T, r0, r1):
    """``hidden_rows`` for rows r0 <= r < r1; sums in the order of _numba_kernels.hidden."""
    m = h.shape[1]
    for r in range(r0, r1):
        i = r // T
        for k in range(m):
            h[r, k] = 0.0
        for q in range(indptr[r], indptr[r + 1]):
            j, x = indices[q], values[q]
            for k in range(m):
                h[r, k] += WB[i, j, k] * x


@njit(parallel=True, cache=True)
def sparse_rows(indptr, indices, values, WB, h, T, c2, gh_dense, gWBc, loss):
    """The sparse correction and the encoder gradient in one pass over the rows.

    indptr (R+1,), indices/values (nnz,): the data (rows in tree order); WB (inst, n,
    m+1) float32: W_j and b_j side by side (one cache line per feature); h (R, m);
    gh_dense (inst, T, m): dL/dh_t of the dense part. Per row t,
    dL/dh_t = gh_dense_t - c2 sum_{j in nz(x_t), p_tj > 0} x_tj W_j, then each nonzero
    adds x_tj dL/dh_t (encoder) - c2 x_tj 1[p_tj > 0] h_t (decoder correction) to
    dL/dW_j, and -c2 x_tj 1[p_tj > 0] to dL/db_j. These sums go to fixed row chunks,
    gWBc (inst, NC, n, m+1) (zero on entry; the last column is for b), which the caller
    adds up in order: no column-wise (CSC) pass, and no dependence on the thread count.
    Writes loss (R,) float64: T * (the sparse terms of) L_t. p_tj = b_j, then + W_kj h_tk
    in order k = 0..m-1, rounded as in _numba_kernels._pre.
    """
    NC = gWBc.shape[1]
    for q in prange(WB.shape[0] * NC):
        _sparse_chunk(indptr, indices, values, WB, h, T, c2, gh_dense, gWBc, loss, q // NC, q % NC)


@njit(fastmath=_HOT, cache=True)
def _sparse_chunk(indptr, indices, values, WB, h, T, c2, gh_dense, gWBc, loss, i, c):
    """``sparse_rows`` for row chunk c of instance i (a plain loop called from the
    parallel one: inline, Numba's parallel lowering made such loops several times slower)."""
    m, NC = h.shape[1], gWBc.shape[1]
    gk = np.empty(m, np.float32)
    on = np.empty(WB.shape[1], np.float32)  # per nonzero of the row: 1[p > 0]
    for t in range(c * T // NC, (c + 1) * T // NC):
        r = i * T + t
        for k in range(m):
            gk[k] = gh_dense[i, t, k]
        lt = 0.0
        e0 = indptr[r]
        for e in range(e0, indptr[r + 1]):  # branch-free: p > 0 is a coin flip
            j, x = indices[e], values[e]
            p = WB[i, j, m]
            for k in range(m):
                p = p + WB[i, j, k] * h[r, k]
            u = np.float32(1.0) if p > 0 else np.float32(0.0)
            on[e - e0] = u
            # (relu(p) - x)^2 = relu(p)^2 - 2 relu(p) x + x^2, relu(p)^2 is in the dense part
            # (a p of -inf, only in a diverging run, gives NaN here: diverged either way)
            lt += (-2.0 * np.float64(p) * x) * u + np.float64(x) * x
            for k in range(m):
                gk[k] -= (c2 * x * WB[i, j, k]) * u
        loss[r] = lt
        for e in range(e0, indptr[r + 1]):
            j, x = indices[e], values[e]
            cx = c2 * x * on[e - e0]
            gWBc[i, c, j, m] -= cx
            for k in range(m):
                gWBc[i, c, j, k] += x * gk[k] - cx * h[r, k]


# m = 2, the paper's case: the two passes over the nonzeros with flat arrays, unsigned
# indices (no wrap-around arithmetic per access), W_j, b_j in one aligned 16-byte slot,
# every per-row sum in a register and no fastmath (with reassociation LLVM vectorises
# the short row loops into gathers, which measured 2x slower here). Same sums in the
# same order as the generic kernels. Measured at T = 10^6: sparse pass ~1.7x, h ~1.1x.


@njit(parallel=True, cache=True)
def hidden_rows_m2(indptr, indices, values, WB4, T, h):
    """``hidden_rows`` for m = 2. indices (nnz,) uint32; WB4 (inst*n*4,) float32, feature
    j of instance i at 4(i n + j): W_0j, W_1j, 0, b_j; h (R*2,) float32."""
    R = len(indptr) - 1
    n4 = len(WB4) // (R // T)  # 4 n
    nchunks = min(R, 256)
    for c in prange(nchunks):
        r0, r1 = c * R // nchunks, (c + 1) * R // nchunks
        _hidden_chunk_m2(indptr, indices, values, WB4, T, n4, h, r0, r1)


@njit(cache=True)
def _hidden_chunk_m2(indptr, indices, values, WB4, T, n4, h, r0, r1):
    """``hidden_rows_m2`` for rows r0 <= r < r1."""
    one, two, four = np.uint64(1), np.uint64(2), np.uint64(4)
    n4 = np.uint64(n4)
    for r in range(r0, r1):
        ru = np.uint64(r)
        base = ru // np.uint64(T) * n4
        a0, a1 = np.float32(0.0), np.float32(0.0)
        for q in range(indptr[ru], indptr[ru + one]):
            j = base + np.uint64(indices[q]) * four
            x = values[q]
            a0 += WB4[j] * x
            a1 += WB4[j + one] * x
        h[two * ru] = a0
        h[two * ru + one] = a1


@njit(parallel=True, cache=True)
def sparse_rows_m2(indptr, indices, values, WB4, h, T, c2, gh_dense, G, loss):
    """``sparse_rows`` for m = 2, layouts as ``hidden_rows_m2``: h, gh_dense (R*2,)
    float32; G (inst, NC, n*4) float32 (zero on entry; slot 3 is b's); loss (R,)."""
    inst, NC = G.shape[0], G.shape[1]
    for q in prange(inst * NC):
        i, c = q // NC, q % NC
        r0, r1 = i * T + c * T // NC, i * T + (c + 1) * T // NC
        _sparse_chunk_m2(indptr, indices, values, WB4, h, i, T, c2, gh_dense, G[i, c], loss, r0, r1)


@njit(cache=True)
def _sparse_chunk_m2(indptr, indices, values, WB4, h, i, T, c2, gh, G, loss, r0, r1):
    """``sparse_rows_m2`` for rows r0 <= r < r1 of instance i, into its chunk's G (n*4,)."""
    zero, one, two = np.uint64(0), np.uint64(1), np.uint64(2)
    three, four = np.uint64(3), np.uint64(4)
    n4 = np.uint64(len(G))
    base = np.uint64(i) * n4
    fz = np.float32(0.0)
    on = np.empty(64, np.float32)
    for r in range(r0, r1):
        ru = np.uint64(r)
        h0, h1 = h[two * ru], h[two * ru + one]
        g0, g1 = gh[two * ru], gh[two * ru + one]
        lt = 0.0
        e0, e1 = indptr[ru], indptr[ru + one]
        if e1 - e0 > len(on):
            on = np.empty(e1 - e0, np.float32)
        q = zero
        for e in range(e0, e1):
            j = base + np.uint64(indices[e]) * four
            x = values[e]
            w0, w1 = WB4[j], WB4[j + one]
            p = WB4[j + three]
            p = p + w0 * h0
            p = p + w1 * h1
            u = np.float32(p > fz)
            on[q] = u
            q += one
            lt += (-2.0 * np.float64(p) * x) * u + np.float64(x) * x
            cu = c2 * x * u
            g0 -= cu * w0
            g1 -= cu * w1
        loss[ru] = lt
        q = zero
        for e in range(e0, e1):
            j = np.uint64(indices[e]) * four
            x = values[e]
            cx = c2 * x * on[q]
            q += one
            G[j] += x * g0 - cx * h0
            G[j + one] += x * g1 - cx * h1
            G[j + three] -= cx


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
def refit(hs, start, end, right, leaves, lo, hi, S1, S2):
    """Boxes lo, hi (inst, nn, m) and moments S1 (inst, nn, m), S2 (inst, nn, m, m) of
    every node (pre-order arrays, see ``preorder``) from the points hs (inst, T, m) in
    tree order: leaves from their points, then every parent from its two children (in
    reverse pre-order, children first). Exact for any order of the points."""
    inst, nleaves = hs.shape[0], len(leaves)
    for q in prange(inst * nleaves):
        if hs.shape[2] == 2:
            _fit_leaf_m2(hs, start, end, lo, hi, S1, S2, q // nleaves, leaves[q % nleaves])
        else:
            _fit_leaf(hs, start, end, lo, hi, S1, S2, q // nleaves, leaves[q % nleaves])
    for i in prange(inst):
        for v in range(len(right) - 1, -1, -1):
            if right[v] >= 0:
                _fit_parent(lo, hi, S1, S2, i, v, v + 1, right[v])


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
def traverse(
    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, F, gW, gb, lossf, nodeA, nodea, onm,
    ghp, cut, work,
):  # fmt: skip
    """The dense part of loss and gradients, a block of F features at a time down the tree.

    Ws (inst, m, n), bs (inst, n) float32, features in the caller's (sorted) order: F
    consecutive ones walk the tree together, so neighbours in that order should cut the
    same nodes. hs (inst, T, m) float32 in tree order; boxes and moments as from
    ``refit``; c2 = 2/T. Writes, per feature j (same order as Ws),
      gW (inst, m, n) float32 = c2 sum_{t on} p_tj h_t, gb (inst, n) = c2 sum_{t on} p_tj,
      lossf (inst, n) float64 = sum_{t on} p_tj^2,
    and per part P (block B in part B % NPART; NPART = nodeA.shape[1]), zero on entry
    (``push_down`` leaves them zero):
      nodeA (inst, NPART, nn, m, m) += W_j W_j^T, nodea (..., m) += b_j W_j on each on
      node and onm (inst, NPART, nn) bool marks it, ghp (inst, NPART, T, m) float64
      += c2 p_tj W_j for each on point of a cut
      leaf, and cut (inst, NPART, nn) bool marks the leaves whose ghp was written
      (``push_down`` reads and clears exactly those, so ghp stays zero between steps);
      work (inst, NPART) int64 = lanes tested at nodes + lane-point pairs at leaves, the
      deterministic cost measure of the rebuild rule.
    """
    inst, m, n, nparts = Ws.shape[0], Ws.shape[1], Ws.shape[2], nodeA.shape[1]
    nblk = -(-n // F)
    for q in prange(inst * nparts):
        i, part = q // nparts, q % nparts
        for B in range(part, nblk, nparts):
            j0, j1 = B * F, min(n, B * F + F)
            if m == 2 and F == FB and j1 - j0 == FB:
                work[i, part] += _traverse_block_m2(
                    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA,
                    nodea, onm, ghp, cut, i, part, j0,
                )  # fmt: skip
            else:
                work[i, part] += _traverse_block(
                    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA,
                    nodea, onm, ghp, cut, i, part, j0, j1,
                )  # fmt: skip


@njit(fastmath=_HOT, cache=True)
def _traverse_block(
    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA, nodea, onm, ghp,
    cut, i, part, j0, j1,
):  # fmt: skip
    """``traverse`` for features j0 <= j < j1 of instance i, part ``part``.

    Depth first; ``live[d]`` (F lanes) holds which features are still cut at a node of
    depth d's parent. Every step is done for all F lanes at once (vectorised) and masked:
    the box bounds, the split into off / on / cut lanes, the on lanes' moment terms, and
    at a leaf the point-by-point terms of its cut lanes. The bounds are computed in
    float32 (lo, hi, W and b are float32 values; the error is < (m+1) 6e-8 scale, far
    inside MARGIN), the moment terms in float64.
    """
    m = Ws.shape[1]
    F = j1 - j0
    w = np.empty((m, F), np.float32)
    bj = np.empty(F, np.float32)
    w64 = np.empty((m, F))
    b64 = np.empty(F)
    pmin = np.empty(F, np.float32)
    pmax = np.empty(F, np.float32)
    scale = np.empty(F, np.float32)
    live = np.zeros((D + 2, F), np.bool_)
    isOn = np.zeros(F, np.bool_)
    s1w = np.empty(F)
    quad = np.empty(F)
    loss = np.zeros(F)
    gbl = np.zeros(F)
    gwl = np.zeros((m, F))
    cp = np.empty(F, np.float32)
    cl = np.empty(F, np.float32)
    cg = np.empty(F, np.float32)
    cgw = np.empty((m, F), np.float32)
    for f in range(F):
        bj[f] = bs[i, j0 + f]
        b64[f] = bj[f]
        live[0, f] = True
        for k in range(m):
            w[k, f] = Ws[i, k, j0 + f]
            w64[k, f] = w[k, f]
    node = np.empty(2 * D + 4, np.int64)
    depth = np.empty(2 * D + 4, np.int64)
    node[0], depth[0] = 0, 0  # the root; pre-order
    sp = 1
    work = 0
    while sp > 0:
        sp -= 1
        v, d = node[sp], depth[sp]
        work += F
        for f in range(F):
            pmin[f] = bj[f]
            pmax[f] = bj[f]
            scale[f] = abs(bj[f])
        for k in range(m):
            lk, hk = np.float32(lo[i, v, k]), np.float32(hi[i, v, k])
            for f in range(F):
                x, y = w[k, f] * lk, w[k, f] * hk
                pmin[f] += min(x, y)
                pmax[f] += max(x, y)
                scale[f] += max(abs(x), abs(y))
        anyon, anykeep = False, False
        for f in range(F):
            tol = np.float32(MARGIN) * scale[f]
            on = live[d, f] and pmin[f] > tol  # on: from the moments
            keep = live[d, f] and not (pmax[f] < -tol) and not (pmin[f] > tol)  # cut / NaN
            isOn[f] = on
            live[d + 1, f] = keep
            anyon = anyon or on
            anykeep = anykeep or keep
        if anyon:  # the on lanes' moment terms, for all lanes, kept where on
            cnt = np.float64(end[v] - start[v])
            for f in range(F):
                s1w[f] = 0.0
                quad[f] = 0.0
            for k in range(m):
                s1k = S1[i, v, k]
                for f in range(F):
                    s1w[f] += w64[k, f] * s1k
                for f in range(F):
                    acc = 0.0
                    for l in range(m):
                        acc += S2[i, v, k, l] * w64[l, f]
                    quad[f] += w64[k, f] * acc
                    g = acc + b64[f] * s1k
                    gwl[k, f] += g if isOn[f] else 0.0
            for f in range(F):
                x = quad[f] + 2.0 * b64[f] * s1w[f] + b64[f] * b64[f] * cnt
                loss[f] += x if isOn[f] else 0.0
                y = s1w[f] + b64[f] * cnt
                gbl[f] += y if isOn[f] else 0.0
            onm[i, part, v] = True
            for k in range(m):
                acc = 0.0
                for f in range(F):
                    x = b64[f] * w64[k, f]
                    acc += x if isOn[f] else 0.0
                nodea[i, part, v, k] += acc
                for l in range(m):
                    acc = 0.0
                    for f in range(F):
                        x = w64[k, f] * w64[l, f]
                        acc += x if isOn[f] else 0.0
                    nodeA[i, part, v, k, l] += acc
        if not anykeep:
            continue
        if right[v] >= 0:
            node[sp], depth[sp] = right[v], d + 1
            node[sp + 1], depth[sp + 1] = v + 1, d + 1
            sp += 2
            continue
        # a cut leaf: point by point for the cut lanes, p rounded as _pre (b, + W_k h_k)
        cut[i, part, v] = True
        kl = live[d + 1]
        work += F * (end[v] - start[v])
        for f in range(F):
            cl[f] = 0.0
            cg[f] = 0.0
            for k in range(m):
                cgw[k, f] = 0.0
        for s in range(start[v], end[v]):
            for f in range(F):
                cp[f] = bj[f]
            for k in range(m):
                hk = hs[i, s, k]
                for f in range(F):
                    cp[f] = cp[f] + w[k, f] * hk
            for f in range(F):
                r = cp[f]
                r = np.float32(0.0) if r <= 0 else r  # relu that keeps NaN
                r = r if kl[f] else np.float32(0.0)
                cl[f] += r * r
                cg[f] += r
                cp[f] = r
            for k in range(m):
                hk = hs[i, s, k]
                acc32 = np.float32(0.0)
                for f in range(F):
                    cgw[k, f] += cp[f] * hk
                    acc32 += cp[f] * w[k, f]
                ghp[i, part, s, k] += c2 * np.float64(acc32)
        for f in range(F):
            loss[f] += cl[f]
            gbl[f] += cg[f]
            for k in range(m):
                gwl[k, f] += cgw[k, f]
    for f in range(F):
        lossf[i, j0 + f] = loss[f]
        gb[i, j0 + f] = c2 * gbl[f]
        for k in range(m):
            gW[i, k, j0 + f] = c2 * gwl[k, f]
    return work


@njit(fastmath=_HOT, cache=True)
def _traverse_block_m2(
    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA, nodea, onm, ghp,
    cut, i, part, j0,
):  # fmt: skip
    """``_traverse_block`` for m = 2 and exactly FB lanes: the same steps, written out so
    that every lane loop has a compile-time length and vectorises whole (measured ~2x)."""
    F = FB
    w0 = np.empty(F, np.float32)
    w1 = np.empty(F, np.float32)
    bj = np.empty(F, np.float32)
    v0 = np.empty(F)
    v1 = np.empty(F)
    b64 = np.empty(F)
    live = np.zeros((D + 2, F), np.bool_)
    isOn = np.zeros(F, np.bool_)
    loss = np.zeros(F)
    gbl = np.zeros(F)
    gw0 = np.zeros(F)
    gw1 = np.zeros(F)
    cl = np.empty(F, np.float32)
    cg = np.empty(F, np.float32)
    c0 = np.empty(F, np.float32)
    c1 = np.empty(F, np.float32)
    for f in range(F):
        w0[f], w1[f], bj[f] = Ws[i, 0, j0 + f], Ws[i, 1, j0 + f], bs[i, j0 + f]
        v0[f], v1[f], b64[f] = w0[f], w1[f], bj[f]
        live[0, f] = True
    node = np.empty(2 * D + 4, np.int64)
    depth = np.empty(2 * D + 4, np.int64)
    node[0], depth[0] = 0, 0  # the root; pre-order
    sp = 1
    mg = np.float32(MARGIN)
    work = 0
    while sp > 0:
        sp -= 1
        v, d = node[sp], depth[sp]
        work += F
        l0, l1 = np.float32(lo[i, v, 0]), np.float32(lo[i, v, 1])
        u0, u1 = np.float32(hi[i, v, 0]), np.float32(hi[i, v, 1])
        anyon, anykeep = False, False
        for f in range(F):
            x0, y0 = w0[f] * l0, w0[f] * u0
            x1, y1 = w1[f] * l1, w1[f] * u1
            pmin = bj[f] + min(x0, y0) + min(x1, y1)
            pmax = bj[f] + max(x0, y0) + max(x1, y1)
            tol = mg * (abs(bj[f]) + max(abs(x0), abs(y0)) + max(abs(x1), abs(y1)))
            lv = live[d, f]
            above = pmin > tol
            on = lv & above  # bitwise, not `and`: no branches in the lane loop
            keep = lv & ~above & ~(pmax < -tol)
            isOn[f] = on
            live[d + 1, f] = keep
            anyon |= on
            anykeep |= keep
        if anyon:
            cnt = np.float64(end[v] - start[v])
            s10, s11 = S1[i, v, 0], S1[i, v, 1]
            s00, s01, s11b = S2[i, v, 0, 0], S2[i, v, 0, 1], S2[i, v, 1, 1]
            A00, A01, A11, a0, a1 = 0.0, 0.0, 0.0, 0.0, 0.0
            for f in range(F):
                on = isOn[f]
                q0 = s00 * v0[f] + s01 * v1[f]
                q1 = s01 * v0[f] + s11b * v1[f]
                s1w = v0[f] * s10 + v1[f] * s11
                x = v0[f] * q0 + v1[f] * q1 + 2.0 * b64[f] * s1w + b64[f] * b64[f] * cnt
                loss[f] += x if on else 0.0
                x = q0 + b64[f] * s10
                gw0[f] += x if on else 0.0
                x = q1 + b64[f] * s11
                gw1[f] += x if on else 0.0
                x = s1w + b64[f] * cnt
                gbl[f] += x if on else 0.0
                x = v0[f] * v0[f]
                A00 += x if on else 0.0
                x = v0[f] * v1[f]
                A01 += x if on else 0.0
                x = v1[f] * v1[f]
                A11 += x if on else 0.0
                x = b64[f] * v0[f]
                a0 += x if on else 0.0
                x = b64[f] * v1[f]
                a1 += x if on else 0.0
            nodeA[i, part, v, 0, 0] += A00
            nodeA[i, part, v, 0, 1] += A01
            nodeA[i, part, v, 1, 0] += A01
            nodeA[i, part, v, 1, 1] += A11
            nodea[i, part, v, 0] += a0
            nodea[i, part, v, 1] += a1
            onm[i, part, v] = True
        if not anykeep:
            continue
        if right[v] >= 0:
            node[sp], depth[sp] = right[v], d + 1
            node[sp + 1], depth[sp + 1] = v + 1, d + 1
            sp += 2
            continue
        cut[i, part, v] = True
        kl = live[d + 1]
        work += F * (end[v] - start[v])
        for f in range(F):
            cl[f], cg[f], c0[f], c1[f] = 0.0, 0.0, 0.0, 0.0
        for s in range(start[v], end[v]):
            h0, h1 = hs[i, s, 0], hs[i, s, 1]
            x0, x1 = np.float32(0.0), np.float32(0.0)
            for f in range(F):
                p = bj[f] + w0[f] * h0
                p = p + w1[f] * h1
                r = np.float32(0.0) if p <= 0 else p  # relu that keeps NaN
                r = r if kl[f] else np.float32(0.0)
                cl[f] += r * r
                cg[f] += r
                c0[f] += r * h0
                c1[f] += r * h1
                x0 += r * w0[f]
                x1 += r * w1[f]
            ghp[i, part, s, 0] += c2 * np.float64(x0)
            ghp[i, part, s, 1] += c2 * np.float64(x1)
        for f in range(F):
            loss[f] += cl[f]
            gbl[f] += cg[f]
            gw0[f] += c0[f]
            gw1[f] += c1[f]
    for f in range(F):
        lossf[i, j0 + f] = loss[f]
        gb[i, j0 + f] = c2 * gbl[f]
        gW[i, 0, j0 + f] = c2 * gw0[f]
        gW[i, 1, j0 + f] = c2 * gw1[f]
    return work


@njit(parallel=True, cache=True)
def push_down(nodeA, nodea, onm, ghp, cut, hs, start, end, right, leaves, c2, gh_tree):
    """dL/dh of the dense part per point, in tree order: gh_tree (inst, 1, T, m) float32.

    Sums the parts of nodeA, nodea into part 0 in a fixed order, adds each node's A, a
    to its children's (pre-order: parents first), then for each leaf point
    gh = c2 (A h + a) + sum over parts of ghp. Only nodes marked in onm (inst, NPART,
    nn), and below them, hold anything: the others are skipped (adding zeros would
    change no value), which is most of the tree once training has settled. Every
    buffer read is left zero (nodeA, nodea, the ghp entries read) or cleared (onm, cut),
    ready for the next step.
    """
    inst, nparts, nn, m = nodea.shape
    for q in prange(inst * nn):
        i, v = q // nn, q % nn
        for P in range(1, nparts):
            if onm[i, P, v]:
                onm[i, 0, v], onm[i, P, v] = True, False
                for k in range(m):
                    nodea[i, 0, v, k] += nodea[i, P, v, k]
                    nodea[i, P, v, k] = 0.0
                    for l in range(m):
                        nodeA[i, 0, v, k, l] += nodeA[i, P, v, k, l]
                        nodeA[i, P, v, k, l] = 0.0
    for i in prange(inst):
        for v in range(nn):  # onm[i, 0, v]: v or an ancestor was on for some feature
            if right[v] >= 0 and onm[i, 0, v]:
                _push_node(nodeA, nodea, i, v, v + 1)
                _push_node(nodeA, nodea, i, v, right[v])
                onm[i, 0, v], onm[i, 0, v + 1], onm[i, 0, right[v]] = False, True, True
    nleaves = len(leaves)
    for q in prange(inst * nleaves):
        i, v = q // nleaves, leaves[q % nleaves]
        _push_leaf(nodeA, nodea, onm, ghp, cut, hs, start, end, c2, gh_tree, i, v)


@njit(cache=True)
def _push_node(nodeA, nodea, i, u, v):
    """Add node u's A, a (part 0) to its child v's; the second child's call leaves u's zero."""
    m = nodea.shape[3]
    last = v != u + 1  # the right child comes second
    for k in range(m):
        nodea[i, 0, v, k] += nodea[i, 0, u, k]
        if last:
            nodea[i, 0, u, k] = 0.0
        for l in range(m):
            nodeA[i, 0, v, k, l] += nodeA[i, 0, u, k, l]
            if last:
                nodeA[i, 0, u, k, l] = 0.0


@njit(cache=True)
def _push_leaf(nodeA, nodea, onm, ghp, cut, hs, start, end, c2, gh_tree, i, v):
    """``push_down``'s last pass for leaf v of instance i (out of the parallel loop)."""
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
                    ghp[i, P, s, k] = 0.0
            gh_tree[i, 0, s, k] = acc
    for P in range(nparts):
        cut[i, P, v] = False
    if on:
        onm[i, 0, v] = False
        for k in range(m):
            nodea[i, 0, v, k] = 0.0
            for l in range(m):
                nodeA[i, 0, v, k, l] = 0.0
