"""POST /v1/scenes/open takes streamed LOD SOG folders (``lod-meta.json``; level 0, as
``exgs.io.read_scene`` reads them) — the folder or its lod-meta.json — and the viewport renders
them; folders that are neither SOG nor LOD SOG are refused with one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient

from exgs.io import read_scene
from exgs.io.sog_write import write_sog
from exgs.render.viewport import PreparedCache, render_objects
from exgs.service import viewport_codec
from exgs.service.app import create_app
from exgs.service.config import ServiceConfig
from exgs.synth import random_scene

TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIEW = [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, -3.0], [0, 0, 0, 1]]
PROJ = [[1.5, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, -1.002, -0.2002], [0, 0, -1, 0]]


def _lod_folder(root):
    """Two chunks; level 0 = all of chunk 0 and chunk 1, level 1 = part of chunk 1."""
    root.mkdir()
    a = random_scene(300, sh_degree=1, seed=1)
    b = random_scene(200, sh_degree=1, seed=2)
    for i, s in enumerate((a, b)):
        s.means[:, 2] -= 3.0
        write_sog(s, root / f"c{i}", palette=64)
    tree = {"children": [{"lods": {"0": {"file": 0, "offset": 0, "count": 300}}},
                         {"lods": {"0": {"file": 1, "offset": 0, "count": 200},
                                   "1": {"file": 1, "offset": 0, "count": 50}}}]}
    (root / "lod-meta.json").write_text(json.dumps(
        {"lodLevels": 2, "filenames": ["c0/meta.json", "c1/meta.json"], "tree": tree}))
    return root


@pytest.fixture()
def client(tmp_path):
    allow = tmp_path / "allowed"
    allow.mkdir()
    app = create_app(ServiceConfig(token=TOKEN, device="cpu", data_dir=str(tmp_path / "data"),
                                   allow_dir=os.path.realpath(allow)))
    with TestClient(app) as tc:
        yield tc, allow
    app.state.jobs.shutdown()


def test_open_lod_sog_folder_level0_and_render_viewport(client):
    tc, allow = client
    lod = _lod_folder(allow / "scene.lod-sog")
    want = read_scene(lod)
    assert len(want) == 500
    r = tc.post("/v1/scenes/open", json={"path": str(lod)}, headers=AUTH)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["gaussians"] == 500 and info["format"] == "sog_lod"
    # the lod-meta.json path names the same scene (same content id: the folder is hashed)
    r2 = tc.post("/v1/scenes/open", json={"path": "scene.lod-sog/lod-meta.json"}, headers=AUTH)
    assert r2.status_code == 200 and r2.json()["id"] == info["id"] and r2.json()["deduplicated"]
    body = {"objects": [{"scene_id": info["id"], "matrix_world": np.eye(4).tolist()}],
            "view_matrix": VIEW, "window_matrix": PROJ, "width": 64, "height": 48, "depth": True}
    f = viewport_codec.decode(tc.post("/v1/viewport", json=body, headers=AUTH).content)
    ref = render_objects([(want, np.eye(4))], VIEW, PROJ, 64, 48, cache=PreparedCache())
    assert ref.alpha.max() > 0.3
    np.testing.assert_array_equal(f["depth"], ref.depth)
    np.testing.assert_allclose(f["rgba"][..., 3], ref.alpha, atol=6e-4)


def test_open_plain_folder_is_refused_with_one_line(client):
    tc, allow = client
    (allow / "junk").mkdir()
    (allow / "junk" / "a.txt").write_text("x")
    r = tc.post("/v1/scenes/open", json={"path": "junk"}, headers=AUTH)
    assert r.status_code == 400
    msg = r.json()["error"]
    assert "junk" in msg and "lod-meta.json" in msg and "\n" not in msg
