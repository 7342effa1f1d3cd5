import json
import math

import numpy as np
import pytest

from exgs.cameras import (Camera, camera_from_blender, look_at, orbit_for_scene,
                          read_cameras_json, write_cameras_json)
from exgs.errors import SceneFormatError
from exgs.synth import demo_scene


def test_look_at_axes_opencv():
    # Camera on +z looking at the origin with up = +y: x right = +x, y down = -y.
    cam = look_at([0, 0, 5], [0, 0, 0], [0, 1, 0], 100, 100)
    R = cam.world_to_camera[:3, :3]
    np.testing.assert_allclose(R, np.diag([1, -1, -1]), atol=1e-12)
    uv, z = cam.project(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]]))
    assert z[0] == pytest.approx(5)
    assert uv[1, 0] > 50 and uv[2, 1] < 50  # +x right, +y (up) towards the top row


def test_orbit_is_deterministic_and_frames_scene():
    s = demo_scene(n=5000)
    a = orbit_for_scene(s, 8, 320, 240, seed=1)
    b = orbit_for_scene(s, 8, 320, 240, seed=1)
    for ca, cb in zip(a, b):
        np.testing.assert_array_equal(ca.world_to_camera, cb.world_to_camera)
    lo, hi = s.robust_bounds()
    for cam in a:
        uv, z = cam.project(((lo + hi) / 2)[None])
        assert z[0] > 0
        np.testing.assert_allclose(uv[0], [160, 120], atol=1e-6)
        # cameras are above the ground: up = -y, so camera y < scene centre y
        assert cam.position[1] < (lo[1] + hi[1]) / 2
        uv, z = cam.project(s.means)
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 320) & (uv[:, 1] >= 0) & (uv[:, 1] < 240)
        assert inside.mean() > 0.9


def test_cameras_json_roundtrip(tmp_path):
    cams = [look_at([1, 2, 3], [0, 0, 0], [0, -1, 0], 64, 48, name="a"),
            look_at([-3, 0, 1], [0, 0, 0], [0, -1, 0], 64, 48, 70, name="b")]
    p = tmp_path / "cameras.json"
    write_cameras_json(cams, p)
    entry = json.loads(p.read_text())[0]
    np.testing.assert_allclose(entry["position"], [1, 2, 3])  # camera centre
    back = read_cameras_json(p)
    for c, d in zip(cams, back):
        np.testing.assert_allclose(c.world_to_camera, d.world_to_camera, atol=1e-12)
        assert (c.fx, c.cx, c.name) == (d.fx, d.cx, d.name)


def test_cameras_json_errors(tmp_path):
    p = tmp_path / "cameras.json"
    p.write_text("{")
    with pytest.raises(SceneFormatError, match="not valid JSON"):
        read_cameras_json(p)
    p.write_text(json.dumps([{"width": 4}]))
    with pytest.raises(SceneFormatError, match="camera 0"):
        read_cameras_json(p)


# ---------------------------------------------------------------- Blender conversion
def _blender(**kw):
    base = dict(camera_matrix_world=np.eye(4), lens=50.0, sensor_width=36.0, sensor_height=24.0)
    base.update(kw)
    return camera_from_blender(**base)


def test_blender_default_camera_intrinsics():
    # 1920x1080 at 100 %, 50 mm on a 36 mm sensor (AUTO fit → horizontal):
    # fx = 50 * 1920 / 36 = 2666.67 px.
    c = _blender()
    assert (c.width, c.height) == (1920, 1080)
    assert c.fx == pytest.approx(2666.6666667) and c.fy == pytest.approx(c.fx)
    assert (c.cx, c.cy) == (960.0, 540.0)


def test_blender_resolution_percentage_and_vertical_fit():
    c = _blender(resolution_x=1000, resolution_y=2000, resolution_percentage=50)
    assert (c.width, c.height) == (500, 1000)
    # AUTO with a portrait frame → vertical fit, but the sensor size used is still sensor_width
    # (Blender: AUTO always uses sensor_width, applied to the larger dimension).
    assert c.fy == pytest.approx(50 * 1000 / 36)
    v = _blender(resolution_x=1000, resolution_y=2000, sensor_fit="VERTICAL")
    assert v.fy == pytest.approx(50 * 2000 / 24)
    h = _blender(resolution_x=1000, resolution_y=2000, sensor_fit="HORIZONTAL")
    assert h.fx == pytest.approx(50 * 1000 / 36)


def test_blender_shift_and_pixel_aspect():
    c = _blender(resolution_x=800, resolution_y=600, shift_x=0.1, shift_y=-0.05)
    # shift × larger dimension; +shift_x moves the view right (principal point left),
    # +shift_y moves the view up (principal point down in top-down rows).
    assert c.cx == pytest.approx(400 - 0.1 * 800)
    assert c.cy == pytest.approx(300 - 0.05 * 800)
    a = _blender(resolution_x=800, resolution_y=600, pixel_aspect_x=2.0, pixel_aspect_y=1.0)
    assert a.fx == pytest.approx(50 * 800 / 36)
    assert a.fy == pytest.approx(a.fx * 2.0)


def test_blender_extrinsics_and_object_transform():
    # Blender camera at (0,-10,0) rotated 90° about X: looks along +Y world, up = +Z world.
    t = math.radians(90)
    cam_mw = np.eye(4)
    cam_mw[:3, :3] = [[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]]
    cam_mw[:3, 3] = [0, -10, 0]
    # Object converts a Y-down capture frame to Blender Z-up: (x, y, z) → (x, -z, -y)... use
    # the common "rotate +90° about X" import: scene y-down → Blender z-up.
    obj = np.eye(4)
    obj[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    obj[:3, 3] = [0, 0, 1]
    c = _blender(camera_matrix_world=cam_mw, object_matrix_world=obj,
                 resolution_x=100, resolution_y=100)
    # A scene point at the origin → Blender world (0, 0, 1): 10 units in front, 1 unit up.
    uv, z = c.project(np.array([[0.0, 0.0, 0.0]]))
    assert z[0] == pytest.approx(10.0)
    assert uv[0, 0] == pytest.approx(50.0)
    assert uv[0, 1] == pytest.approx(50 - c.fy * 1 / 10)  # above centre → smaller row
    # A scene point 1 unit "up" in a y-down capture (y = -1) is 1 Blender unit higher.
    uv2, _ = c.project(np.array([[0.0, -1.0, 0.0]]))
    assert uv2[0, 1] == pytest.approx(50 - c.fy * 2 / 10)


def test_camera_rejects_bad_values():
    from exgs.errors import UsageError

    with pytest.raises(UsageError):
        Camera(0, 10, 1, 1, 0, 0)
