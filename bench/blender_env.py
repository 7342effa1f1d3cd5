"""Shared by the Blender benchmarks (bench/addon.py, farm.py, blender_flicker.py): run a
command, and install the ExGS extension into a throw-away Blender user folder."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")


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
