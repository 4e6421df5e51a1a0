"""Clusters of training points stored together (the July 2023 update's "triangles").

Past ~1k points the memorising solution stops giving each stored point its own
direction: correlated points (sharing features) share one. A stored point takes at least
STORED_SHARE times the mean share of the hidden space, D_t >= STORED_SHARE m/T (the
rest of the points sit near the origin with less). The threshold is relative because the
memorising winners measured above 1k points (quick scale, lr 3e-2) store hundreds of
points on a ring, each with D_t ~ 0.005-0.02; an absolute 0.05 (the first version) found
none of them. Stored points whose hidden vectors point within ANGLE_DEG of each other
(linked in a chain) form one cluster; on such a ring the mean spacing is a few degrees,
so the angle is kept small. With thousands of stored points in m = 2 even uniformly
spread directions have neighbours that close, so ``summary`` also gives the share that
uniform directions would have (``shared_null``): a share at its null says only that the
points are many; whether a cluster's points are *correlated* is told by their data.

A stored point whose hidden vector lies within FEATURE_DEG of a feature that holds its
own dimension (D_i >= FEATURE_DIM) is that feature's, not a memorised point: given the
features, such points are left out. (Measured at the quick scale: a borderline pentagon
whose "clusters" all lay along its five features, docs/REPRODUCTION.md.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

STORED_SHARE = 2.0
ANGLE_DEG = 1.0
FEATURE_DEG = 5.0
FEATURE_DIM = 0.2  # a feature holding its own dimension, as in the other recipes
MAX_STORED = 4_000  # the largest-D_t points examined (pairwise work ~ MAX_STORED^2)


def clusters(H: np.ndarray, dd: np.ndarray, features: np.ndarray | None = None) -> list[np.ndarray]:
    """H (T, m) hidden vectors, dd (T,) data dims -> clusters of stored points, each an
    array of point indices, largest cluster first. features (k, m): directions of the
    features holding their own dimension; stored points along one are left out."""
    m = H.shape[1]
    stored = np.flatnonzero(dd >= STORED_SHARE * m / len(dd))
    stored = stored[np.argsort(-dd[stored], kind="stable")][:MAX_STORED]
    if len(stored) == 0:
        return []
    U = H[stored] / np.maximum(np.linalg.norm(H[stored], axis=1, keepdims=True), 1e-30)
    cos = math.cos(math.radians(ANGLE_DEG))
    if features is not None and len(features):
        V = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-30)
        off = ((U @ V.T) < math.cos(math.radians(FEATURE_DEG))).all(axis=1)  # along none
        stored, U = stored[off], U[off]
        if len(stored) == 0:
            return []
    near = (U @ U.T) >= cos  # (s, s)
    parent = np.arange(len(stored))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(near, 1))):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(len(stored))])
    groups = [stored[roots == r] for r in np.unique(roots)]
    return sorted(groups, key=len, reverse=True)


def shared_null(count: int, m: int) -> float:
    """The share of ``count`` points with another within ANGLE_DEG if their directions
    were uniform on the unit sphere in R^m: 1 - (1 - p)^(count - 1), p the cap's share."""
    if count < 2:
        return 0.0
    from scipy.special import betainc

    theta = math.radians(ANGLE_DEG)
    p = 0.5 * float(betainc((m - 1) / 2, 0.5, math.sin(theta) ** 2))  # cap, theta < 90 deg
    return 1.0 - (1.0 - p) ** (count - 1)


def feature_directions(W: np.ndarray, feature_dims: np.ndarray) -> np.ndarray:
    """W (m, n), feature_dims (n,) -> (k, m): the features holding their own dimension."""
    return np.asarray(W, float).T[np.asarray(feature_dims) >= FEATURE_DIM]


def summary(
    H: np.ndarray,
    dd: np.ndarray,
    X: sp.csr_matrix | None = None,
    features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Counts for one run: stored points (off the features' directions, given them),
    clusters, the share of stored points that share a direction, and (given the data X
    (T, n)) the mean cosine between the data points of one cluster against that between
    points of different clusters."""
    cl = clusters(np.asarray(H, float), np.asarray(dd, float), features)
    sizes = [len(c) for c in cl]
    stored = sum(sizes)
    out: dict[str, Any] = {
        "stored": stored,
        "clusters": len(cl),
        "sizes": sizes[:20],
        "largest": max(sizes, default=0),
        "shared_share": sum(s for s in sizes if s >= 2) / stored if stored else 0.0,
        "shared_null": shared_null(stored, H.shape[1]),
        "within_cos": None,
        "between_cos": None,
    }
    if X is not None and stored >= 2:
        Xn = sp.csr_matrix(X, dtype=np.float64)
        label = np.full(Xn.shape[0], -1)
        for k, c in enumerate(cl):
            label[c] = k
        idx = np.concatenate(cl)
        G = (Xn[idx] @ Xn[idx].T).toarray()  # unit-norm rows: cosines
        same = label[idx][:, None] == label[idx][None, :]
        off = ~np.eye(len(idx), dtype=bool)
        if (same & off).any():
            out["within_cos"] = float(G[same & off].mean())
        if (~same).any():
            out["between_cos"] = float(G[~same].mean())
    return out
