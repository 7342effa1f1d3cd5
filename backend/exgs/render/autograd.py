"""Differentiable rendering as plain torch: losses and optimisers see tensors only.

:func:`rasterize` takes *raw* (INRIA-convention) parameters as torch tensors — means [N,3],
quats [N,4] (w,x,y,z, any length), log_scales [N,3], opacity_logits [N], sh [N,K,3] — applies
the activations in torch (normalised quaternion, exp, sigmoid) and renders one camera:

* on the CPU with :class:`RasterizeCPU` (our numba forward + the backward of
  :mod:`exgs.render.backward`; gsplat 1.5.3 conventions, same image as
  :func:`exgs.render.render` before its [0,1] clip);
* on CUDA with ``gsplat.rasterization`` and gsplat's own backward (written against gsplat's
  public API; it cannot run on this machine — no GPU).

Returns ``(rgb [H,W,3], alpha [H,W])``: rgb = Σ c·α·T + (1 − alpha)·background, *not*
clipped (clip in the loss if wanted), row 0 = top. Depth is not differentiated.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import torch

from .backward import raster_backward, raster_forward, reduce_pair_grads
from .backward_project import project_bwd_kernel
from .cpu import bin_tiles, depth_order, ellipse_geometry, pack_visible
from .project import EPS2D, TILE, project

__all__ = ["rasterize", "RasterizeCPU", "activate"]


class _Arrays:
    """The attribute layout :func:`exgs.render.project.project` reads (activated)."""

    def __init__(self, means, quats, scales, opacities, sh):
        self.means, self.quats, self.scales = means, quats, scales
        self.opacities, self.sh = opacities, sh
        self.n = means.shape[0]


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype)


def _threads() -> int:
    return max(1, nb.get_num_threads())


class RasterizeCPU(torch.autograd.Function):
    """(means [N,3], unit quats [N,4], scales σ [N,3], opacities [N] in (0,1), sh [N,K,3],
    camera, sh_degree, background (3 floats)) → (rgb [H,W,3], alpha [H,W]) in the input
    dtype. Gradients flow to the five tensors."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, sh, camera, sh_degree, background):
        arr = _Arrays(_np(means, np.float32), _np(quats, np.float32), _np(scales, np.float32),
                      _np(opacities, np.float32), _np(sh, np.float32))
        proj = project(arr, camera, int(sh_degree), eps2d=EPS2D, tile=TILE)
        W, H = int(camera.width), int(camera.height)
        tiles_x, tiles_y = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
        order = depth_order(proj)
        n_chunks = max(1, min(4 * _threads(), len(order) // 4096 + 1))
        offsets, ids = bin_tiles(order, proj.rect, tiles_x, tiles_x * tiles_y, n_chunks)
        packed = pack_visible(order, proj.xy, proj.conic, proj.opacities, proj.color,
                              proj.depth)
        geo = ellipse_geometry(packed)
        bg = np.asarray(background, np.float64).reshape(3)
        with nb.parallel_chunksize(4):
            rgb, tf, cf = raster_forward(offsets, ids, packed, geo, W, H, TILE, tiles_x, bg)
        ctx.state = (arr, proj.radii[:, 0] > 0, order, offsets, ids, packed, geo, bg, tf, cf,
                     camera, int(sh_degree), W, H, tiles_x)
        ctx.dtype = means.dtype
        ctx.device = means.device
        return (torch.from_numpy(rgb).to(device=means.device, dtype=means.dtype),
                torch.from_numpy(1.0 - tf).to(device=means.device, dtype=means.dtype))

    @staticmethod
    def backward(ctx, v_rgb, v_alpha):
        (arr, visible, order, offsets, ids, packed, geo, bg, tf, cf, camera, deg, W, H,
         tiles_x) = ctx.state
        v_rgb = np.zeros((H, W, 3)) if v_rgb is None else _np(v_rgb, np.float64)
        v_alpha = np.zeros((H, W)) if v_alpha is None else _np(v_alpha, np.float64)
        with nb.parallel_chunksize(4):
            pair = raster_backward(offsets, ids, packed, geo, W, H, TILE, tiles_x, bg, tf, cf,
                                   v_rgb, v_alpha)
        n = arr.n
        g = reduce_pair_grads(offsets, ids, order, pair, n, max(1, 4 * _threads()))
        vm = np.ascontiguousarray(camera.world_to_camera, np.float64)
        campos = np.ascontiguousarray(np.linalg.inv(vm)[:3, 3], np.float64)
        v_means = np.empty((n, 3))
        v_quats = np.empty((n, 4))
        v_scales = np.empty((n, 3))
        v_sh = np.zeros(arr.sh.shape)
        kk = (deg + 1) ** 2
        if n:
            v_sh_used = np.empty((n, kk, 3))
            project_bwd_kernel(arr.means, arr.quats, arr.scales,
                               np.ascontiguousarray(arr.sh[:, :kk]), deg, vm, campos,
                               float(camera.fx), float(camera.fy), float(camera.cx),
                               float(camera.cy), W, H, EPS2D, visible,
                               np.ascontiguousarray(g[:, 0:2]), np.ascontiguousarray(g[:, 2:5]),
                               np.ascontiguousarray(g[:, 6:9]), max(1, 4 * _threads()),
                               v_means, v_quats, v_scales, v_sh_used)
            v_sh[:, :kk] = v_sh_used
        ctx.state = None

        def t(a):
            return torch.from_numpy(a).to(device=ctx.device, dtype=ctx.dtype)

        return (t(v_means), t(v_quats), t(v_scales), t(np.ascontiguousarray(g[:, 5])),
                t(v_sh), None, None, None)


def activate(means, quats, log_scales, opacity_logits, sh):
    """Raw parameters → (means, unit quats, scales σ, opacities, sh), differentiably."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return means, q, torch.exp(log_scales), torch.sigmoid(opacity_logits), sh


def rasterize(means, quats, log_scales, opacity_logits, sh, camera, *, sh_degree: int,
              background=(0.0, 0.0, 0.0), device: str = "cpu"):
    """Render one ``camera`` (:class:`exgs.cameras.Camera`) from raw parameters (module doc).
    ``device``: "cpu" (numba) or "gsplat" (CUDA). Returns (rgb [H,W,3], alpha [H,W])."""
    m, q, s, o, sh = activate(means, quats, log_scales, opacity_logits, sh)
    if device == "gsplat":
        return _rasterize_gsplat(m, q, s, o, sh, camera, sh_degree, background)
    bg = tuple(float(x) for x in np.asarray(background, np.float64).reshape(3))
    return RasterizeCPU.apply(m, q, s, o, sh, camera, int(sh_degree), bg)


def _rasterize_gsplat(means, quats, scales, opacities, sh, camera, sh_degree, background):
    """gsplat's differentiable ``rasterization`` with the CPU path's conventions (classic
    mode, eps2d 0.3, tile 16, no packing). Not runnable here (no GPU)."""
    from gsplat import rasterization

    dev = means.device
    vm = torch.tensor(np.asarray(camera.world_to_camera, np.float32), device=dev)[None]
    K = torch.tensor(np.asarray(camera.K, np.float32), device=dev)[None]
    bg = torch.tensor(np.asarray(background, np.float32).reshape(1, 3), device=dev)
    out, alphas, _ = rasterization(
        means=means, quats=quats, scales=scales, opacities=opacities,
        colors=sh[:, : (sh_degree + 1) ** 2], sh_degree=sh_degree, viewmats=vm, Ks=K,
        width=int(camera.width), height=int(camera.height), near_plane=float(camera.near),
        far_plane=float(camera.far), eps2d=EPS2D, packed=False, tile_size=TILE,
        rasterize_mode="classic", render_mode="RGB", backgrounds=bg)
    return out[0], alphas[0, ..., 0]
