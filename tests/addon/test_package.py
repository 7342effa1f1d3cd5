"""Packaging: the zip passes Blender's validation, installs, and register/unregister leave
nothing behind."""

import glob
import os
import subprocess
import sys
import zipfile

from conftest import ROOT


def _blender_ext():
    hits = glob.glob(os.path.join(ROOT, ".venv", "lib", "python3*", "site-packages", "bpy", "*",
                                  "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py"))
    return hits[0]


def test_zip_validates_and_carries_backend(ext_zip):
    r = subprocess.run([sys.executable, _blender_ext(), "validate", ext_zip],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    names = zipfile.ZipFile(ext_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "backend_src/pyproject.toml" in names and "backend_src/exgs/cameras.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any("torch" in open(os.path.join(ROOT, "exgs_blender", f)).read()
                   for f in ("__init__.py", "render_core.py", "backend.py"))


def test_register_unregister_leaves_nothing(run_bpy):
    res = run_bpy("""
        import addon_utils
        def engine_ok():
            try:
                bpy.context.scene.render.engine = "EXGS"
                ok = bpy.context.scene.render.engine == "EXGS"
            except TypeError:
                ok = False
            bpy.context.scene.render.engine = "BLENDER_WORKBENCH"
            return ["EXGS"] if ok else []
        def snapshot():
            return dict(
                types=sorted(n for n in dir(bpy.types) if "EXGS" in n.upper() or "Exgs" in n),
                ops=sorted(dir(bpy.ops.exgs)),
                scene=sorted(p for p in ("exgs_render", "exgs_tools") if hasattr(bpy.types.Scene, p)),
                menu=[getattr(f, "__name__", "") for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
                     if hasattr(bpy.types.TOPBAR_MT_file_import, "_dyn_ui_initialize") else [],
                engines=engine_ok(),
                compat="EXGS" in bpy.types.RENDER_PT_format.COMPAT_ENGINES,
                cli=importlib.import_module(MOD + ".cli")._HANDLE is not None,
            )
        on = snapshot()
        addon_utils.disable(MOD, default_set=True)
        off = snapshot()
        addon_utils.enable(MOD, default_set=True)
        again = snapshot()
        RESULT = dict(on=on, off=off, again=again)
    """)
    on, off, again = res["on"], res["off"], res["again"]
    assert "EXGS_PT_sidebar" in on["types"] and "import_splats" in on["ops"]
    assert "EXGS_FH_import" in on["types"]  # drag and drop handler
    assert on["scene"] == ["exgs_render", "exgs_tools"] and on["compat"]
    assert "EXGS" in on["engines"]
    assert on["cli"] and not off["cli"]  # `blender -c exgs` registered / unregistered
    assert off["types"] == [] and off["scene"] == [] and not off["compat"]
    assert "EXGS" not in off["engines"]
    assert "menu_import" in on["menu"] and "menu_import" not in off["menu"]
    assert again == on


def test_set_up_backend_installs_shipped_source(run_bpy, tmp_path):
    """'Set up backend' makes a venv and pip-installs backend_src/ from the installed zip
    (``--no-deps`` here: the heavy dependencies are not downloaded in tests)."""
    res = run_bpy("""
        import subprocess
        from bl_ext.user_default.exgs import preferences
        from bl_ext.user_default.exgs.operators import backend_ops
        src = backend_ops.backend_source_dir()
        r = list(bpy.ops.exgs.setup_backend())
        py = preferences.venv_python(preferences._default_venv())
        out = subprocess.run([py, "-c", "import importlib.util as u; print(u.find_spec('exgs.cameras').origin)"],
                             capture_output=True, text=True)
        RESULT = dict(src=src, r=r, py=py, out=out.stdout.strip(), err=out.stderr[-500:])
    """, EXGS_SETUP_PIP_ARGS="--no-deps", timeout=240)
    assert res["src"].endswith("backend_src")
    assert res["r"] == ["FINISHED"], res
    assert "backend-venv" in res["py"] and "site-packages/exgs/cameras.py" in res["out"], res["err"]
