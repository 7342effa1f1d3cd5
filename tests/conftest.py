"""Shared test setup: keep every tool's user-level state inside a temporary HOME."""

import os
import tempfile

_home = tempfile.mkdtemp(prefix="exgs-test-home-")
os.environ.setdefault("EXGS_TEST", "1")
os.environ["HOME"] = _home  # bpy writes to $HOME/.config/blender
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "numba"))
