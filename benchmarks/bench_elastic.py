"""A 2-worker sweep whose groups end at different times, with and without freed cores
taken up (not a test). See docs/SWEEPS.md, "Batching, executors and threads".

    .venv/bin/python benchmarks/bench_elastic.py                 # 8,000 steps, 1 repeat
    .venv/bin/python benchmarks/bench_elastic.py --steps 2000 --repeats 2

Trains the discrepancy recipe's paper-scale small-T setting (n = 10,000, S = 0.999,
m = 2, raw points, lr held at 1e-3 after a 5% warm-up, fast engine) at T = 360 and
T = 810, one run each, as a sweep on ``LocalExecutor(2)``: once with each worker keeping
its one thread (``elastic=False``, how sweeps ran before) and once with freed cores taken
up (the default), alternating. The T = 810 run takes about twice as long as T = 360, so
in the elastic sweep it trains its second half on both cores. Prints each sweep's wall
time, the ratio (elastic / fixed), the threads each run recorded, and whether the two
sweeps' weights are the same bits (they must be: the fast engine is thread-count
independent). Run it on free cores: a second process on them decides the result.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _spec(steps: int):
    from supermem.sweeps.spec import SweepSpec

    fixed = dict(
        features=10_000, hidden=2, sparsity=0.999, test_size=1000, steps=steps,
        warmup=max(1, steps // 20), lr=1e-3, lr_schedule="constant", point_norm="raw",
        engine="fast", snapshots=0, seed=0, data_seed=0,
    )  # fmt: skip
    return SweepSpec("elastic", fixed, {"train_size": [810, 360]})


def _sweep(steps: int, elastic: bool, out: Path) -> tuple[float, dict[int, tuple]]:
    """(wall s, {T: (threads recorded, W)}) of one 2-worker sweep into ``out``."""
    import numpy as np

    from supermem.recipes.base import load_runs
    from supermem.sweeps.executors import LocalExecutor
    from supermem.sweeps.run import run_sweep

    with LocalExecutor(2, elastic=elastic) as ex:
        t = time.perf_counter()
        summary = run_sweep(_spec(steps), out, workers=2, executor=ex, progress=False)
        wall = time.perf_counter() - t
    assert summary.ok == 2, str(summary)
    runs = {r.config["train_size"]: r for r in load_runs(out)}
    return wall, {T: (r.metrics["threads"], np.asarray(r.arrays["W"])) for T, r in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; steps: {args.steps}; T = 810 and 360, one run each")
    walls: dict[bool, list[float]] = {False: [], True: []}
    got: dict[bool, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for elastic in (False, True):
                wall, runs = _sweep(args.steps, elastic, Path(tmp) / f"{elastic}-{i}")
                walls[elastic].append(wall)
                got[elastic] = runs
                threads = ", ".join(f"T = {T}: {th:.2f}" for T, (th, _) in sorted(runs.items()))
                print(f"elastic={elastic!s:5} wall {wall:6.1f} s; threads recorded {threads}")
    fixed, elastic = min(walls[False]), min(walls[True])
    same = all((got[False][T][1] == got[True][T][1]).all() for T in got[False])
    print(f"best of {args.repeats}: fixed {fixed:.1f} s, elastic {elastic:.1f} s, "
          f"ratio {elastic / fixed:.2f}; weights the same bits: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
