"""A batch of runs against the same runs one at a time, tree engine (not a test). See
docs/ENGINES.md, "Exactness and determinism".

    .venv/bin/python benchmarks/bench_batch.py                  # T = 4,200, 4 runs, 1,500 steps
    .venv/bin/python benchmarks/bench_batch.py --T 1800 --steps 500 --inst 2

Trains the discrepancy recipe's paper-scale middle-regime setting (n = 10,000,
S = 0.999, m = 2, raw points, lr held at 1e-3 after a 5% warm-up) for --steps steps,
--inst data seeds: once as one batch (``train_many``, what a sweep does) and once as
--inst single runs, each in its own spawned process with --threads numba threads. Prints
the wall times, their ratio (batch / sum of singles), the build events (steps at which
any tree was built) and the largest difference between a run's W batched and alone.
Since the rebuild rule is kept per instance, the batch's trees are rebuilt at each
run's own steps, so a batch can hold more build events than any of its runs alone; the
ratio is what that costs. Run it with PYTHONPATH pointing at another checkout to time
that checkout's engine the same way.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_engines import in_child  # a fresh spawned process per measurement


def _cfg(T: int, steps: int, data_seed: int):
    from supermem.config import TrainConfig

    return TrainConfig(
        features=10_000, hidden=2, sparsity=0.999, train_size=T, test_size=1000,
        steps=steps, warmup=max(1, steps // 20), lr=1e-3, lr_schedule="constant",
        point_norm="raw", engine="tree", snapshots=0, seed=0, data_seed=data_seed,
    )  # fmt: skip


def _child(T: int, steps: int, seeds: list[int], threads: int, out) -> None:
    """Child: (wall s, build events, W per run) of one train_many call over ``seeds``."""
    import numba

    from supermem.toy.engines import tree as tree_mod
    from supermem.toy.train import train_many

    numba.set_num_threads(threads)
    train_many([_cfg(256, 5, 0)], progress=False)  # compiled or loaded before the clock
    kept: dict = {}
    original = tree_mod.TreeEngine.prepare

    def prepare(self, data, device):
        kept["data"] = original(self, data, device)
        return kept["data"]

    tree_mod.TreeEngine.prepare = prepare  # keep a handle on the trees' build log
    cfgs = [_cfg(T, steps, s) for s in seeds]
    t = time.perf_counter()
    results = train_many(cfgs, progress=False)
    wall = time.perf_counter() - t
    builds = sum(1 for _, what in kept["data"].log if what == "build")
    out.put((wall, builds, [np.asarray(r.params["W"]) for r in results]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=4200)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--inst", type=int, default=4, help="runs (data seeds 0, 1, ...)")
    ap.add_argument("--threads", type=int, default=1, help="numba threads per process")
    args = ap.parse_args()
    seeds = list(range(args.inst))
    load = open("/proc/loadavg").read().split()[:3]
    print(f"T = {args.T}, {args.steps} steps, {args.inst} runs, {args.threads} thread(s); "
          f"load average before: {' '.join(load)}")  # fmt: skip
    bw, bb, bW = in_child(_child, args.T, args.steps, seeds, args.threads)
    singles = [in_child(_child, args.T, args.steps, [s], args.threads) for s in seeds]
    sw = sum(w for w, _, _ in singles)
    diff = max(float(np.abs(bW[i] - singles[i][2][0]).max()) for i in seeds)
    print("| | wall s | ms per step | build events |")
    print("|---|---|---|---|")
    print(f"| one batch of {args.inst} | {bw:.1f} | {1e3 * bw / args.steps:.1f} | {bb} |")
    for s, (w, b, _) in zip(seeds, singles):
        print(f"| data seed {s} alone | {w:.1f} | {1e3 * w / args.steps:.1f} | {b} |")
    print(f"| the singles, summed | {sw:.1f} | {1e3 * sw / args.steps:.1f} | "
          f"{sum(b for _, b, _ in singles)} |")  # fmt: skip
    print(f"batch / singles: {bw / sw:.3f}; largest |W batched - W alone|: {diff:.3g}")


if __name__ == "__main__":
    main()
