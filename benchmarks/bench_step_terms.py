"""The sweeps' cost model's per-step terms, measured (not a test). See docs/SWEEPS.md,
"Time estimates".

    .venv/bin/python benchmarks/bench_step_terms.py                  # 300 steps, 3 repeats
    .venv/bin/python benchmarks/bench_step_terms.py --steps 600 --repeats 5

A step's seconds are modelled as STEP_S + PARAM_S * inst * n * (m + 1) + c * inst * T * n * m
(``supermem.sweeps.cost``): a fixed part (Python, the optimiser's calls), a part per
parameter of every instance (the optimiser's update, the bias and weight gradients'
buffers: as many as the model's parameters, whatever T), and the dense pass over every
(point, feature) pair. This trains the fast engine at n = 10,000, S = 0.999, m = 2 (the
paper's setting, raw points) on one thread, on a grid of instances x T that separates
the three: T in {1, 68, 810} at 16 instances, and 4 instances at T = 1; each cell the
median of ``repeats`` calls of ``steps`` steps, the cells alternated. Prints the
seconds per step of each cell and the least-squares fit of the three terms. Run it on
free cores: a second process on them decides the result.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

CELLS = [(16, 1), (16, 68), (16, 810), (4, 1)]  # (instances, T)
N, M = 10_000, 2


def _seconds_per_step(inst: int, T: int, steps: int) -> float:
    from supermem.config import TrainConfig
    from supermem.toy.train import train_many

    cfgs = [
        TrainConfig(
            features=N,
            hidden=M,
            sparsity=0.999,
            train_size=T,
            test_size=10,
            steps=steps,
            warmup=1,
            point_norm="raw",
            engine="fast",
            snapshots=0,
            restarts=inst // 4,
            seed=s,
            data_seed=s,
        )  # fmt: skip
        for s in range(4)
    ]
    got = train_many(cfgs, progress=False)
    return got[0].seconds / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    print(f"cores: {os.cpu_count()}; 1 thread; n = {N}, m = {M}; {args.steps} steps")
    _seconds_per_step(4, 1, 20)  # compile the kernels before timing
    times: dict[tuple[int, int], list[float]] = {c: [] for c in CELLS}
    for _ in range(args.repeats):
        for inst, T in CELLS:
            times[(inst, T)].append(_seconds_per_step(inst, T, args.steps))
    rows, y = [], []
    for (inst, T), ts in times.items():
        s = statistics.median(ts)
        print(f"instances {inst:2d}, T = {T:4d}: {s * 1e3:7.3f} ms/step (median of {len(ts)})")
        rows.append([1.0, inst * N * (M + 1), inst * T * N * M])
        y.append(s)
    (step, param, c), *_ = np.linalg.lstsq(np.array(rows), np.array(y), rcond=None)
    print(f"fit: STEP_S {step:.2e} s, PARAM_S {param:.2e} s per parameter, c {c:.2e} s per unit")


if __name__ == "__main__":
    main()
