"""Pinhole cameras (OpenCV convention), INRIA cameras.json, orbits, and Blender camera math.

Conventions (used by every renderer in this package):

* ``world_to_camera`` [4,4] maps points in the *scene frame* (the PLY's own coordinates) to
  camera coordinates with x right, y down, z forward (OpenCV / COLMAP / gsplat ``viewmats``).
  It may contain scale or a general affine part (an object's ``matrix_world`` from Blender);
  renderers transform covariances with its 3×3 part, which is exact for any linear map.
* Intrinsics in pixels: ``u = fx·x/z + cx``, ``v = fy·y/z + cy``; pixel (row i, column j) has
  its centre at (u, v) = (j + 0.5, i + 0.5); row 0 is the *top* of the image.
* Depth is camera-space z, in the units of the frame ``world_to_camera`` maps into.

No bpy here: :func:`camera_from_blender` takes plain numbers so it is testable anywhere.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import SceneFormatError, UsageError

#: Blender camera (−Z forward, +Y up) → OpenCV camera (+Z forward, +Y down).
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class Camera:
    """A pinhole camera. ``world_to_camera`` is [4,4] float64 (OpenCV axes, see module doc)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    world_to_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    name: str = ""
    near: float = 0.01
    far: float = 1e10

    def __post_init__(self) -> None:
        self.world_to_camera = np.asarray(self.world_to_camera, dtype=np.float64).reshape(4, 4)
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise UsageError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise UsageError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")

    @property
    def K(self) -> np.ndarray:
        """[3,3] intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    @property
    def camera_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_camera)

    @property
    def position(self) -> np.ndarray:
        """[3] camera centre in the scene frame."""
        return self.camera_to_world[:3, 3].copy()

    @property
    def fov_x(self) -> float:
        """Horizontal field of view in radians (for a centred principal point)."""
        return 2.0 * math.atan(self.width / (2.0 * self.fx))

    def resized(self, width: int, height: int) -> "Camera":
        """The same view at another resolution (intrinsics scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy,
                       cx=self.cx * sx, cy=self.cy * sy,
                       world_to_camera=self.world_to_camera.copy())

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project [N,3] scene-frame points → (pixel coords [N,2] (u, v), depth z [N])."""
        p = np.asarray(points, np.float64)
        pc = p @ self.world_to_camera[:3, :3].T + self.world_to_camera[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.fx * pc[:, 0] / z + self.cx, self.fy * pc[:, 1] / z + self.cy], 1)
        return uv, z

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy, "name": self.name, "near": self.near,
                "far": self.far, "world_to_camera": self.world_to_camera.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(width=d["width"], height=d["height"], fx=d["fx"], fy=d["fy"], cx=d["cx"],
                   cy=d["cy"], world_to_camera=np.asarray(d["world_to_camera"], np.float64),
                   name=d.get("name", ""), near=d.get("near", 0.01), far=d.get("far", 1e10))


def look_at(position, target, up, width: int, height: int, fov_x_deg: float = 50.0,
            name: str = "") -> Camera:
    """Camera at ``position`` looking at ``target``; ``up`` is the scene's up direction
    (it appears towards the top of the image). Centred principal point, square pixels."""
    pos = np.asarray(position, np.float64)
    fwd = np.asarray(target, np.float64) - pos
    fwd /= np.linalg.norm(fwd)
    up = np.asarray(up, np.float64)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along up: pick any right vector
        right = np.cross(fwd, np.roll(up, 1))
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd], 0)  # rows: camera axes in the scene frame
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ pos
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return Camera(width, height, fx, fx, width / 2.0, height / 2.0, w2c, name=name)


def parse_up(up) -> np.ndarray:
    """'+y', '-y', 'z', ... or a 3-vector → unit up vector."""
    if isinstance(up, str):
        s = up.strip().lower()
        sign = -1.0 if s.startswith("-") else 1.0
        axis = s.lstrip("+-")
        if axis not in ("x", "y", "z"):
            raise UsageError(f"up axis must be one of ±x, ±y, ±z, got {up!r}")
        v = np.zeros(3)
        v["xyz".index(axis)] = sign
        return v
    v = np.asarray(up, np.float64).reshape(3)
    return v / np.linalg.norm(v)


def orbit_cameras(
    center,
    radius: float,
    count: int,
    width: int,
    height: int,
    *,
    up="-y",
    elevation_deg: tuple[float, float] = (10.0, 40.0),
    fov_x_deg: float = 50.0,
    seed: int | None = 0,
    azimuth_offset_deg: float = 0.0,
) -> list[Camera]:
    """``count`` cameras on a sphere of ``radius`` around ``center`` looking at it.

    Azimuths are evenly spaced (+ a seeded jitter when ``seed`` is not None); elevations
    (degrees above the plane normal to ``up``) spread over ``elevation_deg``. Deterministic.
    ``up`` defaults to −y: COLMAP/INRIA captures are usually y-down.
    """
    if count < 1:
        raise UsageError(f"orbit camera count must be ≥ 1, got {count}")
    up_v = parse_up(up)
    center = np.asarray(center, np.float64)
    helper = np.array([1.0, 0, 0]) if abs(up_v[0]) < 0.9 else np.array([0, 0, 1.0])
    e1 = np.cross(up_v, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up_v, e1)
    rng = np.random.default_rng(seed) if seed is not None else None
    lo, hi = elevation_deg
    cams = []
    for i in range(count):
        az = 2 * math.pi * i / count + math.radians(azimuth_offset_deg)
        frac = (i * 0.6180339887) % 1.0 if count > 1 else 0.5  # low-discrepancy spread
        if rng is not None:
            az += rng.uniform(-0.5, 0.5) * 2 * math.pi / count
            frac = rng.uniform(0.0, 1.0) if count > 1 else frac
        el_deg = lo + (hi - lo) * frac
        el = math.radians(el_deg)
        d = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up_v
        cams.append(look_at(center + radius * d, center, up_v, width, height, fov_x_deg,
                            name=f"orbit_{i:04d}"))
    return cams


def orbit_for_scene(scene, count: int, width: int, height: int, *, up="-y",
                    distance: float = 1.0, fov_x_deg: float = 50.0, seed: int | None = 0,
                    elevation_deg=(10.0, 40.0), azimuth_offset_deg: float = 0.0) -> list[Camera]:
    """Orbit views framing the scene's robust bounds (2–98 % quantiles of the centres).

    ``distance`` scales the radius: 1.0 frames the bounding sphere in the narrower field of
    view; smaller values move in closer.
    """
    lo, hi = scene.robust_bounds()
    center = (lo + hi) / 2.0
    half_diag = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)
    fov_narrow = min(math.radians(fov_x_deg),
                     2 * math.atan(math.tan(math.radians(fov_x_deg) / 2) * height / width))
    radius = distance * half_diag / math.sin(fov_narrow / 2)
    return orbit_cameras(center, radius, count, width, height, up=up, fov_x_deg=fov_x_deg,
                         seed=seed, elevation_deg=elevation_deg,
                         azimuth_offset_deg=azimuth_offset_deg)


# ---------------------------------------------------------------------------- cameras.json
#: Largest image side accepted from cameras.json (the same limit as ``--size``).
MAX_IMAGE_SIDE = 16384


def _dim(v, what: str) -> int:
    """An image side from cameras.json: an integer (or integral number) in 1..16384."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or \
            (isinstance(v, float) and not (math.isfinite(v) and v == int(v))):
        raise ValueError(f"{what} must be a whole number, got {v!r}")
    if not 1 <= v <= MAX_IMAGE_SIDE:
        raise ValueError(f"{what} {v!r} out of range 1..{MAX_IMAGE_SIDE}")
    return int(v)


