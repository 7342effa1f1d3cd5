"""Backward of the projection (:func:`exgs.render.project.project_kernel`): mean2d, conic and
colour gradients → means, unit quaternions, scales σ and SH coefficients, float64, following
autograd through gsplat 1.5.3's ``_fully_fused_projection`` / ``_persp_proj`` /
``_eval_sh_bases_fast`` (see :mod:`exgs.render.backward` for the pixel part).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .sh import C0, C1, C2, C3


@nb.njit(cache=True, inline="always")
def _sh_basis(degree, x, y, z, b):
    """b[0..K) = 3DGS real SH basis at the unit direction (x, y, z)."""
    b[0] = C0
    if degree < 1:
        return
    b[1] = -C1 * y
    b[2] = C1 * z
    b[3] = -C1 * x
    if degree < 2:
        return
    xx, yy, zz = x * x, y * y, z * z
    b[4] = C2[0] * x * y
    b[5] = C2[1] * y * z
    b[6] = C2[2] * (2.0 * zz - xx - yy)
    b[7] = C2[3] * x * z
    b[8] = C2[4] * (xx - yy)
    if degree < 3:
        return
    b[9] = C3[0] * y * (3.0 * xx - yy)
    b[10] = C3[1] * x * y * z
    b[11] = C3[2] * y * (4.0 * zz - xx - yy)
    b[12] = C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
    b[13] = C3[4] * x * (4.0 * zz - xx - yy)
    b[14] = C3[5] * z * (xx - yy)
    b[15] = C3[6] * x * (xx - 3.0 * yy)


@nb.njit(cache=True, inline="always")
def _sh_basis_vjp(degree, x, y, z, w):
    """Σ_k w[k]·∂Y_k/∂(x, y, z) (x, y, z treated as independent; the caller chains the
    normalisation)."""
    gx = gy = gz = 0.0
    if degree < 1:
        return gx, gy, gz
    gx += -C1 * w[3]
    gy += -C1 * w[1]
    gz += C1 * w[2]
    if degree < 2:
        return gx, gy, gz
    xx, yy, zz = x * x, y * y, z * z
    gx += C2[0] * y * w[4] + C2[2] * (-2.0 * x) * w[6] + C2[3] * z * w[7] + C2[4] * 2.0 * x * w[8]
    gy += C2[0] * x * w[4] + C2[1] * z * w[5] + C2[2] * (-2.0 * y) * w[6] - C2[4] * 2.0 * y * w[8]
    gz += C2[1] * y * w[5] + C2[2] * 4.0 * z * w[6] + C2[3] * x * w[7]
    if degree < 3:
        return gx, gy, gz
    gx += (C3[0] * 6.0 * x * y * w[9] + C3[1] * y * z * w[10] + C3[2] * (-2.0 * x * y) * w[11]
           + C3[3] * (-6.0 * x * z) * w[12] + C3[4] * (4.0 * zz - 3.0 * xx - yy) * w[13]
           + C3[5] * 2.0 * x * z * w[14] + C3[6] * (3.0 * xx - 3.0 * yy) * w[15])
    gy += (C3[0] * (3.0 * xx - 3.0 * yy) * w[9] + C3[1] * x * z * w[10]
           + C3[2] * (4.0 * zz - xx - 3.0 * yy) * w[11] + C3[3] * (-6.0 * y * z) * w[12]
           + C3[4] * (-2.0 * x * y) * w[13] + C3[5] * (-2.0 * y * z) * w[14]
           + C3[6] * (-6.0 * x * y) * w[15])
    gz += (C3[1] * x * y * w[10] + C3[2] * 8.0 * y * z * w[11]
           + C3[3] * (6.0 * zz - 3.0 * xx - 3.0 * yy) * w[12] + C3[4] * 8.0 * x * z * w[13]
           + C3[5] * (xx - yy) * w[14])
    return gx, gy, gz


@nb.njit(parallel=True, cache=True)
def project_bwd_kernel(means, quats, scales, sh, degree, viewmat, campos, fx, fy, cx, cy,
                       width, height, eps2d, visible, v_xy, v_conic, v_color, n_chunks,
                       v_means, v_quats, v_scales, v_sh):
    """Chain rule through the projection of :func:`exgs.render.project.project_kernel` for
    the ``visible`` Gaussians (others get zeros). Inputs: means [N,3], unit quats [N,4]
    (w,x,y,z), scales σ [N,3], sh [N,K,3], viewmat [4,4], campos [3]; upstream v_xy [N,2]
    (mean2d), v_conic [N,3] (a, b, c of Σ₂⁻¹ = [[a, b], [b, c]]), v_color [N,3]. Outputs
    (overwritten): v_means [N,3], v_quats [N,4] (w.r.t. the unit quaternion), v_scales
    [N,3] (w.r.t. σ), v_sh [N,K,3]. All float64 arithmetic."""
    n = means.shape[0]
    kk = sh.shape[1]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    W = np.empty((3, 3), np.float64)
    for a in range(3):
        for b in range(3):
            W[a, b] = viewmat[a, b]
    step = (n + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        basis = np.zeros(16, np.float64)
        wsh = np.zeros(16, np.float64)
        R = np.empty((3, 3), np.float64)
        M = np.empty((3, 3), np.float64)
        Sig = np.empty((3, 3), np.float64)
        Sc = np.empty((3, 3), np.float64)
        A = np.empty((3, 3), np.float64)
        vSc = np.empty((3, 3), np.float64)
        vS = np.empty((3, 3), np.float64)
        vM = np.empty((3, 3), np.float64)
        J = np.zeros((2, 3), np.float64)
        for i in range(ch * step, min(n, (ch + 1) * step)):
            for a in range(3):
                v_means[i, a] = 0.0
                v_scales[i, a] = 0.0
            for a in range(4):
                v_quats[i, a] = 0.0
            for a in range(kk):
                for c in range(3):
                    v_sh[i, a, c] = 0.0
            if not visible[i]:
                continue
            px, py, pz = float(means[i, 0]), float(means[i, 1]), float(means[i, 2])
            x = W[0, 0] * px + W[0, 1] * py + W[0, 2] * pz + viewmat[0, 3]
            y = W[1, 0] * px + W[1, 1] * py + W[1, 2] * pz + viewmat[1, 3]
            z = W[2, 0] * px + W[2, 1] * py + W[2, 2] * pz + viewmat[2, 3]
            qw, qx, qy, qz = float(quats[i, 0]), float(quats[i, 1]), float(quats[i, 2]), \
                float(quats[i, 3])
            sxyz = (float(scales[i, 0]), float(scales[i, 1]), float(scales[i, 2]))
            R[0, 0] = 1.0 - 2.0 * (qy * qy + qz * qz)
            R[0, 1] = 2.0 * (qx * qy - qw * qz)
            R[0, 2] = 2.0 * (qx * qz + qw * qy)
            R[1, 0] = 2.0 * (qx * qy + qw * qz)
            R[1, 1] = 1.0 - 2.0 * (qx * qx + qz * qz)
            R[1, 2] = 2.0 * (qy * qz - qw * qx)
            R[2, 0] = 2.0 * (qx * qz - qw * qy)
            R[2, 1] = 2.0 * (qy * qz + qw * qx)
            R[2, 2] = 1.0 - 2.0 * (qx * qx + qy * qy)
            for a in range(3):
                for b in range(3):
                    M[a, b] = R[a, b] * sxyz[b]
            for a in range(3):
                for b in range(3):
                    Sig[a, b] = M[a, 0] * M[b, 0] + M[a, 1] * M[b, 1] + M[a, 2] * M[b, 2]
            # Σ_c = W Σ Wᵀ
            for a in range(3):
                for b in range(3):
                    A[a, b] = W[a, 0] * Sig[0, b] + W[a, 1] * Sig[1, b] + W[a, 2] * Sig[2, b]
            for a in range(3):
                for b in range(3):
                    Sc[a, b] = A[a, 0] * W[b, 0] + A[a, 1] * W[b, 1] + A[a, 2] * W[b, 2]
            rz = 1.0 / z
            ux = x * rz
            uy = y * rz
            clx = ux < -lim_x_neg or ux > lim_x_pos
            cly = uy < -lim_y_neg or uy > lim_y_pos
            tx = z * min(lim_x_pos, max(-lim_x_neg, ux))
            ty = z * min(lim_y_pos, max(-lim_y_neg, uy))
            J[0, 0] = fx * rz
            J[0, 2] = -fx * tx * rz * rz
            J[1, 1] = fy * rz
            J[1, 2] = -fy * ty * rz * rz
            # Σ₂ = J Σ_c Jᵀ + eps·I, conic = Σ₂⁻¹
            b00 = b01 = b11 = 0.0
            for a in range(3):
                for b in range(3):
                    b00 += J[0, a] * Sc[a, b] * J[0, b]
                    b01 += J[0, a] * Sc[a, b] * J[1, b]
                    b11 += J[1, a] * Sc[a, b] * J[1, b]
            b00 += eps2d
            b11 += eps2d
            det = b00 * b11 - b01 * b01
            i00, i01, i11 = b11 / det, -b01 / det, b00 / det
            # v_Σ₂ = −Σ₂⁻¹ G Σ₂⁻¹ with G = [[va, vb/2], [vb/2, vc]]
            ga, gb, gc = float(v_conic[i, 0]), 0.5 * float(v_conic[i, 1]), float(v_conic[i, 2])
            t00 = i00 * ga + i01 * gb
            t01 = i00 * gb + i01 * gc
            t10 = i01 * ga + i11 * gb
            t11 = i01 * gb + i11 * gc
            V00 = -(t00 * i00 + t01 * i01)
            V01 = -(t00 * i01 + t01 * i11)
            V11 = -(t10 * i01 + t11 * i11)
            # v_Σ_c = Jᵀ V J ; v_J = 2 V J Σ_c
            for a in range(3):
                for b in range(3):
                    vSc[a, b] = (J[0, a] * (V00 * J[0, b] + V01 * J[1, b])
                                 + J[1, a] * (V01 * J[0, b] + V11 * J[1, b]))
            vJ00 = vJ02 = vJ11 = vJ12 = 0.0
            for b in range(3):
                js0 = J[0, 0] * Sc[0, b] + J[0, 2] * Sc[2, b]  # (J Σ_c)[0, b]
                js1 = J[1, 1] * Sc[1, b] + J[1, 2] * Sc[2, b]
                vjr0 = 2.0 * (V00 * js0 + V01 * js1)
                vjr1 = 2.0 * (V01 * js0 + V11 * js1)
                if b == 0:
                    vJ00 = vjr0
                elif b == 1:
                    vJ11 = vjr1
                else:
                    vJ02 = vjr0
                    vJ12 = vjr1
            # camera-frame mean
            vx = fx * rz * float(v_xy[i, 0])
            vy = fy * rz * float(v_xy[i, 1])
            vz = -(fx * x * float(v_xy[i, 0]) + fy * y * float(v_xy[i, 1])) * rz * rz
            rz2 = rz * rz
            vz += -fx * rz2 * vJ00 - fy * rz2 * vJ11
            vz += 2.0 * fx * tx * rz2 * rz * vJ02 + 2.0 * fy * ty * rz2 * rz * vJ12
            vtx = -fx * rz2 * vJ02
            vty = -fy * rz2 * vJ12
            if clx:
                vz += vtx * min(lim_x_pos, max(-lim_x_neg, ux))
            else:
                vx += vtx
            if cly:
                vz += vty * min(lim_y_pos, max(-lim_y_neg, uy))
            else:
                vy += vty
            for a in range(3):
                v_means[i, a] = W[0, a] * vx + W[1, a] * vy + W[2, a] * vz
            # v_Σ = Wᵀ v_Σc W ; v_M = 2 v_Σ M
            for a in range(3):
                for b in range(3):
                    A[a, b] = vSc[0, a] * W[0, b] + vSc[1, a] * W[1, b] + vSc[2, a] * W[2, b]
            for a in range(3):
                for b in range(3):
                    vS[a, b] = W[0, a] * A[0, b] + W[1, a] * A[1, b] + W[2, a] * A[2, b]
            for a in range(3):
                for b in range(3):
                    vM[a, b] = 2.0 * (vS[a, 0] * M[0, b] + vS[a, 1] * M[1, b]
                                      + vS[a, 2] * M[2, b])
            for b in range(3):
                v_scales[i, b] = vM[0, b] * R[0, b] + vM[1, b] * R[1, b] + vM[2, b] * R[2, b]
            # v_R = v_M S
            g00, g01, g02 = vM[0, 0] * sxyz[0], vM[0, 1] * sxyz[1], vM[0, 2] * sxyz[2]
            g10, g11, g12 = vM[1, 0] * sxyz[0], vM[1, 1] * sxyz[1], vM[1, 2] * sxyz[2]
            g20, g21, g22 = vM[2, 0] * sxyz[0], vM[2, 1] * sxyz[1], vM[2, 2] * sxyz[2]
            v_quats[i, 0] = 2.0 * (-qz * g01 + qy * g02 + qz * g10 - qx * g12 - qy * g20
                                   + qx * g21)
            v_quats[i, 1] = 2.0 * (qy * g01 + qz * g02 + qy * g10 - 2.0 * qx * g11 - qw * g12
                                   + qz * g20 + qw * g21 - 2.0 * qx * g22)
            v_quats[i, 2] = 2.0 * (-2.0 * qy * g00 + qx * g01 + qw * g02 + qx * g10 + qz * g12
                                   - qw * g20 + qz * g21 - 2.0 * qy * g22)
            v_quats[i, 3] = 2.0 * (-2.0 * qz * g00 - qw * g01 + qx * g02 + qw * g10
                                   - 2.0 * qz * g11 + qy * g12 + qx * g20 + qy * g21)
            # colour = max(SH(dir) + 0.5, 0), dir = normalize(μ − campos)
            dx_, dy_, dz_ = px - campos[0], py - campos[1], pz - campos[2]
            nrm = max(math.sqrt(dx_ * dx_ + dy_ * dy_ + dz_ * dz_), 1e-12)
            ux_, uy_, uz_ = dx_ / nrm, dy_ / nrm, dz_ / nrm
            _sh_basis(degree, ux_, uy_, uz_, basis)
            nb_ = (degree + 1) * (degree + 1)
            vc0, vc1, vc2 = float(v_color[i, 0]), float(v_color[i, 1]), float(v_color[i, 2])
            raw0 = raw1 = raw2 = 0.5
            for a in range(nb_):
                raw0 += basis[a] * sh[i, a, 0]
                raw1 += basis[a] * sh[i, a, 1]
                raw2 += basis[a] * sh[i, a, 2]
            if raw0 < 0.0:
                vc0 = 0.0
            if raw1 < 0.0:
                vc1 = 0.0
            if raw2 < 0.0:
                vc2 = 0.0
            for a in range(nb_):
                v_sh[i, a, 0] = basis[a] * vc0
                v_sh[i, a, 1] = basis[a] * vc1
                v_sh[i, a, 2] = basis[a] * vc2
                wsh[a] = sh[i, a, 0] * vc0 + sh[i, a, 1] * vc1 + sh[i, a, 2] * vc2
            if degree > 0:
                gx, gy, gz = _sh_basis_vjp(degree, ux_, uy_, uz_, wsh)
                dot = gx * ux_ + gy * uy_ + gz * uz_
                v_means[i, 0] += (gx - dot * ux_) / nrm
                v_means[i, 1] += (gy - dot * uy_) / nrm
                v_means[i, 2] += (gz - dot * uz_) / nrm
