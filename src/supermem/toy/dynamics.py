"""Training dynamics from saved snapshots (issue 11, part 3): every point's D_t and every
feature's D_i over training, and the events in them that the commenters describe
(PAPER.md, "What the commenters add"): *near misses*, points memorised during training
and dropped later, and features learned and later forgotten (mid-regime runs).

Shapes: snapshot_W (k, m, n), snapshot steps (k,), X the training set (T, n), dense or
SciPy sparse; trajectories D_t (k, T) and D_i (k, n).

Thresholds (``thresholds``). A point (a feature) counts as *stored* at a snapshot when
its dimensionality is >= hi = HI_PER_M * m (0.1 at m = 2), and as *dropped* when it is
< lo = hi / HYSTERESIS (0.025 at m = 2). Why these values:

- sum_t D_t <= m: each D_t is at most the leverage D*_t (the sup over directions in
  ``metrics.max_data_dims`` includes h_t's own), and the leverages sum to rank(H) <= m.
  So at most m / hi = 20 points are stored at once. A stored point holds a share of the
  hidden space, as one direction of a regular polygon of <= 20 directions does (2/k each
  in 2-D); the unstructured cloud sits near m/T (0.002 at m = 2, T = 1,000). The same
  bound holds for features (sum_i D_i <= m; random init gives ~m/n).
- hysteresis: hi and lo a factor 4 apart, so a value that wobbles about one threshold is
  never counted as learned and then lost.
- the test needs the unstructured level well below hi: ``detectable`` asks for
  m/T <= hi / 10 (T >= 200 at m = 2), which mid-regime runs (T ~ 1,000 at n = 1,000,
  S = 0.99; ~10,000 at the paper's setting) meet. At small T every point is stored.

An *event* (``lost_after_reaching``) is a point (feature) that is stored at some
snapshot after step 0 (the random init does not count as learning) and dropped at the
final snapshot. Its steps: first stored, peak, and lost (the first snapshot after its
last stored one at which it is below lo). A point dropped and stored again by the end is
no event: the model ended up storing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from supermem import metrics

HI_PER_M = 0.05  # stored: D >= 0.05 m (0.1 at m = 2)
HYSTERESIS = 4.0  # dropped: D < hi / 4


def thresholds(m: int) -> tuple[float, float]:
    """(hi, lo): stored at >= hi = HI_PER_M m, dropped below lo = hi / HYSTERESIS."""
    hi = HI_PER_M * m
    return hi, hi / HYSTERESIS


def detectable(m: int, count: int) -> bool:
    """Whether ``count`` points (or features) are many enough that their unstructured
    level m / count is <= hi / 10, so that reaching hi means being stored."""
    return m / count <= thresholds(m)[0] / 10


def hidden_trajectory(snapshot_W: np.ndarray, X: Any) -> np.ndarray:
    """snapshot_W (k, m, n), X (T, n) -> hidden vectors (k, T, m) at every snapshot."""
    return np.stack([np.asarray(metrics.hidden(W, X), dtype=np.float64) for W in snapshot_W])


def data_dim_trajectory(snapshot_W: np.ndarray, X: Any) -> np.ndarray:
    """snapshot_W (k, m, n), X (T, n) -> D_t (k, T) of every training point over training."""
    return np.asarray(metrics.data_dims(hidden_trajectory(snapshot_W, X)))


def feature_dim_trajectory(snapshot_W: np.ndarray) -> np.ndarray:
    """snapshot_W (k, m, n) -> D_i (k, n) of every feature over training."""
    return np.asarray(metrics.feature_dims(np.asarray(snapshot_W, dtype=np.float64)))


@dataclass(frozen=True)
class Event:
    """One point (feature) stored during training and dropped by its end."""

    index: int  # the point t (feature i)
    stored_step: int  # first snapshot step at which D >= hi
    peak_step: int
    peak: float  # max D after step 0
    lost_step: int  # first snapshot after the last stored one with D < lo
    final: float  # D at the last snapshot (< lo)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lost_after_reaching(D: np.ndarray, steps: np.ndarray, hi: float, lo: float) -> list[Event]:
    """D (k, N) over snapshot steps (k,) increasing -> the events, by index.

    An event: D[j, i] >= hi at some snapshot j with steps[j] > 0, and D[-1, i] < lo.
    """
    D, steps = np.asarray(D, dtype=np.float64), np.asarray(steps)
    if D.ndim != 2 or D.shape[0] != steps.shape[0]:
        raise ValueError(f"D must be (k, N) with k = len(steps) = {len(steps)}; got {D.shape}")
    if lo >= hi:
        raise ValueError(f"lo ({lo}) must be below hi ({hi})")
    if D.shape[0] == 0:
        return []
    above = (D >= hi) & (steps > 0)[:, None]  # (k, N)
    hits = np.flatnonzero(above.any(0) & (D[-1] < lo))
    events = []
    for i in hits:
        col, on = D[:, i], np.flatnonzero(above[:, i])
        after = np.flatnonzero(col[on[-1] + 1 :] < lo)  # non-empty: the last value is < lo
        peak = int(np.argmax(np.where(steps > 0, col, -np.inf)))
        events.append(
            Event(
                index=int(i),
                stored_step=int(steps[on[0]]),
                peak_step=int(steps[peak]),
                peak=float(col[peak]),
                lost_step=int(steps[on[-1] + 1 + after[0]]),
                final=float(col[-1]),
            )
        )
    return events


def stored_counts(D: np.ndarray, hi: float) -> np.ndarray:
    """D (k, N) -> (k,) how many points (features) are stored at each snapshot."""
    return (np.asarray(D) >= hi).sum(1)


def near_misses(D_t: np.ndarray, steps: np.ndarray, m: int) -> list[Event]:
    """Points memorised during training and dropped by its end; D_t (k, T)."""
    return lost_after_reaching(D_t, steps, *thresholds(m))


def forgotten_features(D_i: np.ndarray, steps: np.ndarray, m: int) -> list[Event]:
    """Features learned during training and forgotten by its end; D_i (k, n)."""
    return lost_after_reaching(D_i, steps, *thresholds(m))
