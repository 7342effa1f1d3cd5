"""Where the add-on keeps its files (stdlib only, no bpy): the render cache, which is also the
folder the local backend may open by path (``--allow-dir``)."""

from __future__ import annotations

import os
import tempfile

_CACHE_DIR = None


def cache_dir() -> str:
    """``EXGS_CACHE_DIR`` or ``<tmp>/exgs-blender-<uid>`` (created on first use): write-back
    PLYs (``<content hash>.ply``), compressed ``.exgs`` files, converted scenes, frames."""
    global _CACHE_DIR
    if _CACHE_DIR is None:
        uid = os.getuid() if hasattr(os, "getuid") else "u"
        base = os.environ.get("EXGS_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                                f"exgs-blender-{uid}")
        os.makedirs(base, exist_ok=True)
        _CACHE_DIR = base
    return _CACHE_DIR
