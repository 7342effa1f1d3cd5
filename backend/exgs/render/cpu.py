"""Our CPU Gaussian rasterizer (numba): same image as gsplat's CUDA ``rasterization``.

Pipeline per view (no Python loop per Gaussian anywhere):

1. :func:`exgs.render.project.project` — parallel EWA projection, culling, tile ranges, SH.
2. Binning — visible Gaussians are ordered by depth once (a stable radix sort), packed in
   that order (:func:`exgs.render.raster.pack_frame`), then a counting sort by tile
   (:func:`exgs.render.raster.bin_tiles_culled`; :func:`bin_tiles` for the training path)
   scatters them into one flat work list; because the scatter walks the Gaussians in depth
   order, every tile's slice is already depth-sorted (the same order gsplat's 64-bit
   ``tile | depth`` key sort gives). Pairs whose box touches a tile but whose ellipse
   reaches none of its pixel centres are left out (they would blend nothing).
3. :func:`exgs.render.raster.raster_kernel` — ``prange`` over tiles (16×16 px). For each Gaussian of the tile,
   front to back, only the pixels inside its α ≥ 1/255 ellipse (solved per row) are
   visited; per pixel, exactly gsplat's rule::

       σ = ½(a·dx² + c·dy²) + b·dx·dy          (d = mean2d − pixel centre, centre = +0.5)
       α = min(0.999, opacity·exp(−σ));  skip if σ < 0 or α < 1/255
       T' = T·(1 − α);  if T' ≤ 1e-4: pixel done, this Gaussian NOT blended
       C += colour·α·T;  D += z·α·T;  T = T'

   A tile stops as soon as all its pixels are done.
4. Contributions (optional): ``contrib[j] = Σ_pixels α_j·T_j`` and ``hits[j]`` (pixels where
   j was blended) are accumulated per tile–Gaussian pair (no races) and reduced per Gaussian.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..profiling import stage
from ..scene import sigmoid
from .project import EPS2D, TILE, Projected, project
from .raster import ALPHA_MAX, T_MIN  # noqa: F401  (re-exported: backward.py)
from .raster import (bin_tiles_culled, ellipse, new_records, pack_frame, pack_row,
                     raster_kernel, tile_offsets)

#: Gaussians activated at a time by :class:`PreparedScene` (bounds its temporaries)
PREPARE_ROWS = 1 << 20
#: from this many projected Gaussians on, the depth order uses the parallel radix sort
PARALLEL_SORT_MIN = 2_000_000



class PreparedScene:
    """Activated, contiguous float32 arrays of a :class:`~exgs.scene.GaussianScene`, computed
    once and reused for every view (``render_many``): means [N,3], quats [N,4] (unit, wxyz),
    scales [N,3] (σ), opacities [N], sh [N,K,3]."""

    def __init__(self, scene, rows: int | None = None):
        n = len(scene)
        rows = rows or PREPARE_ROWS
        self.means = np.ascontiguousarray(scene.means, np.float32)
        self.quats = np.empty((n, 4), np.float32)
        self.scales = np.empty((n, 3), np.float32)
        self.opacities = np.empty(n, np.float32)
        for a in range(0, n, rows):  # in chunks: no [N, 4] float64 temporaries
            b = min(n, a + rows)
            q = scene.quats[a:b].astype(np.float32)
            q64 = q.astype(np.float64)
            qn = np.sqrt(np.einsum("ij,ij->i", q64, q64))
            self.quats[a:b] = q / np.maximum(qn, 1e-30)[:, None]
            self.scales[a:b] = np.exp(scene.log_scales[a:b])
            self.opacities[a:b] = sigmoid(scene.opacity_logits[a:b])
        self.sh = np.ascontiguousarray(scene.sh, np.float32)
        self.n = n
        self.sh_degree = scene.sh_degree


def radix_argsort_f32(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of float32 ``keys`` [N] → int32 [N] (:func:`_radix_argsort`, in
    parallel chunks). −0.0 sorts before +0.0; NaNs last."""
    n_chunks = max(1, min(4 * nb.get_num_threads(), len(keys) // 32768))
    return _radix_argsort(np.ascontiguousarray(keys, np.float32), n_chunks)


@nb.njit(parallel=True, cache=True)
def _radix_argsort(keys, n_chunks):
    """Stable argsort of float32 ``keys`` (LSD radix sort, 3 passes of 11 bits) → int32.

    Parallel: each pass counts digits per contiguous chunk, then scatters every chunk at
    its own offsets (digit-major, chunk-minor), which keeps the sort stable — the result
    is the one permutation a sequential stable sort gives. Keys travel with the indices."""
    n = keys.shape[0]
    u = keys.view(np.uint32)
    k = np.empty(n, np.uint32)
    idx = np.empty(n, np.int32)
    for i in nb.prange(n):  # order-preserving float → uint map
        v = u[i]
        k[i] = ~v if v & np.uint32(0x80000000) else v | np.uint32(0x80000000)
        idx[i] = i
    tmp = np.empty(n, np.int32)
    ktmp = np.empty(n, np.uint32)
    step = (n + n_chunks - 1) // n_chunks
    for shift in (0, 11, 22):
        cnt = np.zeros((n_chunks, 2048), np.int64)
        for ch in nb.prange(n_chunks):
            for i in range(ch * step, min(n, (ch + 1) * step)):
                cnt[ch, (k[i] >> shift) & 0x7FF] += 1
        run = 0
        for d in range(2048):
            for ch in range(n_chunks):
                c = cnt[ch, d]
                cnt[ch, d] = run
                run += c
        for ch in nb.prange(n_chunks):
            for i in range(ch * step, min(n, (ch + 1) * step)):
                d = (k[i] >> shift) & 0x7FF
                j = cnt[ch, d]
                tmp[j] = idx[i]
                ktmp[j] = k[i]
                cnt[ch, d] = j + 1
        idx, tmp = tmp, idx
        k, ktmp = ktmp, k
    return idx


@nb.njit(parallel=True, cache=True)
def bin_tiles(order, rect, tiles_x, n_tiles, n_chunks):
    """Parallel, stable counting sort of (Gaussian, tile) pairs by tile, Gaussians visited in
    ``order`` (front to back), split into ``n_chunks`` contiguous chunks.

    order [V] int32; rect [N,4] tile ranges. Returns (offsets [n_tiles+1] int64,
    ids [M] int32): tile t's Gaussians are ``order[ids[offsets[t]:offsets[t+1]]]``; ids are
    *depth ranks* (positions in ``order``), increasing within a tile."""
    v = order.shape[0]
    step = (v + n_chunks - 1) // n_chunks
    counts = np.zeros((n_chunks, n_tiles), np.int64)
    for ch in nb.prange(n_chunks):
        for k in range(ch * step, min(v, (ch + 1) * step)):
            g = order[k]
            for ty in range(rect[g, 1], rect[g, 3]):
                for tx in range(rect[g, 0], rect[g, 2]):
                    counts[ch, ty * tiles_x + tx] += 1
    offsets = tile_offsets(counts)
    ids = np.empty(offsets[n_tiles], np.int32)
    for ch in nb.prange(n_chunks):
        for k in range(ch * step, min(v, (ch + 1) * step)):
            g = order[k]
            for ty in range(rect[g, 1], rect[g, 3]):
                for tx in range(rect[g, 0], rect[g, 2]):
                    t = ty * tiles_x + tx
                    ids[counts[ch, t]] = k  # depth rank (see rasterize)
                    counts[ch, t] += 1
    return offsets, ids


@nb.njit(parallel=True, cache=True)
def ellipse_geometry(packed):
    """Per packed row (see :func:`pack_visible`) the α ≥ 1/255 ellipse of its Gaussian:
    [V,4] float64 (2L, schur, hy, 1/ca), see :func:`exgs.render.raster.ellipse`."""
    v = packed.shape[0]
    out = np.empty((v, 4), np.float64)
    for g in nb.prange(v):
        two_l, schur, hy, inv_ca = ellipse(float(packed[g, 2]), float(packed[g, 3]),
                                           float(packed[g, 4]), float(packed[g, 5]))
        out[g, 0] = two_l
        out[g, 1] = schur
        out[g, 2] = hy
        out[g, 3] = inv_ca
    return out


@nb.njit(parallel=True, cache=True)
def pack_visible(order, xy, conic, opac, color, depth):
    """[V,10] float32 rows (x, y, a, b, c, opacity, r, g, b, z) for Gaussians ``order``."""
    out = np.empty((order.shape[0], 10), np.float32)
    for k in nb.prange(order.shape[0]):
        pack_row(out, k, order[k], xy, conic, opac, color, depth)
    return out


@nb.njit(cache=True)
def reduce_pairs(ids, order, pair_contrib, pair_hits, contrib, hits):
    """contrib[g] += pair_contrib[k], hits[g] += pair_hits[k] for g = order[ids[k]]."""
    for k in range(ids.shape[0]):
        g = order[ids[k]]
        contrib[g] += pair_contrib[k]
        hits[g] += pair_hits[k]


@nb.njit(cache=True)
def visible_depth_order(radii, depth):
    """Indices i with radii[i, 0] > 0, ordered by depth[i] (float32), stable: the same
    permutation as ``vis[radix_argsort_f32(depth[vis])]``, sorting (key, index) pairs so
    that no pass reads the keys indirectly; the three digit histograms come from one pass."""
    n = radii.shape[0]
    v = 0
    for i in range(n):
        if radii[i, 0] > 0:
            v += 1
    k = np.empty(v, np.uint32)
    idx = np.empty(v, np.int32)
    cnt = np.zeros((3, 2049), np.int64)
    u = depth.view(np.uint32)
    j = 0
    for i in range(n):
        if radii[i, 0] > 0:
            w = u[i]  # order-preserving float → uint map
            w = ~w if w & np.uint32(0x80000000) else w | np.uint32(0x80000000)
            k[j] = w
            idx[j] = i
            j += 1
            cnt[0, (w & 0x7FF) + 1] += 1
            cnt[1, ((w >> 11) & 0x7FF) + 1] += 1
            cnt[2, ((w >> 22) & 0x7FF) + 1] += 1
    k2 = np.empty(v, np.uint32)
    idx2 = np.empty(v, np.int32)
    for p in range(3):
        shift = 11 * p
        for b in range(2048):
            cnt[p, b + 1] += cnt[p, b]
        for i in range(v):
            w = k[i]
            d = (w >> shift) & 0x7FF
            o = cnt[p, d]
            k2[o] = w
            idx2[o] = idx[i]
            cnt[p, d] = o + 1
        k, k2 = k2, k
        idx, idx2 = idx2, idx
    return idx


def depth_order(proj: Projected) -> np.ndarray:
    """Indices of the visible Gaussians, front to back (stable for equal depths): one fused
    serial pass for up to :data:`PARALLEL_SORT_MIN` Gaussians, the parallel radix sort
    beyond (same permutation)."""
    if len(proj.depth) < PARALLEL_SORT_MIN:
        return visible_depth_order(proj.radii, np.ascontiguousarray(proj.depth, np.float32))
    vis = np.flatnonzero(proj.visible).astype(np.int32)
    return vis[radix_argsort_f32(np.ascontiguousarray(proj.depth[vis]))]


def rasterize(proj: Projected, *, background=(0.0, 0.0, 0.0), return_contrib: bool = False,
              consume: bool = False):
    """Composite a projection. Returns (rgb [H,W,3] over ``background`` clipped to [0,1],
    alpha [H,W], depth [H,W], contrib [N] | None, hits [N] | None) (float32 / int32).
    ``consume``: drop ``proj``'s [N] arrays once they are packed (the caller is done with
    them): the peak memory of a view is then that of the packed rows, not both."""
    W, H, tile = proj.width, proj.height, proj.tile
    n = len(proj.depth)
    tiles_x, tiles_y = (W + tile - 1) // tile, (H + tile - 1) // tile
    with stage("sort"):
        order = depth_order(proj)
    n_chunks = max(1, min(4 * nb.get_num_threads(), len(order) // 4096 + 1))
    with stage("bin"):
        rec, rec64 = new_records(len(order))
        boxes = pack_frame(order, proj.xy, proj.conic, proj.opacities, proj.color, proj.depth,
                           proj.rect, rec, rec64)
        if consume:
            for name in ("xy", "conic", "depth", "color", "radii", "rect", "cov2d"):
                setattr(proj, name, None)
        offsets, ids = bin_tiles_culled(rec, rec64, boxes, tiles_x, tiles_x * tiles_y,
                                        n_chunks, tile)
    rgb = np.empty((H, W, 3), np.float32)
    alpha = np.empty((H, W), np.float32)
    depth = np.empty((H, W), np.float32)
    m = len(ids) if return_contrib else 1
    pair_c = np.zeros(m, np.float64)
    pair_h = np.zeros(m, np.int32)
    bg = np.asarray(background, np.float64).reshape(3)
    with nb.parallel_chunksize(4), stage("raster"):  # dynamic schedule: tiles vary
        raster_kernel(offsets, ids, rec, rec64, W, H, tile, tiles_x, bg, rgb, alpha, depth,
                      bool(return_contrib), pair_c, pair_h)
    contrib = hits = None
    if return_contrib:
        c64 = np.zeros(n, np.float64)
        hits = np.zeros(n, np.int32)
        reduce_pairs(ids, order, pair_c, pair_h, c64, hits)
        contrib = c64.astype(np.float32)
    return rgb, alpha, depth, contrib, hits


def render_prepared(prep: PreparedScene, camera, *, sh_degree: int, background,
                    return_contrib: bool = False, eps2d: float = EPS2D):
    """Render a :class:`PreparedScene`: returns (rgb over background, alpha, depth, contrib,
    hits) following the :class:`exgs.render.RenderResult` contract."""
    with stage("project"):
        proj = project(prep, camera, sh_degree, eps2d=eps2d, tile=TILE)
    return rasterize(proj, background=background, return_contrib=return_contrib,
                     consume=True)
