"""gsplat CUDA path: ``gsplat.rasterization`` with the same conventions as our CPU renderer.

Importable without CUDA (torch and gsplat are imported lazily); :func:`cuda_available` says
whether this path can run.

Contributions on CUDA: gsplat does not return Σ α·T per Gaussian, but it is a gradient. With
per-Gaussian colours ``c_j`` (instead of SH) the rendered image is ``Σ_j c_j α_j T_j`` per
pixel, so ``∂(Σ_pixels image)/∂c_j = Σ_pixels α_j T_j = contrib[j]``. We render once more
with ``colors = zeros(N, 1, requires_grad=True)`` and read ``colors.grad``. ``hits`` comes
from ``gsplat.rasterize_to_indices_in_range`` (every blended (Gaussian, pixel) pair) counted
with ``bincount``.

Not testable on this machine (no GPU); the selection logic is tested in
``tests/backend/test_render_device.py``.
"""

from __future__ import annotations

import numpy as np


def gsplat_importable() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:  # pragma: no cover - depends on the install
        return False
    return True


def cuda_available() -> bool:
    """True when torch sees a CUDA device (and gsplat imports)."""
    try:
        import torch
    except Exception:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available()) and gsplat_importable()


class PreparedTorchScene:
    """Activated scene tensors on the CUDA device (reused across views)."""

    def __init__(self, scene, device: str = "cuda"):
        t = scene.to_torch(device)
        self.means, self.quats, self.scales = t["means"], t["quats"], t["scales"]
        self.opacities, self.sh = t["opacities"], t["sh"]
        self.n = len(scene)
        self.device = device


def render_gsplat(prep: PreparedTorchScene, camera, *, sh_degree: int, background,
                  return_contrib: bool = False, eps2d: float = 0.3):
    """Render with ``gsplat.rasterization`` (classic mode, no compensation, tile 16, RGB+ED).
    Returns (rgb over background [H,W,3], alpha [H,W], depth [H,W], contrib | None,
    hits | None) as numpy arrays, like :func:`exgs.render.cpu.render_prepared`."""
    import torch
    from gsplat import rasterization

    dev = prep.device
    W, H = int(camera.width), int(camera.height)
    vm = torch.tensor(np.asarray(camera.world_to_camera, np.float32), device=dev)[None]
    K = torch.tensor(np.asarray(camera.K, np.float32), device=dev)[None]
    common = dict(means=prep.means, quats=prep.quats, scales=prep.scales,
                  opacities=prep.opacities, viewmats=vm, Ks=K, width=W, height=H,
                  near_plane=float(camera.near), far_plane=float(camera.far), eps2d=eps2d,
                  packed=False, tile_size=16, rasterize_mode="classic")
    with torch.no_grad():
        sh = prep.sh[:, : (sh_degree + 1) ** 2]
        out, alphas, _ = rasterization(colors=sh, sh_degree=sh_degree, render_mode="RGB+ED",
                                       **common)
    rgbd = out[0].float().cpu().numpy()
    alpha = alphas[0, ..., 0].float().cpu().numpy()
    rgb = np.ascontiguousarray(rgbd[..., :3])
    bg = np.asarray(background, np.float32).reshape(3)
    if bg.any():
        rgb = rgb + (1.0 - alpha)[..., None] * bg
    depth = np.where(alpha >= 1e-6, rgbd[..., 3], np.inf).astype(np.float32)
    contrib = hits = None
    if return_contrib:
        contrib, hits = _contrib_gsplat(prep, common, W, H)
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return rgb, alpha.astype(np.float32), depth, contrib, hits


def _contrib_gsplat(prep, common, W, H):
    import torch
    from gsplat import rasterization
    from gsplat.cuda._wrapper import rasterize_to_indices_in_range

    colors = torch.zeros((prep.n, 1), device=prep.device, requires_grad=True)
    out, _, meta = rasterization(colors=colors, render_mode="RGB", **common)
    out.sum().backward()
    contrib = colors.grad[:, 0].detach().float().cpu().numpy()
    # hits: every blended (Gaussian, pixel) pair, in one range covering all batches
    n_isects = int(meta["flatten_ids"].numel())
    trans = torch.ones((1, H, W), device=prep.device)
    with torch.no_grad():
        gs_ids, _, _ = rasterize_to_indices_in_range(
            0, n_isects // 256 + 2, trans, meta["means2d"].detach(), meta["conics"].detach(),
            meta["opacities"].detach(), W, H, 16, meta["isect_offsets"], meta["flatten_ids"])
    g = gs_ids % prep.n
    hits = torch.bincount(g.long(), minlength=prep.n).int().cpu().numpy()
    return contrib.astype(np.float32), hits
