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
def sh_basis(degree, x, y, z, out):
    """Fill ``out[:(degree+1)²]`` with Y_k(x, y, z) for a *unit* direction (float64)."""
    out[0] = C0
    if degree < 1:
        return
    out[1] = -C1 * y
    out[2] = C1 * z
    out[3] = -C1 * x
    if degree < 2:
        return
    xx, yy, zz = x * x, y * y, z * z
    out[4] = C2[0] * x * y
    out[5] = C2[1] * y * z
    out[6] = C2[2] * (2.0 * zz - xx - yy)
    out[7] = C2[3] * x * z
    out[8] = C2[4] * (xx - yy)
    if degree < 3:
        return
    out[9] = C3[0] * y * (3.0 * xx - yy)
    out[10] = C3[1] * x * y * z
    out[11] = C3[2] * y * (4.0 * zz - xx - yy)
    out[12] = C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
    out[13] = C3[4] * x * (4.0 * zz - xx - yy)
    out[14] = C3[5] * z * (xx - yy)
    out[15] = C3[6] * x * (xx - 3.0 * yy)


@nb.njit(cache=True)
def _eval_sh_colors(degree, dirs, sh, out):
    basis = np.empty(16, np.float64)
    nk = (degree + 1) * (degree + 1)
    for i in range(dirs.shape[0]):
        x, y, z = float(dirs[i, 0]), float(dirs[i, 1]), float(dirs[i, 2])
        n = np.sqrt(x * x + y * y + z * z)
        n = max(n, 1e-12)
        sh_basis(degree, x / n, y / n, z / n, basis)
        for c in range(3):
            acc = 0.0
            for k in range(nk):
                acc += basis[k] * sh[i, k, c]
            out[i, c] = acc


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
