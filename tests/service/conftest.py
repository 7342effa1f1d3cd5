"""Service tests: REAL ``exgs serve`` processes on loopback, driven through the stdlib client
(``exgs_blender/client.py``, loaded from its file so that the add-on package is not needed).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT_PATH = os.path.join(ROOT, "exgs_blender", "client.py")


def load_client():
    mod = sys.modules.get("exgs_service_client")
    if mod is None:
        spec = importlib.util.spec_from_file_location("exgs_service_client", CLIENT_PATH)
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


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    client = start(tmp_path_factory, "serve")
    yield client
    client.close()


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory):
    """(GaussianScene, PLY path) of a ~330 KB random scene (SH degree 1)."""
    from exgs.io.ply import write_ply
    from exgs.synth import random_scene

    scene = random_scene(1500, sh_degree=1, seed=3)
    path = tmp_path_factory.mktemp("scenes") / "small.ply"
    write_ply(scene, path)
    return scene, path