def even_pick(cams, k: int) -> list:
    """``k`` of ``cams`` evenly spread over the list, first and last included (all of them
    when there are ≤ ``k``)."""
    cams = list(cams)
    if len(cams) <= k:
        return cams
    return [cams[int(i)] for i in np.linspace(0, len(cams) - 1, k).round().astype(int)]


def fit_cameras(cameras, long_side: int) -> list:
    """``cameras`` with their long side reduced to ``long_side`` px (never enlarged; the
    same pose and field of view)."""
    out = []
    for c in cameras:
        m = max(c.width, c.height)
        if m <= long_side:
            out.append(c)
        else:
            f = long_side / m
            out.append(c.resized(max(1, round(c.width * f)), max(1, round(c.height * f))))
    return out


def read_cameras_json(path: str | os.PathLike) -> list[Camera]:
    """Read INRIA ``cameras.json`` (list of {id, img_name, width, height, position,
    rotation, fx, fy}). ``rotation`` is camera-to-world (columns = camera axes in the scene
    frame, OpenCV), ``position`` the camera centre; the principal point is the image centre."""
    path = Path(path)
    try:
        entries = json.loads(Path(path).read_text())
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SceneFormatError(path, f"not valid JSON: {e}") from None
    except RecursionError:
        raise SceneFormatError(path, "not valid JSON: nested too deeply") from None
    if not isinstance(entries, list) or not entries:
        raise SceneFormatError(path, "expected a non-empty JSON list of cameras")
    cams = []
    for i, e in enumerate(entries):
        try:
            R = np.asarray(e["rotation"], np.float64).reshape(3, 3)
            pos = np.asarray(e["position"], np.float64).reshape(3)
            c2w = np.eye(4)
            c2w[:3, :3], c2w[:3, 3] = R, pos
            if not np.isfinite(c2w).all():
                raise ValueError("non-finite pose")
            w, h = _dim(e["width"], "width"), _dim(e["height"], "height")
            fx, fy = float(e["fx"]), float(e["fy"])
            if not (math.isfinite(fx) and math.isfinite(fy) and fx > 0 and fy > 0):
                raise ValueError(f"focal lengths must be finite and positive, got {fx}, {fy}")
            cams.append(Camera(w, h, fx, fy, w / 2.0, h / 2.0,
                               np.linalg.inv(c2w), name=str(e.get("img_name", e.get("id", i)))))
        except (KeyError, ValueError, TypeError, OverflowError, np.linalg.LinAlgError,
                UsageError) as err:
            raise SceneFormatError(path, f"camera {i}: {type(err).__name__}: {err}") from None
    return cams


