"""Headless command (``blender -c exgs``; called through the registered handler) and clean
failures: backend missing → one-line report, exit code 1, no traceback, no hang."""

import os

from bpy_helpers import SETUP_CAMERA


def test_cli_import_then_render_without_backend(run_bpy, small_ply, tmp_path):
    path, scene = small_ply
    blend = str(tmp_path / "farm.blend")
    res = run_bpy(helpers=SETUP_CAMERA, code=f"""
        import io, contextlib
        from bl_ext.user_default.exgs import cli
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc_usage = cli.main(["bogus"])
            rc_import = cli.main(["import", {path!r}, {blend!r}])
        n = len(bpy.data.objects["scene"].data.vertices)
        add_camera()
        bpy.ops.wm.save_mainfile()
        with contextlib.redirect_stderr(err):
            rc_render = cli.main(["render", {blend!r}, "-s", "1", "-e", "2",
                                  "-o", {str(tmp_path / "out_####")!r}])
            rc_missing = cli.main(["render", {str(tmp_path / "nope.blend")!r}])
            rc_refine = cli.main(["compress", {path!r}, {str(tmp_path / "o.exgs")!r},
                                  "--refine", "0"])
        RESULT = dict(rc=[rc_usage, rc_import, rc_render, rc_missing, rc_refine], n=n,
                      err=err.getvalue())
    """, EXGS_PYTHON=str(tmp_path / "no-such-python"), timeout=120)
    assert res["rc"] == [2, 0, 1, 2, 2]
    assert "exgs: error: --refine must be a number of seconds in (0, 3600], got 0.0" in res["err"]
    assert not os.path.exists(tmp_path / "o.exgs")
    assert res["n"] == len(scene)
    lines = [ln for ln in res["err"].splitlines() if ln.startswith("exgs: error:")]
    assert any("backend Python not found" in ln and "no-such-python" in ln for ln in lines), res["err"]
    assert "Traceback" not in res["err"]
    assert os.path.exists(tmp_path / "farm.blend")


def test_remote_host_needs_online_access(run_bpy, small_ply):
    path, _ = small_ply
    res = run_bpy(helpers=SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.engine import final
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        add_camera(size=(8, 6))
        bpy.context.scene.render.engine = "EXGS"
        try:
            bpy.ops.render.render()
        except RuntimeError:
            pass
        RESULT = dict(online=bpy.app.online_access, errors=final.ERRORS)
    """, EXGS_BACKEND_URL="http://192.0.2.1:8765", EXGS_TOKEN="t")
    if res["online"]:
        return  # this Blender allows online access: nothing to refuse
    assert "online access is disabled" in res["errors"][-1]
    assert "192.0.2.1" in res["errors"][-1]


def test_backend_python_without_exgs_is_reported(run_bpy, small_ply, tmp_path):
    """A Python that exists but has no backend installed: one line saying so."""
    import subprocess
    import sys
    import venv

    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(bare)
    py = str(bare / "bin" / "python")
    assert subprocess.run([py, "-c", "import exgs"], capture_output=True).returncode != 0
    path, _ = small_ply
    res = run_bpy(helpers=SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.engine import final
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        add_camera(size=(8, 6))
        bpy.context.scene.render.engine = "EXGS"
        try:
            bpy.ops.render.render()
        except RuntimeError:
            pass
        RESULT = final.ERRORS
    """, EXGS_PYTHON=py, timeout=120)
    assert len(res) == 1 and "not installed" in res[0] and py in res[0], res
    assert "Traceback" not in run_bpy.last.stderr + run_bpy.last.stdout
