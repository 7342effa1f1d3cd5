"""Global significance score of every Gaussian over a set of views.

``GS_j = (1 / Σ_v H_v·W_v) · Σ_v Σ_{pixels i of view v} α_ij · T_ij``

where ``α_ij = min(0.999, σ_j·exp(−½ dᵀΣ₂⁻¹d))`` is Gaussian j's alpha at pixel i (opacity
σ_j times its 2D falloff) and ``T_ij`` the transmittance in front of it — exactly the
``contrib`` the renderer returns (:func:`exgs.render.render` with ``return_contrib=True``),
i.e. j's share of the final pixel colours, averaged over all pixels of all views. The
indicator 1(G_j hits r_i) of the paper is the renderer's blending rule (α ≥ 1/255, pixel not
yet saturated).

Choice α·T rather than σ·T (LightGaussian's CUDA kernel uses σ·T over the hit pixels): α·T is
the Gaussian's actual weight in the image, so a large, faint Gaussian whose 1/255 footprint
spans many pixels is not over-rated for its tails. Both agree for small splats.

Optional LightGaussian volume factor: ``GS_j · γ_j`` with ``γ_j = (V_j / V_90%)^β`` where
``V_j = Π scales`` and ``V_90%`` the 90th percentile of V (β = 0.1 in LightGaussian).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def default_views(scene, count: int = 24, size: tuple[int, int] = (320, 240), *, up="-y",
                  seed: int = 0, distance: float = 0.8):
    """Scoring views when no training cameras are given: ``count`` orbit cameras around the
    scene's robust bounds (:func:`exgs.cameras.orbit_for_scene`, seed 0, no azimuth offset).
    Held-out evaluation views (``exgs eval``) use another seed and azimuth offset."""
    from ..cameras import orbit_for_scene

    w, h = size
    return orbit_for_scene(scene, count, w, h, up=up, seed=seed, distance=distance)


def significance(scene, cameras: Sequence, *, volume_beta: float | None = None,
                 device: str = "auto", progress: Callable[[int, int], None] | None = None
                 ) -> np.ndarray:
    """[N] float64 global significance of each Gaussian (see module doc).

    ``cameras`` — :class:`exgs.cameras.Camera` list (any sizes). ``volume_beta`` — apply
    LightGaussian's volume factor with this β (None = off). ``progress(done, total)`` is
    called after each view.
    """
    from ..render import render_many

    n = len(scene)
    total = np.zeros(n, np.float64)
    pixels = 0
    cams = list(cameras)
    # colour does not enter α·T: render with the DC term only (cheaper projection)
    for i, r in enumerate(render_many(scene, cams, sh_degree=0, device=device,
                                      return_contrib=True)):
        total += r.contrib
        pixels += cams[i].width * cams[i].height
        if progress is not None:
            progress(i + 1, len(cams))
    score = total / max(pixels, 1)
    if volume_beta:
        score *= volume_factor(scene, volume_beta)
    return score


def volume_factor(scene, beta: float = 0.1) -> np.ndarray:
    """[N] LightGaussian's γ = (V / V_90%)^β with V = Π σ (scene units³)."""
    log_v = scene.log_scales.astype(np.float64).sum(1)
    if len(log_v) == 0:
        return np.ones(0)
    ref = np.quantile(log_v, 0.9)
    return np.exp(beta * (log_v - ref))
