"""Scene facts in the service (issue 12): a .exgs scene's kept fraction and painter delta are
read once at upload and shown with the scene; ``PUT /v1/scenes/{id}/facts`` sets them for a
scene uploaded in another form; renders use them; a compressed scene carries its own; the
deprecated per-request ``keep`` / ``painter_delta`` overrides still work and agree."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from exgs.cameras import orbit_for_scene
from exgs.io.ply import write_ply
from exgs.service.app import create_app
from exgs.service.config import ServiceConfig
from exgs.service.frames import decode_f32
from exgs.synth import random_scene

TOKEN = "f" * 32
HDR = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    app = create_app(ServiceConfig(token=TOKEN, device="cpu",
                                   data_dir=str(tmp_path_factory.mktemp("facts"))))
    with TestClient(app) as tc:
        yield tc
    app.state.jobs.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(scene, PLY path, .exgs path with a delta, the delta, the .exgs kept fraction)."""
    from exgs.io.exgs import DELTA_SECTION, attach_sections
    from exgs.painter.delta import base_fingerprint, encode_delta
    from exgs.painter.infer import load_net
    from exgs.ugc import compress

    d = tmp_path_factory.mktemp("facts-files")
    scene = random_scene(1200, sh_degree=1, seed=5)
    ply = d / "s.ply"
    write_ply(scene, ply)
    res = compress(scene, keep_target=0.25, device="cpu", views=2, view_size=(32, 24),
                   zstd_level=1)
    delta = encode_delta("last", [("gate_head.net.4.bias", "diff",
                                   np.array([0.75], np.float32))],
                         base=base_fingerprint(load_net()))
    exgs = d / "s.exgs"
    exgs.write_bytes(attach_sections(res.data, {DELTA_SECTION: delta}))
    return scene, ply, exgs, delta, len(res.scene) / len(scene)


def _upload(tc, path) -> dict:
    r = tc.post(f"/v1/scenes?filename={path.name}", content=path.read_bytes(), headers=HDR)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _finished(tc, job) -> dict:
    """The job (a submit answer) once it is done (asserted)."""
    t0 = time.monotonic()
    while job["state"] in ("queued", "running") and time.monotonic() - t0 < 120:
        job = tc.get(f"/v1/jobs/{job['id']}?wait=10&since={job['version']}",
                     headers=HDR).json()
    assert job["state"] == "done", job
    return job


def _frames(tc, sid, body) -> list:
    r = tc.post(f"/v1/scenes/{sid}/render", json=body, headers=HDR)
    assert r.status_code == 202, r.text
    job = _finished(tc, r.json())
    return [decode_f32(tc.get(f"/v1/jobs/{job['id']}/frames/{i}", headers=HDR).content)[2]["rgb"]
            for i in range(job["result"]["frames"])], job["result"]


def test_exgs_upload_carries_its_facts(svc, files):
    _, ply, exgs, delta, kept = files
    info = _upload(svc, exgs)
    f = info["facts"]
    assert abs(f["kept_fraction"] - kept) < 1e-12 and f["has_painter_delta"]
    assert f["painter_delta_bytes"] == len(delta)
    assert svc.get(f"/v1/scenes/{info['id']}", headers=HDR).json()["facts"] == f
    listed = {s["id"]: s for s in svc.get("/v1/scenes", headers=HDR).json()["scenes"]}
    assert listed[info["id"]]["facts"] == f
    plain = _upload(svc, ply)["facts"]
    assert plain["kept_fraction"] is None and not plain["has_painter_delta"]


def test_put_facts_then_render_uses_them(svc, files):
    scene, ply, exgs, delta, kept = files
    sid = _upload(svc, ply)["id"]
    cams = [c.to_dict() for c in orbit_for_scene(scene, 1, 48, 32, seed=2)]
    body = {"cameras": cams, "restore": True, "passes": ["rgb"]}
    generic, res0 = _frames(svc, sid, body)
    assert res0["painter_delta"] == "none"
    b64 = base64.b64encode(delta).decode()
    r = svc.put(f"/v1/scenes/{sid}/facts", json={"kept_fraction": kept, "painter_delta": b64},
                headers=HDR)
    assert r.status_code == 200, r.text
    assert r.json()["facts"]["has_painter_delta"] and r.json()["facts"]["kept_fraction"] == kept
    with_facts, res1 = _frames(svc, sid, body)
    assert res1["painter_delta"] == "applied"
    assert not np.array_equal(with_facts[0], generic[0])
    # the deprecated per-request overrides on a scene without facts give the same frame
    sid2 = _upload(svc, _copy(ply))["id"]
    override, _ = _frames(svc, sid2, dict(body, keep=kept, painter_delta=b64))
    np.testing.assert_array_equal(override[0], with_facts[0])
    # a .exgs scene uses the delta it carries
    _, res2 = _frames(svc, _upload(svc, exgs)["id"], body)
    assert res2["painter_delta"] == "applied"
    # clearing the facts gives the generic painter and default gate again
    r = svc.put(f"/v1/scenes/{sid}/facts", json={"kept_fraction": None}, headers=HDR)
    assert r.json()["facts"] == {"kept_fraction": None, "refined": False,
                                 "has_painter_delta": False, "painter_delta_bytes": 0}
    cleared, _ = _frames(svc, sid, body)
    np.testing.assert_array_equal(cleared[0], generic[0])


