"""Render Gaussian scenes: one entry point, two back ends with the same image.

* ``"cpu"`` — our numba rasterizer (:mod:`exgs.render.cpu`), exact re-implementation of
  gsplat's forward pass (projection, 0.3 px² blur, opacity-aware boxes, 16×16 tiles, per-tile
  depth order, α = min(0.999, o·exp(−σ)), skip α < 1/255, stop before T ≤ 1e-4).
* ``"gsplat"`` — ``gsplat.rasterization`` on CUDA (:mod:`exgs.render.cuda`).

``device="auto"`` picks gsplat when ``torch.cuda.is_available()``, else the CPU renderer.

Frames: scene values stay in the scene frame; ``camera.world_to_camera`` (OpenCV axes) may be
any affine map. Images: row 0 = top; rgb is display sRGB (3DGS colours), composited over
``background`` as ``rgb + (1 − alpha)·background`` (black → premultiplied) and clipped to
[0, 1]; depth is expected camera z ``Σ z·α·T / alpha`` (+inf where alpha < 1e-6). See
docs/renderer.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import UsageError

__all__ = ["RenderResult", "render", "render_many", "available_devices", "select_device",
           "prepare"]


@dataclass
class RenderResult:
    """One rendered view. Shapes use the camera's H×W; row 0 is the top of the image."""

    rgb: np.ndarray            # [H,W,3] float32 display sRGB over `background`, in [0, 1]
    alpha: np.ndarray          # [H,W] float32 = 1 − final transmittance
    depth: np.ndarray          # [H,W] float32 expected camera z; +inf where alpha < 1e-6
    contrib: np.ndarray | None = None  # [N] float32 Σ_pixels α_j·T_j (return_contrib)
    hits: np.ndarray | None = None     # [N] int32 pixels where j was blended (α ≥ 1/255)
    backend: str = "cpu"       # "cpu" or "gsplat"


def available_devices() -> dict:
    """{"cpu": True, "cuda": torch sees a CUDA device, "gsplat": gsplat imports}."""
    from .cuda import cuda_available, gsplat_importable

    return {"cpu": True, "cuda": cuda_available(), "gsplat": gsplat_importable()}


def select_device(device: str = "auto") -> str:
    """Map a user choice ("auto" | "cpu" | "cuda" | "gsplat") to a back end name
    ("cpu" | "gsplat"). Raises UsageError for an unknown name or when CUDA is asked for but
    missing."""
    d = (device or "auto").strip().lower()
    if d == "cpu":
        return "cpu"
    if d not in ("auto", "cuda", "gsplat"):
        raise UsageError(f"unknown render device {device!r} (expected auto, cpu or cuda)")
    from .cuda import cuda_available

    if cuda_available():
        return "gsplat"
    if d == "auto":
        return "cpu"
    raise UsageError("--device cuda was requested but no CUDA device is available "
                     "(use --device cpu or auto)")


def _check_degree(scene, sh_degree):
    if sh_degree is None:
        return scene.sh_degree
    d = int(sh_degree)
    if not 0 <= d <= scene.sh_degree:
        raise UsageError(f"sh_degree {sh_degree} not in 0..{scene.sh_degree} (the scene's degree)")
    return d


def prepare(scene, backend: str):
    """Per-scene preparation reused across views (activations, contiguous arrays)."""
    if backend == "gsplat":
        from .cuda import PreparedTorchScene

        return PreparedTorchScene(scene, "cuda")
    from ..profiling import stage
    from .cpu import PreparedScene

    with stage("prepare"):
        return PreparedScene(scene)


def _render_prepared(prep, backend, camera, sh_degree, background, return_contrib):
    bg = tuple(float(x) for x in np.asarray(background, np.float64).reshape(3))
    if backend == "gsplat":
        from .cuda import render_gsplat as fn
    else:
        from .cpu import render_prepared as fn
    rgb, alpha, depth, contrib, hits = fn(prep, camera, sh_degree=sh_degree, background=bg,
                                          return_contrib=return_contrib)
    return RenderResult(rgb=rgb, alpha=alpha, depth=depth, contrib=contrib, hits=hits,
                        backend=backend)


def render(scene, camera, *, sh_degree: int | None = None, background=(0.0, 0.0, 0.0),
           device: str = "auto", return_contrib: bool = False) -> RenderResult:
    """Render ``scene`` (:class:`~exgs.scene.GaussianScene`) seen by ``camera``
    (:class:`~exgs.cameras.Camera`).

    ``sh_degree`` — SH bands to use (default: all the scene has). ``background`` — display
    sRGB triple composited under the image. ``return_contrib`` — also return each Gaussian's
    Σ α·T over all pixels and its pixel count (for pruning).
    """
    backend = select_device(device)
    deg = _check_degree(scene, sh_degree)
    return _render_prepared(prepare(scene, backend), backend, camera, deg, background,
                            return_contrib)


def render_many(scene, cameras: Iterable, *, sh_degree: int | None = None,
                background=(0.0, 0.0, 0.0), device: str = "auto",
                return_contrib: bool = False) -> Iterator[RenderResult]:
    """Render several views, preparing the scene once. Yields one RenderResult per camera."""
    backend = select_device(device)
    deg = _check_degree(scene, sh_degree)
    prep = prepare(scene, backend)
    for cam in cameras:
        yield _render_prepared(prep, backend, cam, deg, background, return_contrib)
