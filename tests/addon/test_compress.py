"""Compress through the backend (local `exgs serve` started by the add-on): a new compressed
object, the original kept and hidden, the .exgs on disk; headless `compress`; cancel."""

import importlib.util
import os

import pytest


def _ugc_ready():
    try:
        spec = importlib.util.find_spec("exgs.ugc")
        if spec is None:
            return False
        import exgs.ugc as u
        return hasattr(u, "compress") and importlib.util.find_spec("exgs.io.exgs_format") is not None
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _ugc_ready(), reason="exgs.ugc / .exgs reader not there yet")


def test_compress_operator_cli_and_cancel(run_bpy, tmp_path):
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    ply = str(tmp_path / "demo.ply")
    write_ply(demo_scene(4000, sh_degree=1, seed=4), ply)
    out = str(tmp_path / "cli.exgs")
    res = run_bpy(f"""
        import io, contextlib, threading
        from bl_ext.user_default.exgs import io_import, backend, render_core, cli, errors
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {ply!r})
        bpy.context.view_layer.objects.active = obj
        t = bpy.context.scene.exgs_tools
        t.mode, t.keep, t.sh_degree = "KEEP", 25.0, 0
        assert t.refine  # the panel refines by default; a short budget here
        t.refine_seconds = 2.0
        r = list(bpy.ops.exgs.compress("INVOKE_DEFAULT"))
        new = bpy.data.objects.get("demo (ExGS)")
        me = new.data
        info = dict(n=len(me.vertices), src=me["exgs_source"], size=me["exgs_source_bytes"],
                    orig=me["exgs_original_bytes"], hidden=obj.hide_render, sh=me["exgs_sh_degree"],
                    axis=[list(r_) for r_ in new.matrix_world])
        bpy.context.view_layer.objects.active = new
        exp = {str(tmp_path / "exported.exgs")!r}
        rexp = list(bpy.ops.exgs.export_splats(filepath=exp, format=".exgs"))
        info["exported_same"] = open(exp, "rb").read() == open(me["exgs_source"], "rb").read()
        from bl_ext.user_default.exgs import gaussians
        info["ratio"] = gaussians.object_stats(new)["ratio"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            out_txt = io.StringIO()
            with contextlib.redirect_stdout(out_txt):
                rc = cli.main(["compress", {ply!r}, {out!r}, "--ratio", "20",
                               "--refine", "2"])
        # cancel: an already-set event stops the job and raises a cancel
        ply_path, digest, _ = render_core.export_mesh_ply(obj.data)
        ev = threading.Event(); ev.set()
        try:
            backend.compress(ply_path, digest, ratio=50, cancel=ev)
            cancelled = False
        except Exception as e:
            cancelled = errors.is_cancel(e)
        backend.stop_local()
        RESULT = dict(r=r, info=info, rc=rc, err=err.getvalue(), cancelled=cancelled,
                      out=out_txt.getvalue())
    """, timeout=300)
    info = res["info"]
    assert res["r"] == ["FINISHED"]
    assert 0 < info["n"] < 4000 and info["hidden"] and info["sh"] == 0
    assert os.path.exists(info["src"]) and info["src"].endswith(".exgs")
    assert info["size"] == os.path.getsize(info["src"]) and info["orig"] > info["size"]
    assert info["axis"][1][2] == 1.0  # the original's axis change carried over
    assert info["exported_same"] and info["ratio"] > 1.0
    assert res["rc"] == 0 and open(out, "rb").read(4) == b"EXGS", res["err"]
    assert "; refined " in res["out"] and " steps" in res["out"]  # --refine reached the backend
    assert res["cancelled"]


