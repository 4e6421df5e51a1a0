"""Streamed D* at scale: wall time, memory and float64 throughput (not a test). See
docs/REAL.md.

    .venv/bin/python benchmarks/bench_dims.py                  # T = 10^6, m = 512
    .venv/bin/python benchmarks/bench_dims.py --T 20000 --m 64 # a quick look

The goal (issue 12): 10^6 examples at m = 512 in under a minute on 2 cores, memory
O(m^2 + T). Activations come from a synthetic source that makes each (B, m) float32 batch
on the fly from a fixed block and a per-batch seeded scaling, so H (T x m x 4 bytes: 2 GB
at the goal's size) never exists; the time to generate both passes is measured alone and
reported beside the total. Each measurement runs in its own spawned process, so its peak
RSS is its own; ``dims`` - ``source only`` is the memory the computation adds. Throughput
counts T m^2 flops for the Gram pass (a symmetric rank-k update) and 2 T m r for the
per-example pass, against this machine's float64 matmul rate measured in the same run.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from bench_engines import in_child  # a spawned process per measurement: its own peak RSS

BLOCK = 8192  # rows in the fixed block the synthetic batches are scaled from


def synthetic(T: int, m: int):
    """An ActivationSource of T rows, width m, float32, the same rows on every pass."""
    from supermem.real import ActivationSource

    rng = np.random.default_rng(0)
    block = np.abs(rng.normal(size=(BLOCK, m))).astype(np.float32)  # ReLU-like, >= 0
    block *= rng.uniform(0.1, 2.0, size=m).astype(np.float32)  # uneven spectrum

    def read(rows: int):
        rows = min(rows, BLOCK)
        for i, a in enumerate(range(0, T, rows)):
            s = np.random.default_rng(i).uniform(0.5, 1.5, size=m).astype(np.float32)
            yield block[: min(rows, T - a)] * s

    return ActivationSource(read, m, T, f"synthetic {T}x{m}")


def _source_only(T: int, m: int, out) -> None:
    src = synthetic(T, m)
    t = time.perf_counter()
    for _ in range(2):
        for _b in src.batches(8192):
            pass
    out.put((time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _dims(T: int, m: int, out) -> None:
    from supermem.real import dims

    src = synthetic(T, m)
    t = time.perf_counter()
    d = dims(src, progress=False)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put((wall, rss, d.rank, float(d.dstar.sum()), float(np.median(d.dstar))))


def _matmul_rate(out) -> None:
    a = np.random.default_rng(0).normal(size=(2048, 2048))
    a @ a
    t = time.perf_counter()
    for _ in range(3):
        a @ a
    out.put(3 * 2 * 2048**3 / (time.perf_counter() - t))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--goal-s", type=float, default=60.0, help="wall-time goal in seconds")
    a = ap.parse_args()
    T, m = a.T, a.m
    rate = in_child(_matmul_rate)
    gen_wall, gen_rss = in_child(_source_only, T, m)
    wall, rss, rank, total, med = in_child(_dims, T, m)
    flops = T * m * m + 2 * T * m * rank
    mib = 1024.0  # ru_maxrss is in KiB on Linux
    print(f"T = {T:,}, m = {m}: rank {rank}, sum D* = {total:.6f}, median D* = {med:.4g}")
    print(
        f"dims wall            {wall:8.1f} s   (goal < {a.goal_s:.0f} s: "
        f"{'met' if wall < a.goal_s else 'NOT met'})"
    )
    print(f"  of which source    {gen_wall:8.1f} s   (making both passes' batches alone)")
    print(f"peak RSS dims        {rss / mib:8.0f} MiB")
    added = (rss - gen_rss) / mib
    print(f"peak RSS source only {gen_rss / mib:8.0f} MiB  -> dims adds {added:.0f} MiB")
    print(
        f"  O(m^2 + T) terms:  T x 8 B = {T * 8 / 2**20:.0f} MiB (D*), "
        f"m^2 x 8 B = {m * m * 8 / 2**20:.1f} MiB (G); H itself would be "
        f"{T * m * 4 / 2**20:.0f} MiB"
    )
    print(
        f"float64 throughput   {flops / (wall - gen_wall) / 1e9:8.1f} GFLOP/s "
        f"({flops / (wall - gen_wall) / rate:.2f} x this machine's 2048^2 float64 matmul "
        f"rate, {rate / 1e9:.1f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
