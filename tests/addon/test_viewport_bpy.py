"""The viewport engine with Blender's own matrices and projections (bpy in a subprocess,
background mode: no ``gpu`` drawing, so :func:`engine.viewport.draw_frame` is the one part
not run here).

* A camera view's region matrices (``Object.calc_matrix_camera`` = the window matrix of a
  camera view whose frame fills the region; view matrix = inverse camera matrix) become a
  renderer camera that projects points where ``bpy_extras.view3d_utils.
  location_3d_to_region_2d`` and ``object_utils.world_to_camera_view`` put them —
  perspective with lens shift, and orthographic (long-lens, within its bound); the render
  border becomes the pixel crop of the camera frame; the perspective camera equals F12's.
* Against a real ``exgs serve``: the engine's viewport session (gather → scheduler → client)
  delivers ¼, ½ and full-resolution frames, and the full one equals the F12 Combined pass.
"""

import numpy as np
import pytest

from bpy_helpers import RENDER_PASS, SETUP_CAMERA
from test_render_backend import _psnr, pytestmark, server  # noqa: F401  (fixture, skip rule)

W, H = 96, 64

REGION = r'''
import numpy as np
from mathutils import Vector

class _Obj:
    pass

def camera_region(cam, w, h):
    """(region, rv3d) of a camera view whose frame fills a w×h region."""
    dg = bpy.context.evaluated_depsgraph_get()
    win = cam.calc_matrix_camera(dg, x=w, y=h)
    view = cam.matrix_world.inverted()
    region, rv3d = _Obj(), _Obj()
    region.width, region.height = w, h
    rv3d.view_matrix, rv3d.window_matrix = view, win
    rv3d.perspective_matrix = win @ view
    rv3d.view_perspective = "CAMERA"
    return region, rv3d

def rows(m):
    return [list(map(float, r)) for r in m]
'''


def test_region_matrices_give_blenders_projection(run_bpy):
    from exgs.cameras import camera_from_blender
    from exgs.viewport_camera import ORTHO_DISTANCE_FACTOR, camera_from_view

    res = run_bpy(helpers=SETUP_CAMERA + REGION, code=f"""
        from bpy_extras.object_utils import world_to_camera_view
        from bpy_extras.view3d_utils import location_3d_to_region_2d
        from bl_ext.user_default.exgs import render_core
        from bl_ext.user_default.exgs.engine import viewport as vp
        bpy.ops.wm.read_homefile(use_empty=True)
        sc = bpy.context.scene
        cam = add_camera(loc=(0.4, -5.0, 1.2), rot=(1.3, 0.0, 0.15), lens=42, size=({W}, {H}))
        cam.data.shift_x, cam.data.shift_y = 0.07, -0.03
        cam.data.ortho_scale = 3.0
        rng = np.random.default_rng(0)
        pts = [Vector(p) for p in rng.uniform(-1, 1, (40, 3))]
        out = {{}}
        for kind in ("PERSP", "ORTHO"):
            cam.data.type = kind
            region, rv3d = camera_region(cam, {W}, {H})
            sc.render.use_border = True
            sc.render.border_min_x, sc.render.border_max_x = 0.2, 0.7
            sc.render.border_min_y, sc.render.border_max_y = 0.1, 0.6
            st = vp.view_state(sc, region, rv3d, None, ())
            sc.render.use_border = False
            full = vp.view_state(sc, region, rv3d, None, ())
            out[kind] = dict(
                view=rows(rv3d.view_matrix), win=rows(rv3d.window_matrix),
                state_view=[list(r) for r in full.view_matrix], crop=st.crop,
                full_crop=full.crop, rect=st.rect,
                corners=vp.camera_frame_corners(sc, region, rv3d),
                pts=[list(p) for p in pts],
                region=[list(location_3d_to_region_2d(region, rv3d, p)) for p in pts],
                w2cv=[list(world_to_camera_view(sc, cam, p)) for p in pts],
                cam=render_core.blender_camera(sc, cam) if kind == "PERSP" else None)
        RESULT = out
    """)
    for kind in ("PERSP", "ORTHO"):
        r = res[kind]
        np.testing.assert_allclose(r["state_view"], r["view"], atol=1e-6)  # view_state sends it
        pts = np.array(r["pts"])
        center, radius = np.zeros(3), float(np.sqrt(3.0))
        vc = camera_from_view(r["view"], r["win"], W, H, focus_center=center,
                              focus_radius=radius)
        assert vc.ortho == (kind == "ORTHO")
        uv, z = vc.camera.project(pts)
        reg = np.array(r["region"])
        ref_uv = np.stack([reg[:, 0], H - reg[:, 1]], 1)
        w2cv = np.array(r["w2cv"])
        ref2 = np.stack([w2cv[:, 0] * W, (1 - w2cv[:, 1]) * H], 1)
        np.testing.assert_allclose(ref_uv, ref2, atol=1e-3)  # Blender's two helpers agree
        if kind == "PERSP":
            np.testing.assert_allclose(uv, ref_uv, atol=1e-3)
            np.testing.assert_allclose(z, w2cv[:, 2], rtol=1e-5)
            cam = dict(r["cam"])
            cam.pop("name")
            f12 = camera_from_blender(**cam)
            for k in ("fx", "fy", "cx", "cy"):
                assert getattr(vc.camera, k) == pytest.approx(getattr(f12, k), rel=1e-5), k
            np.testing.assert_allclose(vc.camera.world_to_camera, f12.world_to_camera,
                                       atol=1e-5)
        else:
            off = np.linalg.norm(ref_uv - [vc.camera.cx, vc.camera.cy], axis=1)
            bound = off * radius / (ORTHO_DISTANCE_FACTOR * radius - radius) + 1e-3
            assert np.all(np.linalg.norm(uv - ref_uv, axis=1) <= bound)
            np.testing.assert_allclose(z - vc.depth_offset, w2cv[:, 2], atol=1e-4)
        # the camera frame fills the region; the border is its pixel crop
        np.testing.assert_allclose(sorted(map(tuple, np.round(r["corners"], 2) + 0.0)),
                                   [(0, 0), (0, H), (W, 0), (W, H)], atol=1e-3)
        assert r["full_crop"] is None
        assert tuple(r["crop"]) == (19, 6, 68, 39)  # floor/ceil of 0.2–0.7 × 96, 0.1–0.6 × 64
        assert tuple(r["rect"]) == (19, 6, 49, 33)
        part = camera_from_view(r["view"], r["win"], W, H, crop=r["crop"],
                                focus_center=center, focus_radius=radius).camera
        uvp, _ = part.project(pts)
        np.testing.assert_allclose(uvp, uv - [19, H - 39], atol=1e-6)


