"""Triton kernels of the cuda engine (``supermem.toy.engines.cuda``): fused dense passes
that never hold a (T, n) tensor, and the sparse corrections over the nonzeros of x.

Built on first use (``kernels()``), so importing this package needs no Triton. With
``TRITON_INTERPRET=1`` set before that first use, Triton runs them on the CPU (slowly),
which is how they are tested on machines without a GPU.

For instance i, with h_t = W x_t (m,), p_tj = W_j . h_t + b_j, r_tj = relu(p_tj):

    hidden   grid (T tiles, inst):          h_t from the row ELL of x
    rows     grid (T tiles, inst):          loss_t = sum_j r_tj^2 + sum_{j in nz(x_t)}
                                                     (-2 r_tj x_tj + x_tj^2)
                                            gh_t = c2 [sum_j r_tj W_j - sum_{nz} x_tj 1[p>0] W_j]
    cols     grid (n tiles, T segments, inst): per segment, sum_t r_tj and sum_t r_tj h_t
    colnz    grid (n, inst):                the feature's nonzeros (CSC): the sparse part
                                            of gb_j and of the decoder gradient, and the
                                            encoder gradient sum_t gh_t x_tj

Every sum runs in a fixed order inside one program (no atomics), and partials are summed
by the caller in a fixed order: results are deterministic. Shapes are flat and
contiguous: W (inst, M, n), b (inst, n), h and gh (inst*T, M), ELL idx/val (inst*T, K),
CSC cptr (inst*n + 1,), crow (nnz,) flat row i*T + t, cval (nnz,).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace


@functools.cache
def kernels() -> SimpleNamespace:
    """The jitted kernels (Triton is imported here, on first use)."""
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["T", "n", "K"])
    def hidden(idx, val, W, h, T, n, K, M: tl.constexpr, MP: tl.constexpr, BT: tl.constexpr):
        pt, i = tl.program_id(0), tl.program_id(1).to(tl.int64)
        rows = pt * BT + tl.arange(0, BT)
        rmask = rows < T
        c = tl.arange(0, MP)
        hm = rmask[:, None] & (c < M)[None, :]
        flat = i * T + rows  # (BT,) int64
        acc = tl.zeros((BT, MP), tl.float32)
        for k in range(K):
            j = tl.load(idx + flat * K + k, mask=rmask, other=0)
            v = tl.load(val + flat * K + k, mask=rmask, other=0.0)
            w = tl.load(W + i * M * n + c[None, :] * n + j[:, None], mask=hm, other=0.0)
            acc += v[:, None] * w
        tl.store(h + flat[:, None] * M + c[None, :], acc, mask=hm)

    @triton.jit(do_not_specialize=["T", "n", "K"])
    def rows(
        idx, val, W, b, h, gh, loss, T, n, K, c2,
        M: tl.constexpr, MP: tl.constexpr, BT: tl.constexpr, BN: tl.constexpr,
    ):  # fmt: skip
        pt, i = tl.program_id(0), tl.program_id(1).to(tl.int64)
        rows = pt * BT + tl.arange(0, BT)
        rmask = rows < T
        c = tl.arange(0, MP)
        hm = rmask[:, None] & (c < M)[None, :]
        flat = i * T + rows
        Wi, bi = W + i * M * n, b + i * n
        gacc = tl.zeros((BT, MP), tl.float32)
        lacc = tl.zeros((BT,), tl.float32)
        for f0 in range(0, n, BN):
            f = f0 + tl.arange(0, BN)
            fmask = f < n
            p = tl.zeros((BT, BN), tl.float32) + tl.load(bi + f, mask=fmask, other=0.0)[None, :]
            for q in tl.static_range(M):
                hq = tl.load(h + flat * M + q, mask=rmask, other=0.0)
                wq = tl.load(Wi + q * n + f, mask=fmask, other=0.0)
                p += hq[:, None] * wq[None, :]
            r = tl.where(rmask[:, None] & fmask[None, :] & (p > 0), p, 0.0)
            lacc += tl.sum(r * r, axis=1)
            for q in tl.static_range(M):
                wq = tl.load(Wi + q * n + f, mask=fmask, other=0.0)
                gq = tl.sum(r * wq[None, :], axis=1)
                gacc += tl.where(c[None, :] == q, gq[:, None], 0.0)
        for k in range(K):  # the row's nonzeros (padding: value 0, contributes 0)
            j = tl.load(idx + flat * K + k, mask=rmask, other=0)
            v = tl.load(val + flat * K + k, mask=rmask, other=0.0)
            pj = tl.load(bi + j, mask=rmask, other=0.0)
            for q in tl.static_range(M):
                hq = tl.load(h + flat * M + q, mask=rmask, other=0.0)
                pj += hq * tl.load(Wi + q * n + j, mask=rmask, other=0.0)
            on = pj > 0
            lacc += tl.where(on, -2.0 * pj * v, 0.0) + v * v
            wj = tl.load(Wi + c[None, :] * n + j[:, None], mask=hm, other=0.0)
            gacc -= tl.where(on, v, 0.0)[:, None] * wj
        tl.store(gh + flat[:, None] * M + c[None, :], c2 * gacc, mask=hm)
        tl.store(loss + flat, lacc, mask=rmask)

    @triton.jit(do_not_specialize=["T", "n", "seg"])
    def cols(
        W, b, h, pgW, pgb, T, n, seg,
        M: tl.constexpr, MP: tl.constexpr, BT: tl.constexpr, BN: tl.constexpr,
    ):  # fmt: skip
        pf, s, i = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
        nseg = tl.num_programs(1)
        f = pf * BN + tl.arange(0, BN)
        fmask = f < n
        c = tl.arange(0, MP)
        Wi, bi = W + i * M * n, b + i * n
        bj = tl.load(bi + f, mask=fmask, other=0.0)
        gbacc = tl.zeros((BN,), tl.float32)
        gwacc = tl.zeros((MP, BN), tl.float32)
        t_end = tl.minimum(s * seg + seg, T)
        for t0 in range(s * seg, t_end, BT):
            rows = t0 + tl.arange(0, BT)
            rmask = rows < t_end
            hrow = h + (i * T + rows) * M
            p = tl.zeros((BT, BN), tl.float32) + bj[None, :]
            for q in tl.static_range(M):
                hq = tl.load(hrow + q, mask=rmask, other=0.0)
                wq = tl.load(Wi + q * n + f, mask=fmask, other=0.0)
                p += hq[:, None] * wq[None, :]
            r = tl.where(rmask[:, None] & fmask[None, :] & (p > 0), p, 0.0)
            gbacc += tl.sum(r, axis=0)
            for q in tl.static_range(M):
                hq = tl.load(hrow + q, mask=rmask, other=0.0)
                gq = tl.sum(hq[:, None] * r, axis=0)
                gwacc += tl.where(c[:, None] == q, gq[None, :], 0.0)
        out = i * nseg + s  # partial (i, s)
        tl.store(pgb + out * n + f, gbacc, mask=fmask)
        tl.store(
            pgW + out * M * n + c[:, None] * n + f[None, :],
            gwacc,
            mask=(c < M)[:, None] & fmask[None, :],
        )

    @triton.jit(do_not_specialize=["T", "n"])
    def colnz(
        cptr, crow, cval, W, b, h, gh, gWs, gbs, T, n, c2,
        M: tl.constexpr, MP: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        j, i = tl.program_id(0), tl.program_id(1).to(tl.int64)
        col = i * n + j
        a = tl.load(cptr + col)
        z = tl.load(cptr + col + 1)
        c = tl.arange(0, MP)
        cm = c < M
        Wi = W + i * M * n
        wj = tl.load(Wi + c * n + j, mask=cm, other=0.0)  # (MP,)
        bj = tl.load(b + i * n + j)
        accb = tl.zeros((BS,), tl.float32)
        accw = tl.zeros((BS, MP), tl.float32)
        acce = tl.zeros((BS, MP), tl.float32)
        for s0 in range(a, z, BS):
            qs = s0 + tl.arange(0, BS)
            qm = qs < z
            t = tl.load(crow + qs, mask=qm, other=0).to(tl.int64)
            v = tl.load(cval + qs, mask=qm, other=0.0)
            hm = qm[:, None] & cm[None, :]
            H = tl.load(h + t[:, None] * M + c[None, :], mask=hm, other=0.0)  # (BS, MP)
            G = tl.load(gh + t[:, None] * M + c[None, :], mask=hm, other=0.0)
            p = tl.zeros((BS,), tl.float32) + bj
            for q in tl.static_range(M):
                hq = tl.sum(tl.where(c[None, :] == q, H, 0.0), axis=1)
                p += hq * tl.sum(tl.where(c == q, wj, 0.0), axis=0)
            nv = tl.where(qm & (p > 0), -v, 0.0)
            accb += nv
            accw += nv[:, None] * H
            acce += v[:, None] * G
        tl.store(gbs + col, c2 * tl.sum(accb, axis=0))
        gw = c2 * tl.sum(accw, axis=0) + tl.sum(acce, axis=0)  # (MP,)
        tl.store(gWs + i * M * n + c * n + j, gw, mask=cm)

    return SimpleNamespace(hidden=hidden, rows=rows, cols=cols, colnz=colnz)
