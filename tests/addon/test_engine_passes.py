"""The ExGS engine's pass conventions with a stubbed backend answer (no service needed):
rows flipped, sRGB decoded to scene-linear, premultiplied alpha, depth 1e10 where empty."""

import numpy as np

from bpy_helpers import RENDER_PASS, SETUP_CAMERA


def test_passes_rows_colour_alpha_depth(run_bpy, small_ply):
    path, _ = small_ply
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import, render_core
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        add_camera(size=(8, 6))
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        sc.render.film_transparent = True  # the passes as the backend made them
        sc.view_layers[0].use_pass_z = True
        rng = np.random.default_rng(0)
        straight = rng.uniform(0, 1, (6, 8, 3)).astype(np.float32)
        alpha = rng.uniform(0.2, 1, (6, 8)).astype(np.float32)
        alpha[0, :] = 1.0
        depth = rng.uniform(1, 9, (6, 8)).astype(np.float32)
        depth[5, 0] = np.inf
        alpha[5, 0] = 0.0
        seen = {{}}
        def fake(items, cams, **kw):
            seen["cams"] = cams
            seen["n"] = [i.count for i in items]
            return [render_core.to_frame([(straight * alpha[..., None], alpha, depth)])]
        render_core.render_cameras = fake
        comb = render_pass("Image")
        dep = render_pass("Depth")
        alp = render_pass("Alpha")
        RESULT = dict(comb=comb.tolist(), dep=dep[..., 0].tolist(), alp=alp[..., 0].tolist(),
                      straight=straight.tolist(), alpha=alpha.tolist(), depth=depth.tolist(),
                      cam=seen["cams"][0], n=seen["n"])
    """)
    straight, alpha = np.array(res["straight"]), np.array(res["alpha"])
    depth = np.array(res["depth"])
    comb = np.array(res["comb"])
    lin = np.where(straight <= 0.04045, straight / 12.92, ((straight + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(comb[..., :3], lin * alpha[..., None], atol=1e-5)  # premultiplied linear
    np.testing.assert_allclose(comb[..., 3], alpha, atol=1e-6)
    np.testing.assert_allclose(np.array(res["alp"]), alpha, atol=1e-6)
    want_d = np.where(np.isfinite(depth), depth, 1e10)
    np.testing.assert_allclose(np.array(res["dep"]), want_d, rtol=1e-6)
    cam = res["cam"]
    assert cam["resolution_x"] == 8 and cam["lens"] == 50.0 and cam["sensor_fit"] == "AUTO"
    assert res["n"] == [500]


def test_gather_objects_and_collection_instances(run_bpy, small_ply):
    path, _ = small_ply
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import io_import, render_core
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {path!r})
        plain = render_core.gather(bpy.context.evaluated_depsgraph_get())
        coll = bpy.data.collections.new("Splats")
        bpy.context.scene.collection.children.link(coll)
        for c in list(obj.users_collection):
            c.objects.unlink(obj)
        coll.objects.link(obj)
        inst = bpy.data.objects.new("Inst", None)
        inst.instance_type = "COLLECTION"
        inst.instance_collection = coll
        inst.location = (5, 0, 0)
        bpy.context.scene.collection.objects.link(inst)
        bpy.context.view_layer.update()
        both = render_core.gather(bpy.context.evaluated_depsgraph_get())
        RESULT = dict(plain=[(i.name, i.count) for i in plain],
                      both=sorted((i.name.split("@")[0], i.matrix_world[0][3]) for i in both))
    """)
    assert res["plain"] == [["scene", 500]]
    assert res["both"] == [["scene", 0.0], ["scene", 5.0]]


def test_scene_without_splats_renders_empty_frame(run_bpy):
    from bpy_helpers import RENDER_PASS, SETUP_CAMERA

    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code="""
        bpy.ops.wm.read_homefile(use_empty=True)
        add_camera(size=(8, 6))
        bpy.context.scene.render.engine = "EXGS"
        bpy.context.scene.render.film_transparent = True
        bpy.context.scene.view_layers[0].use_pass_z = True
        img = render_pass("Image")
        dep = render_pass("Depth")
        RESULT = dict(a=float(img[..., 3].max()), d=float(dep[..., 0].min()))
    """)
    assert res["a"] == 0.0 and res["d"] == 1e10
