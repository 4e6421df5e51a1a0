"""Tree vs fast engine, side by side in one run (not a test). See docs/ENGINES.md.

    .venv/bin/python benchmarks/bench_tree.py              # the table (n = 10,000, S = 0.999)
    .venv/bin/python benchmarks/bench_tree.py --quick      # smaller T, for a check
    .venv/bin/python benchmarks/bench_tree.py --full-run   # + a 50k-step model at T = 10^6
    .venv/bin/python benchmarks/bench_tree.py --cases m2   # only the m = 2 rows (m13: the others)
    .venv/bin/python benchmarks/bench_tree.py --model untied   # a variant: tree vs fast_variants
    .venv/bin/python benchmarks/bench_tree.py --cases none --breakdown 1e6   # where a step goes

Per case (T, m, state): ms per loss+gradient step of ``fast`` and ``tree`` from the same
parameters, (wall of K steps - wall of 1) / (K - 1), each in its own spawned process (its
peak RSS its own); the tree engine refits its kd-tree each step (the parameters are the
same, so it never rebuilds: the build is timed on its own and reported beside). States:
``initial`` (Xavier W, b = 0: half of all pairs active, the tree's worst case) and
``trained`` (after --settle steps of tree training at that T, peak lr 1e-2, warm-up a
tenth). The ratio column is fast / tree; the targets are the issue's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

from bench_engines import in_child  # a fresh spawned process per measurement

N, S = 10_000, 0.999
TARGETS = {10_000: "tree no slower", 100_000: ">= 8x", 1_000_000: ">= 20x, <= 100 ms"}


def _cfg(T: int, m: int, **kw):
    from supermem.config import TrainConfig

    base = dict(features=N, hidden=m, sparsity=S, train_size=T, test_size=1000, snapshots=0)
    return TrainConfig(**{**base, **kw})


def _settle(T: int, m: int, steps: int, model: str, out) -> None:
    """Child: the parameters (1, ...) after ``steps`` of tree training at size T."""
    from supermem.toy.train import train

    kw = dict(steps=steps, warmup=steps // 10, lr=1e-2, engine="tree", model=model)
    r = train(_cfg(T, m, **kw), progress=False)
    out.put({k: v[None] for k, v in r.params.items()})


def _measure(engine: str, T: int, m: int, params, K: int, name: str, out) -> None:
    """Child: (ms/step, build ms or None, peak RSS KiB) of ``engine`` at (T, m)."""
    import torch

    from supermem.toy.data import sample
    from supermem.toy.engines import ENGINES
    from supermem.toy.model import get_model

    torch.set_num_threads(2)
    model = get_model(name)
    if params is None:
        p = model.init(m, N, "xavier_normal", [torch.Generator().manual_seed(0)])
    else:
        p = {k: torch.as_tensor(v) for k, v in params.items()}
    eng = ENGINES[engine]()
    data = eng.prepare(sample(T, N, S, 0), torch.device("cpu"))
    eng.loss_and_grads(model, p, data)  # warm-up: compilation, the first build
    build = None
    if engine == "tree":
        data.state.built[:] = False  # time one rebuild (kernels compiled by now)
        t = time.perf_counter()
        eng.loss_and_grads(model, p, data)
        build = (time.perf_counter() - t) * 1e3

    def wall(k: int) -> float:
        t = time.perf_counter()
        for _ in range(k):
            eng.loss_and_grads(model, p, data)
        return time.perf_counter() - t

    one, many = wall(1), wall(K)
    ms = (many - one) / (K - 1) * 1e3
    if build is not None:
        build -= ms  # the step that rebuilt, less an ordinary step
    out.put((ms, build, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


KERNELS = {  # module attribute -> column of the breakdown
    "TR.hidden_rows_m2": "h = W x",
    "TR.hidden_rows": "h = W x",
    "TK.refit": "refit",
    "feature_order": "feature order",
    "TW.traverse": "walk",
    "TK.push_down": "push-down",
    "TR.sparse_rows_m2": "sparse pass",
    "TR.sparse_rows": "sparse pass",
}


def _breakdown(T: int, m: int, params, K: int, out) -> None:
    """Child: median ms per step of each tree kernel over K steps from the same
    parameters (a timer around each call; no rebuild: the parameters do not move)."""
    import numpy as np
    import torch

    from supermem.toy.data import sample
    from supermem.toy.engines import ENGINES
    from supermem.toy.engines import tree as TRE
    from supermem.toy.model import get_model

    torch.set_num_threads(2)
    model = get_model("tied")
    if params is None:
        p = model.init(m, N, "xavier_normal", [torch.Generator().manual_seed(0)])
    else:
        p = {k: torch.as_tensor(v) for k, v in params.items()}
    eng = ENGINES["tree"]()
    data = eng.prepare(sample(T, N, S, 0), torch.device("cpu"))
    spent: dict[str, float] = {}

    def timed(fn, col):
        def call(*a, **kw):
            t = time.perf_counter()
            r = fn(*a, **kw)
            spent[col] = spent.get(col, 0.0) + time.perf_counter() - t
            return r

        return call

    for attr, col in KERNELS.items():
        owner = TRE
        if "." in attr:
            mod, attr = attr.split(".")
            owner = getattr(TRE, mod)
        setattr(owner, attr, timed(getattr(owner, attr), col))
    eng.loss_and_grads(model, p, data)  # compilation, the first build
    rows = []
    for _ in range(K):
        spent.clear()
        t = time.perf_counter()
        eng.loss_and_grads(model, p, data)
        rows.append({**spent, "total": time.perf_counter() - t})
    cols = list(dict.fromkeys(KERNELS.values())) + ["total"]
    out.put({c: 1e3 * float(np.median([r.get(c, 0.0) for r in rows])) for c in cols})


def _full_run(T: int, steps: int, out) -> None:
    """Child: a whole run at size T (train, exact losses, metrics, save): wall, RSS, log."""
    import tempfile

    from supermem import save_run
    from supermem.toy.train import train

    t = time.perf_counter()
    r = train(_cfg(T, 2, steps=steps, test_size=10_000, engine="tree"), progress=False)
    t_train = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        save_run(r, f"{d}/run")
    out.put((time.perf_counter() - t, t_train, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="T up to 10^5, fewer settle steps")
    ap.add_argument("--settle", type=int, default=2_000, help="training steps for 'trained'")
    ap.add_argument("--settle-1e6", type=int, default=500, help="the same at T = 10^6")
    ap.add_argument("--steps", type=int, default=5, help="K: steps timed per measurement")
    ap.add_argument("--full-run", action="store_true", help="a 50k-step model at T = 10^6")
    ap.add_argument("--full-steps", type=int, default=50_000)
    ap.add_argument(
        "--cases", choices=("all", "m2", "m13", "none"), default="all", help="rows of the table"
    )
    ap.add_argument(
        "--settle-m3", type=int, default=200, help="settle steps at m = 3 (~3 s a step at 10^5)"
    )
    ap.add_argument(
        "--breakdown",
        type=float,
        default=None,
        metavar="T",
        help="also time each tree kernel at this T (m = 2), initial and trained states",
    )
    ap.add_argument(
        "--model",
        choices=("tied", "untied", "relu_hidden"),
        default="tied",
        help="the model variant; the variants' dense engine is fast_variants",
    )
    args = ap.parse_args()

    load = open("/proc/loadavg").read().split()[:3]
    print(f"{mp.cpu_count()} cores; load average at start {' '.join(load)}")
    print(f"n={N} S={S}; ms/step = (wall of K={args.steps} steps - wall of 1) / (K-1)")
    dense = "fast" if args.model == "tied" else "fast_variants"
    print(f"model {args.model}; the fast column is engine {dense}")
    cases = [(10_000, 2), (100_000, 2), (1_000_000, 2), (100_000, 1), (100_000, 3)]
    if args.quick:
        cases = [(10_000, 2), (100_000, 2), (10_000, 1), (10_000, 3)]
    m2, m13 = [c for c in cases if c[1] == 2], [c for c in cases if c[1] != 2]
    cases = {"all": cases, "m2": m2, "m13": m13, "none": []}[args.cases]
    hdr = "| T | m | state | fast ms | tree ms | fast/tree | target | tree build ms | RSS MiB f/t |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for T, m in cases:
        settle = args.settle_1e6 if T >= 1_000_000 else args.settle
        if m == 3:
            settle = min(settle, args.settle_m3)
        if args.quick:
            settle = min(settle, 300)
        trained = in_child(_settle, T, m, settle, args.model)
        for state, params in (("initial", None), (f"trained ({settle} steps)", trained)):
            K = 3 if T >= 1_000_000 else args.steps
            f_ms, _, f_rss = in_child(_measure, dense, T, m, params, K, args.model)
            t_ms, build, t_rss = in_child(_measure, "tree", T, m, params, args.steps, args.model)
            target = TARGETS.get(T, "-") if m == 2 else "-"
            print(
                f"| {T:,} | {m} | {state} | {f_ms:.1f} | {t_ms:.1f} | {f_ms / t_ms:.1f}x "
                f"| {target} | {build:.0f} | {f_rss / 1024:.0f} / {t_rss / 1024:.0f} |",
                flush=True,
            )
    if args.breakdown:
        T = int(args.breakdown)
        settle = args.settle_1e6 if T >= 1_000_000 else args.settle
        trained = in_child(_settle, T, 2, settle, "tied")
        cols = list(dict.fromkeys(KERNELS.values())) + ["total"]
        print(f"\nper kernel, T = {T:,}, m = 2, median ms of {args.steps} steps")
        print("| state | " + " | ".join(cols) + " | other |")
        print("|" + "---|" * (len(cols) + 2))
        for state, params in (("initial", None), (f"trained ({settle} steps)", trained)):
            ms = in_child(_breakdown, T, 2, params, args.steps)
            other = ms["total"] - sum(ms[c] for c in cols[:-1])
            cells = " | ".join(f"{ms[c]:.1f}" for c in cols)
            print(f"| {state} | {cells} | {other:.1f} |", flush=True)
    if args.full_run:
        wall, t_train, rss = in_child(_full_run, 1_000_000, args.full_steps)
        print(
            f"full run T=10^6, m=2, {args.full_steps} steps (tree): wall {wall / 60:.1f} min "
            f"(training {t_train / 60:.1f} min), peak RSS {rss / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
