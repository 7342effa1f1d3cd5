"""A refined file's restore in the service (issue 15): the .exgs header's refine record reaches
render jobs and the viewport through the scene's facts; ``PUT /facts`` and the viewport object
(the add-on's payload, ``kept_fraction`` + ``refined``) set it for a PLY upload. The service
runs a small generated painter whose refined gate table is off everywhere: refined frames
come back exactly unrestored, training-free ones are restored."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from exgs.cameras import orbit_for_scene
from exgs.io.ply import write_ply
from exgs.service import viewport_codec
from exgs.service.app import create_app
from exgs.service.config import ServiceConfig
from exgs.service.frames import decode_f32
from exgs.synth import random_scene

TOKEN = "r" * 32
HDR = {"Authorization": f"Bearer {TOKEN}"}
INF = float("-inf")


def _weights(d):
    """Tiny painter: generic gate open, refined table off everywhere."""
    from exgs.painter.model import PainterConfig, PainterNet
    from exgs.painter.train import export_diffusers

    torch.manual_seed(0)
    cfg = PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8), gate_head=True,
                        gate_bias_by_keep=((0.01, 3.0), (0.5, 3.0)),
                        refined_gate_bias_by_keep=((0.01, INF), (1.0, INF)))
    export_diffusers(PainterNet(cfg).eval(), d)
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from exgs.io.exgs import decode_header, encode_exgs
    from exgs.ugc import compress

    d = tmp_path_factory.mktemp("refined-svc")
    scene = random_scene(1500, sh_degree=1, seed=7)
    write_ply(scene, d / "s.ply")
    res = compress(scene, keep_target=0.1, device="cpu", views=2, view_size=(32, 24),
                   zstd_level=1)
    (d / "free.exgs").write_bytes(res.data)
    h = decode_header(res.data)  # the header refine_result writes for a refined file
    settings = dict(h["settings"], refine={"seconds": None, "steps": 1, "resolution": 48,
                                           "chosen": "end"})
    (d / "refined.exgs").write_bytes(encode_exgs(res.scene, zstd_level=1, source=h["source"],
                                                 settings=settings,
                                                 stats=dict(h["stats"], refined=True)))
    app = create_app(ServiceConfig(token=TOKEN, device="cpu", data_dir=str(d / "data"),
                                   painter_weights=str(_weights(d / "w"))))
    with TestClient(app) as tc:
        yield tc, scene, d, len(res.scene) / len(scene)
    app.state.jobs.shutdown()


def _upload(tc, path) -> dict:
    r = tc.post(f"/v1/scenes?filename={path.name}", content=path.read_bytes(), headers=HDR)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _frame(tc, sid, scene, restore: bool) -> np.ndarray:
    cams = [c.to_dict() for c in orbit_for_scene(scene, 1, 48, 32, seed=2)]
    r = tc.post(f"/v1/scenes/{sid}/render", headers=HDR,
                json={"cameras": cams, "restore": restore, "passes": ["rgb"]})
    assert r.status_code == 202, r.text
    job = r.json()
    t0 = time.monotonic()
    while job["state"] in ("queued", "running") and time.monotonic() - t0 < 120:
        job = tc.get(f"/v1/jobs/{job['id']}?wait=10&since={job['version']}", headers=HDR).json()
    assert job["state"] == "done", job
    return decode_f32(tc.get(f"/v1/jobs/{job['id']}/frames/0", headers=HDR).content)[2]["rgb"]


def test_refined_exgs_render_job_uses_the_refined_table(env):
    tc, scene, d, _ = env
    ref = _upload(tc, d / "refined.exgs")
    free = _upload(tc, d / "free.exgs")
    assert ref["facts"]["refined"] is True and free["facts"]["refined"] is False
    plain = _frame(tc, ref["id"], scene, False)
    np.testing.assert_array_equal(_frame(tc, ref["id"], scene, True), plain)
    # same Gaussians, training-free header: the generic (open) gate restores
    assert np.abs(_frame(tc, free["id"], scene, True) - plain).max() > 1e-3


def test_put_facts_refined_for_a_ply_upload(env):
    tc, scene, d, kept = env
    sid = _upload(tc, d / "s.ply")["id"]
    plain = _frame(tc, sid, scene, False)
    r = tc.put(f"/v1/scenes/{sid}/facts", json={"kept_fraction": kept, "refined": True},
               headers=HDR)
    assert r.status_code == 200 and r.json()["facts"]["refined"] is True, r.text
    np.testing.assert_array_equal(_frame(tc, sid, scene, True), plain)
    r = tc.put(f"/v1/scenes/{sid}/facts", json={"kept_fraction": kept}, headers=HDR)
    assert r.json()["facts"]["refined"] is False
    assert np.abs(_frame(tc, sid, scene, True) - plain).max() > 1e-3


def test_viewport_object_refined_and_kept_fraction_as_the_addon_sends_them(env):
    tc, scene, d, kept = env
    sid = _upload(tc, d / "s.ply")["id"]
    eye = np.eye(4).tolist()
    view = [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, -6.0], [0, 0, 0, 1]]
    proj = [[1.5, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, -1.002, -0.2002], [0, 0, -1, 0]]

    def vp(restore, **obj):
        b = {"objects": [{"scene_id": sid, "matrix_world": eye, **obj}], "view_matrix": view,
             "window_matrix": proj, "width": 64, "height": 48, "restore": restore}
        r = tc.post("/v1/viewport", json=b, headers=HDR)
        assert r.status_code == 200, r.text
        return viewport_codec.decode(r.content)["rgba"].astype(np.float32)

    plain = vp(False)
    assert (plain[..., 3] > 0.05).any()
    np.testing.assert_array_equal(vp(True, kept_fraction=kept, refined=True), plain)
    assert np.abs(vp(True, kept_fraction=kept) - plain).max() > 1e-3
