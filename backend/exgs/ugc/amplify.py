"""Adaptive amplification: survivors absorb the Gaussians pruned around them (analytic).

Each pruned Gaussian p is assigned to its nearest survivor s (centre distance, searched in the
27 neighbouring cells of a uniform grid; cells hold ~2 survivors, see
:func:`nearest_in_grid`). Pruned Gaussians with no survivor in reach are dropped (floaters).
Every survivor then becomes the moment-matched merge of itself and what it absorbed, with
"visual mass" weights ``m = σ · A``, ``A = (s₁s₂s₃)^(2/3)`` (opacity × a projected-area
proxy, scene units²)::

    μ* = Σ m μ / Σ m        C* = Σ m (C + (μ − μ*)(μ − μ*)ᵀ) / Σ m
    μ' = μ_s + λ(μ* − μ_s)  C' = (1 − λ) C_s + λ C*           (λ = strength)
    scales' ≤ growth · max(scales_s)       (eigen-decomposition of C', limits per axis)
    σ' = clip(σ_s + λ(Σ m / A' − σ_s), σ_s, max_opacity)
    sh' = sh_s + λ_c (Σ m sh / Σ m − sh_s)  (λ_c = colour_strength)

C = R diag(s²) Rᵀ is the 3D covariance. Survivors that absorbed nothing are unchanged.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..scene import GaussianScene, logit
from ..transform import quat_to_rotmat, rotmat_to_quat

#: members (and nearest-survivor queries) processed at a time: bounds the float64
#: temporaries (covariances: 72 B per row) to a few hundred MB at any scene size
ROWS = 1 << 20


# ------------------------------------------------------------------------------ geometry
def covariances(scene: GaussianScene, idx=None) -> np.ndarray:
    """[M,3,3] float64 covariances R diag(s²) Rᵀ of Gaussians ``idx`` (all when None)."""
    q = scene.quats if idx is None else scene.quats[idx]
    ls = scene.log_scales if idx is None else scene.log_scales[idx]
    R = quat_to_rotmat(q)
    s2 = np.exp(2.0 * ls.astype(np.float64))
    return np.einsum("nij,nj,nkj->nik", R, s2, R)


# ------------------------------------------------------------------------------ grid NN
@nb.njit(parallel=True, cache=True)
def _nn_kernel(q_cells, q_pts, s_keys_sorted, s_order, s_pts, dims, out, out_d2):
    n = q_pts.shape[0]
    m = s_keys_sorted.shape[0]
    for i in nb.prange(n):
        best = -1
        bd = np.inf
        cx, cy, cz = q_cells[i, 0], q_cells[i, 1], q_cells[i, 2]
        for dx in range(-1, 2):
            x = cx + dx
            if x < 0 or x >= dims[0]:
                continue
            for dy in range(-1, 2):
                y = cy + dy
                if y < 0 or y >= dims[1]:
                    continue
                # the (up to) 3 cells z−1, z, z+1 have consecutive keys: one search, then
                # walk the sorted keys (same candidates, in the same order, as 3 lookups)
                z0 = max(cz - 1, 0)
                z1 = min(cz + 1, dims[2] - 1)
                if z0 > z1:
                    continue
                base = (x * dims[1] + y) * dims[2]
                t = np.searchsorted(s_keys_sorted, base + z0, side="left")
                while t < m and s_keys_sorted[t] <= base + z1:
                    j = s_order[t]
                    ex = s_pts[j, 0] - q_pts[i, 0]
                    ey = s_pts[j, 1] - q_pts[i, 1]
                    ez = s_pts[j, 2] - q_pts[i, 2]
                    d2 = ex * ex + ey * ey + ez * ez
                    if d2 < bd:
                        bd = d2
                        best = j
                    t += 1
        out[i] = best
        out_d2[i] = bd


def nearest_in_grid(queries: np.ndarray, points: np.ndarray, cell: float, *,
                    rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query [Q,3] the index of the nearest of ``points`` [P,3] among those in its
    own and the 26 neighbouring grid cells of edge ``cell`` (−1 if none), and the distance.
    Exact whenever the true nearest point is within ``cell`` of the query. Queries are
    converted ``rows`` at a time (default :data:`ROWS`; same result for any value)."""
    qs = np.asarray(queries)
    p = np.ascontiguousarray(points, np.float64)
    rows = rows or ROWS
    out = np.full(len(qs), -1, np.int64)
    d2 = np.full(len(qs), np.inf)
    if len(qs) == 0 or len(p) == 0:
        return out, np.sqrt(d2)
    lo = np.minimum(qs.min(0).astype(np.float64), p.min(0))

    def chunk(a):
        q = np.ascontiguousarray(qs[a:a + rows], np.float64)
        return q, np.floor((q - lo) / cell).astype(np.int64)

    pc = np.floor((p - lo) / cell).astype(np.int64)
    dims = pc.max(0)
    for a in range(0, len(qs), rows):
        dims = np.maximum(dims, chunk(a)[1].max(0))
    dims = dims + 1
    if float(np.prod(dims.astype(np.float64))) > 2**62:
        raise ValueError("grid too fine for the scene extent")
    keys = (pc[:, 0] * dims[1] + pc[:, 1]) * dims[2] + pc[:, 2]
    order = np.argsort(keys, kind="stable")
    keys_sorted = keys[order]
    for a in range(0, len(qs), rows):
        q, qc = chunk(a)
        _nn_kernel(qc, q, keys_sorted, order, p, dims, out[a:a + rows], d2[a:a + rows])
    return out, np.sqrt(d2)


@nb.njit(cache=True)
def _scatter_add(own, w, out, col):
    """out[own[j], col] += w[j] for j in order: the additions of ``np.bincount(own, w)``,
    in its order (so chunked sums are bit-identical to one bincount over all members)."""
    for j in range(own.shape[0]):
        out[own[j], col] += w[j]


