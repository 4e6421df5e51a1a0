"""The cuda engine (fused Triton kernels) vs the chunked engine on one GPU, side by side in
one run (not a test; needs a CUDA device and Triton). See docs/ENGINES.md.

    python benchmarks/bench_cuda.py                  # the table (n = 10,000, S = 0.999)
    python benchmarks/bench_cuda.py --quick          # T up to 10^5
    python benchmarks/bench_cuda.py --out bench.json # also every number as JSON

First the card's float32 ceiling: the median rate of an 8192^3 float32 matrix product
with TF32 off (CUDA events). Then per case (m, T, state): ms per loss+gradient step of
``chunked`` and ``cuda`` from the same parameters (median of K event-timed calls after
warm-up), their ratio, the cuda engine's dense-part rate (``cuda.flops_per_step`` over its
step time) as GFLOP/s and as a share of the measured ceiling, and the two engines'
largest gradient difference relative to the gradient's scale (a check, not a timing).
States: ``initial`` (Xavier W, b = 0) and ``trained`` (after --settle steps of cuda
training at that T, peak lr 1e-2, warm-up a tenth; T <= 10^5). Neither engine's work
depends on the state (both visit every pair). At T <= 10^5, initial state, both engines'
gradients are also compared with the reference engine's in float64.

First every (tile, block, warps) choice in CONFIGS is checked against the reference
engine in float64 at a small shape, m = 1-4 (a choice the compiler got wrong on an H200
shows here). Then each dense kernel is timed alone at the largest T over CONFIGS of
(tile, block, warps) that computed right at m = 2, and the fastest of each is used
(printed, and kept in the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

N, S = 10_000, 0.999
DEV = "cuda"  # the device measured
DATASHEET_FP32 = 67e12  # H100/H200 SXM plain float32, vendor datasheet (a lead, not a reading)


def event_ms(fn, reps: int, warm: int = 2) -> float:
    """Median milliseconds of fn() over ``reps`` calls, each between two CUDA events."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, z = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        z.record()
        z.synchronize()
        times.append(a.elapsed_time(z))
    return statistics.median(times)


