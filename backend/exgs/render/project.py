"""EWA projection of 3D Gaussians to the image, following gsplat 1.5 exactly.

Conventions (``gsplat/cuda/csrc/ProjectionEWA3DGSFused.cu``, ``_torch_impl.py``):

* ``Σ = R S Sᵀ Rᵀ`` with ``R`` from the *normalised* quaternion (w, x, y, z), ``S = diag(σ)``.
* Camera frame: ``t = W₃ₓ₃·mean + w``, ``Σ_c = W₃ₓ₃ Σ W₃ₓ₃ᵀ`` (``world_to_camera`` may be any
  affine map; the 3×3 part transforms covariances exactly). Culled when ``z < near`` or
  ``z > far``.
* Perspective Jacobian ``J = [[fx/z, 0, −fx·tx/z²], [0, fy/z, −fy·ty/z²]]`` where ``tx/z`` and
  ``ty/z`` are clamped to the image extent plus 0.3·tan(fov/2) on each side (1.3× the
  half-fov for a centred principal point). ``mean2d = (fx·x/z + cx, fy·y/z + cy)`` (not
  clamped). ``Σ₂ = J Σ_c Jᵀ + eps2d·I`` with eps2d = 0.3 px² (no antialiasing compensation);
  culled when ``det Σ₂ ≤ 0``. ``conic = (Σ₂⁻¹)₀₀, (Σ₂⁻¹)₀₁, (Σ₂⁻¹)₁₁``.
* Opacity-aware box (gsplat ≥ 1.5; arXiv 2402.00525): culled when opacity < 1/255, else
  ``extend = min(3.33, sqrt(2·ln(255·opacity)))`` and ``radius_{x,y} = ceil(extend·sqrt(Σ₂
  diag))``. A Gaussian whose box lies outside the image is culled. Every pixel with
  α ≥ 1/255 lies inside this box, so the box only decides *where to look*.
* Tiles (16×16 px) touched: ``[floor((mean−r)/16), ceil((mean+r)/16))`` clamped to the grid.
* Colour: ``max(SH(dir) + 0.5, 0)`` with ``dir = mean − camera centre`` in the scene frame.

All arithmetic here is float64 (gsplat uses float32): results agree to ~1e-6 relative.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .sh import sh_rgb

ALPHA_THRESHOLD = 1.0 / 255.0
EPS2D = 0.3
TILE = 16


@nb.njit(cache=True, inline="always")
def _covar3d_tuple(qw, qx, qy, qz, sx, sy, sz):
    """(xx, xy, xz, yy, yz, zz) of R S Sᵀ Rᵀ for a unit quaternion (no heap allocation)."""
    r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
    r01 = 2.0 * (qx * qy - qw * qz)
    r02 = 2.0 * (qx * qz + qw * qy)
    r10 = 2.0 * (qx * qy + qw * qz)
    r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
    r12 = 2.0 * (qy * qz - qw * qx)
    r20 = 2.0 * (qx * qz - qw * qy)
    r21 = 2.0 * (qy * qz + qw * qx)
    r22 = 1.0 - 2.0 * (qx * qx + qy * qy)
    m00, m01, m02 = r00 * sx, r01 * sy, r02 * sz
    m10, m11, m12 = r10 * sx, r11 * sy, r12 * sz
    m20, m21, m22 = r20 * sx, r21 * sy, r22 * sz
    return (m00 * m00 + m01 * m01 + m02 * m02, m00 * m10 + m01 * m11 + m02 * m12,
            m00 * m20 + m01 * m21 + m02 * m22, m10 * m10 + m11 * m11 + m12 * m12,
            m10 * m20 + m11 * m21 + m12 * m22, m20 * m20 + m21 * m21 + m22 * m22)


@nb.njit(cache=True)
def _covars_kernel(quats, scales, out):
    for i in range(quats.shape[0]):
        qw, qx, qy, qz = float(quats[i, 0]), float(quats[i, 1]), float(quats[i, 2]), float(quats[i, 3])
        n = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        xx, xy, xz, yy, yz, zz = _covar3d_tuple(qw / n, qx / n, qy / n, qz / n,
                                                float(scales[i, 0]), float(scales[i, 1]),
                                                float(scales[i, 2]))
        out[i, 0, 0], out[i, 0, 1], out[i, 0, 2] = xx, xy, xz
        out[i, 1, 0], out[i, 1, 1], out[i, 1, 2] = xy, yy, yz
        out[i, 2, 0], out[i, 2, 1], out[i, 2, 2] = xz, yz, zz


def quat_scale_to_covar(quats: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[N,4] quaternions (w,x,y,z, any length) and [N,3] σ → [N,3,3] float64 covariances."""
    q = np.ascontiguousarray(quats, np.float32)
    s = np.ascontiguousarray(scales, np.float32)
    out = np.empty((len(q), 3, 3), np.float64)
    _covars_kernel(q, s, out)
    return out


