"""Shared by the Blender benchmarks (bench/addon.py, farm.py, blender_flicker.py): run a
command, and install the ExGS extension into a throw-away Blender user folder."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")


#: Functions for the bpy scripts of the Blender benchmarks (prepended to them): the EXR render
#: settings and reading a rendered frame range back as [N, H, W, 4] float32 (rows top first).
BPY_HELPERS = r'''
import numpy as _np


def exr_settings(sc, size):
    sc.render.resolution_x = sc.render.resolution_y = size
    sc.render.resolution_percentage = 100
    sc.render.film_transparent = True
    sc.render.use_compositing = False
    sc.render.image_settings.file_format = "OPEN_EXR"
    sc.render.image_settings.color_depth = "32"
    sc.render.image_settings.color_mode = "RGBA"


def read_exr_frames(folder, frames, size):
    out = []
    for f in range(1, frames + 1):
        img = bpy.data.images.load(os.path.join(folder, f"{f:04d}.exr"))
        px = _np.empty(size * size * 4, _np.float32)
        img.pixels.foreach_get(px)
        bpy.data.images.remove(img)
        out.append(px.reshape(size, size, 4)[::-1])
    return _np.stack(out)
'''


def sh(cmd, **kw) -> str:
    """Run ``cmd``; its stdout, or exit with the tail of its output when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        raise SystemExit(r.stdout[-3000:] + r.stderr[-3000:])
    return r.stdout


def install_extension(tmp: str, bpy_python: str = PY) -> str:
    """Build the extension zip into ``tmp`` and install it (enabled) for a fresh Blender user
    folder ``tmp/home``; returns that folder (use it as HOME)."""
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    zp = sh([PY, os.path.join(ROOT, "scripts", "build_extension.py"), "--out", tmp]).split()[-1]
    sh([bpy_python, "-c", f"import bpy; bpy.ops.extensions.package_install_files("
        f"filepath={zp!r}, repo='user_default', enable_on_install=True)"],
       env=dict(os.environ, HOME=home))
    return home


def start_server(tmp: str):
    """Start ``exgs serve`` on a free port with a token file in ``tmp``; returns (process,
    url, token file). The caller terminates the process."""
    from exgs_blender.backend import parse_ready_line

    token_file = os.path.join(tmp, "token")
    srv = subprocess.Popen([PY, "-m", "exgs.cli", "serve", "--port", "0", "--token-file",
                            token_file], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, text=True)
    url = parse_ready_line(srv.stdout.readline().strip())
    if not url:
        srv.kill()
        raise SystemExit("exgs serve did not start")
    return srv, url, token_file
