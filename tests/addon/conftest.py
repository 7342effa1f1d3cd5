"""Add-on tests: bpy runs in SUBPROCESSES (never imported into pytest, which may hold torch).

* ``ext_home`` (session): a temporary HOME with the extension zip (built by
  scripts/build_extension.py) installed through ``bpy.ops.extensions.package_install_files``.
* ``run_bpy(code)``: run ``code`` in a fresh bpy process with that HOME and the add-on
  enabled; the code sets ``RESULT`` (JSON-able) which is returned.
* ``EXGS_BPY_PYTHON`` selects the interpreter holding bpy (default: .venv = Blender 5.0;
  ``.venv-bpy42/bin/python`` runs the same tests under Blender 4.2 LTS).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BPY_PYTHON = os.environ.get("EXGS_BPY_PYTHON") or os.path.join(ROOT, ".venv", "bin", "python")
BACKEND_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")

PRELUDE = r'''
import json, os, sys, traceback
import bpy
import addon_utils
MOD = "bl_ext.user_default.exgs"
addon_utils.enable(MOD, default_set=True, handle_error=None)
import importlib
exgs = importlib.import_module(MOD)
RESULT = None
def _main():
    global RESULT
'''
EPILOGUE = r'''
try:
    _main()
    print("@@RESULT@@" + json.dumps(RESULT))
except SystemExit:
    raise
except BaseException:
    traceback.print_exc()
    sys.exit(3)
'''


def _have_bpy() -> bool:
    if not os.path.exists(BPY_PYTHON):
        return False
    r = subprocess.run([BPY_PYTHON, "-c", "import bpy"], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="session")
def bpy_python():
    if not _have_bpy():
        pytest.skip(f"no bpy in {BPY_PYTHON}")
    return BPY_PYTHON


@pytest.fixture(scope="session")
def ext_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([BACKEND_PYTHON, os.path.join(ROOT, "scripts", "build_extension.py"),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def bpy_env(home: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXGS_BACKEND", "EXGS_TOKEN"))}
    env["HOME"] = home
    env["EXGS_CACHE_DIR"] = os.path.join(home, "exgs-cache")
    env["EXGS_PYTHON"] = BACKEND_PYTHON
    env.pop("PYTHONPATH", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def ext_home(tmp_path_factory, bpy_python, ext_zip):
    home = str(tmp_path_factory.mktemp("home"))
    code = (f"import bpy\nr = bpy.ops.extensions.package_install_files(filepath={ext_zip!r}, "
            "repo='user_default', enable_on_install=True)\nprint('@@INSTALL@@', r)\n")
    r = subprocess.run([bpy_python, "-c", code], capture_output=True, text=True,
                       env=bpy_env(home), timeout=120)
    assert "@@INSTALL@@ {'FINISHED'}" in r.stdout, r.stdout + r.stderr
    return home


@pytest.fixture
def run_bpy(ext_home, bpy_python):
    def run(code: str, timeout: float = 120, expect_ok: bool = True, helpers: str = "", **env):
        pre, main = PRELUDE.split("def _main():")
        src = (pre + textwrap.dedent(helpers) + "\ndef _main():" + main
               + textwrap.indent(textwrap.dedent(code), "    ") + EPILOGUE)
        r = subprocess.run([bpy_python, "-c", src], capture_output=True, text=True,
                           env=bpy_env(ext_home, **env), timeout=timeout)
        out = r.stdout
        res = None
        for line in out.splitlines():
            if line.startswith("@@RESULT@@"):
                res = json.loads(line[len("@@RESULT@@"):])
        if expect_ok:
            assert r.returncode == 0 and "@@RESULT@@" in out, (
                f"bpy subprocess failed (rc={r.returncode}):\n{out[-3000:]}\n{r.stderr[-3000:]}")
        run.last = r
        return res
    return run


@pytest.fixture(scope="session")
def small_ply(tmp_path_factory):
    """A generated 3DGS PLY (exgs.synth; SH degree 1) + its scene arrays."""
    from exgs.io.ply import write_ply
    from exgs.synth import random_scene

    d = tmp_path_factory.mktemp("scenes")
    scene = random_scene(500, sh_degree=1, seed=3)
    p = d / "scene.ply"
    write_ply(scene, p)
    return str(p), scene
