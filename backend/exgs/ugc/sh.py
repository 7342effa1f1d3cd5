"""Appearance reduction to a lower SH degree, optionally distilled from the views.

* ``truncate`` — drop the bands above the target degree (the DC term is the mean colour over
  the sphere, before the renderer's clamp).
* ``distill`` (target degree 0 only) — the DC term that best reproduces, in least squares,
  the clamped colours ``max(SH(dir) + 0.5, 0)`` the full-degree Gaussian shows to the given
  cameras (dir = μ − camera centre), i.e. DC = (mean over views of the colour − 0.5)/C0.
  For target degrees ≥ 1 we truncate (a per-Gaussian least-squares fit of several bands from
  ~24 directions is ill-posed without regularization; not done).
"""

from __future__ import annotations

import numpy as np

from ..scene import SH_C0, GaussianScene


#: Gaussians distilled at a time (the per-camera temporaries are this many rows)
DISTILL_ROWS = 1 << 20


def reduce_sh(scene: GaussianScene, degree: int, cameras=None, *, distill: bool = True,
              rows: int | None = None) -> GaussianScene:
    """``scene`` with SH degree ``degree`` (truncated or zero-padded; DC distilled from
    ``cameras`` when ``distill`` and reducing to degree 0; ``rows`` Gaussians at a time,
    default :data:`DISTILL_ROWS`)."""
    src = scene.sh_degree
    out = scene.with_sh_degree(degree)
    if degree == 0 and src > 0 and distill and cameras:
        from ..render.sh import eval_sh

        n, rows = len(scene), rows or DISTILL_ROWS
        centres = [cam.position[None, :] for cam in cameras]
        for a in range(0, n, rows):  # chunks of Gaussians: no [N, 3] float64 temporaries
            b = min(n, a + rows)
            m64 = scene.means[a:b].astype(np.float64)
            acc = np.zeros((b - a, 3), np.float64)
            for c in centres:
                acc += np.maximum(eval_sh(src, m64 - c, scene.sh[a:b]) + 0.5, 0.0)
            mean = np.minimum(acc / len(cameras), 1.0)  # the composite is clipped to [0, 1]
            out.sh[a:b, 0] = ((mean - 0.5) / SH_C0).astype(np.float32)
    return out
