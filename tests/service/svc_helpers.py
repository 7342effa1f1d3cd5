"""Helpers of the service tests (a module with a unique name, so that test files can import
it whatever other ``conftest`` modules are loaded): the stdlib client loaded from its file,
``require`` (skip naming the missing module) and ``start`` (a real ``exgs serve`` process).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT_DIR = os.path.join(ROOT, "exgs_blender", "client")
CLIENT_PATH = os.path.join(CLIENT_DIR, "__init__.py")


def load_client():
    mod = sys.modules.get("exgs_service_client")
    if mod is None:
        spec = importlib.util.spec_from_file_location("exgs_service_client", CLIENT_PATH,
                                                      submodule_search_locations=[CLIENT_DIR])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["exgs_service_client"] = mod
        spec.loader.exec_module(mod)
    return mod


def require(module: str, attr: str | None = None):
    """Import ``module`` (and check ``attr``) or skip, naming what is missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        pytest.skip(f"{module} is not available in this build yet ({e})")
    if attr is not None and not hasattr(mod, attr):
        pytest.skip(f"{module}.{attr} is not available in this build yet")
    return mod


C = load_client()

#: Limits of the shared test server: small, so limit errors are cheap to provoke.
UPLOAD_LIMIT_MB = 1
MAX_SIDE = 512
MAX_FRAMES = 200


def start(tmp_path_factory, name: str, *, allow: bool = True, extra=()):
    base = tmp_path_factory.mktemp(name)
    allow_dir = base / "allowed"
    allow_dir.mkdir()
    args = ["--max-upload-mb", str(UPLOAD_LIMIT_MB), "--max-image-side", str(MAX_SIDE),
            "--max-frames", str(MAX_FRAMES), "--device", "cpu", "--log-level", "warning",
            *extra]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    client = C.ExgsClient.start_local(sys.executable, allow_dir=str(allow_dir) if allow else None,
                                      data_dir=str(base / "data"), extra_args=args, env=env,
                                      startup_timeout=90, timeout=30)
    client.base = base
    client.allow_dir = allow_dir
    return client
