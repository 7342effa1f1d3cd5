"""Request data → backend objects: cameras (either request form) and JSON-safe stats."""

from __future__ import annotations

import numpy as np

from ..errors import ExgsError
from .errors import ApiError
from .models import BlenderCameraSpec


def to_camera(spec, index: int, size=None):
    """A request camera (either form) → ``exgs.cameras.Camera``; 422 when degenerate."""
    from ..cameras import Camera, camera_from_blender

    try:
        with np.errstate(all="ignore"):
            if isinstance(spec, BlenderCameraSpec):
                cam = camera_from_blender(**spec.model_dump())
            else:
                cam = Camera.from_dict(spec.model_dump())
            if size is not None:
                cam = cam.resized(int(size[0]), int(size[1]))
    except (ExgsError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as e:
        raise ApiError(422, f"camera {index}: {e}") from None
    m = cam.world_to_camera
    vals = np.array([cam.fx, cam.fy, cam.cx, cam.cy], np.float64)
    if not (np.isfinite(m).all() and np.isfinite(vals).all()):
        raise ApiError(422, f"camera {index}: the camera numbers give a non-finite view")
    det = abs(float(np.linalg.det(m[:3, :3])))
    if not (det > 1e-18) or not np.isfinite(det):
        raise ApiError(422, f"camera {index}: the view transform is singular")
    return cam


def check_size(cam, index: int, limits) -> None:
    if max(cam.width, cam.height) > limits.max_image_side or \
            cam.width * cam.height > limits.max_pixels:
        raise ApiError(422, f"camera {index}: {cam.width}x{cam.height} exceeds the limit "
                            f"({limits.max_image_side} px per side, {limits.max_pixels} pixels)")


def cameras(specs, limits, size=None) -> list:
    """Request cameras → checked ``Camera`` list (422 naming the first bad one)."""
    cams = [to_camera(c, i, size) for i, c in enumerate(specs)]
    for i, c in enumerate(cams):
        check_size(c, i, limits)
    return cams


def jsonable(x):
    """Stats from the compressor → JSON-safe (numpy scalars/arrays, non-finite floats)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)
