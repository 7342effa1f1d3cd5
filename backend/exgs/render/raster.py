"""Forward compositing of the CPU rasterizer: per-frame packing, ellipse-culled tile binning
and the tile kernel (see :mod:`exgs.render.cpu` for the pipeline and gsplat's rules).

Speed notes (a 500k real scene at 640×360 has ~1M (tile, Gaussian) box pairs, ~3.5M
blended pixels):

* :func:`pack_frame` gathers each visible Gaussian's values once, in depth order, into one
  64-byte record (one cache line: :data:`REC`) — colour, conic, opacity, depth and its
  α ≥ 1/255 ellipse — so binning reads memory forwards and compositing reads one line per
  (tile, Gaussian) pair (the pair loop is bound by these reads, not by the arithmetic).
* :func:`bin_tiles_culled` drops the (tile, Gaussian) pairs whose box touches the tile but
  whose ellipse covers none of the tile's pixel centres (≈ 40 % of the pairs of a real
  scene: rotated, elongated splats). The test is conservative (the ellipse's exact x-extent
  over each tile row's band of pixel centres, widened by a small slack), and a dropped pair
  would not have visited a pixel in :func:`raster_kernel`, so images, depths and
  contributions are bit-identical to binning every box pair.
* :func:`raster_kernel` copies each tile's next rows into a small local batch before
  compositing them (independent loads that the CPU overlaps, instead of one cache miss per
  Gaussian in the middle of the arithmetic).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .project import ALPHA_THRESHOLD

#: Transmittance below which a pixel is finished (gsplat: ``next_T <= 1e-4``).
T_MIN = 1e-4
#: gsplat's upper clamp of a Gaussian's alpha.
ALPHA_MAX = 0.999
#: rows a tile copies at a time in :func:`raster_kernel`
BATCH = 64
#: fast-math without nnan/ninf: the kernel writes +inf depths and must keep NaN/inf checks.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(cache=True, inline="always")
def ellipse(ca, cbb, cc, op):
    """(2L, schur, hy, 1/ca) of the α ≥ 1/255 ellipse ½ dᵀQd ≤ L of a conic (a, b, c) and
    opacity (float64 scalars): L = ln(255·opacity)·1.0001 + 1e-6 (a margin so that no pixel
    the exact per-pixel test keeps is dropped), schur = c − b²/a, hy = half height in px;
    hy = −1 marks a degenerate conic (never drawn)."""
    L = (math.log(op) - math.log(ALPHA_THRESHOLD)) * 1.0001 + 1e-6
    if not ca > 0.0:
        return 2.0 * L, 0.0, -1.0, 0.0
    schur = cc - cbb * cbb / ca
    if not schur > 0.0:
        return 2.0 * L, 0.0, -1.0, 0.0
    return 2.0 * L, schur, math.sqrt(2.0 * L / schur), 1.0 / ca


#: columns of a frame record (:func:`pack_frame`): float32 0-9 = x, y, conic a, b, c, opacity,
#: r, g, b, z; 10-12 = 2L, schur, hy of :func:`ellipse` (rounding to float32 only narrows the
#: 1e-4 margin of L by ~1e-7); float64 slot 7 (bytes 56-63) = 1/ca (kept exact: it shifts
#: the span centre of long needles, whose margin is thin there)
REC = 16


def new_records(v: int) -> tuple[np.ndarray, np.ndarray]:
    """(rec [V,16] float32, the same memory as [V,8] float64), 64-byte aligned: one cache
    line per visible Gaussian."""
    buf = np.empty(v * REC + REC, np.float32)
    off = (-buf.ctypes.data % 64) // 4
    rec = buf[off:off + v * REC].reshape(v, REC)
    return rec, rec.view(np.float64)


@nb.njit(cache=True, inline="always")
def pack_row(dst, k, g, xy, conic, opac, color, depth):
    """dst[k, :10] = (x, y, conic a, b, c, opacity, r, g, b, z) of projected Gaussian ``g``."""
    dst[k, 0] = xy[g, 0]
    dst[k, 1] = xy[g, 1]
    dst[k, 2] = conic[g, 0]
    dst[k, 3] = conic[g, 1]
    dst[k, 4] = conic[g, 2]
    dst[k, 5] = opac[g]
    dst[k, 6] = color[g, 0]
    dst[k, 7] = color[g, 1]
    dst[k, 8] = color[g, 2]
    dst[k, 9] = depth[g]


@nb.njit(parallel=True, cache=True)
def pack_frame(order, xy, conic, opac, color, depth, rect, rec, rec64):
    """Fill the records (:func:`new_records`, :data:`REC`) of the visible Gaussians ``order``
    (front to back); returns their boxes [V,4] int32 tile ranges (x0, y0, x1, y1)."""
    v = order.shape[0]
    boxes = np.empty((v, 4), np.int32)
    for k in nb.prange(v):
        g = order[k]
        pack_row(rec, k, g, xy, conic, opac, color, depth)
        for q in range(4):
            boxes[k, q] = rect[g, q]
        two_l, schur, hy, inv_ca = ellipse(float(rec[k, 2]), float(rec[k, 3]),
                                           float(rec[k, 4]), float(rec[k, 5]))
        rec[k, 10] = two_l
        rec[k, 11] = schur
        rec[k, 12] = hy
        rec[k, 13] = 0.0
        rec64[k, 7] = inv_ca
    return boxes


@nb.njit(cache=True, inline="always")
def _side(mx, cbb, two_l, schur, inv_ca, dy, sign):
    """x of the ellipse's left (sign −1) or right (+1) edge at row offset dy (rem clamped
    at 0: conservative near the top and bottom)."""
    rem = max(two_l - schur * dy * dy, 0.0)
    return mx + cbb * inv_ca * dy + sign * math.sqrt(rem * inv_ca)


@nb.njit(cache=True, inline="always")
def band_tiles(rec, rec64, boxes, k, ty, tile):
    """Tile columns [tx0, tx1] (tx1 < tx0: none) of tile row ``ty`` that Gaussian row ``k``'s
    ellipse reaches with a pixel centre (conservative; within its box)."""
    hy = float(rec[k, 12])
    if not hy >= 0.0:
        return 0, -1
    two_l, schur, inv_ca = float(rec[k, 10]), float(rec[k, 11]), rec64[k, 7]
    mx, my = float(rec[k, 0]), float(rec[k, 1])
    cbb, cc = float(rec[k, 3]), float(rec[k, 4])
    # offsets dy = my − (row centre) of the band's pixel-centre rows, within |dy| ≤ hy
    slack = 1e-3 + 1e-6 * hy
    a = max(my - (ty * tile + tile - 0.5), -hy) - slack
    b = min(my - (ty * tile + 0.5), hy) + slack
    if a > b:
        return 0, -1
    left = min(_side(mx, cbb, two_l, schur, inv_ca, a, -1.0),
               _side(mx, cbb, two_l, schur, inv_ca, b, -1.0))
    right = max(_side(mx, cbb, two_l, schur, inv_ca, a, 1.0),
                _side(mx, cbb, two_l, schur, inv_ca, b, 1.0))
    # the extreme left / right points: dx = ±dxmax at dy = ∓(b/c)·dxmax
    dxmax = math.sqrt(two_l * cc * inv_ca / schur)
    dy_ext = cbb / cc * dxmax
    if a <= -dy_ext <= b:
        left = min(left, mx - dxmax)
    if a <= dy_ext <= b:
        right = max(right, mx + dxmax)
    x0, x1 = boxes[k, 0], boxes[k, 2]
    if not left <= right:  # NaN: keep the whole box row (the kernel decides)
        return x0, x1 - 1
    slack = 1e-2 + 1e-6 * dxmax
    # clamped in float first: huge splats must not overflow the int conversion
    lo = math.ceil(min(max(left - slack - 0.5, x0 * tile - 1.0), x1 * tile + 1.0))
    hi = math.floor(min(max(right + slack - 0.5, x0 * tile - 1.0), x1 * tile + 1.0))
    return max(x0, int(lo) // tile), min(x1 - 1, int(hi) // tile)


@nb.njit(cache=True)
def tile_offsets(counts):
    """counts [chunks, tiles] (pairs per depth-ordered chunk and tile) → offsets [tiles+1]
    of each tile's slice of the work list; ``counts`` becomes each (chunk, tile)'s write
    position: tile-major, then chunk (= depth) order, so the scatter is stable."""
    n_chunks, n_tiles = counts.shape
    offsets = np.zeros(n_tiles + 1, np.int64)
    run = 0
    for t in range(n_tiles):
        offsets[t] = run
        for ch in range(n_chunks):
            c = counts[ch, t]
            counts[ch, t] = run
            run += c
    offsets[n_tiles] = run
    return offsets


@nb.njit(parallel=True, cache=True)
def bin_tiles_culled(rec, rec64, boxes, tiles_x, n_tiles, n_chunks, tile):
    """Like :func:`exgs.render.cpu.bin_tiles` for rows already in depth order, keeping only
    the tiles :func:`band_tiles` finds. Returns (offsets [n_tiles+1] int64, ids [M] int32):
    tile t's rows are ``ids[offsets[t]:offsets[t+1]]`` (depth ranks, increasing). The
    counting pass keeps the column ranges of each Gaussian's first two tile rows (most
    Gaussians have no more) for the scatter pass."""
    v = rec.shape[0]
    step = (v + n_chunks - 1) // n_chunks
    counts = np.zeros((n_chunks, n_tiles), np.int64)
    spans = np.empty((v, 4), np.int32)
    for ch in nb.prange(n_chunks):
        for k in range(ch * step, min(v, (ch + 1) * step)):
            y0 = boxes[k, 1]
            for ty in range(y0, boxes[k, 3]):
                t0, t1 = band_tiles(rec, rec64, boxes, k, ty, tile)
                if ty - y0 < 2:
                    spans[k, 2 * (ty - y0)] = t0
                    spans[k, 2 * (ty - y0) + 1] = t1
                for tx in range(t0, t1 + 1):
                    counts[ch, ty * tiles_x + tx] += 1
    offsets = tile_offsets(counts)
    ids = np.empty(offsets[n_tiles], np.int32)
    for ch in nb.prange(n_chunks):
        for k in range(ch * step, min(v, (ch + 1) * step)):
            y0 = boxes[k, 1]
            for ty in range(y0, boxes[k, 3]):
                if ty - y0 < 2:
                    t0, t1 = spans[k, 2 * (ty - y0)], spans[k, 2 * (ty - y0) + 1]
                else:
                    t0, t1 = band_tiles(rec, rec64, boxes, k, ty, tile)
                for tx in range(t0, t1 + 1):
                    t = ty * tiles_x + tx
                    ids[counts[ch, t]] = k
                    counts[ch, t] += 1
    return offsets, ids


@nb.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def raster_kernel(offsets, ids, rec, rec64, width, height, tile, tiles_x,
                  bg, out_rgb, out_a, out_d, want_contrib, pair_contrib, pair_hits):
    """Composite every tile front to back (see :mod:`exgs.render.cpu`). Writes out_rgb
    [H,W,3] = clip(Σ c·α·T + T·bg, 0, 1), out_a [H,W] = 1 − T, out_d [H,W] = Σ z·α·T /
    (1 − T) (+inf where 1 − T < 1e-6). ``rec`` / ``rec64``: :func:`pack_frame`; ``ids``
    index their rows. Finished pixels are tracked as one live-bit mask per tile row
    (tile ≤ 63), so rows whose pixels are all finished are skipped before any arithmetic and
    finished pixels cost one bit test. When ``want_contrib``: pair_contrib [M] Σ α·T and
    pair_hits [M] per work-list entry."""
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
        pb = np.empty((BATCH, 13), np.float32)  # this tile's next records
        gb = np.empty(BATCH, np.float64)
        live = np.zeros(tile, np.int64)  # bit c of live[r]: pixel (r, c) not finished
        for r in range(th):
            live[r] = (one << tw) - 1
        n_live = tw * th
        k0 = offsets[t]
        k_end = offsets[t + 1]
        while k0 < k_end and n_live > 0:
            nbt = min(BATCH, k_end - k0)
            for j in range(nbt):
                g = ids[k0 + j]
                for q in range(13):
                    pb[j, q] = rec[g, q]
                gb[j] = rec64[g, 7]
            for j in range(nbt):
                # α ≥ 1/255 ⇔ σ ≤ L = ln(255·op): the ellipse ½ dᵀQd ≤ L, solved per row
                # with the Schur complement ½ ca (dx + cbb/ca·dy)² + ½ schur·dy² ≤ L
                hy = float(pb[j, 12])
                if not hy >= 0.0:  # degenerate conic (also NaN)
                    continue
                two_l = float(pb[j, 10])
                schur = float(pb[j, 11])
                inv_ca = gb[j]
                mx = float(pb[j, 0])
                my = float(pb[j, 1])
                ca = float(pb[j, 2])
                cbb = float(pb[j, 3])
                cc = float(pb[j, 4])
                op = float(pb[j, 5])
                # rows whose centre v = j + 0.5 satisfies |v − my| ≤ hy
                # (clamped in float first: huge splats must not overflow the int conversion)
                r0 = int(math.ceil(min(max(my - hy - 0.5 - ty0, -1.0), th + 1.0)))
                r1 = int(math.floor(min(max(my + hy - 0.5 - ty0, -2.0), th + 1.0)))
                r0 = max(0, r0)
                r1 = min(th - 1, r1)
                cr_r = float(pb[j, 6])
                cg_r = float(pb[j, 7])
                cb_r = float(pb[j, 8])
                z = float(pb[j, 9])
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
                    c1 = min(tw - 1,
                             int(math.floor(min(max(xc + hx - 0.5 - tx0, -2.0), tw + 1.0))))
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
                    pair_contrib[k0 + j] = acc_c
                    pair_hits[k0 + j] = acc_h
                if n_live <= 0:
                    break
            k0 += nbt
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
