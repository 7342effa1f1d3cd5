"""Alignment without the service: the add-on's raw camera numbers + the object's
matrix_world (axis change, offset, scale), converted by the backend's camera_from_blender
and rendered by exgs.render, put a Gaussian on the same pixel as a mesh at the same world
point in a Cycles render (and as bpy_extras.world_to_camera_view) — within 1 px."""

import importlib.util

import numpy as np
import pytest

from bpy_helpers import ONE_GAUSSIAN, RENDER_PASS, SETUP_CAMERA

pytestmark = pytest.mark.skipif(importlib.util.find_spec("exgs.render") is None,
                                reason="exgs.render not there yet")


def _centroid(w):
    w = np.asarray(w, np.float64)
    ys, xs = np.mgrid[0:w.shape[0], 0:w.shape[1]]
    return np.array([(w * xs).sum() / w.sum() + 0.5, (w * ys).sum() / w.sum() + 0.5])


@pytest.mark.parametrize("fit,shift,aspect", [("AUTO", (0.05, -0.04), (1, 1)),
                                              ("VERTICAL", (0.0, 0.1), (1, 1.5))])
def test_gaussian_lands_on_mesh_pixel(run_bpy, tmp_path, fit, shift, aspect):
    from exgs.cameras import camera_from_blender
    from exgs.io.ply import read_ply
    from exgs.render import render

    ply = str(tmp_path / "one.ply")
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + ONE_GAUSSIAN, code=f"""
        from bpy_extras.object_utils import world_to_camera_view
        from mathutils import Vector
        from bl_ext.user_default.exgs import io_import, render_core
        bpy.ops.wm.read_homefile(use_empty=True)
        one_gaussian_ply({ply!r}, (0.3, -0.2, 0.5), sigma=0.015)
        obj, _ = io_import.import_file(bpy.context, {ply!r}, preview=False)
        obj.location = (0.1, 0.2, -0.1)
        obj.scale = (1.5, 1.5, 1.5)
        bpy.context.view_layer.update()
        world = obj.matrix_world @ Vector((0.3, -0.2, 0.5))
        cam = add_camera(loc=(0.6, -3.0, 1.4), rot=(1.2, 0.0, 0.15), lens=42, size=(90, 70))
        cam.data.sensor_fit = {fit!r}
        cam.data.shift_x, cam.data.shift_y = {shift!r}
        sc = bpy.context.scene
        sc.render.pixel_aspect_x, sc.render.pixel_aspect_y = {aspect!r}
        bpy.ops.mesh.primitive_ico_sphere_add(radius=0.03, subdivisions=3, location=world)
        # Cycles as the reference: the bpy 4.2 module's Workbench (EGL) ignores the lens here
        sc.render.engine = "CYCLES"
        sc.cycles.samples = 4
        sc.cycles.device = "CPU"
        sc.render.film_transparent = True
        wb = render_pass("Alpha")[..., 0]
        p = world_to_camera_view(sc, cam, world)
        camd = render_core.blender_camera(sc, cam)
        camd["object_matrix_world"] = render_core._mat(obj.matrix_world)
        RESULT = dict(wb=centroid(wb), cam=camd, w2c=[p.x * 90, (1 - p.y) * 70])
    """)
    cam = res["cam"]
    cam.pop("name")
    out = render(read_ply(ply), camera_from_blender(**cam))
    assert out.alpha.max() > 0.5
    g = _centroid(out.alpha)
    assert np.abs(g - res["wb"]).max() <= 1.0, (g, res["wb"], res["w2c"], res["cam"])
    assert np.abs(g - res["w2c"]).max() <= 1.0, (g, res["w2c"])