@nb.njit(parallel=True, cache=True)
def project_kernel(means, quats, scales, opacities, sh, degree, viewmat, campos,
                   fx, fy, cx, cy, width, height, near, far, eps2d, tile,
                   xy, conic, depth, color, radii, rect, cov2d):
    """Project N Gaussians (see module doc). Inputs: means/quats(unit)/scales [N,3|4|3]
    float32, opacities [N], sh [N,K,3], viewmat [4,4] float64, campos [3] (scene frame).
    Outputs (written for every i): xy [N,2], conic [N,3], depth [N], color [N,3], radii
    [N,2] int32 (0,0 = culled), rect [N,4] int32 tile range (x0, y0, x1, y1), x1/y1
    exclusive, empty when culled; cov2d [N,3] (xx, xy, yy) *before* the eps2d blur."""
    n = means.shape[0]
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    w00, w01, w02, w03 = viewmat[0, 0], viewmat[0, 1], viewmat[0, 2], viewmat[0, 3]
    w10, w11, w12, w13 = viewmat[1, 0], viewmat[1, 1], viewmat[1, 2], viewmat[1, 3]
    w20, w21, w22, w23 = viewmat[2, 0], viewmat[2, 1], viewmat[2, 2], viewmat[2, 3]
    for i in nb.prange(n):
        radii[i, 0] = 0
        radii[i, 1] = 0
        rect[i, 0] = 0
        rect[i, 1] = 0
        rect[i, 2] = 0
        rect[i, 3] = 0
        px, py, pz = float(means[i, 0]), float(means[i, 1]), float(means[i, 2])
        x = w00 * px + w01 * py + w02 * pz + w03
        y = w10 * px + w11 * py + w12 * pz + w13
        z = w20 * px + w21 * py + w22 * pz + w23
        depth[i] = z
        if not (z >= near and z <= far):
            continue
        op = float(opacities[i])
        if op < ALPHA_THRESHOLD:
            continue
        c0, c1, c2, c4, c5, c8 = _covar3d_tuple(
            float(quats[i, 0]), float(quats[i, 1]), float(quats[i, 2]), float(quats[i, 3]),
            float(scales[i, 0]), float(scales[i, 1]), float(scales[i, 2]))
        # Σ_c = W Σ Wᵀ: first A = W Σ (Σ symmetric), then A Wᵀ
        a00 = w00 * c0 + w01 * c1 + w02 * c2
        a01 = w00 * c1 + w01 * c4 + w02 * c5
        a02 = w00 * c2 + w01 * c5 + w02 * c8
        a10 = w10 * c0 + w11 * c1 + w12 * c2
        a11 = w10 * c1 + w11 * c4 + w12 * c5
        a12 = w10 * c2 + w11 * c5 + w12 * c8
        a20 = w20 * c0 + w21 * c1 + w22 * c2
        a21 = w20 * c1 + w21 * c4 + w22 * c5
        a22 = w20 * c2 + w21 * c5 + w22 * c8
        s00 = a00 * w00 + a01 * w01 + a02 * w02
        s01 = a00 * w10 + a01 * w11 + a02 * w12
        s02 = a00 * w20 + a01 * w21 + a02 * w22
        s11 = a10 * w10 + a11 * w11 + a12 * w12
        s12 = a10 * w20 + a11 * w21 + a12 * w22
        s22 = a20 * w20 + a21 * w21 + a22 * w22
        rz = 1.0 / z
        tx = z * min(lim_x_pos, max(-lim_x_neg, x * rz))
        ty = z * min(lim_y_pos, max(-lim_y_neg, y * rz))
        j00 = fx * rz
        j02 = -fx * tx * rz * rz
        j11 = fy * rz
        j12 = -fy * ty * rz * rz
        # Σ₂ = J Σ_c Jᵀ with J = [[j00, 0, j02], [0, j11, j12]]
        b0x = j00 * s00 + j02 * s02
        b0y = j00 * s01 + j02 * s12
        b0z = j00 * s02 + j02 * s22
        b1y = j11 * s11 + j12 * s12
        b1z = j11 * s12 + j12 * s22
        cxx = b0x * j00 + b0z * j02
        cxy = b0y * j11 + b0z * j12
        cyy = b1y * j11 + b1z * j12
        cov2d[i, 0] = cxx
        cov2d[i, 1] = cxy
        cov2d[i, 2] = cyy
        mx = fx * x * rz + cx
        my = fy * y * rz + cy
        xy[i, 0] = mx
        xy[i, 1] = my
        bxx = cxx + eps2d
        byy = cyy + eps2d
        det = bxx * byy - cxy * cxy
        if not det > 0.0:
            continue
        conic[i, 0] = byy / det
        conic[i, 1] = -cxy / det
        conic[i, 2] = bxx / det
        extend = min(3.33, math.sqrt(2.0 * math.log(op / ALPHA_THRESHOLD)))
        rx = math.ceil(extend * math.sqrt(bxx))
        ry = math.ceil(extend * math.sqrt(byy))
        if rx <= 0.0 and ry <= 0.0:
            continue
        if mx + rx <= 0.0 or mx - rx >= width or my + ry <= 0.0 or my - ry >= height:
            continue
        radii[i, 0] = int(rx)
        radii[i, 1] = int(ry)
        rect[i, 0] = min(max(0, int(math.floor((mx - rx) / tile))), tiles_x)
        rect[i, 1] = min(max(0, int(math.floor((my - ry) / tile))), tiles_y)
        rect[i, 2] = min(max(0, int(math.ceil((mx + rx) / tile))), tiles_x)
        rect[i, 3] = min(max(0, int(math.ceil((my + ry) / tile))), tiles_y)
        # view-dependent colour
        dx, dy, dz = px - campos[0], py - campos[1], pz - campos[2]
        nrm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
        r, g, b = sh_rgb(degree, dx / nrm, dy / nrm, dz / nrm, sh, i)
        color[i, 0] = max(r + 0.5, 0.0)
        color[i, 1] = max(g + 0.5, 0.0)
        color[i, 2] = max(b + 0.5, 0.0)


