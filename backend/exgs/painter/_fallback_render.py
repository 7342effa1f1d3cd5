"""Stop-gap CPU renderer used only while :mod:`exgs.render` is not importable.

Projection and SH come from gsplat's pure-PyTorch reference (``gsplat.cuda._torch_impl``);
compositing is a per-16×16-tile front-to-back loop in torch. Returns an object with the
``rgb`` / ``alpha`` fields of :class:`exgs.render.RenderResult` (black background).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch


@torch.no_grad()
def render(scene, camera, device="cpu", background=(0.0, 0.0, 0.0), **_):
    from gsplat.cuda._torch_impl import (_fully_fused_projection, _quat_scale_to_covar_preci,
                                         _spherical_harmonics)

    W, H = int(camera.width), int(camera.height)
    means = torch.from_numpy(scene.means)
    quats = torch.nn.functional.normalize(torch.from_numpy(scene.quats), dim=-1)
    scales = torch.exp(torch.from_numpy(scene.log_scales))
    opac = torch.sigmoid(torch.from_numpy(scene.opacity_logits))
    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False, triu=False)
    vm = torch.from_numpy(np.asarray(camera.world_to_camera, np.float32))[None]
    K = torch.from_numpy(np.asarray(camera.K, np.float32))[None]
    radii, m2d, depth, conics, _ = _fully_fused_projection(means, covars, vm, K, W, H)
    radii, m2d, depth, conics = radii[0], m2d[0], depth[0], conics[0]
    vis = (radii > 0).all(-1)
    idx = torch.nonzero(vis)[:, 0]
    cam_pos = torch.from_numpy(np.asarray(camera.position, np.float32))
    deg = scene.sh_degree
    dirs = means[idx] - cam_pos
    col = _spherical_harmonics(deg, dirs, torch.from_numpy(scene.sh)[idx]) + 0.5
    col = col.clamp(min=0.0)
    order = torch.argsort(depth[idx])
    idx, col = idx[order], col[order]
    mu, con, op, rad = m2d[idx], conics[idx], opac[idx], radii[idx].float()
    T = 16
    tx0 = ((mu[:, 0] - rad[:, 0]) // T).clamp(0, (W - 1) // T).long()
    tx1 = ((mu[:, 0] + rad[:, 0]) // T).clamp(0, (W - 1) // T).long()
    ty0 = ((mu[:, 1] - rad[:, 1]) // T).clamp(0, (H - 1) // T).long()
    ty1 = ((mu[:, 1] + rad[:, 1]) // T).clamp(0, (H - 1) // T).long()
    rgb = torch.zeros(H, W, 3)
    alpha = torch.zeros(H, W)
    for ty in range((H + T - 1) // T):
        rows = (ty0 <= ty) & (ty1 >= ty)
        for tx in range((W + T - 1) // T):
            sel = torch.nonzero(rows & (tx0 <= tx) & (tx1 >= tx))[:, 0]
            if len(sel) == 0:
                continue
            y0, x0 = ty * T, tx * T
            y1, x1 = min(y0 + T, H), min(x0 + T, W)
            yy, xx = torch.meshgrid(torch.arange(y0, y1) + 0.5, torch.arange(x0, x1) + 0.5,
                                    indexing="ij")
            p = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)  # [P,2]
            d = p[:, None, :] - mu[sel][None]  # [P,G,2]
            c = con[sel]
            sig = 0.5 * (c[:, 0] * d[..., 0] ** 2 + c[:, 2] * d[..., 1] ** 2) + c[:, 1] * d[..., 0] * d[..., 1]
            a = (op[sel][None] * torch.exp(-sig)).clamp(max=0.999)
            a = torch.where((sig >= 0) & (a >= 1 / 255), a, torch.zeros_like(a))
            Tr = torch.cumprod(torch.cat([torch.ones(len(p), 1), 1 - a], 1), 1)
            w = a * Tr[:, :-1]
            rgb[y0:y1, x0:x1] = (w @ col[sel]).reshape(y1 - y0, x1 - x0, 3)
            alpha[y0:y1, x0:x1] = (1 - Tr[:, -1]).reshape(y1 - y0, x1 - x0)
    bg = torch.tensor(background, dtype=torch.float32)
    rgb = rgb + (1 - alpha[..., None]) * bg
    return SimpleNamespace(rgb=rgb.clamp(0, 1).numpy().astype(np.float32),
                           alpha=alpha.numpy().astype(np.float32), backend="fallback")
