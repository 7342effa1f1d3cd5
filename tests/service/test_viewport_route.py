"""POST /v1/viewport and /v1/viewport/cancel in-process (the router alone, on a bare app):
frame = render_objects' pixels, supersede by generation, cancel, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from exgs.io.ply import write_ply
from exgs.render.viewport import PreparedCache, render_objects
from exgs.service import viewport_codec
from exgs.service.scenes import SceneStore
from exgs.service.viewport import ViewportRenderer, make_router
from exgs.synth import random_scene

W, H = 64, 48
VIEW = [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, -3.0], [0, 0, 0, 1]]  # eye at y = −3, +z up
PROJ = [[1.5, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, -1.002, -0.2002], [0, 0, -1, 0]]


@pytest.fixture()
def setup(tmp_path):
    scene = random_scene(400, sh_degree=1, seed=2)
    scene.means[:, 2] -= 3.0
    path = tmp_path / "s.ply"
    write_ply(scene, path)
    store = SceneStore(str(tmp_path / "data"))
    entry, _ = store.add_path(str(path))
    renderer = ViewportRenderer(store)
    app = FastAPI()
    app.include_router(make_router(renderer))
    return TestClient(app), renderer, entry


def body(sid, **kw):
    b = {"objects": [{"scene_id": sid, "matrix_world": np.eye(4).tolist()}],
         "view_matrix": VIEW, "window_matrix": PROJ, "width": W, "height": H}
    b.update(kw)
    return b


def test_frame_equals_render_objects(setup):
    tc, renderer, entry = setup
    r = tc.post("/v1/viewport", json=body(entry.id, depth=True, generation=3, session="s"))
    assert r.status_code == 200 and r.headers["content-type"] == viewport_codec.MEDIA_TYPE
    f = viewport_codec.decode(r.content)
    assert (f["width"], f["height"], f["generation"]) == (W, H, 3) and f["ms"] > 0
    ref = render_objects([(entry.scene, np.eye(4))], VIEW, PROJ, W, H, cache=PreparedCache())
    assert ref.alpha.max() > 0.3
    np.testing.assert_allclose(f["rgba"][..., 3], ref.alpha, atol=6e-4)
    np.testing.assert_allclose(f["rgba"][..., :3], ref.rgb, atol=6e-4)
    np.testing.assert_array_equal(f["depth"], ref.depth)
    half = viewport_codec.decode(tc.post("/v1/viewport", json=body(entry.id, scale=0.5))
                                 .content)
    assert (half["width"], half["height"]) == (W // 2, H // 2) and half["depth"] is None


def test_older_generation_and_cancelled_requests_are_superseded(setup):
    tc, renderer, entry = setup
    assert tc.post("/v1/viewport", json=body(entry.id, session="a", generation=5)).status_code \
        == 200
    r = tc.post("/v1/viewport", json=body(entry.id, session="a", generation=4))
    assert r.status_code == 409 and "superseded" in r.json()["error"]
    # other sessions are independent
    assert tc.post("/v1/viewport", json=body(entry.id, session="b", generation=1)).status_code \
        == 200
    c = tc.post("/v1/viewport/cancel", json={"session": "a", "generation": 7})
    assert c.status_code == 200
    assert tc.post("/v1/viewport", json=body(entry.id, session="a", generation=7)).status_code \
        == 409
    assert tc.post("/v1/viewport", json=body(entry.id, session="a", generation=8)).status_code \
        == 200


def test_a_newer_request_supersedes_one_waiting_for_the_renderer(setup):
    tc, renderer, entry = setup
    renderer._lock.acquire()  # a render is running
    out = {}
    try:
        t = threading.Thread(target=lambda: out.setdefault(
            "old", tc.post("/v1/viewport", json=body(entry.id, session="z", generation=1))))
        t.start()
        while not renderer.sessions.stale("z", 0):  # generation 1 has arrived
            pass
        renderer.sessions.arrive("z", 2)  # a newer view arrives meanwhile
    finally:
        renderer._lock.release()
    t.join(10)
    assert out["old"].status_code == 409


@pytest.mark.parametrize("change, status, msg", [
    ({"objects": [{"scene_id": "nope", "matrix_world": np.eye(4).tolist()}]}, 404, "no scene"),
    ({"window_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0.5, -1, 0]]}, 422,
     "neither perspective nor orthographic"),
    ({"crop": [60, 40, 60, 48]}, 422, "empty"),
    ({"scale": 0}, 422, None),
])
def test_bad_requests(setup, change, status, msg):
    tc, renderer, entry = setup
    app = tc.app

    from exgs.service.scenes import SceneError

    @app.exception_handler(SceneError)
    async def _scene_error(request, exc):  # what the real app's handler answers
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    r = tc.post("/v1/viewport", json=body(entry.id, **change))
    assert r.status_code == status
    if msg:
        assert msg in r.json()["error"]


def test_restore_applies_the_restorer_per_object_on_request(tmp_path):
    scene = random_scene(300, sh_degree=0, seed=4)
    scene.means[:, 2] -= 3.0
    write_ply(scene, tmp_path / "s.ply")
    store = SceneStore(str(tmp_path / "data"))
    entry, _ = store.add_path(str(tmp_path / "s.ply"))
    seen = []

    def restorer(obj, e):
        seen.append((obj.keep, e.id))
        return lambda rgb, alpha: np.ones_like(rgb) * alpha[..., None] * 0.5  # grey

    app = FastAPI()
    app.include_router(make_router(ViewportRenderer(store, restorer=restorer)))
    tc = TestClient(app)
    plain = viewport_codec.decode(tc.post("/v1/viewport", json=body(entry.id)).content)
    assert seen == []  # restore is off by default
    b = body(entry.id, restore=True)
    b["objects"][0]["keep"] = 0.1
    f = viewport_codec.decode(tc.post("/v1/viewport", json=b).content)
    assert seen == [(0.1, entry.id)]
    a = f["rgba"][..., 3].astype(np.float32)
    hit = a > 0.5
    # sRGB 0.5 → linear 0.214, premultiplied
    np.testing.assert_allclose(f["rgba"][..., 0][hit], 0.21404 * a[hit], atol=2e-3)
    assert not np.allclose(plain["rgba"][..., 0][hit], f["rgba"][..., 0][hit], atol=2e-3)


def test_the_app_mounts_the_viewport_routes(tmp_path):
    from exgs.service.app import create_app
    from exgs.service.config import ServiceConfig

    token = "v" * 32
    app = create_app(ServiceConfig(token=token, device="cpu", data_dir=str(tmp_path)))
    try:
        with TestClient(app) as tc:
            h = {"Authorization": f"Bearer {token}"}
            assert "warm_up" in tc.get("/v1/health", headers=h).json()
            r = tc.post("/v1/viewport", headers=h, json=body("nope"))
            assert r.status_code == 404 and "no scene" in r.json()["error"]
            r = tc.post("/v1/viewport", headers=h,
                        json={"objects": [], "view_matrix": VIEW, "window_matrix": PROJ,
                              "width": 8, "height": 4})
            f = viewport_codec.decode(r.content)
            assert (f["width"], f["height"]) == (8, 4) and f["rgba"].max() == 0
            assert tc.post("/v1/viewport/cancel", headers=h,
                           json={"session": "s", "generation": 3}).status_code == 200
    finally:
        app.state.jobs.shutdown()


def test_restore_in_the_app_equals_the_pipeline_restorer(tmp_path):
    """restore=True through the real app = render → exgs.pipeline restorer → linear."""
    from exgs.pipeline import RestoreOptions, SceneFacts, restorer_for
    from exgs.render.viewport import linear_premultiplied
    from exgs.service.app import create_app
    from exgs.service.config import ServiceConfig
    from exgs.service.engines import painter_status

    cfg = ServiceConfig(token="r" * 32, device="cpu", data_dir=str(tmp_path / "d"))
    if not painter_status(cfg)["available"]:
        pytest.skip("no GaussPainter weights in this build")
    scene = random_scene(400, sh_degree=1, seed=6)
    scene.means[:, 2] -= 3.0
    write_ply(scene, tmp_path / "s.ply")
    app = create_app(cfg)
    try:
        entry, _ = app.state.store.add_path(str(tmp_path / "s.ply"))
        with TestClient(app) as tc:
            b = body(entry.id, restore=True)
            b["objects"][0]["keep"] = 0.05
            r = tc.post("/v1/viewport", headers={"Authorization": "Bearer " + "r" * 32}, json=b)
        assert r.status_code == 200, r.text
        f = viewport_codec.decode(r.content)
        raw = render_objects([(entry.scene, np.eye(4))], VIEW, PROJ, W, H,
                             cache=PreparedCache())
        from exgs.render import render
        from exgs.viewport_camera import camera_from_view

        res = render(entry.scene, camera_from_view(VIEW, PROJ, W, H).camera, device="cpu")
        restorer = restorer_for(entry.facts or SceneFacts(),
                                RestoreOptions(device="cpu", kept_fraction=0.05))
        rgb_r, alpha_r = restorer.restore_rgba(res.rgb, res.alpha)  # painted holes covered
        want = linear_premultiplied(rgb_r, alpha_r)
        np.testing.assert_allclose(f["rgba"][..., :3], want, atol=2e-3)
        np.testing.assert_allclose(f["rgba"][..., 3], alpha_r, atol=2e-3)
        assert np.abs(want - raw.rgb).max() > 1e-3  # the painter changed the frame
    finally:
        app.state.jobs.shutdown()
