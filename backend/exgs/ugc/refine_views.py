"""Helpers of :mod:`exgs.ugc.refine`: teacher and held-out views, a small torch SSIM, and the
held-out evaluation that decides between refined and training-free survivors.

Teacher views (no training cameras): orbits around the full scene's robust bounds at several
distances and elevation bands, all above the ground plane of the scene's ``up`` axis
(``"-y"`` for the usual y-down captures, ``"+z"`` for z-up ones). Held-out (decision) views:
another seed and azimuth offset than every teacher orbit, and than ``exgs eval``'s views
(seed 1234, 17°), so neither the optimiser nor its switch-off rule sees the views a
benchmark reports.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: (distance, elevation band in degrees) of the teacher orbit rings
TEACHER_RINGS = ((0.6, (5.0, 35.0)), (0.8, (15.0, 50.0)), (1.0, (0.0, 30.0)),
                 (1.25, (30.0, 70.0)))
#: seed / azimuth offset of the switch-off views
DECISION_SEED = 4242
DECISION_AZIMUTH = 41.0


def teacher_views(scene, count: int, size: int, up="-y", elevation=None) -> list:
    """``count`` orbit cameras (size×size px) split over :data:`TEACHER_RINGS`; with
    ``elevation`` = (lo, hi) degrees every ring uses that band instead (e.g. (50, 80) for
    an aerial capture seen only from above)."""
    from ..cameras import orbit_for_scene

    cams = []
    rings = len(TEACHER_RINGS)
    for r, (dist, elev) in enumerate(TEACHER_RINGS):
        if elevation is not None:
            elev = tuple(float(e) for e in elevation)
        k = count // rings + (1 if r < count % rings else 0)
        if k:
            cams += orbit_for_scene(scene, k, size, size, up=up, distance=dist, seed=100 + r,
                                    elevation_deg=elev, azimuth_offset_deg=13.0 * r)
    return cams


def decision_views(scene, count: int, size: int, up="-y", elevation=None) -> list:
    """Switch-off views: an orbit at distance 0.8 (elevation 10–40° unless given)."""
    from ..cameras import orbit_for_scene

    return orbit_for_scene(scene, count, size, size, up=up, distance=0.8, seed=DECISION_SEED,
                           azimuth_offset_deg=DECISION_AZIMUTH,
                           elevation_deg=tuple(elevation) if elevation else (10.0, 40.0))


def _window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


_WIN = _window()


def _blur(t: torch.Tensor) -> torch.Tensor:
    """Valid separable Gaussian filtering of [C,H,W] → [C,H−10,W−10] (grouped conv)."""
    c = t.shape[0]
    w = _WIN.to(t.dtype)
    f = F.conv2d(t[None], w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(f, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def ssim_target_stats(b: torch.Tensor) -> torch.Tensor:
    """The target's local moments (blurred y, y²) for :func:`ssim_torch`: [6, H−10, W−10].
    Computed once per teacher view."""
    y = b.permute(2, 0, 1)
    return _blur(torch.cat([y, y * y], 0))


def ssim_torch(a: torch.Tensor, b: torch.Tensor, b_stats: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Mean SSIM of two [H,W,3] images in [0,1] (11-tap Gaussian window σ = 1.5, valid
    region, K1 = 0.01, K2 = 0.03), differentiable w.r.t. ``a``. ``b_stats`` — the target's
    :func:`ssim_target_stats` (saves filtering them again every step)."""
    x = a.permute(2, 0, 1)
    y = b.permute(2, 0, 1)
    if b_stats is None:
        b_stats = ssim_target_stats(b)
    mx, exx, exy = _blur(torch.cat([x, x * x, x * y], 0)).unflatten(0, (3, 3)).unbind(0)
    my, eyy = b_stats.unflatten(0, (2, 3)).unbind(0)
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


def mean_psnr(scene, cameras, targets, device="cpu") -> float:
    """Mean PSNR (dB) of ``scene``'s renders against the target images [V][H,W,3]."""
    from ..render import render_many

    vals = [psnr_np(r.rgb, t) for r, t in zip(render_many(scene, cameras, device=device),
                                             targets)]
    return float(np.mean(vals)) if vals else float("nan")