def test_compress_adapt_to_scene_keeps_the_delta_and_renders_with_it(run_bpy, tmp_path):
    """"Adapt to scene": the backend trains a painter delta; when it pays, the new mesh keeps
    it (base64, saved in the .blend) and restore renders send it to the backend."""
    pytest.importorskip("diffusers")
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    ply = str(tmp_path / "demo.ply")
    write_ply(demo_scene(3000, sh_degree=1, seed=5), ply)
    res = run_bpy(f"""
        import base64
        from bl_ext.user_default.exgs import io_import, backend, render_core
        from bl_ext.user_default.exgs.splat import SplatObject
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {ply!r})
        bpy.context.view_layer.objects.active = obj
        t = bpy.context.scene.exgs_tools
        t.adapt, t.adapt_seconds = True, 5.0  # the panel's settings exist
        r = list(bpy.ops.exgs.compress(mode="KEEP", keep=5.0, adapt=True, adapt_seconds=5.0))
        new = bpy.data.objects.get("demo (ExGS)")
        me = new.data
        b64 = me.get("exgs_painter_delta")
        info = dict(r=r, has=bool(b64), src=me["exgs_source"],
                    kept=SplatObject(me).kept_fraction)
        if not b64:  # did not pay in 5 s: force one (min gain −100 dB) for the render path
            ply_path, digest, _ = render_core.export_mesh_ply(obj.data)
            _, st, _ = backend.compress(ply_path, digest, keep=0.05, adapt=5.0,
                                        adapt_min_gain=-100.0)
            SplatObject(me).set_painter_delta_b64(st["painter_delta"]["data_b64"])
            b64 = me["exgs_painter_delta"]
        if b64:
            info["magic"] = base64.b64decode(b64)[:4].decode("latin-1")
            it = render_core.SplatItem("x", [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]],
                                       *render_core.export_mesh_ply(me),
                                       SplatObject(me).painter_delta)
            scene = bpy.context.scene
            cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
            scene.collection.objects.link(cam)
            cam.location = (0, -12, 0); cam.rotation_euler = (1.5708, 0, 0)
            scene.render.resolution_x, scene.render.resolution_y = 48, 32
            spec = render_core.blender_camera(scene, cam)
            fr = render_core.render_cameras([it], [spec], restore=True)[0]
            info["frame"] = list(fr.rgb.shape)
        backend.stop_local()
        RESULT = info
    """, timeout=400)
    assert res["r"] == ["FINISHED"]
    from exgs.io.exgs_format import read_exgs_delta
    from exgs.painter.infer import kept_fraction

    # the compressed mesh remembers its kept fraction: restore renders open the gate by it
    assert res["kept"] is not None and abs(res["kept"] - kept_fraction(res["src"])) < 1e-6

    stored = read_exgs_delta(res["src"])
    assert res["has"] == (stored is not None)
    assert res["magic"] == "EXPD" and res["frame"][:2] == [32, 48]


def test_compress_fits_the_scene_cameras_shot(run_bpy, tmp_path):
    """*Fit to shot* (on by default): the scene camera over the frame range (≤ 16 frames,
    each with the object's matrix at that frame) goes to the backend as the shot; the file
    records it; the current frame is restored. Off, or an orthographic camera: no shot."""
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    ply = str(tmp_path / "demo.ply")
    write_ply(demo_scene(3000, sh_degree=0, seed=6), ply)
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import io_import, render_core
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        obj, _ = io_import.import_file(bpy.context, {ply!r})
        bpy.context.view_layer.objects.active = obj
        cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
        scene.collection.objects.link(cam)
        scene.camera = cam
        scene.render.resolution_x, scene.render.resolution_y = 64, 48
        scene.frame_start, scene.frame_end = 1, 40
        for f, x in ((1, -3.0), (40, 3.0)):
            cam.location = (x, -10, 1); cam.rotation_euler = (1.5, 0, 0)
            cam.keyframe_insert("location", frame=f)
        obj.location = (0, 0, 0); obj.keyframe_insert("location", frame=1)
        obj.location = (0, 0, 2); obj.keyframe_insert("location", frame=40)
        scene.frame_set(7)
        shot = render_core.shot_cameras(scene, obj)
        info = dict(n=len(shot), frame=scene.frame_current,
                    first_x=shot[0]["camera_matrix_world"][0][3],
                    last_x=shot[-1]["camera_matrix_world"][0][3],
                    last_obj_z=shot[-1]["object_matrix_world"][2][3],
                    numbers=render_core.shot_frame_numbers(1, 40),
                    short=render_core.shot_frame_numbers(3, 9, 2))
        t = scene.exgs_tools
        info["default"] = t.fit_shot
        t.refine = False
        r1 = list(bpy.ops.exgs.compress(mode="KEEP", keep=5.0, refine=False))
        info["fitted"] = bpy.data.objects["demo (ExGS)"].data["exgs_source"]
        bpy.context.view_layer.objects.active = obj
        r2 = list(bpy.ops.exgs.compress(mode="KEEP", keep=5.0, refine=False, fit_shot=False))
        info["plain"] = bpy.data.objects["demo (ExGS).001"].data["exgs_source"]
        cam.data.type = "ORTHO"
        bpy.context.view_layer.objects.active = obj
        r3 = list(bpy.ops.exgs.compress(mode="KEEP", keep=5.0, refine=False))
        info["ortho"] = bpy.data.objects["demo (ExGS).002"].data["exgs_source"]
        info["frame_after"] = scene.frame_current
        from bl_ext.user_default.exgs import backend
        backend.stop_local()
        RESULT = dict(info, r=[r1, r2, r3])
    """, timeout=400)
    from exgs.io.exgs_format import read_exgs_header

    assert res["r"] == [["FINISHED"]] * 3
    assert res["n"] == 16 and res["frame"] == 7 and res["frame_after"] == 7
    assert res["numbers"][0] == 1 and res["numbers"][-1] == 40 and len(res["numbers"]) == 16
    assert res["short"] == [3, 5, 7, 9]
    assert abs(res["first_x"] + 3.0) < 1e-4 and abs(res["last_x"] - 3.0) < 1e-4
    assert abs(res["last_obj_z"] - 2.0) < 1e-4  # the object's matrix at that frame
    assert res["default"] is True
    assert read_exgs_header(res["fitted"])["settings"]["shot_views"] == 16
    assert "shot_views" not in read_exgs_header(res["plain"])["settings"]
    assert "shot_views" not in read_exgs_header(res["ortho"])["settings"]
