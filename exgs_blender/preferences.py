"""Add-on preferences and the effective backend settings (environment variables win).

Farm overrides (read at every connection, so a render node needs no saved preferences):

* ``EXGS_BACKEND_URL`` — use this running service (e.g. ``http://gpu-box:8765``),
* ``EXGS_TOKEN`` — its bearer token (or ``EXGS_TOKEN_FILE``: a file holding it, e.g. the
  server's ``--token-file`` on shared storage; ``EXGS_TOKEN`` wins),
* ``EXGS_CLIENT_ID`` — this worker's name for the service's fair queue (header
  ``X-Exgs-Client``; default: the service uses the peer address), see docs/farm.md,
* ``EXGS_PYTHON`` — Python executable with the ``exgs`` backend installed (local mode),
* ``EXGS_DEVICE`` — auto / cuda / cpu.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

ADDON_ID = __package__


def _default_venv() -> str:
    try:
        base = bpy.utils.extension_path_user(ADDON_ID, path="backend-venv", create=False)
    except Exception:  # not installed as an extension (tests, legacy add-on path)
        base = os.path.join(os.path.expanduser("~"), ".cache", "exgs", "backend-venv")
    return base


class ExgsPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_mode: EnumProperty(
        name="Backend",
        items=[("LOCAL", "Local process", "Start `exgs serve` on this machine when needed"),
               ("REMOTE", "Remote service", "Connect to a running `exgs serve` (URL + token)")],
        default="LOCAL")
    python_path: StringProperty(
        name="Python", subtype="FILE_PATH",
        description="Python executable (or venv folder) with the exgs backend installed; "
                    "empty = the venv made by 'Set up backend'")
    remote_url: StringProperty(name="URL", default="http://127.0.0.1:8765")
    remote_token: StringProperty(name="Token", subtype="PASSWORD")
    device: EnumProperty(name="Device", items=[("auto", "Auto", ""), ("cuda", "CUDA", ""),
                                               ("cpu", "CPU", "")], default="auto")
    painter_weights: StringProperty(name="Painter weights", subtype="FILE_PATH",
                                    description="GaussPainter weights (empty = shipped ones)")
    timeout: FloatProperty(name="Timeout (s)", default=600.0, min=5.0)
    keep_server: BoolProperty(name="Keep local server running", default=True,
                              description="Reuse the started server across renders")

    def draw(self, context):
        lay = self.layout
        lay.prop(self, "backend_mode", expand=True)
        if self.backend_mode == "LOCAL":
            lay.prop(self, "python_path")
            row = lay.row()
            row.operator("exgs.setup_backend", icon="CONSOLE")
            row.label(text=f"venv: {_default_venv()}")
        else:
            lay.prop(self, "remote_url")
            lay.prop(self, "remote_token")
        lay.prop(self, "device")
        lay.prop(self, "painter_weights")
        lay.prop(self, "timeout")
        lay.prop(self, "keep_server")
        env = [k for k in ("EXGS_BACKEND_URL", "EXGS_TOKEN", "EXGS_TOKEN_FILE", "EXGS_CLIENT_ID",
                           "EXGS_PYTHON", "EXGS_DEVICE") if os.environ.get(k)]
        if env:
            lay.label(text="Overridden by environment: " + ", ".join(env), icon="INFO")


@dataclass
class Settings:
    mode: str            # "LOCAL" | "REMOTE"
    python: str          # local: python executable
    url: str             # remote: base URL
    token: str
    device: str
    painter_weights: str
    timeout: float
    keep_server: bool


def venv_python(path: str) -> str:
    """A venv folder or a python executable → the executable path."""
    if path and (os.path.isdir(path) or not os.path.splitext(path)[1] and
                 os.path.basename(path).endswith("venv")):
        sub = ("Scripts", "python.exe") if sys.platform == "win32" else ("bin", "python")
        return os.path.join(path, *sub)
    return path


def token_from_file(path: str) -> str:
    """The first line of a token file (``EXGS_TOKEN_FILE``); a one-line error naming the file
    when it cannot be read or is empty."""
    from .errors import BackendError

    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise BackendError(f"EXGS_TOKEN_FILE {path}: cannot read "
                           f"({getattr(e, 'strerror', None) or e})") from None
    if not token:
        raise BackendError(f"EXGS_TOKEN_FILE {path}: empty")
    return token


def get_prefs():
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else None


def settings() -> Settings:
    """Effective settings: preferences, overridden by EXGS_* environment variables."""
    p = get_prefs()
    mode = p.backend_mode if p else "LOCAL"
    python = (p.python_path if p else "") or _default_venv()
    url = p.remote_url if p else ""
    token = p.remote_token if p else ""
    env = os.environ
    if env.get("EXGS_PYTHON"):
        python, mode = env["EXGS_PYTHON"], "LOCAL"
    if env.get("EXGS_BACKEND_URL"):
        url, mode = env["EXGS_BACKEND_URL"], "REMOTE"
    if env.get("EXGS_TOKEN"):
        token = env["EXGS_TOKEN"]
    elif env.get("EXGS_TOKEN_FILE"):
        token = token_from_file(env["EXGS_TOKEN_FILE"])
    return Settings(mode=mode, python=venv_python(bpy.path.abspath(python)), url=url.rstrip("/"),
                    token=token, device=env.get("EXGS_DEVICE") or (p.device if p else "auto"),
                    painter_weights=bpy.path.abspath(p.painter_weights) if p and p.painter_weights else "",
                    timeout=p.timeout if p else 600.0, keep_server=p.keep_server if p else True)


classes = (ExgsPreferences,)
