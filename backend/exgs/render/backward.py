"""Backward pass of the CPU rasterizer (numba): gradients of the image w.r.t. every Gaussian
attribute, with the forward conventions of :mod:`exgs.render.project` / :mod:`exgs.render.cpu`
(gsplat 1.5.3).

One tile kernel (:func:`raster_pass`) with the forward's traversal (tiles of 16×16 px,
Gaussians front to back inside their α ≥ 1/255 ellipse, gsplat's per-pixel rule with its
float32 ``exp``), run twice per step:

* forward (:func:`raster_forward`) — the forward, additionally keeping, per pixel, the final
  transmittance ``T_f`` and the accumulated colour ``C_f = Σ c·α·T`` (float64, no
  background, not clipped). Same image as :func:`exgs.render.cpu.raster_kernel`.
* backward (:func:`raster_backward`) — replays the same loop front to back (identical
  arithmetic, so identical blend/skip/stop decisions) and, for Gaussian j at pixel p with
  ``T_j`` the transmittance in front of it and ``S_j = C_f − Σ_{k ≤ j} c_k α_k T_k`` the
  colour behind it::

      ∂C/∂c_j = α_j T_j
      ∂L/∂α_j = T_j (v_C·c_j) − (v_C·S_j + T_f (v_C·bg − v_A)) / (1 − α_j)

  (``v_C = ∂L/∂rgb``, ``v_A = ∂L/∂alpha``; rgb = C_f + T_f·bg, alpha = 1 − T_f). Through
  ``α = min(0.999, o·exp(−σ))`` (no gradient where the clamp is active) this gives ∂L/∂o,
  ∂L/∂σ → ∂L/∂conic and ∂L/∂mean2d. Each (tile, Gaussian) work item accumulates its own
  9 numbers (mean2d 2, conic 3, opacity 1, colour 3): no races; :func:`reduce_pair_grads`
  sums them per Gaussian.

:func:`exgs.render.backward_project.project_bwd_kernel` (``prange`` over Gaussians) then
chains mean2d/conic/colour gradients through the projection: conic = (Σ₂ + 0.3 I)⁻¹,
Σ₂ = J W Σ Wᵀ Jᵀ with gsplat's clamped perspective Jacobian J(t), t = W μ + w,
Σ = R S Sᵀ Rᵀ (unit quaternion, σ scales), colour = max(SH(dir) + 0.5, 0) with
dir = normalize(μ − camera centre). Outputs are gradients w.r.t. means, *unit* quaternions,
scales σ (not log), activated opacities and SH coefficients; :mod:`exgs.render.autograd`
applies the activations in torch.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .cpu import ALPHA_MAX, T_MIN
from .project import ALPHA_THRESHOLD

_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: columns of a pair gradient row
PAIR_COLS = 9  # v_x, v_y, v_conic_a, v_conic_b, v_conic_c, v_opacity, v_r, v_g, v_b


@nb.njit(cache=True, inline="always")
def _row_span(geo, packed, g, ty0, th):
    hy = geo[g, 2]
    my = float(packed[g, 1])
    r0 = int(math.ceil(min(max(my - hy - 0.5 - ty0, -1.0), th + 1.0)))
    r1 = int(math.floor(min(max(my + hy - 0.5 - ty0, -2.0), th + 1.0)))
    return max(0, r0), min(th - 1, r1)


@nb.njit(cache=True, inline="always")
def _col_span(geo, packed, g, dy, tx0, tw):
    """Columns [c0, c1] of the row at offset dy = my − row centre inside the α ≥ 1/255
    ellipse (c1 < c0: none)."""
    rem = geo[g, 0] - geo[g, 1] * dy * dy
    if rem < 0.0:
        return 0, -1
    hx = math.sqrt(rem * geo[g, 3])
    xc = float(packed[g, 0]) + float(packed[g, 3]) * geo[g, 3] * dy
    c0 = max(0, int(math.ceil(min(max(xc - hx - 0.5 - tx0, -1.0), tw + 1.0))))
    c1 = min(tw - 1, int(math.floor(min(max(xc + hx - 0.5 - tx0, -2.0), tw + 1.0))))
    return c0, c1


@nb.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def raster_pass(offsets, ids, packed, geo, width, height, tile, tiles_x, bg, backward,
                tf, cf, v_rgb, v_alpha, out_rgb, pair_grad):
    """One traversal of every tile, front to back (see module doc), forward or backward.

    Forward (``backward`` False): writes ``tf`` [H,W] final T, ``cf`` [H,W,3] C_f and
    ``out_rgb`` [H,W,3] = C_f + T_f·bg (not clipped), all float64. Backward: reads ``tf``,
    ``cf`` and the upstream ``v_rgb`` [H,W,3], ``v_alpha`` [H,W]; writes ``pair_grad``
    [M, 9] per work-list entry (v mean2d x/y, v conic a/b/c, v opacity, v colour r/g/b).
    The per-pixel arithmetic is the same in both, so the blend/skip/stop decisions are
    identical. Inputs as :func:`exgs.render.cpu.raster_kernel`."""
    n_tiles = offsets.shape[0] - 1
    npx = tile * tile
    one = np.int64(1)
    for t in nb.prange(n_tiles):
        tx0 = (t % tiles_x) * tile
        ty0 = (t // tiles_x) * tile
        tw = min(tile, width - tx0)
        th = min(tile, height - ty0)
        T = np.ones(npx, np.float64)
        C = np.zeros((npx, 3), np.float64)
        vC = np.zeros((npx, 3), np.float64)
        Cf = np.zeros((npx, 3), np.float64)
        kA = np.zeros(npx, np.float64)  # T_f·(v_C·bg − v_A)
        live = np.zeros(tile, np.int64)
        for r in range(th):
            live[r] = (one << tw) - 1
            if backward:
                for c in range(tw):
                    p = r * tile + c
                    y, x = ty0 + r, tx0 + c
                    s = 0.0
                    for ch in range(3):
                        vC[p, ch] = v_rgb[y, x, ch]
                        Cf[p, ch] = cf[y, x, ch]
                        s += v_rgb[y, x, ch] * bg[ch]
                    kA[p] = tf[y, x] * (s - v_alpha[y, x])
        n_live = tw * th
        for k in range(offsets[t], offsets[t + 1]):
            g = ids[k]
            if backward:
                for j in range(PAIR_COLS):
                    pair_grad[k, j] = 0.0
            if not geo[g, 2] >= 0.0 or n_live <= 0:
                continue
            mx = float(packed[g, 0])
            my = float(packed[g, 1])
            ca = float(packed[g, 2])
            cbb = float(packed[g, 3])
            cc = float(packed[g, 4])
            op = float(packed[g, 5])
            c_r = float(packed[g, 6])
            c_g = float(packed[g, 7])
            c_b = float(packed[g, 8])
            g_x = g_y = g_a = g_b = g_c = g_o = g_r = g_g = g_bl = 0.0
            r0, r1 = _row_span(geo, packed, g, ty0, th)
            for r in range(r0, r1 + 1):
                m = live[r]
                if m == 0:
                    continue
                dy = my - (ty0 + r + 0.5)
                c0, c1 = _col_span(geo, packed, g, dy, tx0, tw)
                if c1 < c0:
                    continue
                m &= ((one << (c1 + 1)) - 1) & ~((one << c0) - 1)
                if m == 0:
                    continue
                for c in range(c0, c1 + 1):
                    if not (m >> c) & 1:
                        continue
                    p = r * tile + c
                    dx = mx - (tx0 + c + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cbb * dx * dy
                    if sigma < 0.0:
                        continue
                    gauss = float(math.exp(np.float32(-sigma)))
                    a_raw = op * gauss
                    alpha = min(ALPHA_MAX, a_raw)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    tp = T[p]
                    nt = tp * (1.0 - alpha)
                    if nt <= T_MIN:
                        live[r] &= ~(one << c)
                        n_live -= 1
                        continue
                    vis = alpha * tp
                    C[p, 0] += c_r * vis
                    C[p, 1] += c_g * vis
                    C[p, 2] += c_b * vis
                    T[p] = nt
                    if not backward:
                        continue
                    v0, v1, v2 = vC[p, 0], vC[p, 1], vC[p, 2]
                    g_r += v0 * vis
                    g_g += v1 * vis
                    g_bl += v2 * vis
                    if a_raw >= ALPHA_MAX:
                        continue  # clamped: no gradient through α
                    behind = (v0 * (Cf[p, 0] - C[p, 0]) + v1 * (Cf[p, 1] - C[p, 1])
                              + v2 * (Cf[p, 2] - C[p, 2]))
                    dl_da = tp * (v0 * c_r + v1 * c_g + v2 * c_b) \
                        - (behind + kA[p]) / (1.0 - alpha)
                    g_o += dl_da * gauss
                    v_sig = -dl_da * alpha
                    g_a += v_sig * 0.5 * dx * dx
                    g_b += v_sig * dx * dy
                    g_c += v_sig * 0.5 * dy * dy
                    g_x += v_sig * (ca * dx + cbb * dy)
                    g_y += v_sig * (cc * dy + cbb * dx)
            if backward:
                pair_grad[k, 0] = g_x
                pair_grad[k, 1] = g_y
                pair_grad[k, 2] = g_a
                pair_grad[k, 3] = g_b
                pair_grad[k, 4] = g_c
                pair_grad[k, 5] = g_o
                pair_grad[k, 6] = g_r
                pair_grad[k, 7] = g_g
                pair_grad[k, 8] = g_bl
        if backward:
            continue
        for r in range(th):
            for c in range(tw):
                p = r * tile + c
                y, x = ty0 + r, tx0 + c
                tf[y, x] = T[p]
                for ch in range(3):
                    cf[y, x, ch] = C[p, ch]
                    out_rgb[y, x, ch] = C[p, ch] + T[p] * bg[ch]


def raster_forward(offsets, ids, packed, geo, width, height, tile, tiles_x, bg):
    """Forward for training → (rgb [H,W,3] = C_f + T_f·bg not clipped, T_f [H,W], C_f
    [H,W,3]), float64 (:func:`raster_pass`)."""
    rgb = np.empty((height, width, 3), np.float64)
    tf = np.empty((height, width), np.float64)
    cf = np.empty((height, width, 3), np.float64)
    dummy2 = np.zeros((1, 1), np.float64)
    dummy3 = np.zeros((1, 1, 3), np.float64)
    raster_pass(offsets, ids, packed, geo, width, height, tile, tiles_x, bg, False, tf, cf,
                dummy3, dummy2, rgb, np.zeros((1, PAIR_COLS), np.float64))
    return rgb, tf, cf


def raster_backward(offsets, ids, packed, geo, width, height, tile, tiles_x, bg, tf, cf,
                    v_rgb, v_alpha):
    """Backward of :func:`raster_forward` → pair gradients [M, 9] (:func:`raster_pass`)."""
    pair = np.empty((ids.shape[0], PAIR_COLS), np.float64)
    raster_pass(offsets, ids, packed, geo, width, height, tile, tiles_x, bg, True, tf, cf,
                v_rgb, v_alpha, np.zeros((1, 1, 3), np.float64), pair)
    return pair


@nb.njit(parallel=True, cache=True)
def reduce_pair_grads(offsets, ids, order, pair_grad, n, n_chunks):
    """Per-Gaussian sums [n, 9] of ``pair_grad`` rows (row k belongs to Gaussian
    ``order[ids[k]]``). Parallel over chunks of the work list with per-chunk accumulators
    only for the Gaussians they touch would cost memory; instead chunks own disjoint ranges
    of *depth ranks* (a Gaussian's entries all share its rank), found by a counting pass."""
    v = order.shape[0]
    out = np.zeros((n, PAIR_COLS), np.float64)
    # entries grouped by depth rank: counting sort of k by ids[k]
    m = ids.shape[0]
    start = np.zeros(v + 1, np.int64)
    for k in range(m):
        start[ids[k] + 1] += 1
    for r in range(v):
        start[r + 1] += start[r]
    pos = start[:-1].copy()
    by_rank = np.empty(m, np.int64)
    for k in range(m):
        r = ids[k]
        by_rank[pos[r]] = k
        pos[r] += 1
    step = (v + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        for r in range(ch * step, min(v, (ch + 1) * step)):
            g = order[r]
            for q in range(start[r], start[r + 1]):
                k = by_rank[q]
                for j in range(PAIR_COLS):
                    out[g, j] += pair_grad[k, j]
    return out
