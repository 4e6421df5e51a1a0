"""What one training step costs on each CPU engine, and so which one ``auto`` picks.

Measured on this project's machine class (2 cores; benchmarks/bench_tree.py, table in
docs/ENGINES.md) and fitted as

    fast:  FAST_PAIR[m] * inst * T * n                        (every (point, feature) pair)
    tree:  TREE_WALK[m] * inst * n * sqrt(T * LEAF)           (the nodes and cut leaves a
           + TREE_POINT * inst * T * m^2                       hyperplane meets; refit,
                                                               push-down)
    both:  + SPARSE * inst * T * nnz_per_row * m + STEP        (h = W x, sparse terms)

in seconds. The tree engine's walk is measured at the initial state (b = 0), its worst
case; trained states cost it less. It is not fitted beyond m = 3 (the tree prunes less as
m grows: the issue's model of the traversal gave 2x less work than dense at m = 4), so
``auto`` uses it for m <= 3 only.
"""

from __future__ import annotations

import math

LEAF = 16  # the tree engine's leaf size (TreeEngine.LEAF)
FAST_PAIR = {1: 1.0e-10, 2: 1.35e-10, 3: 2.7e-10}  # s per pair; m > 3: FAST_GENERIC * (m+1)
FAST_GENERIC = 7.0e-11
TREE_WALK = {1: 2.0e-10, 2: 2.6e-9, 3: 1.3e-8}  # s per feature per sqrt(T * LEAF)
TREE_POINT = 6.0e-9  # s per point per m^2
SPARSE = 6.0e-9  # s per nonzero per m
STEP = 2.0e-4  # s per step (Python, optimiser, small arrays)


def fast_step(inst: int, T: int, n: int, m: int, nnz_row: float) -> float:
    """Seconds per step of the fast engine (2 cores)."""
    pair = FAST_PAIR.get(m, FAST_GENERIC * (m + 1))
    return pair * inst * T * n + SPARSE * inst * T * nnz_row * m + STEP


def tree_step(inst: int, T: int, n: int, m: int, nnz_row: float) -> float:
    """Seconds per step of the tree engine (2 cores); inf where it is not fitted (m > 3)."""
    if m not in TREE_WALK:
        return math.inf
    walk = TREE_WALK[m] * inst * n * math.sqrt(T * LEAF)
    return walk + TREE_POINT * inst * T * m * m + SPARSE * inst * T * nnz_row * m + STEP


STEP_COST = {"fast": fast_step, "tree": tree_step}


def pick(inst: int, T: int, n: int, m: int, nnz_row: float) -> str:
    """The CPU engine with the lowest predicted step cost: 'fast' or 'tree'."""
    return min(STEP_COST, key=lambda e: STEP_COST[e](inst, T, n, m, nnz_row))
