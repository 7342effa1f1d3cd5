"""Blender 3D-viewport views → renderer cameras (no bpy: plain matrices in, Camera out).

A 3D viewport region is described by two 4×4 matrices (``RegionView3D``):

* ``view_matrix`` V — world → view space (OpenGL axes: x right, y up, looking down −z),
  a rigid transform;
* ``window_matrix`` P — view space → clip space (OpenGL projection). In camera view
  (numpad 0) Blender builds P from the camera itself (lens, sensor fit, shift) and the
  zoom/offset of the camera frame inside the region, so the same formulas cover free
  views and camera views.

NDC x, y ∈ [−1, 1] span the region's full width W and height H (NDC −1 = the left / bottom
pixel *edge*). With OpenCV camera axes (x right, y down, z forward: X = x, Y = −y, Z = −z)
and pixel centres at (j + 0.5, i + 0.5), row 0 at the top:

* **perspective** (P row 3 = (0, 0, −1, 0)): ``u = fx·X/Z + cx``, ``v = fy·Y/Z + cy`` with
  ``fx = W·P00/2``, ``cx = W·(1 − P02)/2``, ``fy = H·P11/2``, ``cy = H·(1 + P12)/2``; clip
  planes ``n = P23/(P22 − 1)``, ``f = P23/(P22 + 1)``.
* **orthographic** (P row 3 = (0, 0, 0, 1)): ``u = W/2·(P00·X + P03 + 1)``,
  ``v = H/2·(P11·Y − P13 + 1)``. The renderer is a pinhole renderer, so an orthographic
  view is rendered by a *long-lens* pinhole camera: the eye moves back by ``s`` along the
  view axis so that the focus plane (the depth of the scene's bounding-sphere centre, Z₀)
  lies at distance ``D = ORTHO_DISTANCE_FACTOR · r`` (r = bounding radius), with
  ``fx = W/2·P00·D``. At Z₀ the image is exact; a point ``Δz`` off that plane is scaled by
  ``D/(D + Δz)``, i.e. by at most ``1/ORTHO_DISTANCE_FACTOR`` relative to the image centre
  (0.1 %: ≤ 0.5 px at 1000 px from the centre). Rendered depths are shifted by ``s``
  (:attr:`ViewCamera.depth_offset`, subtracted after rendering). SH colours then see a
  view direction within 1/1000 rad of the orthographic one.

Objects: ``world_to_camera = T(0, 0, s) · diag(1, −1, −1, 1) · V · object_matrix_world``, so
Gaussians stay in their own frame (any affine object transform is exact in the renderer)
and depths are in Blender world units.

Crops: ``crop = (x0, y0, x1, y1)`` in region pixels, **y from the bottom** (Blender's region
coordinates, x1/y1 exclusive) renders only that sub-rectangle (render border, or a camera
frame inside the region); the principal point moves by the crop's top-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cameras import BLENDER_TO_OPENCV, Camera
from .errors import UsageError

#: Orthographic views: eye distance / bounding radius of the long-lens camera (see module doc).
ORTHO_DISTANCE_FACTOR = 1000.0


@dataclass(frozen=True)
class ViewCamera:
    """A camera for one object of a viewport view. ``depth_offset`` is subtracted from the
    rendered depth (non-zero for orthographic views); ``ortho`` says which projection the
    window matrix had."""

    camera: Camera
    depth_offset: float = 0.0
    ortho: bool = False


def _mat4(m, what: str) -> np.ndarray:
    a = np.asarray(m, np.float64)
    if a.shape != (4, 4):
        a = a.reshape(-1)
        if a.size != 16:
            raise UsageError(f"{what} must be a 4x4 matrix, got {a.size} numbers")
        a = a.reshape(4, 4)
    if not np.isfinite(a).all():
        raise UsageError(f"{what} has non-finite entries")
    return a


def projection_kind(window_matrix) -> str:
    """"persp" or "ortho" from the last row of an OpenGL projection matrix; UsageError for
    anything else (e.g. a panoramic or skewed projection)."""
    p = _mat4(window_matrix, "window_matrix")
    last = p[3]
    if np.allclose(last, (0.0, 0.0, -1.0, 0.0), atol=1e-9):
        kind = "persp"
    elif np.allclose(last, (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        kind = "ortho"
    else:
        raise UsageError("the viewport projection is neither perspective nor orthographic "
                         f"(last row {np.round(last, 6).tolist()}): ExGS cannot render it")
    if not (p[0, 0] > 0 and p[1, 1] > 0) or abs(p[0, 1]) > 1e-9 or abs(p[1, 0]) > 1e-9:
        raise UsageError("the viewport projection is mirrored or skewed: ExGS cannot render it")
    return kind


def clip_range(window_matrix) -> tuple[float, float]:
    """(near, far) along the view axis (OpenCV z) of a projection matrix (ortho: near may
    be negative, Blender centres orthographic clipping on the view)."""
    p = _mat4(window_matrix, "window_matrix")
    a, b = p[2, 2], p[2, 3]
    if projection_kind(p) == "persp":
        near = b / (a - 1.0) if a != 1.0 else 0.01
        far = b / (a + 1.0) if a != -1.0 else 1e10
    else:
        near, far = (b + 1.0) / a, (b - 1.0) / a
    if not (np.isfinite(near) and np.isfinite(far)) or far <= near:
        raise UsageError(f"the viewport clip range is invalid (near {near}, far {far})")
    return float(near), float(far)


def _check_crop(crop, width: int, height: int) -> tuple[int, int, int, int]:
    if crop is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = (int(v) for v in crop)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"crop {tuple(crop)} is empty inside the {width}x{height} region")
    return x0, y0, x1, y1


def ortho_eye_shift(view_matrix, focus_center, focus_radius: float) -> tuple[float, float]:
    """(s, D) of the long-lens camera for an orthographic view: the eye moves back by ``s``
    along the view axis so the focus centre (world) is at distance ``D`` in front of it."""
    v = _mat4(view_matrix, "view_matrix")
    c = np.append(np.asarray(focus_center, np.float64).reshape(3), 1.0)
    z0 = -float((v @ c)[2])  # OpenCV depth of the focus centre in the orthographic view
    d = ORTHO_DISTANCE_FACTOR * max(float(focus_radius), 1e-6)
    return d - z0, d


def camera_from_view(view_matrix, window_matrix, width: int, height: int, *,
                     object_matrix_world=None, crop=None, focus_center=(0.0, 0.0, 0.0),
                     focus_radius: float = 1.0, name: str = "viewport") -> ViewCamera:
    """The renderer camera that sees what the viewport region (``width`` × ``height`` px)
    shows of an object (``object_matrix_world``, identity if None), restricted to ``crop``.

    ``focus_center`` / ``focus_radius`` (world frame) bound what is rendered; they matter only
    for orthographic views (the long-lens distance, see module doc). Raises UsageError for
    matrices that are not a perspective or orthographic projection, or an empty crop.
    """
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise UsageError(f"viewport size must be positive, got {width}x{height}")
    v = _mat4(view_matrix, "view_matrix")
    p = _mat4(window_matrix, "window_matrix")
    kind = projection_kind(p)
    near, far = clip_range(p)
    obj = np.eye(4) if object_matrix_world is None else _mat4(object_matrix_world,
                                                              "object_matrix_world")
    w2c = BLENDER_TO_OPENCV @ v @ obj
    x0, y0, x1, y1 = _check_crop(crop, width, height)
    top = height - y1  # rows above the crop (image rows start at the top)
    if kind == "persp":
        fx, fy = width * p[0, 0] / 2.0, height * p[1, 1] / 2.0
        cx, cy = width * (1.0 - p[0, 2]) / 2.0, height * (1.0 + p[1, 2]) / 2.0
        shift = 0.0
    else:
        shift, dist = ortho_eye_shift(v, focus_center, focus_radius)
        fx, fy = width * p[0, 0] * dist / 2.0, height * p[1, 1] * dist / 2.0
        cx, cy = width * (1.0 + p[0, 3]) / 2.0, height * (1.0 - p[1, 3]) / 2.0
        t = np.eye(4)
        t[2, 3] = shift
        w2c = t @ w2c
        near, far = max(near + shift, 1e-3 * dist), far + shift
    cam = Camera(x1 - x0, y1 - y0, fx, fy, cx - x0, cy - top, w2c, name=name,
                 near=max(near, 1e-6), far=far)
    return ViewCamera(cam, shift, kind == "ortho")


def region_pixels(view_matrix, window_matrix, width: int, height: int, points):
    """Reference projection (what Blender's ``location_3d_to_region_2d`` computes): world
    points [N,3] → region pixel coordinates [N,2] (x from the left edge, y from the BOTTOM
    edge; pixel centres at +0.5) through clip space. For tests and crops."""
    v = _mat4(view_matrix, "view_matrix")
    p = _mat4(window_matrix, "window_matrix")
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    clip = np.c_[pts, np.ones(len(pts))] @ (p @ v).T
    ndc = clip[:, :2] / clip[:, 3:4]
    return np.stack([(ndc[:, 0] + 1.0) * width / 2.0, (ndc[:, 1] + 1.0) * height / 2.0], 1)


__all__ = ["ViewCamera", "ORTHO_DISTANCE_FACTOR", "camera_from_view", "projection_kind",
           "clip_range", "ortho_eye_shift", "region_pixels"]
