"""The add-on's pure-numpy conventions (no bpy): axes, colour, alpha, depth, rows, PLY I/O."""

import os
import sys

import numpy as np

from conftest import ROOT

sys.path.insert(0, ROOT)
from exgs_blender import conventions as cv  # noqa: E402  (no bpy at import time)
from exgs_blender import plyio  # noqa: E402
from exgs_blender.backend import is_loopback, parse_ready_line  # noqa: E402


def test_y_down_capture_becomes_z_up():
    m = cv.axis_matrix("Y_DOWN")[:3, :3]
    np.testing.assert_allclose(m @ [0, -1, 0], [0, 0, 1])  # capture up (−y) → Blender +Z
    np.testing.assert_allclose(m @ [0, 0, 1], [0, 1, 0])  # capture forward → Blender +Y (front view)
    np.testing.assert_allclose(m @ [1, 0, 0], [1, 0, 0])
    assert np.isclose(np.linalg.det(m), 1.0)  # a rotation: −90° about X
    c, s = np.cos(np.radians(-90)), np.sin(np.radians(-90))
    np.testing.assert_allclose(m, [[1, 0, 0], [0, c, -s], [0, s, c]], atol=1e-12)
    np.testing.assert_allclose(cv.axis_matrix("Y_UP")[:3, :3] @ [0, 1, 0], [0, 0, 1])


def test_colour_alpha_rows_depth():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(cv.linear_to_srgb(cv.srgb_to_linear(x)), x, atol=1e-5)
    assert abs(cv.srgb_to_linear(np.float32(0.5)) - 0.21404) < 1e-4
    rgb = np.full((2, 3, 3), 0.25, np.float32)  # premultiplied sRGB with alpha 0.5 → straight 0.5
    a = np.full((2, 3), 0.5, np.float32)
    a[0, 0] = 0.0
    rgb[0, 0] = 0.0
    lin = cv.premult_srgb_to_linear(rgb, a)
    np.testing.assert_allclose(lin[1, 1], 0.5 * 0.21404, atol=1e-4)
    assert (lin[0, 0] == 0).all()
    flat = cv.to_blender_rect(lin, a).reshape(2, 3, 4)
    np.testing.assert_array_equal(flat[1, 0, 3], 0.0)  # top-left pixel → last Blender row
    d = np.array([[1.0, np.inf], [np.nan, 2.0]], np.float32)
    np.testing.assert_array_equal(cv.blender_depth(d), [[1.0, 1e10], [1e10, 2.0]])
    np.testing.assert_array_equal(cv.to_blender_plane(np.array([[1, 2], [3, 4]])), [3, 4, 1, 2])


def test_depth_composite_orders_objects_per_pixel():
    h, w = 1, 2
    red = (np.tile([0.5, 0, 0], (h, w, 1)).astype(np.float32), np.full((h, w), 0.5, np.float32),
           np.array([[1.0, 5.0]], np.float32))
    blue = (np.tile([0, 0, 1.0], (h, w, 1)).astype(np.float32), np.full((h, w), 1.0, np.float32),
            np.array([[3.0, 2.0]], np.float32))
    for layers in ([red, blue], [blue, red]):
        rgb, a, d = cv.composite_layers(layers)
        np.testing.assert_allclose(rgb[0, 0], [0.5, 0, 0.5])  # red (z=1) over blue (z=3)
        np.testing.assert_allclose(rgb[0, 1], [0, 0, 1.0])  # opaque blue (z=2) hides red
        np.testing.assert_allclose(a[0], [1.0, 1.0])
        np.testing.assert_allclose(d[0], [1.0, 2.0])


def test_ply_write_read_matches_backend_reader(tmp_path):
    from exgs.io.ply import read_ply
    from exgs.synth import random_scene

    sc = random_scene(300, sh_degree=2, seed=5)
    names = (["x", "y", "z"] + [f"f_dc_{i}" for i in range(3)] +
             [f"f_rest_{i}" for i in range(24)] + ["opacity"] +
             [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    v = np.zeros(len(sc), [(n, "<f4") for n in names])
    for i, n in enumerate("xyz"):
        v[n] = sc.means[:, i]
    for c in range(3):
        v[f"f_dc_{c}"] = sc.sh[:, 0, c]
        for k in range(8):
            v[f"f_rest_{c * 8 + k}"] = sc.sh[:, k + 1, c]
        v[f"scale_{c}"] = sc.log_scales[:, c]
    v["opacity"] = sc.opacity_logits
    for i in range(4):
        v[f"rot_{i}"] = sc.quats[:, i]
    p = str(tmp_path / "a.ply")
    plyio.write_ply(p, v)
    back = read_ply(p)
    np.testing.assert_array_equal(back.sh, sc.sh)
    np.testing.assert_array_equal(back.means, sc.means)
    mm = plyio.read_vertices(p)
    assert mm.dtype.names == tuple(names) and np.array_equal(np.asarray(mm), v)
    assert plyio.content_hash(v) == plyio.content_hash(np.asarray(mm))
    assert not any(f.endswith(".tmp") or ".tmp" in f for f in os.listdir(tmp_path))


def test_ready_line_and_loopback():
    assert parse_ready_line('{"port": 4321, "host": "127.0.0.1"}') == "http://127.0.0.1:4321"
    assert parse_ready_line("EXGS_SERVE_READY url=http://127.0.0.1:5555") == "http://127.0.0.1:5555"
    assert parse_ready_line("INFO starting") is None
    assert is_loopback("http://127.0.0.1:8000") and is_loopback("http://localhost:1")
    assert is_loopback("http://[::1]:80") and not is_loopback("http://10.0.0.2:80")
