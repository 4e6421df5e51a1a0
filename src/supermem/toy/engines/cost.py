"""What one training step costs on each CPU engine, and so which one ``auto`` picks.

Measured on this project's machine class (2 cores; benchmarks/bench_tree.py, table in
docs/ENGINES.md) and fitted as

    fast:  FAST_PAIR[m] * inst * T * n                        (every (point, feature) pair)
    tree:  TREE_WALK[m] * inst * n * sqrt(T * LEAF)           (the nodes and cut leaves a
           + TREE_POINT * inst * T * m^2                       hyperplane meets; refit,
                                                               push-down)
    both:  + *_SPARSE * inst * T * nnz_per_row * m + STEP     (h = W x, sparse terms)

in seconds (TREE_WALK per feature at n = 10^4; at m = 3 times (10^4 / n)^0.255 for n in
[10^3, 10^4], so that n = 10^3 keeps its earlier constant). The tree engine's walk is
measured at the initial state (b = 0), its worst case (trained states cost it less), for
m = 1, 2; for m = 3 on trained states. It is
not fitted beyond m = 3 (the tree prunes less as m grows: the issue's model of the
traversal gave 2x less work than dense at m = 4), so ``auto`` uses it for m <= 3 only.
"""

from __future__ import annotations

import math

from supermem.toy.engines._numba_kernels import UNROLLED_M  # noqa: F401 (the sweeps' units)

LEAF = 16  # the tree engine's leaf size (TreeEngine.LEAF)
# Fitted on `benchmarks/bench_tree.py` (docs/ENGINES.md, initial states): fast at m = 2,
# T = 10^4 / 10^5 / 10^6 gives 2.8-4.0e-10 s per pair; m = 1 (its generic kernel)
# 1.7e-9; m > 3: FAST_GENERIC * (m + 1), the generic kernel. m = 3 runs the unrolled
# kernel (`dense_pass_unrolled`): 1.3-1.5x m = 2's step at n = 10,000, S = 0.999,
# T = 2,000 and 10,000 (one thread each, side by side), so 1.5x m = 2's pair cost (the
# generic kernel it replaced took 3.4e-9)
FAST_PAIR = {1: 1.7e-9, 2: 3.0e-10, 3: 4.5e-10}  # s per (point, feature) pair
FAST_GENERIC = 8.5e-10  # s per pair per (m + 1), m > 3
FAST_SPARSE = 2.0e-8  # s per nonzero per m (the fast engine's column pass misses cache)
# tree, initial state: walk = step - sparse - point terms, over n sqrt(T * LEAF); m = 2
# refitted on the second-round table (commit 38e894a: 178.6 ms at T = 10^6, of which the
# two passes over the nonzeros ~57 ms and refit + push-down ~24 ms), m = 1 the first;
# m = 3 on a trained state, not the initial one: beside the unrolled fast kernel the
# initial state (tree 1.5-3x slower than fast at T = 10^4..10^5) misleads, since after
# 200 steps at T = 10^5 the tree is 6.5x faster (93-99 vs 609-685 ms) while at T = 10^4
# after 1,500 steps fast still leads (43-56 vs 73-84 ms); 1.8e-8 is the T = 10^4 trained
# walk. Along the start of fig. 5's own runs (paper schedule, one thread each, side by
# side, benchmarks/bench_run_turn.py) the tree is faster from step ~1,100 on: 2.0-2.7x at
# T = 2.5 x 10^4 (to step 4,900), 3.2-3.4x at 5 x 10^4 (to 2,600), which the sqrt form
# fits at 7.5-7.9e-9 where the T = 10^4 state (fast ahead) needs 1.9e-8: 1.0e-8 keeps
# fast up to T ~ 1.5 x 10^4 and takes the tree from 2 x 10^4 at n = 10^4 (docs/ENGINES.md,
# "The cost model and auto")
TREE_WALK = {1: 9.0e-10, 2: 2.4e-9, 3: 1.0e-8}  # s per feature per sqrt(T * LEAF), n = 10^4
# ... times (10^4 / n)^WALK_N_EXP[m], n taken within [10^3, 10^4]: at n = 1,000 the one
# m = 3 measurement (a 3,000-step run at S = 0.995, T = 8,000: fast 32 s, tree 31 s, a tie)
# sits between the two constants (the tree predicted 1.29x faster with 1.0e-8, 0.81x with
# 1.8e-8) and asks for no change, so the quick and cpu scales (n = 1,000) keep 1.8e-8 and
# every engine their runs were trained on: 10^0.255 = 1.8. A choice, not a fit
WALK_N, WALK_N_MIN = 10_000, 1_000  # the n the constants are at; the n term's lower end
WALK_N_EXP = {3: 0.255}
TREE_POINT = 6.0e-9  # s per point per m^2 (refit, push-down)
TREE_SPARSE = {2: 2.9e-9}  # s per nonzero per m (h = W x, the row pass): m = 2's kernels
TREE_SPARSE_GENERIC = 5.0e-9  # the same for the generic kernels (m != 2)
STEP = 2.0e-4  # s per step (Python, optimiser, small arrays)


def fast_step(inst: int, T: int, n: int, m: int, nnz_row: float) -> float:
    """Seconds per step of the fast engine (2 cores)."""
    pair = FAST_PAIR.get(m, FAST_GENERIC * (m + 1))
    return pair * inst * T * n + FAST_SPARSE * inst * T * nnz_row * m + STEP


def tree_walk(n: int, m: int) -> float:
    """The walk's seconds per feature per sqrt(T * LEAF) at n features (m <= 3):
    TREE_WALK[m], times (WALK_N / n)^WALK_N_EXP[m] with n held within [WALK_N_MIN, WALK_N]."""
    return TREE_WALK[m] * (WALK_N / min(max(n, WALK_N_MIN), WALK_N)) ** WALK_N_EXP.get(m, 0.0)


def tree_step(inst: int, T: int, n: int, m: int, nnz_row: float) -> float:
    """Seconds per step of the tree engine (2 cores); inf where it is not fitted (m > 3)."""
    if m not in TREE_WALK:
        return math.inf
    walk = tree_walk(n, m) * inst * n * math.sqrt(T * LEAF)
    sparse = TREE_SPARSE.get(m, TREE_SPARSE_GENERIC) * inst * T * nnz_row * m
    return walk + TREE_POINT * inst * T * m * m + sparse + STEP


TREE_MARGIN = 1.5  # the tree must be predicted this much cheaper: near the crossover the
# fit is least certain, and the long-measured fast engine is kept


def pick(inst: int, T: int, n: int, m: int, nnz_row: float) -> str:
    """'tree' where its predicted step cost is TREE_MARGIN times below the fast engine's,
    else 'fast'."""
    fast, tree = fast_step(inst, T, n, m, nnz_row), tree_step(inst, T, n, m, nnz_row)
    return "tree" if tree * TREE_MARGIN < fast else "fast"
