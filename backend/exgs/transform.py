"""Affine transforms of a Gaussian scene: x' = A·x + t applied to centres, covariances and the
view-dependent colour (spherical harmonics).

* centres: ``means' = means·Aᵀ + t``;
* covariances: ``Σ' = A Σ Aᵀ``. When A is a similarity (s·Q, Q orthogonal) this is a rotation
  of the Gaussian's frame (``quats' = q(±Q) ⊗ quats``) and ``log_scales' = log_scales +
  log s``; otherwise each Σ' is re-factored (eigen-decomposition) into a rotation and σ;
* SH: the colour seen along direction d after the transform is the colour seen along
  ``Q⁻¹ d`` before, where Q is the orthogonal (polar) part of A (exact for similarities,
  reflections included; for shears and non-uniform scales directions do not map by a
  rotation and Q is the nearest one). Each degree's coefficients are mixed by a
  (2l+1)×(2l+1) matrix fitted by least squares on the SH basis (:func:`sh_basis`, the
  3DGS/gsplat convention of :mod:`exgs.render.sh`; tests compare the two).

Quaternions are (w, x, y, z); matrices act on column vectors.
"""

from __future__ import annotations

import numpy as np

from .scene import GaussianScene


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """[N,4] quaternions (w, x, y, z), any length → [N,3,3] float64 rotation matrices."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def rotmat_to_quat(m: np.ndarray) -> np.ndarray:
    """[N,3,3] proper rotations → [N,4] unit quaternions (w, x, y, z), w ≥ 0 (Shepperd)."""
    m = m.reshape(-1, 3, 3)
    tr = np.trace(m, axis1=1, axis2=2)
    diag = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    k = diag.argmax(1)
    q = np.empty((len(m), 4))
    r = np.sqrt(np.maximum(1.0 + 2.0 * diag[np.arange(len(m)), k] - tr, 1e-30))
    for case in range(4):
        s = k == case
        if not s.any():
            continue
        a, rr = m[s], r[s]
        if case == 0:
            q[s] = np.stack([rr / 2, (a[:, 2, 1] - a[:, 1, 2]) / (2 * rr),
                             (a[:, 0, 2] - a[:, 2, 0]) / (2 * rr),
                             (a[:, 1, 0] - a[:, 0, 1]) / (2 * rr)], 1)
        elif case == 1:
            q[s] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) / (2 * rr), rr / 2,
                             (a[:, 0, 1] + a[:, 1, 0]) / (2 * rr),
                             (a[:, 0, 2] + a[:, 2, 0]) / (2 * rr)], 1)
        elif case == 2:
            q[s] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) / (2 * rr),
                             (a[:, 0, 1] + a[:, 1, 0]) / (2 * rr), rr / 2,
                             (a[:, 1, 2] + a[:, 2, 1]) / (2 * rr)], 1)
        else:
            q[s] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) / (2 * rr),
                             (a[:, 0, 2] + a[:, 2, 0]) / (2 * rr),
                             (a[:, 1, 2] + a[:, 2, 1]) / (2 * rr), rr / 2], 1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q


def sh_basis(directions: np.ndarray, degree: int) -> np.ndarray:
    """[K,3] unit directions → [K,(degree+1)²] float64 values of the real SH basis in 3DGS's
    order and signs (those of :func:`exgs.render.sh.sh_rgb`; a test keeps them equal)."""
    x, y, z = (directions[:, i].astype(np.float64) for i in range(3))
    cols = [np.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        c1 = 0.4886025119029199
        cols += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                 0.31539156525252005 * (2 * zz - xx - yy), -1.0925484305920792 * x * z,
                 0.5462742152960396 * (xx - yy)]
    if degree >= 3:
        cols += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * x * y * z,
                 -0.4570457994644658 * y * (4 * zz - xx - yy),
                 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
                 -0.4570457994644658 * x * (4 * zz - xx - yy),
                 1.445305721320277 * z * (xx - yy), -0.5900435899266435 * x * (xx - 3 * yy)]
    return np.stack(cols, 1)


def sh_rotation(q_mat: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per degree l = 1..``degree`` the (2l+1)² matrix M_l with ``c'_l = M_l c_l``: the SH
    function after the orthogonal map ``q_mat`` [3,3] (reflections allowed) is
    ``f'(d) = f(q_matᵀ d)``."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    y_new = sh_basis(d, degree)                    # Y(d)
    y_old = sh_basis(d @ q_mat, degree)            # Y(q_matᵀ d)   (row-vector form)
    out = []
    for deg in range(1, degree + 1):
        b = slice(deg * deg, (deg + 1) ** 2)
        m_l, *_ = np.linalg.lstsq(y_new[:, b], y_old[:, b], rcond=None)  # Y_old = Y_new·M
        out.append(m_l)
    return out


def transform_scene(scene: GaussianScene, matrix) -> GaussianScene:
    """The scene under the affine map ``matrix`` ([4,4] or [3,4], row-major, column vectors:
    x' = A·x + t). Returns a new scene (float32 arrays); the input is not modified."""
    mat = np.asarray(matrix, np.float64)
    if mat.shape not in ((4, 4), (3, 4)) or not np.isfinite(mat).all():
        raise ValueError(f"transform must be a finite 4×4 or 3×4 matrix, got {mat.shape}")
    a, t = mat[:3, :3], mat[:3, 3]
    det = np.linalg.det(a)
    if not abs(det) > 1e-30:
        raise ValueError("transform is singular (its 3×3 part has determinant 0)")
    u, sv, vt = np.linalg.svd(a)
    q_mat = u @ vt                                   # polar (orthogonal) part of A
    means = scene.means.astype(np.float64) @ a.T + t
    rot = q_mat * np.sign(np.linalg.det(q_mat))      # proper rotation (covariances are even)
    if np.allclose(sv, sv[0], rtol=1e-6):            # similarity: rotate the frames
        quats = rotmat_to_quat(rot[None] @ quat_to_rotmat(scene.quats))
        log_scales = scene.log_scales.astype(np.float64) + np.log(sv[0])
    else:                                            # general: Σ' = A Σ Aᵀ, re-factored
        r = quat_to_rotmat(scene.quats)
        s2 = np.exp(2.0 * scene.log_scales.astype(np.float64))
        cov = (a[None] @ r) * s2[:, None, :] @ (a[None] @ r).transpose(0, 2, 1)
        ev, vecs = np.linalg.eigh(cov)
        vecs *= np.where(np.linalg.det(vecs) < 0, -1.0, 1.0)[:, None, None]
        quats = rotmat_to_quat(vecs)
        log_scales = 0.5 * np.log(np.maximum(ev, 1e-60))
    sh = scene.sh.astype(np.float64)
    for deg, m_l in enumerate(sh_rotation(q_mat, scene.sh_degree), start=1):
        b = slice(deg * deg, (deg + 1) ** 2)
        sh[:, b] = np.einsum("ij,njc->nic", m_l, sh[:, b])
    return GaussianScene(means.astype(np.float32), quats.astype(np.float32),
                         log_scales.astype(np.float32), scene.opacity_logits.copy(),
                         sh.astype(np.float32), {k: v.copy() for k, v in scene.extras.items()})
