"""Voxel-based sampling: keep the most significant Gaussians per voxel, with coverage.

Rule (all vectorized: one ``np.lexsort`` and a few ``np.unique``/``bincount``):

1. Split space into cubes of edge ``v`` (scene units); voxel of Gaussian j =
   ``floor((μ_j − lo) / v)``.
2. In each voxel V keep its top ``k_V = ⌊|V|·ρ⌋`` Gaussians by score, ρ = target / N, and at
   least one (the best) in every voxel holding ≥ ``min_count`` Gaussians.
   With a significance *mass share* s > 0 (the default of :func:`exgs.ugc.compress`:
   0.5), ``k_V = ⌊target·((1 − s)·|V|/N + s·S_V/S)⌋`` (S_V: the voxel's summed score, S: the
   total), and every voxel whose mass alone earns a pick (S_V ≥ S / target) gets at least
   one however few Gaussians it holds: sparse but significant regions (a capture's
   background, a sky) are not starved by the dense object. s = 0 is the count rule above.
3. Trim or top up to exactly ``target``: drop the lowest-scored *extra* picks first (never a
   voxel's only pick while extras remain), or add the best-scored unpicked Gaussians.

``v`` is automatic when not given: chosen so that about ``coverage``·target voxels qualify
(hold ≥ ``min_count`` Gaussians), found by a few multiplicative steps from the robust bounds.
"""

from __future__ import annotations

import numba as nb
import numpy as np


#: centres converted to voxel ids at a time (bounds the float64 temporaries)
KEY_ROWS = 1 << 20


@nb.njit(parallel=True, cache=True)
def _cells(m, o, size, a, b, out):
    """out[i − a] = floor((m[i] − o) / size) for rows a..b, in float64 (as numpy would)."""
    for i in nb.prange(a, b):
        for c in range(3):
            out[i - a, c] = np.int64(np.floor((np.float64(m[i, c]) - o[c]) / size))


def voxel_keys(means: np.ndarray, size: float, origin: np.ndarray | None = None, *,
               rows: int | None = None) -> np.ndarray:
    """[N] int64 voxel id of each centre for cubes of edge ``size`` (ids are not dense);
    computed ``rows`` centres at a time (two passes: grid bounds, then ids)."""
    m = np.asarray(means)
    if m.dtype not in (np.float32, np.float64) or not m.flags.c_contiguous:
        m = np.ascontiguousarray(m, np.float64)
    n, rows = len(m), rows or KEY_ROWS
    if n == 0:
        return np.zeros(0, np.int64)
    o = m.min(0).astype(np.float64) if origin is None else np.asarray(origin, np.float64)
    g = np.empty((min(rows, n), 3), np.int64)

    def cells(a):
        b = min(n, a + rows)
        _cells(m, o, float(size), a, b, g)
        return g[:b - a]

    gmin = np.full(3, np.iinfo(np.int64).max, np.int64)
    gmax = np.full(3, np.iinfo(np.int64).min, np.int64)
    for a in range(0, n, rows):
        c = cells(a)
        gmin = np.minimum(gmin, c.min(0))
        gmax = np.maximum(gmax, c.max(0))
    dims = gmax - gmin + 1
    keys = np.empty(n, np.int64)
    for a in range(0, n, rows):
        c = cells(a) - gmin
        keys[a:a + rows] = (c[:, 0] * dims[1] + c[:, 1]) * dims[2] + c[:, 2]
    return keys


def qualifying_voxels(means, size: float, min_count: int) -> int:
    """Number of voxels of edge ``size`` holding ≥ ``min_count`` centres."""
    _, counts = np.unique(voxel_keys(means, size), return_counts=True)
    return int((counts >= min_count).sum())


