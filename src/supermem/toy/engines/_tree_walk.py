"""Numba kernels of the tree engine: the walk of each block of features down the tree.

Node layout, the off / on / cut rule and why it is exact: ``_tree_kernels``. Features
walk the tree in blocks of F, in an order the caller chooses so that a block's
hyperplanes are alike and cut the same nodes (``tree.feature_order``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from supermem.toy.engines._numba_kernels import _HOT

MARGIN = 1e-5  # >> float32 rounding of p relative to scale, << any useful p
FB = 32  # features per block; the m = 2 and 3 kernels' lane loops have this compile-time length
# the walk's kernels may also fuse a * b + c into one rounding (FMA): p at a cut leaf is
# rounded once less than the sparse kernels round it (exact to float32 rounding either way;
# the off / on margin is far above it); the initial T = 10^5 and 10^6 walks ~10% faster
_WALK = _HOT | {"contract"}


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
    and per part P (block B in part B % NPART; NPART = nodeA.shape[1]), where an entry
    not yet marked (onm, cut) counts as zero whatever it holds (``push_down`` clears
    the marks, not the buffers):
      nodeA (inst, NPART, nn, m, m) += W_j W_j^T, nodea (..., m) += b_j W_j on each on
      node and onm (inst, NPART, nn) bool marks it, ghp (inst, NPART, T, m) float64
      += c2 p_tj W_j for each on point of a cut
      leaf, and cut (inst, NPART, nn) bool marks the leaves whose ghp was written
      (``push_down`` reads exactly those and clears the marks);
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
            elif m == 3 and F == FB and j1 - j0 == FB:
                work[i, part] += _traverse_block_m3(
                    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA,
                    nodea, onm, ghp, cut, i, part, j0,
                )  # fmt: skip
            else:
                work[i, part] += _traverse_block(
                    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA,
                    nodea, onm, ghp, cut, i, part, j0, j1,
                )  # fmt: skip


@njit(fastmath=_WALK, cache=True)
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
            was = onm[i, part, v]  # else the buffers hold stale values: start from 0
            onm[i, part, v] = True
            for k in range(m):
                acc = 0.0
                for f in range(F):
                    x = b64[f] * w64[k, f]
                    acc += x if isOn[f] else 0.0
                nodea[i, part, v, k] = (nodea[i, part, v, k] if was else 0.0) + acc
                for l in range(m):
                    acc = 0.0
                    for f in range(F):
                        x = w64[k, f] * w64[l, f]
                        acc += x if isOn[f] else 0.0
                    nodeA[i, part, v, k, l] = (nodeA[i, part, v, k, l] if was else 0.0) + acc
        if not anykeep:
            continue
        if right[v] >= 0:
            node[sp], depth[sp] = right[v], d + 1
            node[sp + 1], depth[sp + 1] = v + 1, d + 1
            sp += 2
            continue
        # a cut leaf: point by point for the cut lanes, p = b, + W_k h_k in float32 (see _WALK)
        was = cut[i, part, v]  # else ghp holds stale values here: start from 0
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
                ghp[i, part, s, k] = (ghp[i, part, s, k] if was else 0.0) + c2 * np.float64(acc32)
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


@njit(fastmath=_WALK, cache=True)
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
            was = onm[i, part, v]  # else the buffers hold stale values: start from 0
            nodeA[i, part, v, 0, 0] = (nodeA[i, part, v, 0, 0] if was else 0.0) + A00
            nodeA[i, part, v, 0, 1] = (nodeA[i, part, v, 0, 1] if was else 0.0) + A01
            nodeA[i, part, v, 1, 0] = (nodeA[i, part, v, 1, 0] if was else 0.0) + A01
            nodeA[i, part, v, 1, 1] = (nodeA[i, part, v, 1, 1] if was else 0.0) + A11
            nodea[i, part, v, 0] = (nodea[i, part, v, 0] if was else 0.0) + a0
            nodea[i, part, v, 1] = (nodea[i, part, v, 1] if was else 0.0) + a1
            onm[i, part, v] = True
        if not anykeep:
            continue
        if right[v] >= 0:
            node[sp], depth[sp] = right[v], d + 1
            node[sp + 1], depth[sp + 1] = v + 1, d + 1
            sp += 2
            continue
        was = cut[i, part, v]  # else ghp holds stale values here: start from 0
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
            ghp[i, part, s, 0] = (ghp[i, part, s, 0] if was else 0.0) + c2 * np.float64(x0)
            ghp[i, part, s, 1] = (ghp[i, part, s, 1] if was else 0.0) + c2 * np.float64(x1)
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


@njit(fastmath=_WALK, cache=True)
def _traverse_block_m3(
    Ws, bs, hs, D, start, end, right, lo, hi, S1, S2, c2, gW, gb, lossf, nodeA, nodea, onm, ghp,
    cut, i, part, j0,
):  # fmt: skip
    """``_traverse_block_m2`` for m = 3: the same steps with a third coordinate."""
    F = FB
    w0 = np.empty(F, np.float32)
    w1 = np.empty(F, np.float32)
    w2 = np.empty(F, np.float32)
    bj = np.empty(F, np.float32)
    v0 = np.empty(F)
    v1 = np.empty(F)
    v2 = np.empty(F)
    b64 = np.empty(F)
    live = np.zeros((D + 2, F), np.bool_)
    isOn = np.zeros(F, np.bool_)
    loss = np.zeros(F)
    gbl = np.zeros(F)
    gw0 = np.zeros(F)
    gw1 = np.zeros(F)
    gw2 = np.zeros(F)
    cl = np.empty(F, np.float32)
    cg = np.empty(F, np.float32)
    c0 = np.empty(F, np.float32)
    c1 = np.empty(F, np.float32)
    ch2 = np.empty(F, np.float32)
    for f in range(F):
        w0[f], w1[f], w2[f] = Ws[i, 0, j0 + f], Ws[i, 1, j0 + f], Ws[i, 2, j0 + f]
        bj[f] = bs[i, j0 + f]
        v0[f], v1[f], v2[f], b64[f] = w0[f], w1[f], w2[f], bj[f]
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
        l0, l1, l2 = np.float32(lo[i, v, 0]), np.float32(lo[i, v, 1]), np.float32(lo[i, v, 2])
        u0, u1, u2 = np.float32(hi[i, v, 0]), np.float32(hi[i, v, 1]), np.float32(hi[i, v, 2])
        anyon, anykeep = False, False
        for f in range(F):
            x0, y0 = w0[f] * l0, w0[f] * u0
            x1, y1 = w1[f] * l1, w1[f] * u1
            x2, y2 = w2[f] * l2, w2[f] * u2
            pmin = bj[f] + min(x0, y0) + min(x1, y1) + min(x2, y2)
            pmax = bj[f] + max(x0, y0) + max(x1, y1) + max(x2, y2)
            sc = abs(bj[f]) + max(abs(x0), abs(y0)) + max(abs(x1), abs(y1))
            tol = mg * (sc + max(abs(x2), abs(y2)))
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
            s10, s11, s12 = S1[i, v, 0], S1[i, v, 1], S1[i, v, 2]
            s00, s01, s02 = S2[i, v, 0, 0], S2[i, v, 0, 1], S2[i, v, 0, 2]
            s11b, s12b, s22 = S2[i, v, 1, 1], S2[i, v, 1, 2], S2[i, v, 2, 2]
            A00, A01, A02, A11, A12, A22 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
            a0, a1, a2 = 0.0, 0.0, 0.0
            for f in range(F):
                on = isOn[f]
                q0 = s00 * v0[f] + s01 * v1[f] + s02 * v2[f]
                q1 = s01 * v0[f] + s11b * v1[f] + s12b * v2[f]
                q2 = s02 * v0[f] + s12b * v1[f] + s22 * v2[f]
                s1w = v0[f] * s10 + v1[f] * s11 + v2[f] * s12
                x = v0[f] * q0 + v1[f] * q1 + v2[f] * q2 + 2.0 * b64[f] * s1w
                x += b64[f] * b64[f] * cnt
                loss[f] += x if on else 0.0
                x = q0 + b64[f] * s10
                gw0[f] += x if on else 0.0
                x = q1 + b64[f] * s11
                gw1[f] += x if on else 0.0
                x = q2 + b64[f] * s12
                gw2[f] += x if on else 0.0
                x = s1w + b64[f] * cnt
                gbl[f] += x if on else 0.0
                x = v0[f] * v0[f]
                A00 += x if on else 0.0
                x = v0[f] * v1[f]
                A01 += x if on else 0.0
                x = v0[f] * v2[f]
                A02 += x if on else 0.0
                x = v1[f] * v1[f]
                A11 += x if on else 0.0
                x = v1[f] * v2[f]
                A12 += x if on else 0.0
                x = v2[f] * v2[f]
                A22 += x if on else 0.0
                x = b64[f] * v0[f]
                a0 += x if on else 0.0
                x = b64[f] * v1[f]
                a1 += x if on else 0.0
                x = b64[f] * v2[f]
                a2 += x if on else 0.0
            was = onm[i, part, v]  # else the buffers hold stale values: start from 0
            nodeA[i, part, v, 0, 0] = (nodeA[i, part, v, 0, 0] if was else 0.0) + A00
            nodeA[i, part, v, 0, 1] = (nodeA[i, part, v, 0, 1] if was else 0.0) + A01
            nodeA[i, part, v, 0, 2] = (nodeA[i, part, v, 0, 2] if was else 0.0) + A02
            nodeA[i, part, v, 1, 0] = (nodeA[i, part, v, 1, 0] if was else 0.0) + A01
            nodeA[i, part, v, 1, 1] = (nodeA[i, part, v, 1, 1] if was else 0.0) + A11
            nodeA[i, part, v, 1, 2] = (nodeA[i, part, v, 1, 2] if was else 0.0) + A12
            nodeA[i, part, v, 2, 0] = (nodeA[i, part, v, 2, 0] if was else 0.0) + A02
            nodeA[i, part, v, 2, 1] = (nodeA[i, part, v, 2, 1] if was else 0.0) + A12
            nodeA[i, part, v, 2, 2] = (nodeA[i, part, v, 2, 2] if was else 0.0) + A22
            nodea[i, part, v, 0] = (nodea[i, part, v, 0] if was else 0.0) + a0
            nodea[i, part, v, 1] = (nodea[i, part, v, 1] if was else 0.0) + a1
            nodea[i, part, v, 2] = (nodea[i, part, v, 2] if was else 0.0) + a2
            onm[i, part, v] = True
        if not anykeep:
            continue
        if right[v] >= 0:
            node[sp], depth[sp] = right[v], d + 1
            node[sp + 1], depth[sp + 1] = v + 1, d + 1
            sp += 2
            continue
        was = cut[i, part, v]  # else ghp holds stale values here: start from 0
        cut[i, part, v] = True
        kl = live[d + 1]
        work += F * (end[v] - start[v])
        for f in range(F):
            cl[f], cg[f], c0[f], c1[f], ch2[f] = 0.0, 0.0, 0.0, 0.0, 0.0
        for s in range(start[v], end[v]):
            h0, h1, h2 = hs[i, s, 0], hs[i, s, 1], hs[i, s, 2]
            x0, x1, x2 = np.float32(0.0), np.float32(0.0), np.float32(0.0)
            for f in range(F):
                p = bj[f] + w0[f] * h0
                p = p + w1[f] * h1
                p = p + w2[f] * h2
                r = np.float32(0.0) if p <= 0 else p  # relu that keeps NaN
                r = r if kl[f] else np.float32(0.0)
                cl[f] += r * r
                cg[f] += r
                c0[f] += r * h0
                c1[f] += r * h1
                ch2[f] += r * h2
                x0 += r * w0[f]
                x1 += r * w1[f]
                x2 += r * w2[f]
            ghp[i, part, s, 0] = (ghp[i, part, s, 0] if was else 0.0) + c2 * np.float64(x0)
            ghp[i, part, s, 1] = (ghp[i, part, s, 1] if was else 0.0) + c2 * np.float64(x1)
            ghp[i, part, s, 2] = (ghp[i, part, s, 2] if was else 0.0) + c2 * np.float64(x2)
        for f in range(F):
            loss[f] += cl[f]
            gbl[f] += cg[f]
            gw0[f] += c0[f]
            gw1[f] += c1[f]
            gw2[f] += ch2[f]
    for f in range(F):
        lossf[i, j0 + f] = loss[f]
        gb[i, j0 + f] = c2 * gbl[f]
        gW[i, 0, j0 + f] = c2 * gw0[f]
        gW[i, 1, j0 + f] = c2 * gw1[f]
        gW[i, 2, j0 + f] = c2 * gw2[f]
    return work
