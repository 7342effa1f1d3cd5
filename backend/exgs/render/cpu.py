"""Our CPU Gaussian rasterizer (numba): same image as gsplat's CUDA ``rasterization``.

Pipeline per view (no Python loop per Gaussian anywhere):

1. :func:`exgs.render.project.project` — parallel EWA projection, culling, tile ranges, SH.
2. Binning — visible Gaussians are ordered by depth once (``np.argsort``, stable), then a
   counting sort by tile (:func:`bin_tiles`) scatters them into one flat work list; because
   the scatter walks the Gaussians in depth order, every tile's slice is already depth-sorted
   (the same order gsplat's 64-bit ``tile | depth`` key sort gives).
3. :func:`raster_kernel` — ``prange`` over tiles (16×16 px). For each Gaussian of the tile,
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

import math

import numba as nb
import numpy as np

from ..profiling import stage
from ..scene import sigmoid
from .project import ALPHA_THRESHOLD, EPS2D, TILE, Projected, project

#: Transmittance below which a pixel is finished (gsplat: ``next_T <= 1e-4``).
T_MIN = 1e-4
#: gsplat's upper clamp of a Gaussian's alpha.
ALPHA_MAX = 0.999
#: Gaussians activated at a time by :class:`PreparedScene` (bounds its temporaries)
PREPARE_ROWS = 1 << 20


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
    offsets = np.zeros(n_tiles + 1, np.int64)
    run = 0
    for t in range(n_tiles):  # tile-major, then chunk (= depth) order: stable
        offsets[t] = run
        for ch in range(n_chunks):
            c = counts[ch, t]
            counts[ch, t] = run
            run += c
    offsets[n_tiles] = run
    ids = np.empty(run, np.int32)
    for ch in nb.prange(n_chunks):
        for k in range(ch * step, min(v, (ch + 1) * step)):
            g = order[k]
            for ty in range(rect[g, 1], rect[g, 3]):
                for tx in range(rect[g, 0], rect[g, 2]):
                    t = ty * tiles_x + tx
                    ids[counts[ch, t]] = k  # depth rank (see rasterize)
                    counts[ch, t] += 1
    return offsets, ids


#: fast-math without nnan/ninf: the kernel writes +inf depths and must keep NaN/inf checks.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def raster_kernel(offsets, ids, packed, geo, width, height, tile, tiles_x,
                  bg, out_rgb, out_a, out_d, want_contrib, pair_contrib, pair_hits):
    """Composite every tile front to back (see module doc). Writes out_rgb [H,W,3]
    = clip(Σ c·α·T + T·bg, 0, 1), out_a [H,W] = 1 − T, out_d [H,W] = Σ z·α·T / (1 − T)
    (+inf where 1 − T < 1e-6). ``packed`` [V,10] rows (x, y, conic a, b, c, opacity, r, g,
    b, z) of the visible Gaussians in depth order; ``ids`` index its rows; ``geo`` [V,4]
    float64 their α ≥ 1/255 ellipses (:func:`ellipse_geometry`). Finished pixels are
    tracked as one live-bit mask per tile row (tile ≤ 63), so rows whose pixels are all
    finished are skipped before any arithmetic and finished pixels cost one bit test.
    When ``want_contrib``: pair_contrib [M] Σ α·T and pair_hits [M] per work-list entry."""
    n_tiles = offsets.shape[0] - 1
    npx = tile * tile
    one = np.int64(1)
    for t in nb.prange(n_tiles):
        tx0 = (t % tiles_x) * tile
        ty0 = (t // tiles_x) * tile
        tw = min(tile, width - tx0)
        th = min(tile, height - ty0)
        T = np.ones(npx, np.float64)
        cr = np.zeros(npx, np.float64)
        cg = np.zeros(npx, np.float64)
        cb = np.zeros(npx, np.float64)
        cd = np.zeros(npx, np.float64)
        live = np.zeros(tile, np.int64)  # bit c of live[r]: pixel (r, c) not finished
        for r in range(th):
            live[r] = (one << tw) - 1
        n_live = tw * th
        for k in range(offsets[t], offsets[t + 1]):
            g = ids[k]
            # α ≥ 1/255 ⇔ σ ≤ L = ln(255·op): the ellipse ½ dᵀQd ≤ L, solved per row with
            # the Schur complement ½ ca (dx + cbb/ca·dy)² + ½ schur·dy² ≤ L (see geo).
            hy = geo[g, 2]
            if not hy >= 0.0:  # degenerate conic (also NaN)
                continue
            my = float(packed[g, 1])
            # rows whose centre v = j + 0.5 satisfies |v − my| ≤ hy
            # (clamped in float first: huge splats must not overflow the int conversion)
            r0 = int(math.ceil(min(max(my - hy - 0.5 - ty0, -1.0), th + 1.0)))
            r1 = int(math.floor(min(max(my + hy - 0.5 - ty0, -2.0), th + 1.0)))
            r0 = max(0, r0)
            r1 = min(th - 1, r1)
            if r1 < r0:  # no pixel row of this tile: nothing else to load (contrib stays 0)
                continue
            two_l = geo[g, 0]
            schur = geo[g, 1]
            inv_ca = geo[g, 3]
            mx = float(packed[g, 0])
            ca = float(packed[g, 2])
            cbb = float(packed[g, 3])
            cc = float(packed[g, 4])
            op = float(packed[g, 5])
            cr_r = float(packed[g, 6])
            cg_r = float(packed[g, 7])
            cb_r = float(packed[g, 8])
            z = float(packed[g, 9])
            acc_c = 0.0
            acc_h = 0
            for r in range(r0, r1 + 1):
                m = live[r]
                if m == 0:
                    continue
                dy = my - (ty0 + r + 0.5)
                rem = two_l - schur * dy * dy
                if rem < 0.0:
                    continue
                hx = math.sqrt(rem * inv_ca)
                xc = mx + cbb * inv_ca * dy
                c0 = max(0, int(math.ceil(min(max(xc - hx - 0.5 - tx0, -1.0), tw + 1.0))))
                c1 = min(tw - 1, int(math.floor(min(max(xc + hx - 0.5 - tx0, -2.0), tw + 1.0))))
                if c1 < c0:
                    continue
                m &= ((one << (c1 + 1)) - 1) & ~((one << c0) - 1)
                if m == 0:
                    continue
                base = r * tile
                for c in range(c0, c1 + 1):
                    if not (m >> c) & 1:
                        continue
                    p = base + c
                    dx = mx - (tx0 + c + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cbb * dx * dy
                    if sigma < 0.0:
                        continue
                    alpha = min(ALPHA_MAX, op * float(math.exp(np.float32(-sigma))))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    tp = T[p]
                    nt = tp * (1.0 - alpha)
                    if nt <= T_MIN:
                        live[r] &= ~(one << c)
                        n_live -= 1
                        continue
                    vis = alpha * tp
                    cr[p] += cr_r * vis
                    cg[p] += cg_r * vis
                    cb[p] += cb_r * vis
                    cd[p] += z * vis
                    T[p] = nt
                    acc_c += vis
                    acc_h += 1
            if want_contrib:
                pair_contrib[k] = acc_c
                pair_hits[k] = acc_h
            if n_live <= 0:
                break
        for r in range(th):
            for c in range(tw):
                p = r * tile + c
                tp = T[p]
                a = 1.0 - tp
                out_rgb[ty0 + r, tx0 + c, 0] = min(1.0, max(0.0, cr[p] + tp * bg[0]))
                out_rgb[ty0 + r, tx0 + c, 1] = min(1.0, max(0.0, cg[p] + tp * bg[1]))
                out_rgb[ty0 + r, tx0 + c, 2] = min(1.0, max(0.0, cb[p] + tp * bg[2]))
                out_a[ty0 + r, tx0 + c] = a
                out_d[ty0 + r, tx0 + c] = cd[p] / a if a >= 1e-6 else np.inf


@nb.njit(parallel=True, cache=True)
def ellipse_geometry(packed):
    """Per packed row (see :func:`pack_visible`) the α ≥ 1/255 ellipse of its Gaussian:
    [V,4] float64 (2L, schur, hy, 1/ca) with L = ln(255·opacity)·1.0001 + 1e-6 (a margin so
    that no pixel the exact per-pixel test keeps is dropped), schur = c − b²/a, hy = the
    ellipse's half height in pixels; hy = −1 marks a degenerate conic (never drawn)."""
    log_thr = math.log(ALPHA_THRESHOLD)
    v = packed.shape[0]
    out = np.empty((v, 4), np.float64)
    for g in nb.prange(v):
        ca = float(packed[g, 2])
        cbb = float(packed[g, 3])
        cc = float(packed[g, 4])
        L = (math.log(float(packed[g, 5])) - log_thr) * 1.0001 + 1e-6
        out[g, 0] = 2.0 * L
        out[g, 1] = 0.0
        out[g, 2] = -1.0
        out[g, 3] = 0.0
        if not ca > 0.0:
            continue
        schur = cc - cbb * cbb / ca
        if not schur > 0.0:
            continue
        out[g, 1] = schur
        out[g, 2] = math.sqrt(2.0 * L / schur)
        out[g, 3] = 1.0 / ca
    return out


