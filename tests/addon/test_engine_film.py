"""The engine follows Blender's film settings (stubbed backend): world colour behind the
splats unless the film is transparent, motion blur as averaged sub-frame samples over the
shutter, a one-time view-transform hint, one clean line for a frame without passes."""

import numpy as np

from bpy_helpers import RENDER_PASS, SETUP_CAMERA

STUB = r'''
from bl_ext.user_default.exgs import io_import, render_core
CAMS = []
def fake(items, cams, **kw):
    """A flat colour whose red channel is the camera's x at the sample time; alpha 0.5."""
    x = cams[0]["camera_matrix_world"][0][3]
    CAMS.append(x)
    h, w = cams[0]["resolution_y"], cams[0]["resolution_x"]
    straight = np.zeros((h, w, 3), np.float32)
    straight[..., 0] = x
    straight[..., 2] = 0.5
    a = np.full((h, w), 0.5, np.float32)
    return [render_core.to_frame([(straight * a[..., None], a, np.full((h, w), 3.0, np.float32))])]
render_core.render_cameras = fake
def lin(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
'''


def test_world_background_motion_blur_and_view_hint(run_bpy, small_ply):
    path, _ = small_ply
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + STUB, code=f"""
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        cam = add_camera(size=(8, 6))
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        for f, x in ((1, 0.0), (2, 0.4), (3, 0.8)):
            cam.location.x = x
            cam.keyframe_insert("location", frame=f)
        want_x = []
        for t in (1.8125, 1.9375, 2.0625, 2.1875):  # 4 samples over frame 2 ± 0.25
            sc.frame_set(int(t), subframe=t - int(t))
            want_x.append(cam.matrix_world[0][3])
        sc.frame_set(2)
        world = bpy.data.worlds.new("Sky")
        world.use_nodes = True
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (0.2, 0.3, 0.6, 1.0)
        bg.inputs["Strength"].default_value = 0.5
        sc.world = world
        sc.render.film_transparent = False
        opaque = render_pass("Image")[0, 0].tolist()
        sc.render.film_transparent = True
        clear = render_pass("Image")[0, 0].tolist()
        CAMS.clear()
        sc.render.use_motion_blur = True
        sc.render.motion_blur_shutter = 0.5
        sc.render.motion_blur_position = "CENTER"
        sc.exgs_render.motion_blur_samples = 4
        blurred = render_pass("Image")[0, 0].tolist()
        times = list(CAMS)
        RESULT = dict(opaque=opaque, clear=clear, blurred=blurred, times=times, want_x=want_x)
    """)
    red = lambda x: float(np.asarray(np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)))  # noqa: E731
    blue = red(0.5)
    # transparent film: the splat layer alone (premultiplied, alpha 0.5); camera x = 0.4
    np.testing.assert_allclose(res["clear"], [red(0.4) * 0.5, 0, blue * 0.5, 0.5], atol=1e-4)
    # opaque film: over the world colour (Background Color × Strength), alpha 1
    world = np.array([0.2, 0.3, 0.6]) * 0.5
    want = np.array([red(0.4) * 0.5, 0, blue * 0.5]) + 0.5 * world
    np.testing.assert_allclose(res["opaque"], list(want) + [1.0], atol=1e-4)
    # motion blur: 4 stratified samples over frame 2 ± 0.25, each at its sub-frame camera
    xs = res["want_x"]
    assert len(set(round(x, 4) for x in xs)) == 4  # the camera really moves within the shutter
    np.testing.assert_allclose(res["times"], xs, atol=1e-5)
    want_r = np.mean([red(x) for x in xs]) * 0.5
    np.testing.assert_allclose(res["blurred"][0], want_r, atol=1e-4)


def test_view_hint_once_and_frame_without_passes(run_bpy, small_ply):
    path, _ = small_ply
    res = run_bpy(helpers=SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import, render_core, backend
        from bl_ext.user_default.exgs.engine import final, film
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        add_camera(size=(8, 6))
        sc = bpy.context.scene
        sc.view_settings.view_transform = "AgX"
        hints = [film.view_transform_hint(sc), film.view_transform_hint(sc)]
        class NoPasses:  # what a client Frame without passes looks like
            rgb = alpha = depth = None
        class Api:  # the client, answering with a frame that has no passes
            def upload(self, *a, **kw): return {{"id": "sid"}}
            def render(self, *a, **kw): return [NoPasses()]
        c = backend.Connection("http://127.0.0.1:9", "t", local=False)
        c.api = Api()
        backend.connection = lambda: c
        sc.render.engine = "EXGS"
        final.ERRORS.clear()
        try:
            bpy.ops.render.render()
        except RuntimeError:
            pass
        RESULT = dict(hints=hints, errors=list(final.ERRORS))
    """)
    assert res["hints"][0] and "'AgX'" in res["hints"][0] and "Standard" in res["hints"][0]
    assert res["hints"][1] is None  # once per session
    assert res["errors"] == ["the backend sent a frame without its rgb, alpha and depth passes"]
