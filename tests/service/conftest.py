"""Service tests: REAL ``exgs serve`` processes on loopback, driven through the stdlib client
(the ``exgs_blender/client`` package, loaded from its folder so that the add-on package is not needed).
Helpers live in ``svc_helpers.py``.
"""

from __future__ import annotations

import pytest

from svc_helpers import start


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
