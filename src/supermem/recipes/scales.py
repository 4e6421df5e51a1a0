"""Every grid, seed count and step count of every recipe, in one place.

Change a scale here and all recipes (and their descriptions) follow. Three scales:

- ``quick``: n = 1,000, S = 0.99 (M. Hobbhahn's smaller setting, PAPER.md "What the
  commenters add"), 10,000 steps, 2 data seeds. Made for a 2-core CPU with the fast
  engine; the demo (figs 2-4) is meant to finish in under 15 minutes there.
- ``cpu``: the same task with the paper's 50,000 steps and 4 data seeds; hours.
- ``paper``: n = 10,000, S = 0.999, the paper's grid, 4 seeds, restarts; for a GPU.

T(1 - S), the expected count of each feature in the data set, sets where
generalisation starts (A. Jermyn's comment): near T(1-S) ~ 10, i.e. T ~ 1,000 at
S = 0.99 and T ~ 10,000 at S = 0.999. The T grids therefore end a decade later at
the paper scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def log_grid(lo: float, hi: float, k: int) -> tuple[int, ...]:
    """k log-spaced integers from lo to hi (inclusive), rounded to 2 significant digits."""
    raw = np.geomspace(lo, hi, k)
    digits = np.minimum(0, 1 - np.floor(np.log10(raw)).astype(int))  # integers below 100
    return tuple(sorted({int(round(float(v), int(d))) for v, d in zip(raw, digits)}))


@dataclass(frozen=True)
class Scale:
    """Settings shared by the recipes at one scale (all TrainConfig values)."""

    features: int
    sparsity: float
    steps: int
    warmup: int  # 5% of steps, as the paper's 2,500 of 50,000
    test_size: int
    T_grid: tuple[int, ...]  # m = 2 T sweep (figs 2-4)
    data_seeds: int  # data sets per T; test losses are averaged over them (paper: 4)
    small_T: int  # T below this gets `restarts` init seeds (m = 2 is hard to optimise)
    restarts: int
    fig5_T: tuple[int, ...]  # (T, m) map, fig 5
    fig5_m: tuple[int, ...]
    m4_T: tuple[int, ...]  # appendix, m = 4
    m4_steps: tuple[int, ...]  # training lengths compared for the test-loss bump
    overrides: dict = field(default_factory=dict)  # any other TrainConfig fields (engine=...)
    disc_T: tuple[int, ...] = ()  # discrepancy recipe's T grid (m = 2); empty: T_grid
    # repeated recipe (m = 2): T of the single / many-points runs (A. Jermyn's 30,000 at
    # n = 10,000, i.e. T(1-S) = 30), how many points repeat, and the phase grid's T and R
    rep_T: int = 0
    rep_K: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    rep_phase_T: tuple[int, ...] = ()
    rep_phase_R: tuple[int, ...] = (1, 2, 3, 5, 8)
    # scaling recipe: sparsities, T(1-S) grid (T = x / (1-S)), extra weight decays (the
    # scale's default 1e-2 runs come from the sparsity sweep), hidden sizes, data seeds
    scaling_S: tuple[float, ...] = ()
    scaling_x: tuple[float, ...] = (2, 4, 7, 12, 20, 40, 80)
    scaling_wd: tuple[float, ...] = (1e-3, 3e-2, 1e-1)
    scaling_m: tuple[int, ...] = (2, 3)
    scaling_seeds: int = 1
    # crossover recipe (m = 2): T grid and the learning rates tried at each T
    cross_T: tuple[int, ...] = ()
    cross_lr: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)

    @property
    def discrepancy_T(self) -> tuple[int, ...]:
        return self.disc_T or self.T_grid

    def fixed(self, **extra) -> dict:
        """The TrainConfig fields every recipe at this scale fixes."""
        base = dict(
            features=self.features,
            sparsity=self.sparsity,
            steps=self.steps,
            warmup=self.warmup,
            test_size=self.test_size,
        )
        return {**base, **self.overrides, **extra}


SCALES: dict[str, Scale] = {
    "quick": Scale(
        features=1_000,
        sparsity=0.99,
        steps=10_000,
        warmup=500,
        test_size=5_000,
        T_grid=log_grid(3, 10_000, 13),
        data_seeds=2,
        small_T=100,
        restarts=4,
        fig5_T=log_grid(3, 10_000, 8),
        fig5_m=(1, 2, 3, 4, 6, 8),
        m4_T=log_grid(3, 10_000, 8),
        m4_steps=(2_500, 10_000, 40_000),
        disc_T=log_grid(20, 2_400, 6),
        rep_T=3_000,
        rep_phase_T=(1_500, 3_000, 6_000),
        scaling_S=(0.95, 0.98, 0.99, 0.995),
        scaling_x=(2, 4, 7, 12, 20, 40),
        cross_T=log_grid(100, 100_000, 7),
    ),
    "cpu": Scale(
        features=1_000,
        sparsity=0.99,
        steps=50_000,
        warmup=2_500,
        test_size=10_000,
        T_grid=log_grid(3, 20_000, 16),
        data_seeds=4,
        small_T=100,
        restarts=4,
        fig5_T=log_grid(3, 20_000, 12),
        fig5_m=(1, 2, 3, 4, 5, 6, 8, 10, 12, 16),
        m4_T=log_grid(3, 20_000, 12),
        m4_steps=(12_500, 50_000, 200_000),
        disc_T=log_grid(20, 2_400, 6),
        rep_T=3_000,
        rep_phase_T=(1_500, 3_000, 6_000, 12_000),
        rep_phase_R=(1, 2, 3, 4, 5, 6, 8, 11),
        scaling_S=(0.95, 0.98, 0.99, 0.995),
        scaling_seeds=2,
        cross_T=log_grid(100, 100_000, 7),
    ),
    "paper": Scale(
        features=10_000,
        sparsity=0.999,
        steps=50_000,
        warmup=2_500,
        test_size=10_000,
        T_grid=log_grid(3, 100_000, 20),
        data_seeds=4,
        small_T=1_000,
        restarts=4,
        fig5_T=log_grid(3, 100_000, 16),
        fig5_m=(1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20),
        m4_T=log_grid(3, 100_000, 16),
        m4_steps=(12_500, 50_000, 200_000),
        disc_T=log_grid(30, 50_000, 10),
        rep_T=30_000,
        rep_phase_T=(15_000, 30_000, 60_000, 120_000),
        rep_phase_R=(1, 2, 3, 4, 5, 6, 8, 11),
        scaling_S=(0.99, 0.995, 0.999, 0.9995),
        scaling_seeds=2,
        cross_T=log_grid(1_000, 1_000_000, 7),
    ),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise KeyError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}")
    return SCALES[name]
