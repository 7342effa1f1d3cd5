"""Held-out evaluation of a compressed scene against its reference (``exgs eval``).

Views: ``count`` orbit cameras around the *reference* scene's robust bounds with seed 1234 and
a 17° azimuth offset — never the scoring views UGC uses by default (seed 0, no offset) — or
the cameras the caller gives (e.g. a test split's cameras.json). Both scenes are rendered
with the same cameras and SH degree ≤ each scene's own; metrics are on display sRGB over a
black background (:mod:`exgs.metrics`), averaged over the views.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

#: seed / azimuth offset of held-out views (scoring views use seed 0, offset 0)
HELD_OUT_SEED = 1234
HELD_OUT_AZIMUTH = 17.0


def held_out_views(scene, count: int = 16, size: tuple[int, int] = (512, 512), *, up="-y",
                   distance: float = 0.8):
    from ..cameras import orbit_for_scene

    w, h = size
    return orbit_for_scene(scene, count, w, h, up=up, seed=HELD_OUT_SEED,
                           azimuth_offset_deg=HELD_OUT_AZIMUTH, distance=distance)


def render_views(scene, cameras: Sequence, device: str = "auto") -> list:
    """[RenderResult] of ``scene`` for each camera."""
    from ..render import render_many

    return list(render_many(scene, cameras, device=device))


def compare(reference_renders: Sequence, candidate_scene, cameras: Sequence, *,
            device: str = "auto", restore: Callable | None = None) -> dict:
    """Mean PSNR/SSIM of ``candidate_scene`` vs pre-rendered reference images (and of the
    restored images when ``restore(rgb, alpha) -> rgb`` is given)."""
    from ..metrics import psnr, ssim

    ps, ss, rps, rss = [], [], [], []
    for ref, cand in zip(reference_renders, render_views(candidate_scene, cameras, device)):
        ps.append(psnr(ref.rgb, cand.rgb))
        ss.append(ssim(ref.rgb, cand.rgb))
        if restore is not None:
            out = np.clip(np.asarray(restore(cand.rgb, cand.alpha), np.float32), 0, 1)
            rps.append(psnr(ref.rgb, out))
            rss.append(ssim(ref.rgb, out))
    res = {"psnr": _mean(ps), "ssim": _mean(ss), "psnr_per_view": ps, "views": len(ps)}
    if restore is not None:
        res.update({"restored_psnr": _mean(rps), "restored_ssim": _mean(rss)})
    return res


def _mean(x):
    return float(np.mean(x)) if len(x) else float("nan")