class Projected:
    """Per-view projection of a scene: arrays of :func:`project_kernel` (see its doc)."""

    __slots__ = ("xy", "conic", "depth", "color", "radii", "rect", "cov2d", "opacities",
                 "width", "height", "tile")

    def __init__(self, n: int, width: int, height: int, tile: int, opacities: np.ndarray):
        self.xy = np.zeros((n, 2), np.float32)
        self.conic = np.zeros((n, 3), np.float32)
        self.depth = np.zeros(n, np.float32)
        self.color = np.zeros((n, 3), np.float32)
        self.radii = np.zeros((n, 2), np.int32)
        self.rect = np.zeros((n, 4), np.int32)
        self.cov2d = np.zeros((n, 3), np.float32)
        self.opacities = opacities
        self.width, self.height, self.tile = width, height, tile

    @property
    def visible(self) -> np.ndarray:
        """[N] bool: not culled."""
        return self.radii[:, 0] > 0


def project(prep, camera, sh_degree: int, *, eps2d: float = EPS2D, tile: int = TILE) -> Projected:
    """Project a prepared scene (:class:`exgs.render.cpu.PreparedScene`) for ``camera``."""
    n = prep.n
    out = Projected(n, camera.width, camera.height, tile, prep.opacities)
    vm = np.ascontiguousarray(camera.world_to_camera, np.float64)
    campos = np.ascontiguousarray(np.linalg.inv(vm)[:3, 3], np.float64)
    if n:
        project_kernel(prep.means, prep.quats, prep.scales, prep.opacities, prep.sh,
                       int(sh_degree), vm, campos, float(camera.fx), float(camera.fy),
                       float(camera.cx), float(camera.cy), int(camera.width),
                       int(camera.height), float(camera.near), float(camera.far),
                       float(eps2d), int(tile), out.xy, out.conic, out.depth, out.color,
                       out.radii, out.rect, out.cov2d)
    return out
