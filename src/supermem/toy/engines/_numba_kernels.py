"""Numba kernels of the fast CPU engine (tied ReLU-output model). See docs/ENGINES.md.

Vocabulary: ``inst`` instances, T points per instance, n features, m hidden dims;
``R = inst*T`` flat data rows; ``nb`` feature blocks of ``fb`` features per instance.
p_tj = W_j . h_t + b_j, g_tj = dL/dp_tj = c2 (relu(p_tj) - x_tj) 1[p_tj > 0], c2 = 2/T.

Determinism: every parallel loop writes a disjoint slice, and every sum runs in an order
fixed by the data shapes and the fixed block sizes, never by the thread count or the
schedule. So results are bit-identical for any ``numba.set_num_threads``.

Precision: float32 throughout like the reference, except per-point losses (float64).
The (feature block, point tile) loop is the hot one. Its element-wise loops run under
fastmath "reassoc" (LLVM vectorises them) and its sums over a block's features are
written out in a fixed order (``_dot8``): a reassociated reduction let LLVM choose per
call between its vector loop and the scalar fallback, by run-time checks on buffer
addresses, which made results depend on the heap. It never contracts a*b+c into an FMA, so
the pre-activation p is rounded the same way here and in the sparse kernels, and the
dense pass and the sparse correction agree on the sign of every p_tj.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassoc lets LLVM vectorise the reductions over features; no "nnan"/"ninf", so NaN and
# inf propagate into the loss (train.py detects divergence from a non-finite loss).
_HOT = {"reassoc", "nsz"}
# Skip a (block, tile) pair only if its bound is below -SKIP_MARGIN * scale, so float32
# rounding of p (relative error ~ m * 6e-8) can never make a skipped p_tj positive.
SKIP_MARGIN = 1e-4


@njit(parallel=True, cache=True)
def hidden(indptr, indices, values, W, T, h):
    """h = W x per row. indptr (R+1,), indices/values (nnz,), W (inst, m, n) -> h (R, m).

    Summed in float64 and rounded once: h is then the float32 nearest the exact W x, not
    a sequential float32 sum whose error grows with the row's nonzeros. The l1 loss needs
    it: its slope sign(p - x) flips where p meets x, and a point settled there (p within
    ~1e-5 of x, p made of terms ~100x larger) would otherwise take the other sign."""
    m = W.shape[1]
    for r in prange(h.shape[0]):
        i = r // T
        for k in range(m):
            acc = 0.0
            for q in range(indptr[r], indptr[r + 1]):
                acc += np.float64(W[i, k, indices[q]]) * values[q]
            h[r, k] = acc


@njit(parallel=True, cache=True)
def tile_balls(hs, tp, centre, radius):
    """Bounding ball of each tile of tp consecutive (sorted) points.

    hs (inst, T, m) -> centre (inst, ntiles, m) (the tile mean), radius (inst, ntiles)
    (max distance of a tile point from the centre, rounded up by a relative 1e-6).
    """
    inst, T, m = hs.shape
    ntiles = centre.shape[1]
    for q in prange(inst * ntiles):
        i, P = q // ntiles, q % ntiles
        t0, t1 = P * tp, min(T, P * tp + tp)
        for k in range(m):
            s = 0.0
            for t in range(t0, t1):
                s += hs[i, t, k]
            centre[i, P, k] = s / (t1 - t0)
        rmax = 0.0
        for t in range(t0, t1):
            d = 0.0
            for k in range(m):
                e = np.float64(hs[i, t, k]) - centre[i, P, k]
                d += e * e
            rmax = max(rmax, np.sqrt(d))
        radius[i, P] = rmax * (1 + 1e-6)


@njit(fastmath=_HOT, cache=True)
def _block_is_off(Ws, bs, Wnorm, i, j0, j1, c, r):
    """True if b_j + W_j.c + ||W_j|| r < -margin for every j in [j0, j1): every p_tj <= 0.

    c (m,), r: the ball holding the tile's h_t. By Cauchy-Schwarz p_tj is at most that
    bound for every t in the tile, so skipping the pair changes no result (exact).
    """
    m = Ws.shape[1]
    cn = 0.0
    for k in range(m):
        cn += c[k] * c[k]
    reach = np.sqrt(cn) + r
    for j in range(j0, j1):
        bound = np.float64(bs[i, j])
        for k in range(m):
            bound += np.float64(Ws[i, k, j]) * c[k]
        w = np.float64(Wnorm[i, j])
        scale = abs(np.float64(bs[i, j])) + w * reach
        if not (bound + w * r < -SKIP_MARGIN * scale):  # NaN counts as "on"
            return False
    return True


@njit(cache=True)
def _block(q, nb, fb, n):
    """Work item q -> (instance, feature block, first feature, one past the last)."""
    i, B = q // nb, q % nb
    return i, B, B * fb, min(n, B * fb + fb)


@njit(parallel=True, fastmath=_HOT, cache=True)
def dense_pass(
    Ws, bs, hs, c2, fb, tp, skip, centre, radius, Wnorm, gW, gb, gh_part, loss_part, l1=False
):  # fmt: skip
    """The dense part of loss and gradients over all (point, feature) pairs.

    Ws (inst, m, n), bs (inst, n): parameters, features in sorted order.
    hs (inst, T, m): hidden vectors, points in sorted order. c2 = 2/T (float32).
    Blocks of fb features x tiles of tp points; with ``skip``, a pair whose bound shows
    every p <= 0 is skipped (centre (inst, ntiles, m), radius (inst, ntiles), Wnorm
    (inst, n) = ||W_j||). Outputs (all zero on entry where written partially):
      gW (inst, m, n) += sum_t c2 relu(p_tj) h_t; gb (inst, n) += sum_t c2 relu(p_tj);
      gh_part (inst, nb, T, m) = sum_{j in block} c2 relu(p_tj) W_j;
      loss_part (inst, nb, T) = sum_{j in block} relu(p_tj)^2.
    With ``l1`` (the loss |x - x'|; pass c2 = 1/T): relu(p_tj) becomes 1[p_tj > 0] in
    the three gradients and relu(p_tj)^2 becomes relu(p_tj) in the loss.
    """
    m, T, nb = Ws.shape[1], hs.shape[1], gh_part.shape[1]
    for q in prange(Ws.shape[0] * nb):
        i, B, j0, j1 = _block(q, nb, fb, Ws.shape[2])
        L = j1 - j0
        g = np.empty(L, np.float32)  # c2 relu(p_tj) for one point, then reused
        gWl = np.zeros((m, L), np.float32)
        gbl = np.zeros(L, np.float32)
        ones = np.ones(L, np.float32)
        for P in range(centre.shape[1]):
            t0, t1 = P * tp, min(T, P * tp + tp)
            if skip and _block_is_off(Ws, bs, Wnorm, i, j0, j1, centre[i, P], radius[i, P]):
                continue
            for t in range(t0, t1):
                for j in range(L):
                    g[j] = bs[i, j0 + j]
                for k in range(m):
                    hk = hs[i, t, k]
                    for j in range(L):
                        g[j] = g[j] + Ws[i, k, j0 + j] * hk
                for j in range(L):
                    r = g[j]
                    g[j] = np.float32(0.0) if r <= 0 else r  # relu that keeps NaN
                if l1:  # |0 - relu(p)| = relu(p); its slope in p is 1[p > 0]
                    loss_part[i, B, t] = _dot8(g, ones)
                    for j in range(L):
                        g[j] = c2 if g[j] > 0 else np.float32(0.0)
                else:
                    loss_part[i, B, t] = _dot8(g, g)
                    for j in range(L):
                        g[j] = c2 * g[j]
                for j in range(L):
                    gbl[j] += g[j]
                for k in range(m):
                    hk = hs[i, t, k]
                    for j in range(L):
                        gWl[k, j] += g[j] * hk
                    gh_part[i, B, t, k] = _dot8(g, Ws[i, k, j0:j1])
        for j in range(L):
            gb[i, j0 + j] = gbl[j]
            for k in range(m):
                gW[i, k, j0 + j] = gWl[k, j]


@njit(fastmath=False, cache=True)  # explicit: a callee inherits an unset fastmath
def _dot8(a, b):
    """sum_j a[j] b[j] over two (L,) float32 arrays in a fixed order: eight running sums
    over j mod 8, added pairwise, then the tail. Outside fastmath on purpose: with
    reassociation LLVM picked the order per call (its vector loop or the scalar fallback,
    by run-time checks on the buffers' addresses), so the sums changed with the heap and
    the thread count (tests/test_engines.py, thread-count identity at m = 3)."""
    z = np.float32(0.0)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = z
    L = a.shape[0]
    j = 0
    while j + 8 <= L:
        a0 += a[j] * b[j]
        a1 += a[j + 1] * b[j + 1]
        a2 += a[j + 2] * b[j + 2]
        a3 += a[j + 3] * b[j + 3]
        a4 += a[j + 4] * b[j + 4]
        a5 += a[j + 5] * b[j + 5]
        a6 += a[j + 6] * b[j + 6]
        a7 += a[j + 7] * b[j + 7]
        j += 8
    s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    while j < L:
        s += a[j] * b[j]
        j += 1
    return s


@njit(fastmath=_HOT, cache=True)
def _pre(W, b, i, j, h, r):
    """p_rj, rounded exactly as in dense_pass (b first, then + W_kj h_k for k = 0..m-1)."""
    p = b[i, j]
    for k in range(W.shape[1]):
        p = p + W[i, k, j] * h[r, k]
    return p


@njit(parallel=True, cache=True)
def per_point(
    indptr, indices, values, W, b, h, T, c2, inv_pts, gh_part, loss_part, gh, loss, l1=False
):  # fmt: skip
    """Finish each point: block partials in fixed order + the sparse correction.

    indptr (R+1,), indices/values (nnz,): the data; W (inst, m, n), b (inst, n) unsorted;
    h (R, m); inv_pts (inst, T): sorted position of each point; gh_part, loss_part as in
    dense_pass. Writes gh (R, m) = sum_j g_tj W_j and loss (R,) float64 = T * L_t.
    ``l1``: the loss |x - x'| (c2 = 1/T), whose dense part is relu(p) with slope 1[p > 0].
    """
    m = W.shape[1]
    nb = gh_part.shape[1]
    for r in prange(h.shape[0]):
        i, t = r // T, r % T
        s = inv_pts[i, t]
        for k in range(m):
            acc = np.float32(0.0)
            for B in range(nb):
                acc += gh_part[i, B, s, k]
            gh[r, k] = acc
        lt = 0.0
        for B in range(nb):
            lt += loss_part[i, B, s]
        for q in range(indptr[r], indptr[r + 1]):
            j, x = indices[q], values[q]
            p = _pre(W, b, i, j, h, r)
            if l1:  # |x - relu(p)| in place of the dense part's relu(p)
                if p > 0:
                    lt += abs(np.float64(x) - p) - p
                    gc = c2 * (_sign(p - x) - np.float32(1.0))
                    for k in range(m):
                        gh[r, k] += gc * W[i, k, j]
                else:
                    lt += abs(np.float64(x))
                continue
            if p > 0:  # (relu(p) - x)^2 = relu(p)^2 - 2 relu(p) x + x^2, relu(p)^2 is dense
                lt += -2.0 * np.float64(p) * x
                for k in range(m):
                    gh[r, k] -= c2 * x * W[i, k, j]
            lt += np.float64(x) * x
        loss[r] = lt


@njit(cache=True)
def _sign(v):
    """sign(v) as float32: -1, 0 or 1 (the slope of |v| that autograd uses, 0 at 0)."""
    return np.float32(1.0) if v > 0 else (np.float32(-1.0) if v < 0 else np.float32(0.0))


@njit(parallel=True, cache=True)
def per_feature(cptr, crows, cvals, W, b, h, gh, n, c2, gW, gb, l1=False):
    """Finish each feature over its nonzeros (CSC): sparse correction + encoder gradient.

    cptr (inst*n+1,), crows (nnz,) flat row, cvals (nnz,): CSC of the block-diagonal
    (R, inst*n) data matrix, column i*n + j holding feature j of instance i. W, b, h, gh
    as in per_point. gW (inst, m, n), gb (inst, n) hold the dense part on entry (in
    unsorted order) and the full gradient on exit. ``l1``: as in per_point.
    """
    m = W.shape[1]
    for col in prange(cptr.shape[0] - 1):
        i, j = col // n, col % n
        for q in range(cptr[col], cptr[col + 1]):
            r, x = crows[q], cvals[q]
            p = _pre(W, b, i, j, h, r)
            if l1:  # decoder: g_tj = c2 sign(p - x) in place of the dense part's c2
                if p > 0:
                    gc = c2 * (_sign(p - x) - np.float32(1.0))
                    gb[i, j] += gc
                    for k in range(m):
                        gW[i, k, j] += gc * h[r, k]
            elif p > 0:  # decoder: g_tj has the extra -c2 x term
                gb[i, j] -= c2 * x
                for k in range(m):
                    gW[i, k, j] -= c2 * x * h[r, k]
            for k in range(m):  # encoder: dL/dW_kj += gh_tk x_tj
                gW[i, k, j] += gh[r, k] * x


@njit(fastmath=_HOT, cache=True, inline="always")
def _step(r):
    """1[r > 0]: the l1 slope of a relu'd pre-activation r, as dense_pass computes it."""
    return np.float32(1.0) if r > 0 else np.float32(0.0)


@njit(fastmath=_HOT, cache=True)
def _m2_points(W0, W1, bb, hs, i, t, U, acc, gbl, gW0l, gW1l, l1=False):
    """U (1 or 4) consecutive points t.. against one feature block, m = 2, in registers.

    W0, W1, bb (L,): the block's W_0j, W_1j, b_j. acc (3U,) receives, per point u,
    sum_j relu(p)^2, sum_j relu(p) W_0j, sum_j relu(p) W_1j (unscaled by c2).
    gbl, gW0l, gW1l (L,) += relu(p_tj), relu(p_tj) h_t0, relu(p_tj) h_t1 (unscaled).
    One sweep over the block serves U points, so each W/b/gradient load and store is
    shared by U points; the 3U reductions are scalars that LLVM keeps in vector registers.
    With ``l1``: relu(p) becomes 1[p > 0] in the gradients and relu(p)^2 becomes relu(p)
    in the loss (the flag is the same for the whole loop, which LLVM unswitches).
    """
    z = np.float32(0.0)
    if U == 4:
        a0, a1 = hs[i, t, 0], hs[i, t, 1]
        b0, b1 = hs[i, t + 1, 0], hs[i, t + 1, 1]
        c0, c1 = hs[i, t + 2, 0], hs[i, t + 2, 1]
        d0, d1 = hs[i, t + 3, 0], hs[i, t + 3, 1]
        la = lb = lc = ld = z
        xa = xb = xc = xd = z
        ya = yb = yc = yd = z
        for j in range(W0.shape[0]):
            w0, w1, bj = W0[j], W1[j], bb[j]
            ra = bj + w0 * a0 + w1 * a1
            rb = bj + w0 * b0 + w1 * b1
            rc = bj + w0 * c0 + w1 * c1
            rd = bj + w0 * d0 + w1 * d1
            ra = z if ra <= 0 else ra  # relu that keeps NaN
            rb = z if rb <= 0 else rb
            rc = z if rc <= 0 else rc
            rd = z if rd <= 0 else rd
            if l1:  # loss relu(p), slope 1[p > 0]
                la += ra
                lb += rb
                lc += rc
                ld += rd
                ra = _step(ra)
                rb = _step(rb)
                rc = _step(rc)
                rd = _step(rd)
            else:
                la += ra * ra
                lb += rb * rb
                lc += rc * rc
                ld += rd * rd
            xa += ra * w0
            xb += rb * w0
            xc += rc * w0
            xd += rd * w0
            ya += ra * w1
            yb += rb * w1
            yc += rc * w1
            yd += rd * w1
            gbl[j] += (ra + rb) + (rc + rd)
            gW0l[j] += (ra * a0 + rb * b0) + (rc * c0 + rd * d0)
            gW1l[j] += (ra * a1 + rb * b1) + (rc * c1 + rd * d1)
        acc[0], acc[1], acc[2], acc[3] = la, lb, lc, ld
        acc[4], acc[5], acc[6], acc[7] = xa, xb, xc, xd
        acc[8], acc[9], acc[10], acc[11] = ya, yb, yc, yd
    else:
        a0, a1 = hs[i, t, 0], hs[i, t, 1]
        la = xa = ya = z
        for j in range(W0.shape[0]):
            w0, w1, bj = W0[j], W1[j], bb[j]
            ra = bj + w0 * a0 + w1 * a1
            ra = z if ra <= 0 else ra
            if l1:
                la += ra
                ra = _step(ra)
            else:
                la += ra * ra
            xa += ra * w0
            ya += ra * w1
            gbl[j] += ra
            gW0l[j] += ra * a0
            gW1l[j] += ra * a1
        acc[0], acc[1], acc[2] = la, xa, ya


@njit(fastmath=_HOT, cache=True)
def _m3_points(W0, W1, W2, bb, hs, i, t, U, acc, gbl, gW0l, gW1l, gW2l, l1=False):
    """``_m2_points`` for m = 3: U (1 or 4) points t.. against one feature block.

    acc (4U,) receives per point u: sum_j relu(p)^2 (l1: relu(p)), then sum_j g W_0j,
    sum_j g W_1j, sum_j g W_2j with g = relu(p) (l1: 1[p > 0]), unscaled by c2;
    gbl, gW0l, gW1l, gW2l (L,) += g, g h_t0, g h_t1, g h_t2 summed over the U points.
    The same body as _m2_points with a third coordinate, written out: the unrolled
    registers are the point, and a loop over k inside the loop over j would not unroll
    (m is a run-time value to Numba; closures over it do not cache safely, see
    docs/ENGINES.md). m = 2's sums keep their order, bit for bit.
    """
    z = np.float32(0.0)
    if U == 4:
        a0, a1, a2 = hs[i, t, 0], hs[i, t, 1], hs[i, t, 2]
        b0, b1, b2 = hs[i, t + 1, 0], hs[i, t + 1, 1], hs[i, t + 1, 2]
        c0, c1, c2 = hs[i, t + 2, 0], hs[i, t + 2, 1], hs[i, t + 2, 2]
        d0, d1, d2 = hs[i, t + 3, 0], hs[i, t + 3, 1], hs[i, t + 3, 2]
        la = lb = lc = ld = z
        xa = xb = xc = xd = z
        ya = yb = yc = yd = z
        za = zb = zc = zd = z
        for j in range(W0.shape[0]):
            w0, w1, w2, bj = W0[j], W1[j], W2[j], bb[j]
            ra = bj + w0 * a0 + w1 * a1 + w2 * a2
            rb = bj + w0 * b0 + w1 * b1 + w2 * b2
            rc = bj + w0 * c0 + w1 * c1 + w2 * c2
            rd = bj + w0 * d0 + w1 * d1 + w2 * d2
            ra = z if ra <= 0 else ra  # relu that keeps NaN
            rb = z if rb <= 0 else rb
            rc = z if rc <= 0 else rc
            rd = z if rd <= 0 else rd
            if l1:
                la += ra
                lb += rb
                lc += rc
                ld += rd
                ra = _step(ra)
                rb = _step(rb)
                rc = _step(rc)
                rd = _step(rd)
            else:
                la += ra * ra
                lb += rb * rb
                lc += rc * rc
                ld += rd * rd
            xa += ra * w0
            xb += rb * w0
            xc += rc * w0
            xd += rd * w0
            ya += ra * w1
            yb += rb * w1
            yc += rc * w1
            yd += rd * w1
            za += ra * w2
            zb += rb * w2
            zc += rc * w2
            zd += rd * w2
            gbl[j] += (ra + rb) + (rc + rd)
            gW0l[j] += (ra * a0 + rb * b0) + (rc * c0 + rd * d0)
            gW1l[j] += (ra * a1 + rb * b1) + (rc * c1 + rd * d1)
            gW2l[j] += (ra * a2 + rb * b2) + (rc * c2 + rd * d2)
        acc[0], acc[1], acc[2], acc[3] = la, lb, lc, ld
        acc[4], acc[5], acc[6], acc[7] = xa, xb, xc, xd
        acc[8], acc[9], acc[10], acc[11] = ya, yb, yc, yd
        acc[12], acc[13], acc[14], acc[15] = za, zb, zc, zd
    else:
        a0, a1, a2 = hs[i, t, 0], hs[i, t, 1], hs[i, t, 2]
        la = xa = ya = za = z
        for j in range(W0.shape[0]):
            w0, w1, w2, bj = W0[j], W1[j], W2[j], bb[j]
            ra = bj + w0 * a0 + w1 * a1 + w2 * a2
            ra = z if ra <= 0 else ra
            if l1:
                la += ra
                ra = _step(ra)
            else:
                la += ra * ra
            xa += ra * w0
            ya += ra * w1
            za += ra * w2
            gbl[j] += ra
            gW0l[j] += ra * a0
            gW1l[j] += ra * a1
            gW2l[j] += ra * a2
        acc[0], acc[1], acc[2], acc[3] = la, xa, ya, za


# the hidden sizes with a kernel unrolled over m (and over 4 points): dense_pass_unrolled
UNROLLED_M = (2, 3)


def dense_kernel(m: int):
    """The dense pass for hidden size m: the unrolled one where there is one, else the
    generic ``dense_pass`` (both take the same arguments)."""
    return dense_pass_unrolled if m in UNROLLED_M else dense_pass


# Not cached: compiled in each process (~3-5 s). Loaded from Numba's on-disk cache, this
# kernel gave other float32 rounding than freshly compiled (same inputs; its reassociated
# reductions, in the m = 2 and 3 point kernels it calls, came out in another order), so a
# first run after an install and every later run disagreed in the last bits, which the
# middle regime amplifies to a test loss 4.45 against 4.86 (docs/ENGINES.md, "Exactness
# and determinism"). Fresh compiles agree with each other (the point kernels it calls
# may stay cached: the caller's compile decides); no other kernel differed.
@njit(parallel=True, fastmath=_HOT, cache=False)
def dense_pass_unrolled(
    Ws, bs, hs, c2, fb, tp, skip, centre, radius, Wnorm, gW, gb, gh_part, loss_part, l1=False
):  # fmt: skip
    """dense_pass for m in UNROLLED_M (same arguments, same outputs up to rounding): each
    block's W rows, b and gradient sums as flat (L,) arrays, 4 points a sweep."""
    m, T, nb = Ws.shape[1], hs.shape[1], gh_part.shape[1]
    if m != 2 and m != 3:
        raise ValueError("dense_pass_unrolled: m must be 2 or 3 (UNROLLED_M)")
    for q in prange(Ws.shape[0] * nb):
        i, B, j0, j1 = _block(q, nb, fb, Ws.shape[2])
        bb = bs[i, j0:j1]
        gbl = np.zeros(j1 - j0, np.float32)
        gWl = np.zeros((m, j1 - j0), np.float32)
        acc = np.empty(4 * (m + 1), np.float32)
        for P in range(centre.shape[1]):
            t0, t1 = P * tp, min(T, P * tp + tp)
            if skip and _block_is_off(Ws, bs, Wnorm, i, j0, j1, centre[i, P], radius[i, P]):
                continue
            t = t0
            while t < t1:
                U = 4 if t + 4 <= t1 else 1
                if m == 2:
                    _m2_points(
                        Ws[i, 0, j0:j1], Ws[i, 1, j0:j1], bb, hs, i, t, U, acc, gbl, gWl[0],
                        gWl[1], l1,
                    )  # fmt: skip
                else:
                    _m3_points(
                        Ws[i, 0, j0:j1], Ws[i, 1, j0:j1], Ws[i, 2, j0:j1], bb, hs, i, t, U, acc,
                        gbl, gWl[0], gWl[1], gWl[2], l1,
                    )  # fmt: skip
                for u in range(U):
                    loss_part[i, B, t + u] = acc[u]
                    for k in range(m):
                        gh_part[i, B, t + u, k] = c2 * acc[(k + 1) * U + u]
                t += U
        for j in range(j1 - j0):
            gb[i, j0 + j] = c2 * gbl[j]
            for k in range(m):
                gW[i, k, j0 + j] = c2 * gWl[k, j]