def _copy(path):
    """The same scene under another content id (a comment line in the PLY header)."""
    import shutil

    dst = path.parent / "copy" / path.name
    dst.parent.mkdir(exist_ok=True)
    shutil.copy(path, dst)
    data = bytearray(dst.read_bytes())
    i = data.index(b"end_header")
    dst.write_bytes(bytes(data[:i]) + b"comment copy\n" + bytes(data[i:]))
    return dst


@pytest.mark.parametrize("body,status,needle", [
    ({"kept_fraction": 1.5}, 422, "kept_fraction"),
    ({"kept_fraction": 0}, 422, "kept_fraction"),
    ({"painter_delta": "not base64!"}, 422, "base64"),
    ({"painter_delta": base64.b64encode(b"EXPD junk").decode()}, 400, "painter delta"),
    ({"kept": 0.5}, 422, "kept"),
])
def test_put_facts_rejects_bad_values(svc, files, body, status, needle):
    _, ply, _, _, _ = files
    sid = _upload(svc, ply)["id"]
    before = svc.get(f"/v1/scenes/{sid}", headers=HDR).json()["facts"]
    r = svc.put(f"/v1/scenes/{sid}/facts", json=body, headers=HDR)
    assert r.status_code == status and needle in r.json()["error"], r.text
    assert svc.get(f"/v1/scenes/{sid}", headers=HDR).json()["facts"] == before
    r = svc.put("/v1/scenes/nope/facts", json={"kept_fraction": 0.5}, headers=HDR)
    assert r.status_code == 404


def test_compressed_scene_carries_its_facts(svc, files):
    _, ply, _, _, _ = files
    sid = _upload(svc, ply)["id"]
    r = svc.post(f"/v1/scenes/{sid}/compress", json={"keep": 0.1}, headers=HDR)
    job = _finished(svc, r.json())
    new = svc.get(f"/v1/scenes/{job['result']['scene_id']}", headers=HDR).json()
    assert abs(new["facts"]["kept_fraction"] - job["result"]["stats"]["kept_fraction"]) < 1e-12
    assert not new["facts"]["has_painter_delta"]


def test_compress_job_fits_the_shot(svc, files):
    """``shot``: the cameras the file will be rendered from reach the compressor (scored
    beside the orbits, the painter judged on them); a bad one is a 422 naming it."""
    _, ply, _, _, _ = files
    sid = _upload(svc, ply)["id"]
    scene = random_scene(50, sh_degree=0, seed=1)
    shot = [c.to_dict() for c in orbit_for_scene(scene, 3, 48, 32, seed=5)]
    r = svc.post(f"/v1/scenes/{sid}/compress", json={"keep": 0.1, "shot": shot}, headers=HDR)
    job = _finished(svc, r.json())
    assert job["result"]["stats"]["shot_views"] == 3
    bad = dict(shot[0], fx=-1.0)
    r = svc.post(f"/v1/scenes/{sid}/compress", json={"keep": 0.1, "shot": [bad]}, headers=HDR)
    assert r.status_code == 422 and "fx" in r.text, r.text


def test_poisoned_exgs_upload_is_refused_and_the_list_survives(svc, tmp_path):
    """Issue 19 item 1: a digest-valid .exgs whose ranges decode to Inf is a 400 (one line),
    is never registered, and GET /v1/scenes keeps answering."""
    from exgs.io import exgs as X
    from exgs.io.exgs.container import assemble

    data = X.encode_exgs(random_scene(300, sh_degree=0, seed=8))
    h = X.decode_header(data)
    body = data[len(data) - sum(c["length"] for c in h["chunks"]):]
    h["quant"]["position"].update(min=[-1e308] * 3, max=[1e308] * 3)
    bad = tmp_path / "poison.exgs"
    bad.write_bytes(assemble(h, [body], None))
    before = svc.get("/v1/scenes", headers=HDR).json()["scenes"]
    r = svc.post("/v1/scenes?filename=poison.exgs", content=bad.read_bytes(), headers=HDR)
    assert r.status_code == 400 and "poison.exgs" in r.json()["error"], r.text
    assert "non-finite" in r.json()["error"]
    r = svc.get("/v1/scenes", headers=HDR)
    assert r.status_code == 200 and r.json()["scenes"] == before
    import hashlib

    sid = hashlib.sha256(bad.read_bytes()).hexdigest()
    assert svc.get(f"/v1/scenes/{sid}", headers=HDR).status_code == 404
