"""Reference vs fast engine, side by side in one run (not a test). See docs/ENGINES.md.

    .venv/bin/python benchmarks/bench_engines.py            # the table + memory check
    .venv/bin/python benchmarks/bench_engines.py --full     # + one 50k-step model's wall time
    .venv/bin/python benchmarks/bench_engines.py --loss l1 --sizes 1000 5000   # the l1 loss

Per size (n = 10,000, m = 2, S = 0.999, T in --sizes): ms per loss+gradient step from the
initial state and from a settled state (weights after --settle-steps of training at that
size), as (wall of K steps - wall of 1 step) / (K - 1); (point, feature) pairs per second;
fast/reference ratio; peak RSS of a fresh process doing only that measurement. Each
measurement runs in its own spawned process so peak RSS is its own. The dense-pass limit
is 2*3*m*T*n flops (p, gh and the decoder gradient: three m-wide products over all pairs)
at this machine's fp32 matmul peak, measured in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import subprocess
import time

N, M, S = 10_000, 2, 0.999


def _cfg(T: int, **kw):
    from supermem.config import TrainConfig

    base = dict(features=N, hidden=M, sparsity=S, train_size=T, test_size=1000, snapshots=0)
    return TrainConfig(**{**base, **kw})


def _settled(T: int, steps: int, loss: str = "mse"):
    """W (1, m, n), b (1, n) tensors after ``steps`` fast training steps at size T
    (peak lr 1e-2, warm-up a tenth: far enough that most b_j < 0, as in a trained model)."""
    import torch

    from supermem.toy.train import train

    cfg = _cfg(T, steps=steps, warmup=steps // 10, lr=1e-2, engine="fast", loss=loss)
    r = train(cfg, progress=False)
    return {k: torch.as_tensor(v)[None] for k, v in r.params.items()}


def _measure(engine: str, T: int, params, K: int, loss: str, out) -> None:
    """Child process: ms/step of ``engine`` at size T from ``params`` (None: the initial
    state, W (1, m, n) and b (1, n) arrays otherwise) for TrainConfig.loss ``loss``; peak
    RSS in KiB."""
    import torch

    from supermem.toy.data import sample
    from supermem.toy.engines import ENGINES
    from supermem.toy.model import get_model

    torch.set_num_threads(2)
    model = get_model("tied")
    if params is not None:
        p = {k: torch.as_tensor(v) for k, v in params.items()}
    else:
        p = model.init(M, N, "xavier_normal", [torch.Generator().manual_seed(0)])
    eng = ENGINES[engine]() if loss == "mse" else ENGINES[engine](objective=loss)
    data = eng.prepare(sample(T, N, S, 0), torch.device("cpu"))
    eng.loss_and_grads(model, p, data)  # warm-up: compilation, allocator

    def wall(k: int) -> float:
        t = time.perf_counter()
        for _ in range(k):
            eng.loss_and_grads(model, p, data)
        return time.perf_counter() - t

    one, many = wall(1), wall(K)
    out.put(((many - one) / (K - 1) * 1e3, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _train_rss(T: int, steps: int, out) -> None:
    """Child process: train one fast model at size T; peak RSS (MiB), seconds."""
    from supermem.toy.train import train

    t = time.perf_counter()
    train(_cfg(T, steps=steps, warmup=1, test_size=10_000, engine="fast"), progress=False)
    out.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t))


def _full(steps: int, out) -> None:
    """Child: wall time of a fast model at n = T = 10,000 over the paper's schedule shape."""
    from supermem.toy.train import train

    cfg = _cfg(10_000, steps=steps, warmup=max(1, steps // 20), lr=1e-3, engine="fast")
    t = time.perf_counter()
    train(cfg, progress=False)
    out.put(time.perf_counter() - t)


def in_child(fn, *args):
    ctx = mp.get_context("spawn")  # a fresh process: its peak RSS is its own
    q = ctx.Queue()
    proc = ctx.Process(target=fn, args=(*args, q))
    proc.start()
    res = q.get()
    proc.join()
    return res


def peak_fp32_gflops() -> float:
    """Best of a few 4096^3 float32 matmuls, on 2 torch threads."""
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(3))
    return 2 * 4096**3 / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 5_000, 10_000])
    ap.add_argument("--ref-max-T", type=int, default=10_000, help="skip reference above this T")
    ap.add_argument("--steps", type=int, default=5, help="K: steps timed per measurement")
    ap.add_argument("--settle-steps", type=int, default=300)
    ap.add_argument("--memory-T", type=int, default=100_000)
    ap.add_argument("--full", action="store_true", help="time a 50k-step model (extrapolated)")
    ap.add_argument("--full-segment", type=int, default=2_000)
    ap.add_argument("--loss", default="mse", choices=["mse", "l1"], help="TrainConfig.loss")
    args = ap.parse_args()

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"
    )
    load = open("/proc/loadavg").read().split()[:3]
    gflops = peak_fp32_gflops()
    print(f"machine: {model_name}, {mp.cpu_count()} cores; load average at start {' '.join(load)}")
    print(f"fp32 matmul peak (2 threads): {gflops:.1f} GFLOP/s")
    print(
        f"n={N} m={M} S={S} loss={args.loss}; ms/step = (wall of K={args.steps} steps - wall "
        "of 1) / (K-1)"
    )
    hdr = (
        "| T | state | reference ms | fast ms | fast/ref speed-up | fast Mpairs/s "
        "| dense limit ms | ref RSS MiB | fast RSS MiB |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for T in args.sizes:
        settled = {k: v.numpy() for k, v in _settled(T, args.settle_steps, args.loss).items()}
        for state, params in (("initial", None), ("settled", settled)):
            f_ms, f_rss = in_child(_measure, "fast", T, params, args.steps, args.loss)
            if T <= args.ref_max_T:
                K = args.steps if T <= 1_000 else 3
                r_ms, r_rss = in_child(_measure, "reference", T, params, K, args.loss)
                ref = f"{r_ms:.1f}", f"{r_ms / f_ms:.1f}x", f"{r_rss / 1024:.0f}"
            else:
                ref = "skipped", "-", "-"
            limit = 2 * 3 * M * T * N / (gflops * 1e9) * 1e3
            print(
                f"| {T} | {state} | {ref[0]} | {f_ms:.2f} | {ref[1]} | {T * N / f_ms / 1e3:.0f} "
                f"| {limit:.2f} | {ref[2]} | {f_rss / 1024:.0f} |"
            )
    if args.loss != "mse":
        return
    rss, sec = in_child(_train_rss, args.memory_T, 20)
    print(
        f"memory: fast training n={N}, T={args.memory_T}, m={M}, 20 steps + evaluation on "
        f"10,000 test points: peak RSS {rss / 1024:.0f} MiB ({sec:.1f} s)"
    )
    if args.full:
        seg = args.full_segment
        sec = in_child(_full, seg)
        print(
            f"full model n=T=10,000 m=2: {seg} steps took {sec:.0f} s; EXTRAPOLATED to 50,000 "
            f"steps: {sec * 50_000 / seg / 60:.1f} min (assumes later steps cost the same)"
        )


if __name__ == "__main__":
    main()
