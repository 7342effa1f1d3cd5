"""Pure-numpy conventions shared by the add-on (no bpy, testable anywhere).

* **Frames.** Gaussian data stays in the capture's own frame. The capture→Blender axis change
  lives in the object's ``matrix_world``. A COLMAP/INRIA capture is x right, y *down*,
  z forward. Blender is Z-up, and its Front view looks along +Y. We want capture "up" (−y)
  → Blender +Z and capture "forward" (+z) → Blender +Y, x unchanged::

      (x, y, z)_capture  ↦  (x, z, −y)_blender        i.e. a rotation of −90° about X

  (``Rx(+90°)`` would send −y to −Z: the scene would be upside down.)
* **Colour.** The backend returns display-referred sRGB composited over black (premultiplied).
  Blender passes are scene-linear premultiplied: un-premultiply, decode sRGB → linear,
  re-premultiply. With the "Standard" view transform Blender re-encodes linear → sRGB, so
  the capture's colours come back exactly; AgX applies a filmic tone curve (and desaturates
  bright colours), so the image looks flatter/darker than the capture.
* **Depth.** Camera-space z in Blender scene units; 1e10 where nothing was hit.
* **Rows.** Backend images have row 0 at the top; Blender render buffers start at the bottom.
"""

from __future__ import annotations

import numpy as np

#: Blender's value for "no depth" in the Depth pass.
DEPTH_EMPTY = 1.0e10

#: Name → 4×4 rotation applied as the object's matrix_world (capture frame → Blender world).
AXIS_PRESETS = {
    # capture y down, z forward (COLMAP / INRIA 3DGS): rotate −90° about X
    "Y_DOWN": ((1, 0, 0, 0), (0, 0, 1, 0), (0, -1, 0, 0), (0, 0, 0, 1)),
    # y up, z backward (OpenGL / glTF style): rotate +90° about X
    "Y_UP": ((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1)),
    # already Blender-like (z up)
    "Z_UP": ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)),
}


def axis_matrix(preset: str) -> np.ndarray:
    """[4,4] float64 capture→Blender rotation for ``preset`` (see :data:`AXIS_PRESETS`)."""
    return np.array(AXIS_PRESETS[preset], np.float64)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decode (values clamped to ≥ 0), float32 in, float32 out."""
    c = np.asarray(c, np.float32)
    c = np.maximum(c, 0.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.maximum(np.asarray(c, np.float32), 0.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055).astype(np.float32)


def premult_srgb_to_linear(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """[H,W,3] premultiplied display sRGB + [H,W] alpha → [H,W,3] premultiplied linear."""
    a = np.asarray(alpha, np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(a > 1e-6, np.asarray(rgb, np.float32) / np.maximum(a, 1e-6), 0.0)
    return (srgb_to_linear(np.clip(straight, 0.0, 1.0)) * a).astype(np.float32)


def blender_depth(depth: np.ndarray) -> np.ndarray:
    """Backend depth (+inf / nan where empty) → Blender Depth pass values (1e10 where empty)."""
    d = np.asarray(depth, np.float32)
    return np.where(np.isfinite(d) & (d > 0), d, DEPTH_EMPTY).astype(np.float32)


def composite_layers(layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """Depth-sorted "over" composite of several premultiplied layers, per pixel.

    ``layers``: list of (rgb [H,W,3] premultiplied, alpha [H,W], depth [H,W] with 1e10/inf
    where empty). Each pixel's layers are sorted front to back by depth and composited with
    ``C = C_front + (1 − α_front)·C_back``. Returns (rgb, alpha, depth) where depth is the
    front-most finite depth (1e10 where no layer hit).
    """
    if len(layers) == 1:
        rgb, a, d = layers[0]
        return rgb, a, blender_depth(d)
    rgb = np.stack([l[0] for l in layers])  # [L,H,W,3]
    alp = np.stack([l[1] for l in layers])  # [L,H,W]
    dep = np.stack([blender_depth(l[2]) for l in layers])  # [L,H,W]
    order = np.argsort(dep, axis=0, kind="stable")
    rgb = np.take_along_axis(rgb, order[..., None], 0)
    alp = np.take_along_axis(alp, order, 0)
    out_rgb = np.zeros(rgb.shape[1:], np.float32)
    out_a = np.zeros(alp.shape[1:], np.float32)
    trans = np.ones(alp.shape[1:], np.float32)
    for i in range(len(layers)):
        out_rgb += trans[..., None] * rgb[i]
        out_a += trans * alp[i]
        trans *= 1.0 - alp[i]
    return out_rgb, out_a, dep.min(0)


def to_blender_rect(rgb_lin: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """[H,W,3] + [H,W] (row 0 = top) → flat float32 RGBA, row 0 = bottom (Blender order)."""
    h, w = alpha.shape
    out = np.empty((h, w, 4), np.float32)
    out[..., :3] = rgb_lin
    out[..., 3] = alpha
    return np.ascontiguousarray(out[::-1]).reshape(-1)


def to_blender_plane(plane: np.ndarray) -> np.ndarray:
    """[H,W] (row 0 = top) → flat float32, row 0 = bottom."""
    return np.ascontiguousarray(np.asarray(plane, np.float32)[::-1]).reshape(-1)
