"""Real spherical harmonics, degree 0..3, in the basis order and sign convention of 3DGS and
gsplat (``gsplat.cuda._torch_impl._eval_sh_bases_fast``).

Colour of a Gaussian seen from camera centre ``c``: ``dir = normalize(mean − c)`` (both in the
scene frame), ``rgb = max(Σ_k sh[k] · Y_k(dir) + 0.5, 0)`` — gsplat clamps at 0 only (no upper
clamp); see :func:`exgs.render.project.project_gaussians`.

The constants are the standard real-SH normalisations (√(1/4π), √(3/4π), ...).
"""

from __future__ import annotations

import numba as nb
import numpy as np

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
      0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


@nb.njit(cache=True, inline="always")
def sh_rgb(degree, x, y, z, sh, i):
    """Σ_k sh[i,k,:]·Y_k(x,y,z) for a *unit* direction → (r, g, b) float64 (no allocation)."""
    r = C0 * sh[i, 0, 0]
    g = C0 * sh[i, 0, 1]
    b = C0 * sh[i, 0, 2]
    if degree < 1:
        return r, g, b
    y1, y2, y3 = -C1 * y, C1 * z, -C1 * x
    r += y1 * sh[i, 1, 0] + y2 * sh[i, 2, 0] + y3 * sh[i, 3, 0]
    g += y1 * sh[i, 1, 1] + y2 * sh[i, 2, 1] + y3 * sh[i, 3, 1]
    b += y1 * sh[i, 1, 2] + y2 * sh[i, 2, 2] + y3 * sh[i, 3, 2]
    if degree < 2:
        return r, g, b
    xx, yy, zz = x * x, y * y, z * z
    y4 = C2[0] * x * y
    y5 = C2[1] * y * z
    y6 = C2[2] * (2.0 * zz - xx - yy)
    y7 = C2[3] * x * z
    y8 = C2[4] * (xx - yy)
    r += y4 * sh[i, 4, 0] + y5 * sh[i, 5, 0] + y6 * sh[i, 6, 0] + y7 * sh[i, 7, 0] + y8 * sh[i, 8, 0]
    g += y4 * sh[i, 4, 1] + y5 * sh[i, 5, 1] + y6 * sh[i, 6, 1] + y7 * sh[i, 7, 1] + y8 * sh[i, 8, 1]
    b += y4 * sh[i, 4, 2] + y5 * sh[i, 5, 2] + y6 * sh[i, 6, 2] + y7 * sh[i, 7, 2] + y8 * sh[i, 8, 2]
    if degree < 3:
        return r, g, b
    y9 = C3[0] * y * (3.0 * xx - yy)
    y10 = C3[1] * x * y * z
    y11 = C3[2] * y * (4.0 * zz - xx - yy)
    y12 = C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
    y13 = C3[4] * x * (4.0 * zz - xx - yy)
    y14 = C3[5] * z * (xx - yy)
    y15 = C3[6] * x * (xx - 3.0 * yy)
    for c in range(3):
        v = (y9 * sh[i, 9, c] + y10 * sh[i, 10, c] + y11 * sh[i, 11, c] + y12 * sh[i, 12, c]
             + y13 * sh[i, 13, c] + y14 * sh[i, 14, c] + y15 * sh[i, 15, c])
        if c == 0:
            r += v
        elif c == 1:
            g += v
        else:
            b += v
    return r, g, b


@nb.njit(parallel=True, cache=True)
def _eval_sh_colors(degree, dirs, sh, out):
    for i in nb.prange(dirs.shape[0]):
        x, y, z = float(dirs[i, 0]), float(dirs[i, 1]), float(dirs[i, 2])
        n = max(np.sqrt(x * x + y * y + z * z), 1e-12)
        r, g, b = sh_rgb(degree, x / n, y / n, z / n, sh, i)
        out[i, 0] = r
        out[i, 1] = g
        out[i, 2] = b


def eval_sh(degree: int, dirs: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Σ_k sh[i,k,:]·Y_k(normalize(dirs[i])) → [N,3] float32 (no +0.5, no clamp).

    ``dirs`` [N,3] any length (normalised here), ``sh`` [N,K,3] with K ≥ (degree+1)².
    Same result as ``gsplat.cuda._torch_impl._spherical_harmonics(degree, dirs, sh)``.
    """
    dirs = np.ascontiguousarray(dirs, np.float32)
    sh = np.ascontiguousarray(sh, np.float32)
    if not 0 <= degree <= 3 or sh.shape[1] < (degree + 1) ** 2:
        raise ValueError(f"SH degree {degree} needs {(degree + 1) ** 2} coefficients, "
                         f"got {sh.shape[1]}")
    out = np.empty((len(dirs), 3), np.float32)
    _eval_sh_colors(int(degree), dirs, sh, out)
    return out
