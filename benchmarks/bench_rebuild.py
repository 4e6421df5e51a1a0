"""How often the tree engine rebuilds its kd-trees, and what a training step costs, under
several rebuild thresholds (not a test). See docs/ENGINES.md, "When the tree is rebuilt".

    .venv/bin/python benchmarks/bench_rebuild.py                 # T = 10^5, 600 steps
    .venv/bin/python benchmarks/bench_rebuild.py --T 1e4 --units 5 20 80

Trains n = 10,000, S = 0.999, m = 2 with the tree engine (peak lr 1e-2, warm-up 5%) once
per ``TreeEngine.REBUILD_UNITS`` value and prints the builds and ms per training step.
"""

from __future__ import annotations

import argparse

from supermem.config import TrainConfig
from supermem.toy import train as toy_train
from supermem.toy.engines import tree as tree_mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=float, default=1e5)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--units", type=float, nargs="+", default=[5.0, 20.0, 80.0])
    args = ap.parse_args()
    T = int(args.T)
    original_prepare = tree_mod.TreeEngine.prepare
    print("| REBUILD_UNITS | builds | ms/step (training loop) | first builds at step |")
    print("|---|---|---|---|")
    for units in args.units:
        kept: dict = {}

        def prepare(self, data, device, kept=kept):
            kept["data"] = original_prepare(self, data, device)
            return kept["data"]

        tree_mod.TreeEngine.prepare = prepare  # keep a handle on the trees' log
        tree_mod.TreeEngine.REBUILD_UNITS = units
        cfg = TrainConfig(
            features=10_000, sparsity=0.999, train_size=T, test_size=1000,
            steps=args.steps, lr=1e-2, engine="tree", snapshots=0,
        )  # fmt: skip
        r = toy_train.train(cfg, progress=False)
        builds = [s for s, _ in kept["data"].log]
        print(
            f"| {units:g} | {len(builds)} | {1e3 * r.seconds / args.steps:.1f} "
            f"| {', '.join(map(str, builds[:8]))} ... |",
            flush=True,
        )
    tree_mod.TreeEngine.prepare = original_prepare


if __name__ == "__main__":
    main()
