"""Viewport view → renderer camera (exgs.viewport_camera), without bpy.

The matrices are built the way OpenGL / Blender build them (glFrustum / glOrtho layout);
tests/addon/test_viewport_bpy.py checks the same conversion against Blender's own matrices
and projection helpers.
"""

import numpy as np
import pytest

from exgs.cameras import camera_from_blender
from exgs.errors import UsageError
from exgs.viewport_camera import (ORTHO_DISTANCE_FACTOR, camera_from_view,
                                  clip_range, projection_kind, region_pixels)


def frustum(l, r, b, t, n, f):
    return np.array([[2 * n / (r - l), 0, (r + l) / (r - l), 0],
                     [0, 2 * n / (t - b), (t + b) / (t - b), 0],
                     [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)],
                     [0, 0, -1, 0]], np.float64)


def ortho(l, r, b, t, n, f):
    return np.array([[2 / (r - l), 0, 0, -(r + l) / (r - l)],
                     [0, 2 / (t - b), 0, -(t + b) / (t - b)],
                     [0, 0, -2 / (f - n), -(f + n) / (f - n)],
                     [0, 0, 0, 1]], np.float64)


def rot(axis, deg):
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m = np.eye(4)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def view_matrix():
    """A rigid world → view transform (an orbiting viewport)."""
    cam = rot("z", 35) @ rot("x", 70)
    cam[:3, 3] = [4.0, -6.0, 3.0]
    return np.linalg.inv(cam)


def points_in_view(v, n, rng, depth=(2.0, 9.0), spread=0.5):
    """World points in front of the view (view-space z in −depth)."""
    z = -rng.uniform(*depth, n)
    xy = rng.uniform(-spread, spread, (n, 2)) * -z[:, None]
    pv = np.c_[xy, z, np.ones(n)]
    return (np.linalg.inv(v) @ pv.T).T[:, :3]


def to_top_rows(px, height):
    return np.stack([px[:, 0], height - px[:, 1]], 1)


def test_perspective_matches_clip_space_projection_and_depth():
    rng = np.random.default_rng(0)
    W, H = 640, 360
    v = view_matrix()
    p = frustum(-0.3, 0.5, -0.2, 0.25, 0.1, 200.0)  # off-centre (shifted) frustum
    assert projection_kind(p) == "persp"
    assert clip_range(p) == pytest.approx((0.1, 200.0))
    vc = camera_from_view(v, p, W, H)
    assert not vc.ortho and vc.depth_offset == 0.0
    cam = vc.camera
    assert (cam.width, cam.height) == (W, H)
    assert cam.near == pytest.approx(0.1) and cam.far == pytest.approx(200.0)
    pts = points_in_view(v, 200, rng)
    uv, z = cam.project(pts)
    np.testing.assert_allclose(uv, to_top_rows(region_pixels(v, p, W, H, pts), H), atol=1e-7)
    zv = (np.c_[pts, np.ones(len(pts))] @ v.T)[:, 2]
    np.testing.assert_allclose(z, -zv, rtol=1e-12)


def test_object_transform_any_affine():
    rng = np.random.default_rng(1)
    W, H = 300, 200
    v, p = view_matrix(), frustum(-0.4, 0.4, -0.27, 0.27, 0.05, 100.0)
    obj = rot("x", -90) @ np.diag([2.0, 0.5, 1.5, 1.0])
    obj[:3, 3] = [0.3, -0.2, 0.1]
    local = rng.uniform(-0.5, 0.5, (100, 3))
    world = (np.c_[local, np.ones(100)] @ obj.T)[:, :3]
    cam = camera_from_view(v, p, W, H, object_matrix_world=obj).camera
    uv, z = cam.project(local)
    np.testing.assert_allclose(uv, to_top_rows(region_pixels(v, p, W, H, world), H), atol=1e-7)
    assert np.all(z > 0)


