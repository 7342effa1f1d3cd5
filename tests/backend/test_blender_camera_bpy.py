"""camera_from_blender against Blender's own projection (bpy_extras.world_to_camera_view).

bpy runs in a subprocess (it must not share a process with torch)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from exgs.cameras import camera_from_blender

pytest.importorskip("bpy", reason="bpy (Blender as a module) not installed")

CASES = [
    dict(res=(640, 480, 100), lens=35.0, sensor=(36.0, 24.0), fit="AUTO", shift=(0.0, 0.0), aspect=(1, 1)),
    dict(res=(640, 480, 50), lens=50.0, sensor=(36.0, 24.0), fit="AUTO", shift=(0.12, -0.07), aspect=(1, 1)),
    dict(res=(480, 800, 100), lens=28.0, sensor=(36.0, 24.0), fit="AUTO", shift=(-0.05, 0.1), aspect=(1, 1)),
    dict(res=(800, 600, 100), lens=40.0, sensor=(30.0, 20.0), fit="VERTICAL", shift=(0.03, 0.04), aspect=(1, 1)),
    dict(res=(600, 800, 75), lens=60.0, sensor=(30.0, 20.0), fit="HORIZONTAL", shift=(0.0, 0.2), aspect=(1, 1)),
    dict(res=(720, 576, 100), lens=35.0, sensor=(36.0, 24.0), fit="AUTO", shift=(0.1, 0.05), aspect=(16, 15)),
]

SCRIPT = textwrap.dedent("""
    import json, sys, math
    import bpy
    from mathutils import Matrix, Euler, Vector
    from bpy_extras.object_utils import world_to_camera_view
    cases, points, obj_mw = json.load(sys.stdin)
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("c")
    cam = bpy.data.objects.new("c", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.3, -6.0, 1.2)
    cam.rotation_euler = Euler((math.radians(80), math.radians(3), math.radians(10)))
    bpy.context.view_layer.update()
    out = []
    for c in cases:
        r = scene.render
        r.resolution_x, r.resolution_y, r.resolution_percentage = c["res"]
        r.pixel_aspect_x, r.pixel_aspect_y = c["aspect"]
        cam_data.lens = c["lens"]
        cam_data.sensor_width, cam_data.sensor_height = c["sensor"]
        cam_data.sensor_fit = c["fit"]
        cam_data.shift_x, cam_data.shift_y = c["shift"]
        M = Matrix(obj_mw)
        ndc = [list(world_to_camera_view(scene, cam, M @ Vector(p))) for p in points]
        out.append({"ndc": ndc, "cam_mw": [list(row) for row in cam.matrix_world]})
    print(json.dumps(out))
""")


def test_projection_matches_blender():
    rng = np.random.default_rng(0)
    # object transform: y-down capture → z-up, scaled and moved (honoured by the conversion)
    obj = np.array([[1.5, 0, 0, 0.2], [0, 0, 1.5, 0.1], [0, -1.5, 0, 0.4], [0, 0, 0, 1]])
    pts = rng.uniform(-1, 1, (40, 3))
    res = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps([CASES, pts.tolist(), obj.tolist()]),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    outs = json.loads(res.stdout.strip().splitlines()[-1])
    for case, out in zip(CASES, outs):
        cam = camera_from_blender(
            camera_matrix_world=np.array(out["cam_mw"]), lens=case["lens"],
            sensor_width=case["sensor"][0], sensor_height=case["sensor"][1],
            sensor_fit=case["fit"], shift_x=case["shift"][0], shift_y=case["shift"][1],
            resolution_x=case["res"][0], resolution_y=case["res"][1],
            resolution_percentage=case["res"][2], pixel_aspect_x=case["aspect"][0],
            pixel_aspect_y=case["aspect"][1], object_matrix_world=obj)
        uv, z = cam.project(pts)
        ndc = np.array(out["ndc"])
        # Blender: x,y in [0,1] from the bottom-left corner; z = distance along the view axis
        expect_u = ndc[:, 0] * cam.width
        expect_v = (1.0 - ndc[:, 1]) * cam.height
        np.testing.assert_allclose(uv[:, 0], expect_u, atol=1e-3, err_msg=str(case))
        np.testing.assert_allclose(uv[:, 1], expect_v, atol=1e-3, err_msg=str(case))
        np.testing.assert_allclose(z, ndc[:, 2], rtol=1e-5, err_msg=str(case))
