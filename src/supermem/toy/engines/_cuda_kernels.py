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
import os
import subprocess
import tempfile
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
        cm = c < M
        H = tl.load(h + flat[:, None] * M + c[None, :], mask=hm, other=0.0)  # (BT, MP)
        # the dense part, accumulated per (point, [dim,] feature) in registers and reduced
        # once at the end: no reduction or layout change inside the loop
        L = tl.zeros((BT, BN), tl.float32)
        G = tl.zeros((BT, MP, BN), tl.float32)
        for f0 in range(0, n, BN):
            f = f0 + tl.arange(0, BN)
            fmask = f < n
            Wb = tl.load(
                Wi + c[:, None] * n + f[None, :], mask=cm[:, None] & fmask[None, :], other=0.0
            )  # (MP, BN)
            bb = tl.load(bi + f, mask=fmask, other=-1.0)  # a padded feature: p = -1, off
            p = tl.sum(H[:, :, None] * Wb[None, :, :], axis=1) + bb[None, :]  # (BT, BN)
            r = tl.where(p <= 0, 0.0, p)  # relu that keeps a NaN (NaN in W: NaN loss)
            L += r * r
            G += r[:, None, :] * Wb[None, :, :]
        lacc = tl.sum(L, axis=1)  # (BT,); a padded row (H = 0) is never stored
        gacc = tl.sum(G, axis=2)  # (BT, MP)
        for k in range(K):  # the row's nonzeros (padding: value 0, contributes 0)
            j = tl.load(idx + flat * K + k, mask=rmask, other=0)
            v = tl.load(val + flat * K + k, mask=rmask, other=0.0)
            wj = tl.load(Wi + c[None, :] * n + j[:, None], mask=hm, other=0.0)  # (BT, MP)
            pj = tl.sum(H * wj, axis=1) + tl.load(bi + j, mask=rmask, other=0.0)  # as p above
            on = pj > 0
            lacc += tl.where(on, -2.0 * pj * v, 0.0) + v * v
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
        cm = c < M
        Wb = tl.load(
            Wi + c[:, None] * n + f[None, :], mask=cm[:, None] & fmask[None, :], other=0.0
        )  # (MP, BN)
        bb = tl.load(bi + f, mask=fmask, other=0.0)  # a padded feature: W = 0, b = 0, off
        B = tl.zeros((BT, BN), tl.float32)  # per (point, feature), reduced once at the end
        G = tl.zeros((BT, MP, BN), tl.float32)
        t_end = tl.minimum(s * seg + seg, T)
        for t0 in range(s * seg, t_end, BT):
            rows = t0 + tl.arange(0, BT)
            rmask = rows < t_end
            H = tl.load(
                h + (i * T + rows)[:, None] * M + c[None, :],
                mask=rmask[:, None] & cm[None, :],
                other=0.0,
            )  # (BT, MP)
            p = tl.sum(H[:, :, None] * Wb[None, :, :], axis=1) + bb[None, :]
            r = tl.where(rmask[:, None] & (p > 0), p, 0.0)
            B += r
            G += H[:, :, None] * r[:, None, :]
        gbacc = tl.sum(B, axis=0)  # (BN,)
        gwacc = tl.sum(G, axis=0)  # (MP, BN)
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
            p = tl.sum(H * wj[None, :], axis=1) + bj  # (BS,), as in the dense passes
            nv = tl.where(qm & (p > 0), -v, 0.0)
            accb += nv
            accw += nv[:, None] * H
            acce += v[:, None] * G
        tl.store(gbs + col, c2 * tl.sum(accb, axis=0))
        gw = c2 * tl.sum(accw, axis=0) + tl.sum(acce, axis=0)  # (MP,)
        tl.store(gWs + i * M * n + c * n + j, gw, mask=cm)

    return SimpleNamespace(hidden=hidden, rows=rows, cols=cols, colnz=colnz)


# Argument types of each kernel, for compiling it ahead of time (``resources``).
_SIGNATURES = {
    "hidden": "idx:*i32 val:*fp32 W:*fp32 h:*fp32 T:i32 n:i32 K:i32",
    "rows": "idx:*i32 val:*fp32 W:*fp32 b:*fp32 h:*fp32 gh:*fp32 loss:*fp32 T:i32 n:i32 K:i32 "
    "c2:fp32",
    "cols": "W:*fp32 b:*fp32 h:*fp32 pgW:*fp32 pgb:*fp32 T:i32 n:i32 seg:i32",
    "colnz": "cptr:*i64 crow:*i64 cval:*fp32 W:*fp32 b:*fp32 h:*fp32 gh:*fp32 gWs:*fp32 "
    "gbs:*fp32 T:i32 n:i32 c2:fp32",
}


def resources(kernel: str, consts: dict[str, int], warps: int, arch: int = 90) -> dict[str, int]:
    """Registers per thread and stack bytes (spills) of ``kernel`` compiled ahead of time
    for sm_``arch`` with constexprs ``consts``: read with the cuobjdump that Triton ships,
    so no GPU is needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = dict(a.split(":") for a in _SIGNATURES[kernel].split())
    sig.update({k: "constexpr" for k in consts})
    from triton.runtime.jit import JITFunction

    fn = getattr(kernels(), kernel)
    if not isinstance(fn, JITFunction):  # built for the interpreter: compile its source
        fn = JITFunction(fn.fn)
    src = ASTSource(fn=fn, signature=sig, constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
        out = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if "REG:" in ln)
    fields = dict(x.split(":") for x in line.split() if x.startswith(("REG:", "STACK:")))
    return {"registers": int(fields["REG"]), "stack": int(fields["STACK"])}
