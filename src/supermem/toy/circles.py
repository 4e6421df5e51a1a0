"""Two-circle optimisation failures of m = 2 memorising solutions (issue 11, part 4).

PAPER.md, "What the commenters add": in the memorising regime some m = 2 models put the
points on two circles of different radii that never merge, with a large angular gap
where the circles meet. The memorising optimum is a regular T-gon: one radius, every
angular gap 2 pi / T. ``two_circles(H)`` on the hidden vectors H (T, 2) of a run:

1. stored points: ||h_t|| >= STORED_FRACTION of the largest (a point left near the origin
   is not stored and belongs to neither circle; ``unstored`` counts them);
2. two radii: the stored radii, sorted, split where the ratio between neighbours is
   largest among the splits that leave >= MIN_GROUP (2) points on each side (one odd
   point is not a circle, and must not hide a split of the others); ``radius_ratio`` is
   that ratio. Two circles need it >= RADIUS_RATIO (1.25: a regular polygon gives 1, and
   a 25% jump with no radius in between is no rounding effect), and each group must be a
   circle: its own spread of radii (largest / smallest, ``spread``) below the jump;
3. they meet: in angular order each radius group is one arc, i.e. the group changes in
   exactly two places (``changes``); interleaved radii are not two circles;
4. a large gap where they meet: the wider of the two angular gaps at those places over
   the median angular gap between neighbours of the same group (``gap_ratio``) is
   >= GAP_RATIO (1.5; a regular polygon gives 1).

T < 2 MIN_GROUP can never be caught (T = 3 has no room for two circles of two).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

STORED_FRACTION = 0.1
RADIUS_RATIO = 1.25
GAP_RATIO = 1.5
MIN_GROUP = 2


@dataclass(frozen=True)
class Circles:
    """What ``two_circles`` found; ``caught`` is the verdict."""

    caught: bool
    radius_ratio: float  # outer / inner at the widest split of the sorted radii (nan: too few)
    spread: float  # the larger of the two groups' largest / smallest radius
    gap_ratio: float  # widest meeting gap / median same-group gap (nan: not two arcs)
    changes: int  # places in angular order where the radius group changes
    inner: int  # stored points on the inner circle
    outer: int
    unstored: int
    r_inner: float  # median radius of each group
    r_outer: float
    meet_angle: float  # direction (radians) of the middle of the widest meeting gap
    meet_gap: float  # its width (radians)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_circles(
    H: np.ndarray,
    radius_ratio: float = RADIUS_RATIO,
    gap_ratio: float = GAP_RATIO,
    min_group: int = MIN_GROUP,
    stored_fraction: float = STORED_FRACTION,
) -> Circles:
    """H (T, 2) -> whether its stored points sit on two circles that meet at a wide gap."""
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[1] != 2:
        raise ValueError(f"two_circles needs hidden vectors of shape (T, 2); got {H.shape}")
    r = np.linalg.norm(H, axis=1)
    stored = r >= stored_fraction * r.max(initial=0.0) if r.max(initial=0.0) > 0 else r > 0
    nan = math.nan
    none = Circles(False, nan, nan, nan, 0, 0, 0, int((~stored).sum()), nan, nan, nan, nan)
    if stored.sum() < 2 * min_group:
        return none
    r, theta = r[stored], np.arctan2(H[stored, 1], H[stored, 0])
    order = np.argsort(r)
    rs = r[order]
    jumps = rs[1:] / rs[:-1]  # (P - 1,): cut j puts rs[: j + 1] inside
    cut = min_group - 1 + int(np.argmax(jumps[min_group - 1 : rs.size - min_group]))
    outer = np.zeros(r.size, dtype=bool)
    outer[order[cut + 1 :]] = True
    ratio = float(jumps[cut])
    spread = max(rs[cut] / rs[0], rs[-1] / rs[cut + 1])
    around = np.argsort(theta)
    th, grp = theta[around], outer[around]
    gaps = np.diff(np.r_[th, th[0] + 2 * np.pi])  # gap from point j to the next, (P,)
    change = grp != np.roll(grp, -1)  # the group changes between j and the next
    base: dict[str, Any] = dict(
        radius_ratio=ratio,
        spread=float(spread),
        changes=int(change.sum()),
        inner=int((~outer).sum()),
        outer=int(outer.sum()),
        unstored=int(stored.size - stored.sum()),
        r_inner=float(np.median(r[~outer])),
        r_outer=float(np.median(r[outer])),
    )
    if change.sum() != 2 or (~change).sum() == 0:
        return Circles(False, gap_ratio=nan, meet_angle=nan, meet_gap=nan, **base)
    j = int(np.flatnonzero(change)[np.argmax(gaps[change])])
    g = float(gaps[j] / np.median(gaps[~change]))
    ok = ratio >= radius_ratio and spread < ratio
    return Circles(
        bool(ok and g >= gap_ratio),
        gap_ratio=g,
        meet_angle=float(th[j] + gaps[j] / 2),
        meet_gap=float(gaps[j]),
        **base,
    )
