"""Render camera path → EXR sequence → compositor (Image node, sequence), with and without a
Z-combine against Blender's render of a mesh. The backend answer is stubbed here (see
test_render_backend.py for the real service)."""

import numpy as np

from bpy_helpers import RENDER_PASS, SETUP_CAMERA

STUB = r'''
from bl_ext.user_default.exgs import render_core
CALLS = []
def fake(items, cams, **kw):
    k = len(CALLS) % 3
    CALLS.append(cams[0]["camera_matrix_world"])
    h, w = 48, 64
    straight = np.zeros((h, w, 3), np.float32)
    straight[..., 0] = 0.2 + 0.3 * k
    straight[..., 1] = np.linspace(0, 1, w)[None, :]
    straight[: h // 2, :, 2] = 1.0  # top half blue: catches row flips
    alpha = np.full((h, w), 0.8, np.float32)
    depth = np.full((h, w), 6.0, np.float32)
    return [render_core.to_frame([(straight * alpha[..., None], alpha, depth)])]
render_core.render_cameras = fake
'''


def _expected(k):
    h, w = 48, 64
    s = np.zeros((h, w, 3))
    s[..., 0] = 0.2 + 0.3 * k
    s[..., 1] = np.linspace(0, 1, w)[None, :]
    s[: h // 2, :, 2] = 1.0
    lin = np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)
    return lin * 0.8


def test_camera_path_sequence_into_compositor_and_zcombine(run_bpy, small_ply, tmp_path):
    path, _ = small_ply
    out = str(tmp_path / "frames")
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + STUB, code=f"""
        from bl_ext.user_default.exgs import io_import
        import os
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        cam = add_camera(loc=(0, -4, 0))
        sc = bpy.context.scene
        sc.frame_start, sc.frame_end = 1, 3
        for f, x in ((1, 0.0), (2, 0.5), (3, 1.0)):
            cam.location.x = x
            cam.keyframe_insert("location", frame=f)
        r = bpy.ops.exgs.render_camera_path(directory={out!r} + "/")
        files = sorted(os.listdir({out!r}))
        xs = [c[0][3] for c in CALLS]
        sc.render.engine = "BLENDER_WORKBENCH"
        tree = _comp.tree_for(sc)
        sc.render.use_compositing = True
        sc.render.image_settings.file_format = "OPEN_EXR"
        sc.render.image_settings.color_mode = "RGBA"
        sc.view_settings.view_transform = "Standard"
        def composite(frame):
            sc.frame_set(frame)
            p = os.path.join({out!r}, f"comp_{{frame}}.exr")
            sc.render.filepath = p
            bpy.ops.render.render(write_still=True)
            img = bpy.data.images.load(p)
            px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
            img.pixels.foreach_get(px)
            return px.reshape(img.size[1], img.size[0], 4)[::-1]
        plain2 = composite(2)
        # Z-combine: a cube 2 units in front of the camera covers the image centre
        r2 = bpy.ops.exgs.render_camera_path(directory={out!r} + "/", z_combine=True)
        bpy.ops.mesh.primitive_cube_add(size=0.5, location=(0.5, -2.0, 0.0))
        sc.display.shading.light = "FLAT"
        sc.display.shading.color_type = "SINGLE"
        sc.display.shading.single_color = (1.0, 0.0, 0.0)
        sc.render.film_transparent = True
        z2 = composite(2)
        RESULT = dict(r=list(r), r2=list(r2), files=files, xs=xs, plain2=plain2.tolist(),
                      z2=z2.tolist(), nodes=[n.bl_idname for n in tree.nodes])
    """, timeout=180)
    assert res["r"] == ["FINISHED"] and res["r2"] == ["FINISHED"]
    assert [f for f in res["files"] if f.startswith("exgs_0")] == [
        "exgs_0001.exr", "exgs_0002.exr", "exgs_0003.exr"]
    assert res["xs"] == [0.0, 0.5, 1.0]  # one backend call per frame, following the camera
    plain = np.array(res["plain2"])
    np.testing.assert_allclose(plain[..., :3], _expected(1), atol=2e-3)
    np.testing.assert_allclose(plain[..., 3], 0.8, atol=2e-3)
    assert "CompositorNodeZcombine" in res["nodes"]
    z = np.array(res["z2"])
    h, w = z.shape[:2]
    centre = z[h // 2 - 2: h // 2 + 2, w // 2 - 2: w // 2 + 2, :3]
    # the mesh (flat red, in front) wins in the centre; splats remain at the border
    assert centre[..., 0].min() > 0.9 and centre[..., 1].max() < 0.05
    np.testing.assert_allclose(z[2, 2, :3], _expected(1)[2, 2], atol=2e-3)