def auto_voxel_size(means: np.ndarray, target: int, *, min_count: int = 3,
                    coverage: float = 0.25, iters: int = 6) -> float:
    """Voxel edge such that ≈ ``coverage·target`` voxels hold ≥ ``min_count`` centres.

    Starts from the robust (2–98 %) extent / cube root of the wanted voxel count and refines
    multiplicatively (counts scale roughly like v^−2 for surface-like scenes)."""
    m = np.asarray(means)
    if len(m) == 0:
        return 1.0
    q = [np.quantile(m[:, a].astype(np.float64), [0.02, 0.98]) for a in range(3)]
    lo, hi = np.array([x[0] for x in q]), np.array([x[1] for x in q])
    extent = float(max(np.max(hi - lo), 1e-9))
    want = max(1.0, coverage * target)
    v = extent / max(want, 1.0) ** (1 / 3)
    best = v
    for _ in range(iters):
        got = qualifying_voxels(m, v, min_count)
        best = v
        if got == 0:
            v *= 2.0
            continue
        r = got / want
        if 0.8 < r < 1.25:
            break
        v *= float(np.clip(r ** 0.5, 0.5, 2.0))
    return float(best)


def voxel_sample(means: np.ndarray, score: np.ndarray, target: int, *,
                 voxel_size: float | None = None, min_count: int = 3,
                 coverage: float = 0.25, mass_share: float = 0.0) -> tuple[np.ndarray, dict]:
    """Indices (sorted by decreasing score) of exactly ``min(target, N)`` Gaussians chosen by
    the voxel rule (module doc; ``mass_share`` in [0, 1] is s there), and a dict of
    diagnostics (voxel size, voxel counts)."""
    if not 0.0 <= mass_share <= 1.0:
        raise ValueError(f"mass_share must be in [0, 1], got {mass_share}")
    n = len(score)
    target = int(min(max(target, 0), n))
    score = np.asarray(score, np.float64)
    if target == 0:
        return np.zeros(0, np.int64), {"voxel_size": None}
    if target == n:
        return np.argsort(-score, kind="stable"), {"voxel_size": None}
    v = voxel_size or auto_voxel_size(means, target, min_count=min_count, coverage=coverage)
    keys = voxel_keys(means, v)
    order = np.lexsort((-score, keys))  # by voxel, then decreasing score
    k_sorted = keys[order]
    start = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
    group = np.cumsum(start) - 1                      # voxel index per sorted position
    first = np.flatnonzero(start)
    counts = np.diff(np.r_[first, n])
    rank = np.arange(n) - first[group]                # rank inside its voxel
    rho = target / n
    qualifies = counts >= min_count
    mass = np.bincount(group, weights=score[order]) if mass_share > 0 else None
    total = float(mass.sum()) if mass is not None else 0.0
    if total > 0:
        share = (1.0 - mass_share) * counts / n + mass_share * mass / total
        k_v = np.floor(target * share).astype(np.int64)
        qualifies |= mass >= total / target  # significant enough for a pick of its own
    else:
        k_v = np.floor(counts * rho).astype(np.int64)
    k_v = np.minimum(np.maximum(k_v, qualifies.astype(np.int64)), counts)
    picked_sorted = rank < k_v[group]
    picked = np.zeros(n, bool)
    picked[order[picked_sorted]] = True
    guaranteed = np.zeros(n, bool)
    guaranteed[order[(rank == 0) & qualifies[group]]] = True
    n_picked = int(picked.sum())
    if n_picked > target:
        # drop extras (not a voxel's guaranteed pick) by increasing score, then guaranteed ones
        cand = np.flatnonzero(picked)
        pri = np.lexsort((score[cand], guaranteed[cand]))  # non-guaranteed lowest first
        picked[cand[pri[:n_picked - target]]] = False
    elif n_picked < target:
        cand = np.flatnonzero(~picked)
        best = cand[np.argsort(-score[cand], kind="stable")[:target - n_picked]]
        picked[best] = True
    idx = np.flatnonzero(picked)
    idx = idx[np.argsort(-score[idx], kind="stable")]
    info = {"voxel_size": float(v), "voxels": int(len(first)),
            "qualifying_voxels": int(qualifies.sum()), "mass_share": float(mass_share),
            "initial_picks": n_picked}
    return idx, info