@nb.njit(parallel=True, cache=True)
def pack_visible(order, xy, conic, opac, color, depth):
    """[V,10] float32 rows (x, y, a, b, c, opacity, r, g, b, z) for Gaussians ``order``."""
    out = np.empty((order.shape[0], 10), np.float32)
    for k in nb.prange(order.shape[0]):
        g = order[k]
        out[k, 0] = xy[g, 0]
        out[k, 1] = xy[g, 1]
        out[k, 2] = conic[g, 0]
        out[k, 3] = conic[g, 1]
        out[k, 4] = conic[g, 2]
        out[k, 5] = opac[g]
        out[k, 6] = color[g, 0]
        out[k, 7] = color[g, 1]
        out[k, 8] = color[g, 2]
        out[k, 9] = depth[g]
    return out


@nb.njit(cache=True)
def reduce_pairs(ids, order, pair_contrib, pair_hits, contrib, hits):
    """contrib[g] += pair_contrib[k], hits[g] += pair_hits[k] for g = order[ids[k]]."""
    for k in range(ids.shape[0]):
        g = order[ids[k]]
        contrib[g] += pair_contrib[k]
        hits[g] += pair_hits[k]


def depth_order(proj: Projected) -> np.ndarray:
    """Indices of the visible Gaussians, front to back (stable for equal depths)."""
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
        offsets, ids = bin_tiles(order, proj.rect, tiles_x, tiles_x * tiles_y, n_chunks)
        packed = pack_visible(order, proj.xy, proj.conic, proj.opacities, proj.color,
                              proj.depth)
        if consume:
            for name in ("xy", "conic", "depth", "color", "radii", "rect", "cov2d"):
                setattr(proj, name, None)
        geo = ellipse_geometry(packed)
    rgb = np.empty((H, W, 3), np.float32)
    alpha = np.empty((H, W), np.float32)
    depth = np.empty((H, W), np.float32)
    m = len(ids) if return_contrib else 1
    pair_c = np.zeros(m, np.float64)
    pair_h = np.zeros(m, np.int32)
    bg = np.asarray(background, np.float64).reshape(3)
    with nb.parallel_chunksize(4), stage("raster"):  # dynamic schedule: tiles vary
        raster_kernel(offsets, ids, packed, geo, W, H, tile, tiles_x, bg, rgb, alpha, depth,
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
