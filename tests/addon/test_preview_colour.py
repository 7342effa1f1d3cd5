"""The Geometry Nodes preview shows the splats' real colours in Solid / Workbench, not grey:
the import operator switches the default *Material* colour type to *Attribute*, and rendered
headless with the Workbench engine each Gaussian's pixels carry its own DC colour
(scene-linear, as ``gaussians.preview_colors`` decodes it)."""

from __future__ import annotations

import numpy as np

from bpy_helpers import RENDER_PASS, SETUP_CAMERA

SH_C0 = 0.28209479177387814
#: display-sRGB colours of three Gaussians at capture x = −0.6, 0, 0.6 (z = 3: in front)
COLOURS = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.2, 0.3, 0.95)]


def _ply(path):
    from exgs.io.ply import write_ply
    from exgs.scene import GaussianScene

    rgb = np.array(COLOURS, np.float32)
    sh = ((rgb - 0.5) / SH_C0)[:, None, :]
    means = np.array([[-0.6, 0, 3.0], [0.0, 0, 3.0], [0.6, 0, 3.0]], np.float32)
    s = GaussianScene(means, np.tile([1, 0, 0, 0], (3, 1)).astype(np.float32),
                      np.full((3, 3), np.log(0.12), np.float32), np.full(3, 4.0, np.float32),
                      sh.astype(np.float32))
    write_ply(s, path)


def _srgb_to_linear(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def test_workbench_attribute_colour_shows_splat_colours(run_bpy, tmp_path):
    path = tmp_path / "three.ply"
    _ply(path)
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code=f"""
        from bpy_extras.object_utils import world_to_camera_view
        from mathutils import Vector
        bpy.ops.wm.read_homefile(use_empty=True)
        sc = bpy.context.scene
        before = sc.display.shading.color_type
        assert bpy.ops.exgs.import_splats(filepath={str(path)!r}) == {{"FINISHED"}}
        obj = bpy.context.view_layer.objects.active
        add_camera(loc=(0, 0, 0), rot=(1.5707963, 0, 0), lens=40, size=(96, 64))
        sc = bpy.context.scene
        sc.render.engine = "BLENDER_WORKBENCH"
        sc.render.film_transparent = True
        sc.display.shading.light = "FLAT"
        img = render_pass("Image")
        pix = []
        for i in range(3):
            x, y, z = ({{0: -0.6, 1: 0.0, 2: 0.6}}[i], 0.0, 3.0)
            w = obj.matrix_world @ Vector((x, y, z))
            p = world_to_camera_view(sc, sc.camera, w)
            col, row = int(p.x * 96), int((1 - p.y) * 64)
            pix.append(img[row, col].tolist())
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        RESULT = {{"pix": pix, "types": [before, sc.display.shading.color_type], "active": ev.attributes.active_color_name,
                  "verts": len(ev.vertices)}}
    """, timeout=180)
    # the import switched Workbench's default Material colour to Attribute ("VERTEX")
    assert res["types"] == ["MATERIAL", "VERTEX"]
    assert res["active"] == "exgs_color"
    # 3 loose input vertices + 3 cubes of 8 vertices
    assert res["verts"] == 3 + 3 * 8
    for got, want in zip(res["pix"], COLOURS):
        assert got[3] > 0.99
        np.testing.assert_allclose(got[:3], _srgb_to_linear(want), atol=0.02)


def test_cube_budget_draws_every_kth_gaussian(run_bpy, tmp_path):
    """Big scenes draw at most ``Max Cubes`` cubes (every k-th Gaussian): the preview's cost
    does not grow with the scene; 0 draws all."""
    from exgs.io.ply import write_ply
    from exgs.synth import random_scene

    path = tmp_path / "many.ply"
    write_ply(random_scene(2000, sh_degree=0, seed=3), path)
    res = run_bpy(f"""
        bpy.ops.wm.read_homefile(use_empty=True)
        assert bpy.ops.exgs.import_splats(filepath={str(path)!r}) == {{"FINISHED"}}
        obj = bpy.context.view_layer.objects.active
        mod = obj.modifiers["ExGS Preview"]
        key = next(i.identifier for i in mod.node_group.interface.items_tree
                   if getattr(i, "name", "") == "Max Cubes")
        out = {{"default": mod.node_group.interface.items_tree["Max Cubes"].default_value}}
        for cap in (500, 0, 2000, 3):
            mod[key] = cap
            obj.data.update()
            ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
            out[str(cap)] = len(ev.vertices)
        RESULT = out
    """, timeout=180)
    assert res["default"] == 300_000
    # 2000 loose input vertices + 8 per drawn cube
    assert res["500"] == 2000 + 8 * 500          # stride 4
    assert res["0"] == 2000 + 8 * 2000           # no cap
    assert res["2000"] == 2000 + 8 * 2000        # stride 1
    assert res["3"] == 2000 + 8 * (2000 // 667)  # stride ceil(2000/3) = 667 → 2 cubes