def fp32_ceiling() -> float:
    """FLOP/s of an 8192^3 float32 matrix product, TF32 off (random inputs)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(8192, 8192, device=DEV)
    b = torch.randn(8192, 8192, device=DEV)
    ms = event_ms(lambda: a @ b, reps=10, warm=3)
    return 2 * 8192**3 / (ms / 1e3)


TILE_TOL = 1e-4  # largest error (of the scale) a tile choice may have to be timed
CONFIGS = [  # (points per tile, features per block, warps); the first is the default at m <= 4
    (8, 128, 4), (16, 64, 4), (8, 64, 4), (32, 64, 4), (16, 128, 4), (16, 32, 4),
    (16, 64, 8), (32, 128, 8), (64, 128, 4),
]  # fmt: skip


def tile_errors(m: int, T: int = 3_000, n: int = 500) -> dict[str, float]:
    """Per CONFIGS entry: the cuda engine's largest loss or gradient error against the
    reference engine in float64 (relative to the scale), at (T, n, m), S = 0.99, on the
    GPU. A tile choice the compiler gets wrong shows here, before anything is timed."""
    from supermem.toy.data import sample
    from supermem.toy.engines import ENGINES, cuda
    from supermem.toy.model import get_model

    dev, model = torch.device(DEV), get_model("tied")
    data = sample(T, n, 0.99, 1)
    g = torch.Generator().manual_seed(m)
    p = {"W": torch.randn(1, m, n, generator=g) * 0.3, "b": torch.randn(1, n, generator=g) * 0.1}
    ref = ENGINES["reference"]()
    want = ref.loss_and_grads(
        model, {k: v.double().to(dev) for k, v in p.items()}, ref.prepare(data, dev).double()
    )
    d = cuda.GpuData.from_sparse(data, dev)
    saved, out = dict(cuda.BLOCKS), {}
    for cfg in CONFIGS:
        cuda.BLOCKS.update(rows=cfg, cols=cfg)
        got = ENGINES["cuda"]().loss_and_grads(model, {k: v.to(dev) for k, v in p.items()}, d)
        out[str(cfg)] = cuda.relative_error(got, want)
    cuda.BLOCKS.clear()
    cuda.BLOCKS.update(saved)
    print(f"tiles at m={m}: " + ", ".join(f"{c} {e:.1e}" for c, e in out.items()), flush=True)
    return out


def tune(T: int, m: int, reps: int, ok: dict[str, float]) -> dict:
    """Per dense kernel, ms of each CONFIGS entry on one prepared set at (T, m); sets
    cuda.BLOCKS to the fastest of each. Also times the two sparse kernels once."""
    from functools import partial

    from supermem.toy.data import sample
    from supermem.toy.engines import cuda
    from supermem.toy.model import get_model

    dev = torch.device(DEV)
    d = cuda.GpuData.from_sparse(sample(T, N, S, 0), dev)
    p = get_model("tied").init(m, N, "xavier_normal", [torch.Generator().manual_seed(0)])
    W, b = p["W"].to(dev).contiguous(), torch.zeros(1, N, device=dev)
    h = cuda.hidden_pass(W, d)
    gh = cuda.rows_pass(W, b, h, d, cuda.blocks("rows", m))[1]
    out: dict = {"T": T, "m": m, "rows": {}, "cols": {}}
    out["hidden_ms"] = event_ms(partial(cuda.hidden_pass, W, d), reps)
    out["colnz_ms"] = event_ms(partial(cuda.colnz_pass, W, b, h, gh, d), reps)
    good = [c for c in CONFIGS if ok[str(c)] < TILE_TOL]  # only choices that compute right
    if not good:
        raise SystemExit(f"no tile choice computes right at m = {m} on this GPU: {ok}")
    for cfg in good:
        out["rows"][str(cfg)] = event_ms(partial(cuda.rows_pass, W, b, h, d, cfg), reps)
        out["cols"][str(cfg)] = event_ms(partial(cuda.cols_pass, W, b, h, T, cfg), reps)
        print(
            f"tune {cfg}: rows {out['rows'][str(cfg)]:.3f} ms, cols {out['cols'][str(cfg)]:.3f} ms",
            flush=True,
        )
    for kern in ("rows", "cols"):
        best = min(good, key=lambda c, kern=kern: out[kern][str(c)])
        cuda.BLOCKS[kern] = best
        out[f"{kern}_best"] = list(best)
    print(
        f"tuned: {cuda.BLOCKS}; hidden {out['hidden_ms']:.3f} ms, colnz {out['colnz_ms']:.3f} ms",
        flush=True,
    )
    return out


def reference_error(p, data, grads: dict) -> dict:
    """Largest gradient difference of each engine's float32 gradients from the reference
    engine's in float64 on the GPU, relative to the gradient's scale."""
    from supermem.toy.engines import ENGINES
    from supermem.toy.model import get_model

    ref = ENGINES["reference"]()
    x = ref.prepare(data, torch.device(DEV)).double()
    p64 = {k: v.double() for k, v in p.items()}
    g64 = ref.loss_and_grads(get_model("tied"), p64, x)[1]
    del x
    return {
        f"{name}_err64": max(
            float((g[k].double() - g64[k]).abs().max()) / float(g64[k].abs().max())
            for k in ("W", "b")
        )
        for name, g in grads.items()
    }


def case(T: int, m: int, state: str, settle: int, reps: int) -> dict:
    from supermem.config import TrainConfig
    from supermem.toy.data import sample
    from supermem.toy.engines import ENGINES
    from supermem.toy.engines.cuda import flops_per_step
    from supermem.toy.model import get_model
    from supermem.toy.train import train

    dev = torch.device(DEV)
    model = get_model("tied")
    if state == "initial":
        p = model.init(m, N, "xavier_normal", [torch.Generator().manual_seed(0)])
        p = {"W": p["W"], "b": torch.zeros_like(p["b"])}
    else:
        cfg = TrainConfig(
            features=N, hidden=m, sparsity=S, train_size=T, test_size=1000, snapshots=0,
            steps=settle, warmup=max(1, settle // 10), lr=1e-2, engine="cuda", device=DEV,
        )  # fmt: skip
        r = train(cfg, progress=False)
        p = {k: torch.as_tensor(v)[None] for k, v in r.params.items()}
    p = {k: v.to(dev).contiguous() for k, v in p.items()}
    t0 = time.perf_counter()
    data = sample(T, N, S, 0)
    sample_s = time.perf_counter() - t0
    row: dict = {"T": T, "m": m, "state": state, "sample_s": round(sample_s, 2)}
    grads = {}
    for name in ("chunked", "cuda"):
        eng = ENGINES[name]()
        t0 = time.perf_counter()
        prepared = eng.prepare(data, dev)
        torch.cuda.synchronize()
        row[f"{name}_prepare_s"] = round(time.perf_counter() - t0, 2)
        ms = event_ms(lambda e=eng, d=prepared: e.loss_and_grads(model, p, d), reps)
        row[f"{name}_ms"] = ms
        grads[name] = eng.loss_and_grads(model, p, prepared)[1]
        del prepared
        torch.cuda.empty_cache()
    if T <= 100_000 and state == "initial":
        row.update(reference_error(p, data, grads))
        torch.cuda.empty_cache()
    row["ratio"] = row["chunked_ms"] / row["cuda_ms"]
    row["gflops"] = flops_per_step(1, T, N, m) / (row["cuda_ms"] / 1e3) / 1e9
    row["grad_diff"] = max(
        float((grads["cuda"][k] - grads["chunked"][k]).abs().max())
        / (float(grads["chunked"][k].abs().max()) + 1e-30)
        for k in ("W", "b")
    )
    return row


def dump(path: str, **fields) -> None:
    """Every number so far, as JSON."""
    with open(path, "w") as f:
        json.dump(fields, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="T up to 10^5")
    ap.add_argument("--settle", type=int, default=2_000, help="training steps for 'trained'")
    ap.add_argument("--reps", type=int, default=10, help="K: timed calls per measurement")
    ap.add_argument("--m2", action="store_true", help="only m = 2, initial state")
    ap.add_argument("--out", help="write every number here as JSON")
    a = ap.parse_args()
    ceiling = fp32_ceiling()
    print(f"float32 matrix product (TF32 off): {ceiling / 1e12:.1f} TFLOP/s", flush=True)
    Ts = [10_000, 100_000] if a.quick else [10_000, 100_000, 1_000_000]
    tiles = {m: tile_errors(m) for m in ((2,) if a.m2 else (1, 2, 3, 4))}
    tuned = tune(Ts[-1], 2, 3, tiles[2])
    tuned["tile_errors"] = {str(m): e for m, e in tiles.items()}
    cases = [(T, 2, "initial") for T in Ts]
    cases += [] if a.m2 else [(T, 2, "trained") for T in Ts[:2]]
    if not a.m2:
        cases += [(T, m, "initial") for m in (1, 3) for T in Ts[1:]]
    rows = []
    from supermem.toy.engines import cuda

    tuned_blocks = dict(cuda.BLOCKS)
    for T, m, state in cases:
        cuda.BLOCKS.clear()  # the tuned tiles are m = 2's; other m take the default rule
        cuda.BLOCKS.update(tuned_blocks if m == 2 else {})
        rows.append(case(T, m, state, a.settle, a.reps))
        r = rows[-1]
        if a.out:  # after every row: a run stopped at its time limit keeps what it measured
            dump(a.out, fp32_flops=ceiling, args=vars(a), tune=tuned, rows=rows)
        print(
            f"T={T:>9,} m={m} {state:8} chunked {r['chunked_ms']:9.2f} ms  cuda "
            f"{r['cuda_ms']:7.3f} ms  x{r['ratio']:6.1f}  {r['gflops']:8.0f} GFLOP/s  "
            f"grad diff {r['grad_diff']:.1e} "
            + (
                f"vs float64: chunked {r['chunked_err64']:.1e} cuda {r['cuda_err64']:.1e}"
                if "cuda_err64" in r
                else ""
            ),
            flush=True,
        )
    name = torch.cuda.get_device_name()
    print(
        f"\n{name}: float32 matrix product (TF32 off) {ceiling / 1e12:.1f} TFLOP/s measured, "
        f"{DATASHEET_FP32 / 1e12:.0f} datasheet"
    )
    print(
        "| m | T | state | chunked ms/step | cuda ms/step | chunked / cuda | cuda GFLOP/s "
        "| share of measured fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['m']} | {r['T']:,} | {r['state']} | {r['chunked_ms']:.2f} | "
            f"{r['cuda_ms']:.3f} | {r['ratio']:.1f}x | {r['gflops']:,.0f} | "
            f"{r['gflops'] * 1e9 / ceiling:.0%} |"
        )
    if a.out:
        dump(a.out, device=name, fp32_flops=ceiling, args=vars(a), tune=tuned, rows=rows)


if __name__ == "__main__":
    main()