# ------------------------------------------------------------------------------ amplify
def amplify(scene: GaussianScene, keep_idx: np.ndarray, *, strength: float = 0.5,
            colour_strength: float = 0.0, growth: float = 2.0, max_opacity: float = 0.99,
            cell: float | None = None) -> tuple[GaussianScene, dict]:
    """Pruned scene ``scene.subset(keep_idx)`` with survivors amplified (module doc).

    Returns (scene in ``keep_idx`` order, diagnostics). ``strength`` = λ ∈ [0, 1]
    (0 = plain pruning), ``growth`` = max ratio of a new scale to the survivor's largest
    scale, ``cell`` = search grid edge (default: survivor spacing, ~2 per occupied cell)."""
    keep_idx = np.asarray(keep_idx, np.int64)
    out = scene.subset(keep_idx)
    n, k = len(scene), len(keep_idx)
    if strength <= 0 or k == 0 or k >= n:
        return out, {"absorbed": 0}
    pruned = np.ones(n, bool)
    pruned[keep_idx] = False
    p_idx = np.flatnonzero(pruned)
    if cell is None:
        from .voxel import auto_voxel_size

        cell = auto_voxel_size(scene.means[keep_idx], max(k // 2, 1), min_count=1,
                               coverage=1.0)
    ext = float(np.ptp(scene.means, axis=0).max()) if n else 1.0
    cell = max(float(cell), ext / 2e5, 1e-12)  # keeps the grid key in int64
    owner, dist = nearest_in_grid(scene.means[p_idx], scene.means[keep_idx], cell)
    ok = owner >= 0
    p_idx, owner = p_idx[ok], owner[ok]

    # members: every survivor (owner = itself) + the absorbed pruned Gaussians, visited
    # ``ROWS`` at a time in two passes (centroids, then covariances and colours); the sums
    # are the sequential bincount sums of the whole-array formulas (module doc)
    mem = np.concatenate([keep_idx, p_idx])
    own = np.concatenate([np.arange(k), owner])
    del p_idx, owner
    opac = scene.opacities.astype(np.float64)
    kk = scene.sh.shape[1] * 3
    sums = np.zeros((k, 1 + 3 + 9 + kk), np.float64)  # Σm | Σm·μ | Σm·C | Σm·sh
    mass = np.empty(len(mem), np.float64)
    for a in range(0, len(mem), ROWS):
        m_c, o_c = mem[a:a + ROWS], own[a:a + ROWS]
        ls_c = scene.log_scales[m_c].astype(np.float64)
        mass[a:a + ROWS] = w = opac[m_c] * np.exp(ls_c.sum(1) * (2.0 / 3.0))
        _scatter_add(o_c, w, sums, 0)
        mu = scene.means[m_c].astype(np.float64)
        for c in range(3):
            _scatter_add(o_c, w * mu[:, c], sums, 1 + c)
    msum = sums[:, 0]
    mu_star = sums[:, 1:4] / msum[:, None]
    for a in range(0, len(mem), ROWS):
        m_c, o_c, w = mem[a:a + ROWS], own[a:a + ROWS], mass[a:a + ROWS]
        d = scene.means[m_c].astype(np.float64) - mu_star[o_c]
        C = covariances(scene, m_c) + d[:, :, None] * d[:, None, :]
        for c in range(9):
            _scatter_add(o_c, w * C[:, c // 3, c % 3], sums, 4 + c)
        if colour_strength > 0:
            sh = scene.sh.reshape(n, kk)[m_c].astype(np.float64)
            for c in range(kk):
                _scatter_add(o_c, w * sh[:, c], sums, 13 + c)
    del mass
    C_star = sums[:, 4:13].reshape(k, 3, 3) / msum[:, None, None]
    owner = own[k:]

    absorbed = np.bincount(owner, minlength=k) > 0
    s = np.flatnonzero(absorbed)
    lam = float(strength)
    C_s = covariances(scene, keep_idx[s])
    C_new = (1 - lam) * C_s + lam * C_star[s]
    evals, evecs = np.linalg.eigh(C_new)
    evecs[np.linalg.det(evecs) < 0, :, 0] *= -1.0  # proper rotation
    s_old = np.exp(scene.log_scales[keep_idx[s]].astype(np.float64))
    cap = growth * s_old.max(1, keepdims=True)
    new_scales = np.minimum(np.sqrt(np.maximum(evals, 1e-30)), cap)
    new_scales = np.maximum(new_scales, 1e-8)
    area_new = np.prod(new_scales, 1) ** (2.0 / 3.0)
    o_s = opac[keep_idx[s]]
    o_new = np.clip(o_s + lam * (msum[s] / area_new - o_s), o_s, max_opacity)
    o_new = np.maximum(o_new, o_s)  # never fade a survivor

    out.means[s] = ((1 - lam) * scene.means[keep_idx[s]] + lam * mu_star[s]).astype(np.float32)
    out.quats[s] = rotmat_to_quat(evecs).astype(np.float32)
    out.log_scales[s] = np.log(new_scales).astype(np.float32)
    out.opacity_logits[s] = logit(o_new)
    if colour_strength > 0:
        sh_star = sums[:, 13:] / msum[:, None]
        cur = out.sh.reshape(k, kk)[s].astype(np.float64)
        out.sh[s] = (cur + colour_strength * (sh_star[s] - cur)).reshape(-1, *out.sh.shape[1:])
    info = {"absorbed": int(len(owner)), "unassigned": int((~ok).sum()),
            "amplified_survivors": int(len(s)), "cell": float(cell)}
    return out, info
