"""Render camera path → EXR sequence → compositor (Image node, sequence), with and without a
depth composite against Blender's render of a mesh, checked against a numpy reference of a
premultiplied "over" in depth order. The backend answer is stubbed here (see
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
    assert "CompositorNodeCombineColor" in res["nodes"]
    z = np.array(res["z2"])
    h, w = z.shape[:2]
    centre = z[h // 2 - 2: h // 2 + 2, w // 2 - 2: w // 2 + 2, :3]
    # the mesh (flat red, in front) wins in the centre; splats remain at the border
    assert centre[..., 0].min() > 0.9 and centre[..., 1].max() < 0.05
    np.testing.assert_allclose(z[2, 2, :3], _expected(1)[2, 2], atol=2e-3)


HALO_STUB = r'''
from bl_ext.user_default.exgs import render_core
def fake(items, cams, **kw):
    """Soft splats: alpha ramps 0.15..0.95 over the rows; the left half is far (6 units,
    behind the cube), the right half near (1 unit, in front of it)."""
    h, w = 48, 64
    straight = np.zeros((h, w, 3), np.float32)
    straight[..., 0], straight[..., 1], straight[..., 2] = 0.9, 0.8, 0.2
    alpha = np.repeat(np.linspace(0.15, 0.95, h, dtype=np.float32)[:, None], w, 1)
    depth = np.full((h, w), 6.0, np.float32)
    depth[:, w // 2:] = 1.0
    return [render_core.to_frame([(straight * alpha[..., None], alpha, depth)])]
render_core.render_cameras = fake
'''


def _over_reference(s, ds, m, dm):
    """Premultiplied over in depth order, written out case by case (independent of the
    add-on's formula); the mesh depth is the 3×3 minimum (the pass is not anti-aliased)."""
    p = np.pad(dm, 1, mode="edge")
    h, w = dm.shape
    dm = np.min([p[i:i + h, j:j + w] for i in range(3) for j in range(3)], 0)
    out = np.empty_like(s)
    near = ds < dm
    out[near] = s[near] + (1 - s[near][:, 3:4]) * m[near]
    out[~near] = m[~near] + (1 - m[~near][:, 3:4]) * s[~near]
    return out


def test_depth_composite_is_a_premultiplied_over(run_bpy, small_ply, tmp_path):
    """Splats with soft edges crossing a mesh: the compositor's result equals the numpy
    reference built from the same splat frame and Blender's own mesh passes (no halo: the
    result never exceeds "over" and never darkens/brightens partial pixels)."""
    path, _ = small_ply
    out = str(tmp_path / "frames")
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + HALO_STUB, code=f"""
        from bl_ext.user_default.exgs import io_import
        import os
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {path!r})
        for m in obj.modifiers:
            m.show_render = False
        add_camera(loc=(0, -4, 0))
        sc = bpy.context.scene
        sc.frame_start = sc.frame_end = 1
        sc.render.engine = "BLENDER_WORKBENCH"
        bpy.ops.mesh.primitive_cube_add(size=0.8, location=(0.0, -2.0, 0.0))
        sc.display.shading.light = "FLAT"
        sc.display.shading.color_type = "SINGLE"
        sc.display.shading.single_color = (0.1, 0.2, 1.0)
        sc.render.film_transparent = True
        sc.view_layers[0].use_pass_z = True
        mesh_rgba = render_pass("Image")
        mesh_depth = render_pass("Depth")[..., 0]
        r = bpy.ops.exgs.render_camera_path(directory={out!r} + "/", z_combine=True)
        splat = bpy.data.images.load(os.path.join({out!r}, "exgs_0001.exr"))
        px = np.empty(64 * 48 * 4, np.float32)
        splat.pixels.foreach_get(px)
        splat_rgba = px.reshape(48, 64, 4)[::-1].copy()
        sc.render.use_compositing = True
        sc.render.image_settings.file_format = "OPEN_EXR"
        sc.render.image_settings.color_depth = "32"
        sc.render.image_settings.color_mode = "RGBA"
        sc.view_settings.view_transform = "Standard"
        p = os.path.join({out!r}, "comp.exr")
        sc.render.filepath = p
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(p)
        img.pixels.foreach_get(px)
        comp = px.reshape(48, 64, 4)[::-1]
        RESULT = dict(r=list(r), mesh=mesh_rgba.tolist(), mdepth=mesh_depth.tolist(),
                      splat=splat_rgba.tolist(), comp=comp.tolist())
    """, timeout=180)
    assert res["r"] == ["FINISHED"]
    m, dm = np.array(res["mesh"]), np.array(res["mdepth"])
    s, comp = np.array(res["splat"]), np.array(res["comp"])
    h, w = s.shape[:2]
    ds = np.full((h, w), 6.0)
    ds[:, w // 2:] = 1.0
    cube = m[..., 3] > 0.99
    assert cube.sum() > 50 and (m[..., 3] > 0.01).sum() > cube.sum()  # solid + soft edges
    assert 0.1 < s[..., 3].min() and np.median(s[..., 3]) < 0.9  # soft splats everywhere
    ref = _over_reference(s, ds, m, dm)
    np.testing.assert_allclose(comp, ref, atol=3e-3)
    # left half: the cube is in front → its pixels show the cube's colour exactly
    left = cube.copy()
    left[:, w // 2:] = False
    np.testing.assert_allclose(comp[left], m[left], atol=3e-3)
    # the cube's soft (anti-aliased) edge in front of far splats: exactly "over" — no light
    # fringe of splat colour on the silhouette, although the depth pass has no depth there
    edge = (m[..., 3] > 0.05) & (m[..., 3] < 0.95)
    edge[:, w // 2 - 2:] = False
    assert edge.sum() >= 4
    np.testing.assert_allclose(comp[edge], (m + (1 - m[..., 3:4]) * s)[edge], atol=3e-3)
    # right half: soft splats in front of the cube → "over" (the cube shows through by
    # 1 − alpha); keeping the nearer pixel only (the old Z Combine) would drop the cube there
    front = cube.copy()
    front[:, : w // 2] = False
    assert front.sum() > 20
    over = s + (1 - s[..., 3:4]) * m
    np.testing.assert_allclose(comp[front], over[front], atol=3e-3)
    assert np.abs(comp[front] - s[front]).max() > 0.3
    assert (comp[..., 3] <= 1.0 + 1e-4).all()