def test_viewport_session_frames_equal_f12(run_bpy, server, tmp_path):  # noqa: F811
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    url, token, _ = server
    scene = demo_scene(5000, sh_degree=1, seed=4)
    ply = str(tmp_path / "demo.ply")
    write_ply(scene, ply)
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + REGION, code=f"""
        import time
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.engine import viewport as vp
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {ply!r})
        obj.location = (0.1, 0.2, -0.1)
        cam = add_camera(loc=(0.3, -6.5, 1.4), rot=(1.38, 0, 0.05), lens=35, size=({W}, {H}))
        cam.data.shift_x = 0.04
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        comb = render_pass("Image")
        s = vp.ViewportSession()
        s.update(bpy.context.evaluated_depsgraph_get())
        region, rv3d = camera_region(cam, {W}, {H})
        st = vp.view_state(sc, region, rv3d, None, s.objects)
        s._states[st.key] = st
        s.scheduler.update(st.key)
        seen, t0 = [], time.time()
        while time.time() - t0 < 120:
            got = s.scheduler.frame()
            if got is not None and (not seen or seen[-1] != got[1]):
                seen.append(got[1])
            if got is not None and got[1] == 1.0 and not s.scheduler.busy():
                break
            time.sleep(0.01)
        err = s.scheduler.last_error
        s.stop()
        f = got[2]
        RESULT = dict(comb=comb.tolist(), seen=seen, size=[f.width, f.height],
                      rgba=f.rgba.reshape(f.height, f.width, 4)[::-1].tolist(),
                      n=len(s.objects), err=str(err) if err else None,
                      stats=s.scheduler.stats)
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=token, timeout=240)
    assert res["err"] is None and res["n"] == 1
    assert res["seen"][-1] == 1.0 and res["size"] == [W, H]
    assert res["stats"]["frames"] == 3 and res["stats"]["errors"] == 0  # ¼, ½, full
    comb, vpf = np.array(res["comb"]), np.array(res["rgba"])
    assert comb[..., 3].max() > 0.5  # the scene is in view
    assert _psnr(vpf[..., :3], comb[..., :3]) >= 45.0
    assert _psnr(vpf[..., 3], comb[..., 3]) >= 45.0