def write_cameras_json(cameras: list[Camera], path: str | os.PathLike) -> None:
    from .fsutil import write_bytes_atomic

    out = []
    for i, c in enumerate(cameras):
        c2w = c.camera_to_world
        out.append({"id": i, "img_name": c.name or f"{i:05d}", "width": c.width,
                    "height": c.height, "position": c2w[:3, 3].tolist(),
                    "rotation": c2w[:3, :3].tolist(), "fy": c.fy, "fx": c.fx})
    write_bytes_atomic(path, json.dumps(out, indent=1).encode())


# ---------------------------------------------------------------------------- Blender
def blender_render_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """Blender's output size: integer ``res · pct / 100`` per axis."""
    return max(1, resolution_x * percentage // 100), max(1, resolution_y * percentage // 100)


def camera_from_blender(
    *,
    camera_matrix_world,
    lens: float,
    sensor_width: float,
    sensor_height: float,
    sensor_fit: str = "AUTO",
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    resolution_x: int = 1920,
    resolution_y: int = 1080,
    resolution_percentage: int = 100,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    object_matrix_world=None,
    clip_start: float = 0.01,
    clip_end: float = 1e10,
    name: str = "",
) -> Camera:
    """A Blender perspective camera as a :class:`Camera` that views the *object's* frame.

    ``world_to_camera = diag(1,−1,−1,1) · inverse(camera_matrix_world) · object_matrix_world``
    so Gaussians stay in their own (capture) frame and the object's transform is honoured.
    The intrinsics follow Blender's view-plane computation: the sensor fit (AUTO picks
    horizontal when ``pixel_aspect_x·width ≥ pixel_aspect_y·height``) decides which axis the
    sensor size spans; shift is in units of that axis' pixel count; pixel aspect makes
    ``fy = fx · pixel_aspect_x / pixel_aspect_y``. Lens and sensor sizes are in mm.
    """
    w, h = blender_render_size(resolution_x, resolution_y, resolution_percentage)
    xasp, yasp = float(pixel_aspect_x), float(pixel_aspect_y)
    ycor = yasp / xasp
    fit = sensor_fit.upper()
    sensor = sensor_height if fit == "VERTICAL" else sensor_width
    if fit == "AUTO":
        fit = "HORIZONTAL" if xasp * w >= yasp * h else "VERTICAL"
    viewfac = float(w) if fit == "HORIZONTAL" else ycor * h
    fx = lens * viewfac / sensor
    fy = fx / ycor
    cx = w / 2.0 - shift_x * viewfac
    cy = h / 2.0 + shift_y * viewfac / ycor
    cam_mw = np.asarray(camera_matrix_world, np.float64).reshape(4, 4)
    obj_mw = np.eye(4) if object_matrix_world is None else np.asarray(object_matrix_world,
                                                                      np.float64).reshape(4, 4)
    # Blender camera matrices may carry scale; only the rigid part defines the view.
    cam_rigid = cam_mw.copy()
    cam_rigid[:3, :3] /= np.linalg.norm(cam_rigid[:3, :3], axis=0, keepdims=True)
    w2c = BLENDER_TO_OPENCV @ np.linalg.inv(cam_rigid) @ obj_mw
    return Camera(w, h, fx, fy, cx, cy, w2c, name=name, near=clip_start, far=clip_end)
