"""Numba kernels of the tree engine: the two passes over the nonzeros of the data.

Rows are the data points in tree order (``_tree_kernels.permute_rows``), CSR: indptr
(R+1,) int64, indices (nnz,), values (nnz,) float32, R = inst * T. ``hidden_rows`` gives
h = W x before the walk; ``sparse_rows`` adds, after it, the sparse correction of the
loss and gradients and the encoder gradient (docs/ENGINES.md, "The math"). The ``_m2``
kernels do the same for m = 2 on flat arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from supermem.toy.engines._numba_kernels import _HOT


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
    """``hidden_rows`` for rows r0 <= r < r1, summed in float32 in the row's order (the
    tree engine computes mse only; the fast engine's ``hidden`` sums in float64 for
    l1's sake)."""
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
    Writes loss (R,) float64: -2 sum_{j in nz(x_t)} relu(p_tj) x_tj, the sparse term of
    T L_t that depends on the parameters (the x^2 terms are the data's alone:
    ``row_squares``, added by the caller; without them in the row sums this pass is
    ~14% faster at T = 10^6). p_tj = b_j, then + W_kj h_tk in order k = 0..m-1, rounded
    as in _numba_kernels._pre.
    """
    NC = gWBc.shape[1]
    for q in prange(WB.shape[0] * NC):
        i, c = q // NC, q % NC
        _sparse_chunk(
            indptr, indices, values, WB, h, T, c2, False, gh_dense, gWBc, gWBc, False, loss, i, c
        )


@njit(fastmath=_HOT, cache=True)
def _sparse_chunk(
    indptr, indices, values, WB, h, T, c2, relu, gh_dense, gWBc, gE, split, loss, i, c
):
    """``sparse_rows`` for row chunk c of instance i (a plain loop called from the
    parallel one: inline, Numba's parallel lowering made such loops several times slower).
    ``split`` (``sparse_rows_split``): WB is the decoder's, the encoder's terms go to gE
    (inst, NC, n, m) apart from the decoder's in gWBc, and ``relu`` masks dL/dh by h > 0;
    otherwise (tied) both go to gWBc, summed per nonzero, and gE is not read."""
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
            # and x^2 is the data's alone (``row_squares``); -2 p x is exact in float64
            # (a p of -inf, only in a diverging run, gives NaN here: diverged either way)
            lt += -2.0 * np.float64(p * u) * x  # exact terms; + x^2: ``row_squares``
            for k in range(m):
                gk[k] -= (c2 * x * WB[i, j, k]) * u
        loss[r] = lt
        if relu:  # h = ReLU(W x) > 0 exactly where W x > 0
            for k in range(m):
                if not h[r, k] > 0:
                    gk[k] = 0.0
        for e in range(e0, indptr[r + 1]):
            j, x = indices[e], values[e]
            cx = c2 * x * on[e - e0]
            gWBc[i, c, j, m] -= cx
            for k in range(m):
                if split:
                    gWBc[i, c, j, k] -= cx * h[r, k]
                    gE[i, c, j, k] += x * gk[k]
                else:
                    gWBc[i, c, j, k] += x * gk[k] - cx * h[r, k]


# m = 2, the paper's case: the two passes over the nonzeros with flat arrays, unsigned
# indices (no wrap-around arithmetic per access), W_j, b_j in one aligned 16-byte slot,
# every per-row sum in a register and no fastmath (with reassociation LLVM vectorises
# the short row loops into gathers, which measured 2x slower here). Same sums in the
# same order as the generic kernels. Measured at T = 10^6 on 2 cores: the sparse pass
# 71-80 -> 41-45 ms, h = W x 25 -> 14-22 ms (docs/ENGINES.md).


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
            lt += -2.0 * np.float64(p * u) * x  # exact; x^2 apart (``row_squares``)
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


def row_squares(indptr, values, inst: int, T: int) -> np.ndarray:
    """(inst,) float64: sum over each instance's nonzeros of x^2, the loss term the
    parameters do not touch (computed once, in the prepared order: a checkpoint resumes
    with the same bits)."""
    x2 = np.square(values.astype(np.float64))
    return np.array([x2[indptr[i * T] : indptr[(i + 1) * T]].sum() for i in range(inst)])


# The untied and relu_hidden models (``tree.tree_variant_loss_and_grads``): the same row
# pass, with the decoder D in place of W for p and the decoder's terms, the encoder's
# gradient apart, and dL/dh masked where a ReLU between the layers is off. Generic m.


@njit(parallel=True, cache=True)
def sparse_rows_split(indptr, indices, values, DB, h, T, c2, relu, gh_dense, gDc, gEc, loss):
    """``sparse_rows`` for a decoder apart from the encoder.

    DB (inst, n, m+1) float32: the decoder's D_j and b_j side by side; h (R, m) the hidden
    vectors (after the ReLU when ``relu``); gh_dense (inst, T, m). Per row t,
    dL/dh_t = gh_dense_t - c2 sum_{j in nz(x_t), p_tj > 0} x_tj D_j, with p_tj = D_j . h_t
    + b_j; then dL/d(W x)_t = dL/dh_t, times 1[h_t > 0] per coordinate when ``relu``
    (h = ReLU(W x) > 0 exactly where W x > 0). Each nonzero adds -c2 x_tj 1[p_tj > 0] h_t
    to the decoder's gDc (inst, NC, n, m+1) (last column: b's), x_tj dL/d(W x)_t to the
    encoder's gEc (inst, NC, n, m); both zero on entry, summed by the caller in order.
    Writes loss (R,) float64 as ``sparse_rows``.
    """
    NC = gDc.shape[1]
    for q in prange(DB.shape[0] * NC):
        i, c = q // NC, q % NC
        _sparse_chunk(
            indptr, indices, values, DB, h, T, c2, relu, gh_dense, gDc, gEc, True, loss, i, c
        )