def test_camera_view_equals_the_f12_camera_with_shift():
    """In camera view with the frame filling the region, Blender's window matrix is the
    camera's projection; the viewport camera must then equal camera_from_blender's."""
    W, H, lens, sensor, sx, sy, n, f = 480, 270, 35.0, 36.0, 0.1, -0.05, 0.1, 100.0
    pix = sensor / lens * n / W  # Blender's view plane (sensor fit horizontal)
    xmin, xmax = (-0.5 * W + sx * W) * pix, (0.5 * W + sx * W) * pix
    ymin, ymax = (-0.5 * H + sy * W) * pix, (0.5 * H + sy * W) * pix
    p = frustum(xmin, xmax, ymin, ymax, n, f)
    cam_mw = np.linalg.inv(view_matrix())
    ref = camera_from_blender(camera_matrix_world=cam_mw, lens=lens, sensor_width=sensor,
                              sensor_height=24.0, sensor_fit="HORIZONTAL", shift_x=sx,
                              shift_y=sy, resolution_x=W, resolution_y=H, clip_start=n,
                              clip_end=f)
    got = camera_from_view(view_matrix(), p, W, H).camera
    for k in ("fx", "fy", "cx", "cy", "near", "far"):
        assert getattr(got, k) == pytest.approx(getattr(ref, k), rel=1e-9), k
    np.testing.assert_allclose(got.world_to_camera, ref.world_to_camera, atol=1e-12)


def test_orthographic_long_lens_within_its_bound():
    rng = np.random.default_rng(2)
    W, H = 640, 360
    v = view_matrix()
    p = ortho(-3.0, 2.0, -1.4, 1.4, -50.0, 50.0)
    assert projection_kind(p) == "ortho"
    assert clip_range(p) == pytest.approx((-50.0, 50.0))
    centre, radius = np.array([0.5, -0.3, 0.2]), 2.0
    d = rng.normal(size=(300, 3))
    pts = centre + d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, radius, (300, 1))
    vc = camera_from_view(v, p, W, H, focus_center=centre, focus_radius=radius)
    assert vc.ortho
    uv, z = vc.camera.project(pts)
    ref = to_top_rows(region_pixels(v, p, W, H, pts), H)
    # scale error ≤ r/(D − r) relative to the principal point (module doc)
    off = np.linalg.norm(ref - [vc.camera.cx, vc.camera.cy], axis=1)
    bound = off * radius / (ORTHO_DISTANCE_FACTOR * radius - radius) + 1e-6
    err = np.linalg.norm(uv - ref, axis=1)
    assert np.all(err <= bound) and err.max() < 0.5
    zv = (np.c_[pts, np.ones(len(pts))] @ v.T)[:, 2]
    np.testing.assert_allclose(z - vc.depth_offset, -zv, atol=1e-9)
    assert vc.camera.near > 0 and vc.camera.near < z.min()
    # the centre of the focus projects exactly (no scale error on the focus plane)
    uc, _ = vc.camera.project(centre[None])
    np.testing.assert_allclose(uc, to_top_rows(region_pixels(v, p, W, H, centre[None]), H),
                               atol=1e-6)


def test_crop_moves_the_principal_point():
    rng = np.random.default_rng(3)
    W, H = 640, 360
    v, p = view_matrix(), frustum(-0.3, 0.3, -0.17, 0.17, 0.1, 100.0)
    full = camera_from_view(v, p, W, H).camera
    crop = (100, 40, 420, 300)  # x0, y0 (from the bottom), x1, y1
    part = camera_from_view(v, p, W, H, crop=crop).camera
    assert (part.width, part.height) == (320, 260)
    pts = points_in_view(v, 50, rng)
    uv_full, _ = full.project(pts)
    uv_part, _ = part.project(pts)
    np.testing.assert_allclose(uv_part, uv_full - [100, H - 300], atol=1e-9)


@pytest.mark.parametrize("bad, msg", [
    (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0.2, -1, 0]], float),
     "neither perspective nor orthographic"),
    (np.diag([-1.0, 1.0, -1.0, 1.0]), "mirrored or skewed"),
    (np.full((4, 4), np.nan), "non-finite"),
    (np.eye(3), "4x4"),
])
def test_unsupported_projections_are_refused(bad, msg):
    with pytest.raises(UsageError, match=msg):
        camera_from_view(np.eye(4), bad, 64, 64)


def test_bad_size_is_refused():
    with pytest.raises(UsageError, match="positive"):
        camera_from_view(np.eye(4), frustum(-1, 1, -1, 1, 0.1, 10), 0, 10)
