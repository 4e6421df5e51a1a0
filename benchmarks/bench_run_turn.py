"""Fast vs tree along the start of one real run (not a test). See docs/ENGINES.md.

    .venv/bin/python benchmarks/bench_run_turn.py --hidden 3 --train-size 50000 --minutes 20
    .venv/bin/python benchmarks/bench_run_turn.py --quick      # small T, a minute, for a check

Trains one run of a recipe's grid (default: fig. 5 at the paper scale, seed 0, data seed 0)
on ``fast`` and on ``tree`` side by side, one process and one thread each (as a sweep's
two workers train), both on its own schedule (warm-up, cosine), until the wall budget is
spent. Both engines are exact, so they pass through the same states: the ratio over a
window of steps compares them on the run's own parameters there, where the engines' cost
model (``toy/engines/cost.py``) is fitted on the initial state or a short settle at a
fixed learning rate. Per window of ``--window`` steps that both reached: ms per step of
each and fast / tree (above 1: the tree is faster); then the totals over the common steps.
Setup (data, tree build and the first finiteness check's 100 steps, which compile the
kernels) is timed apart, not in the windows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time


class _Budget(Exception):
    """Raised from ``on_check`` once the wall budget is spent."""


def _cfg(recipe: str, scale: str, hidden: int, train_size: int):
    from supermem.recipes import RECIPES

    spec = RECIPES[recipe].specs(scale)[0]
    cfg = next(c for c in spec.configs() if c.hidden == hidden and c.seed == 0 and c.data_seed == 0)
    return cfg.replace(train_size=train_size)


def _run(engine: str, cfg_json: str, seconds: float, out) -> None:
    """Child: [(step, s since the first step)] and the setup seconds, on ``engine``."""
    from supermem.config import TrainConfig
    from supermem.sweeps.executors import limit_threads
    from supermem.toy.train import train_many

    limit_threads(1)
    cfg = TrainConfig.from_dict({**json.loads(cfg_json), "engine": engine})
    t0 = time.perf_counter()
    marks: list[tuple[int, float]] = []

    def check(step: int) -> None:
        marks.append((step, time.perf_counter()))
        if len(marks) > 1 and marks[-1][1] - marks[1][1] > seconds:
            raise _Budget

    try:
        train_many([cfg], progress=False, on_check=check)
    except _Budget:
        pass
    except Exception as e:  # noqa: BLE001 (reported by the parent, which would wait forever)
        out.put((engine, None, f"{type(e).__name__}: {e}"))
        return
    marks = marks[1:]  # from the first check on: its first steps compile the kernels
    start = marks[0][1]
    out.put((engine, marks[0][1] - t0, [(s, t - start) for s, t in marks]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="fig5")
    ap.add_argument("--scale", default="paper")
    ap.add_argument("--hidden", type=int, default=3)
    ap.add_argument("--train-size", type=int, help="T (default 50,000; --quick 2,000)")
    ap.add_argument("--minutes", type=float, help="wall budget per engine (20; --quick 1)")
    ap.add_argument("--window", type=int, help="steps per row (500; --quick 100)")
    ap.add_argument("--quick", action="store_true", help="small defaults, for a check")
    ap.add_argument("--json", help="also write the marks here")
    a = ap.parse_args()
    for k, full, quick in (
        ("train_size", 50_000, 2_000),
        ("minutes", 20.0, 1.0),
        ("window", 500, 100),
    ):
        if getattr(a, k) is None:
            setattr(a, k, quick if a.quick else full)
    cfg = _cfg(a.recipe, a.scale, a.hidden, a.train_size)
    print(
        f"{a.recipe} {a.scale}: n = {cfg.features}, S = {cfg.sparsity}, m = {cfg.hidden}, "
        f"T = {cfg.train_size}, {cfg.steps} steps, warm-up {cfg.warmup}, lr {cfg.lr} "
        f"({cfg.lr_schedule}), restarts {cfg.restarts}; {a.minutes:g} min per engine, "
        "one thread each, side by side"
    )
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    cfg_json = json.dumps(cfg.to_dict())
    procs = [
        ctx.Process(target=_run, args=(e, cfg_json, a.minutes * 60, q)) for e in ("fast", "tree")
    ]
    for p in procs:
        p.start()
    got = {}
    for _ in procs:
        engine, setup, marks = q.get()
        if setup is None:
            raise SystemExit(f"{engine}: {marks}")
        got[engine] = (setup, dict(marks))
    for p in procs:
        p.join()
    for e, (setup, _) in got.items():
        print(f"setup {e}: {setup:.1f} s")
    fast, tree = got["fast"][1], got["tree"][1]
    common = sorted(set(fast) & set(tree))
    if len(common) < 2:
        raise SystemExit("fewer than two common finiteness checks: raise --minutes")
    print(f"{'steps':>15} {'fast ms':>9} {'tree ms':>9} {'fast/tree':>9}")
    lo = common[0]
    for hi in common[1:]:
        if (hi - lo) < a.window and hi != common[-1]:
            continue
        f = (fast[hi] - fast[lo]) / (hi - lo) * 1e3
        t = (tree[hi] - tree[lo]) / (hi - lo) * 1e3
        print(f"{lo:>7}-{hi:<7} {f:>9.1f} {t:>9.1f} {f / t:>9.2f}")
        lo = hi
    end = common[-1]
    print(
        f"steps {common[0]}-{end}: fast {fast[end]:.0f} s, tree {tree[end]:.0f} s, "
        f"fast/tree {fast[end] / tree[end]:.2f}; reached in the budget: "
        f"fast {max(fast)}, tree {max(tree)} of {cfg.steps}"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {
                    "config": cfg.to_dict(),
                    "setup": {e: s for e, (s, _) in got.items()},
                    "marks": {e: sorted(m.items()) for e, (_, m) in got.items()},
                },
                fh,
            )


if __name__ == "__main__":
    main()
