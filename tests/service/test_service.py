"""End-to-end: a real ``exgs serve`` process driven through the stdlib client."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from svc_helpers import C, MAX_FRAMES, MAX_SIDE, UPLOAD_LIMIT_MB, load_client, require, start


def _raw(client, method, path, body=None, headers=None, token=True):
    """One raw HTTP request (status, parsed JSON or bytes) — bypasses the client."""
    conn = http.client.HTTPConnection(client._host, client._port, timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {client.token}"
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def _cams(n=2, w=64, h=48):
    from exgs.cameras import look_at

    return [look_at([0.6 * np.sin(k), 0.3, -3.0], [0, 0, 0], [0, -1, 0], w, h,
                    name=f"c{k}") for k in range(n)]


# --------------------------------------------------------------------------- startup, auth
def test_ready_line_token_file_and_health(server):
    ready = server.server.ready
    assert set(ready) >= {"host", "port", "url", "token_file", "pid"}
    assert ready["host"] == "127.0.0.1" and ready["port"] > 0
    assert ready["pid"] == server.server.process.pid
    mode = stat.S_IMODE(os.stat(ready["token_file"]).st_mode)
    assert mode == 0o600
    h = server.health()
    assert h["version"] and h["device"] == "cpu" and isinstance(h["gsplat"], bool)
    assert "weights_present" in h["painter"]
    assert h["limits"]["max_upload_bytes"] == UPLOAD_LIMIT_MB << 20


def test_parse_ready_line():
    line = 'EXGS_SERVER_READY {"host": "127.0.0.1", "port": 5, "token_file": "/t", "pid": 1}'
    assert C.parse_ready_line(line)["url"] == "http://127.0.0.1:5"
    assert C.parse_ready_line("INFO something else") is None


def test_missing_or_wrong_token_is_401(server):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": server.token}):
        for path in ("/v1/health", "/openapi.json", "/v1/no/such/path"):
            status, body = _raw(server, "GET", path, headers=headers, token=False)
            assert status == 401, (headers, path)
            assert body["error"] == "missing or wrong bearer token"
    with pytest.raises(C.AuthError):
        C.ExgsClient(server.url, "wrong-token-000000000000").health()
    with pytest.raises(C.AuthError):
        C.ExgsClient(server.url, "").scenes()


def test_openapi_published(server):
    status, schema = _raw(server, "GET", "/openapi.json")
    assert status == 200
    paths = schema["paths"]
    for p in ("/v1/health", "/v1/scenes", "/v1/scenes/open", "/v1/scenes/{scene_id}",
              "/v1/scenes/{scene_id}/file", "/v1/scenes/{scene_id}/compress",
              "/v1/scenes/{scene_id}/render", "/v1/jobs/{job_id}",
              "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/frames/{index}"):
        assert p in paths, p
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_refused_connection_is_backend_unavailable():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(C.BackendUnavailable) as ei:
        C.ExgsClient(f"http://127.0.0.1:{port}", "t", timeout=5).health()
    assert not isinstance(ei.value, C.ServerGone)
    assert "cannot reach" in str(ei.value)


def test_backend_not_installed_is_clear(tmp_path):
    py = "/usr/bin/python3"
    if not os.path.exists(py) or subprocess.run([py, "-c", "import exgs"],
                                                capture_output=True).returncode == 0:
        pytest.skip("needs a Python without the exgs backend at /usr/bin/python3")
    with pytest.raises(C.BackendUnavailable) as ei:
        C.ExgsClient.start_local(py, startup_timeout=30)
    assert "not installed" in str(ei.value) and py in str(ei.value)


# --------------------------------------------------------------------------- scenes
def test_upload_dedupe_info_delete(server, small_scene):
    scene, path = small_scene
    seen = []
    info = server.upload(path, progress=lambda f, m: seen.append(f))
    assert info["id"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["gaussians"] == len(scene) and info["format"] == "ply"
    assert seen and seen[-1] == 1.0
    again = server.upload(path)
    assert again["id"] == info["id"] and again["deduplicated"] is True
    assert server.scene(info["id"])["gaussians"] == len(scene)
    assert info["id"] in [s["id"] for s in server.scenes()]
    assert server.download(info["id"]) == path.read_bytes()


def test_upload_other_formats_and_garbage(server, tmp_path):
    from exgs.io.spz import write_spz
    from exgs.synth import random_scene

    sc = random_scene(700, sh_degree=0, seed=11)
    spz = tmp_path / "x.spz"
    write_spz(sc, spz)
    info = server.upload(spz)
    assert info["format"] == "spz" and info["gaussians"] == 700
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nend_header\n\x00")
    with pytest.raises(C.BackendError) as ei:
        server.upload(bad)
    assert ei.value.status == 400 and "bad.ply" in ei.value.message
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(C.BackendError) as ei:
        server.upload(junk)
    assert ei.value.status == 400 and "unknown scene format" in ei.value.message
    server.delete(info["id"])
    with pytest.raises(C.BackendError) as ei:
        server.scene(info["id"])
    assert ei.value.status == 404


def test_oversize_upload_is_413(server, tmp_path):
    big = tmp_path / "big.ply"
    big.write_bytes(b"ply\n" + b"\0" * ((UPLOAD_LIMIT_MB << 20) + 10))
    with pytest.raises(C.BackendError) as ei:  # the client checks the advertised limit
        server.upload(big)
    assert ei.value.status == 413
    with pytest.raises(C.BackendError) as ei:  # the server enforces it (Content-Length)
        server.upload(big, check_limit=False)
    assert ei.value.status == 413 and "limit" in ei.value.message
    # chunked transfer (no Content-Length): the server counts while streaming
    conn = http.client.HTTPConnection(server._host, server._port, timeout=30)
    chunks = (b"\0" * 65536 for _ in range((UPLOAD_LIMIT_MB << 4) + 2))
    try:
        conn.request("POST", "/v1/scenes?filename=big.ply", body=chunks,
                     headers={"Authorization": f"Bearer {server.token}",
                              "Transfer-Encoding": "chunked"}, encode_chunked=True)
        r = conn.getresponse()
        status, body = r.status, json.loads(r.read())
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("server closed the connection without a 413 answer")
    finally:
        conn.close()
    assert status == 413 and "limit" in body["error"]
    assert server.health()["ok"]


def test_open_path_allowed_and_escapes_forbidden(server, small_scene, tmp_path):
    scene, path = small_scene
    inside = server.allow_dir / "in.ply"
    inside.write_bytes(path.read_bytes())
    info = server.open_path(str(inside))
    assert info["gaussians"] == len(scene) and info["source"] in ("open", "upload")
    outside = tmp_path / "out.ply"
    outside.write_bytes(path.read_bytes())
    link = server.allow_dir / "link.ply"
    os.symlink(outside, link)
    (server.allow_dir / "sub").mkdir()
    for p in (str(outside), str(server.allow_dir / ".." / "out.ply"), str(link),
              str(server.allow_dir / "sub" / ".." / ".." / "x.ply"), "/etc/passwd"):
        with pytest.raises(C.BackendError) as ei:
            server.open_path(p)
        assert ei.value.status == 403, p
    status, body = _raw(server, "POST", "/v1/scenes/open",
                        body=json.dumps({"path": "../../etc/passwd"}),
                        headers={"Content-Type": "application/json"})
    assert status == 403 and "outside" in body["error"]
    with pytest.raises(C.BackendError) as ei:
        server.open_path(str(server.allow_dir / "missing.ply"))
    assert ei.value.status == 404


# --------------------------------------------------------------------------- render
def test_render_frames_equal_python_api(server, small_scene):
    render = require("exgs.render")
    from exgs.cameras import camera_from_blender

    scene, path = small_scene
    sid = server.upload(path)["id"]
    cams = _cams(3)
    frames = server.render(sid, cams)
    ref = list(render.render_many(scene, cams))
    assert len(frames) == 3
    for f, r in zip(frames, ref):
        rgb, alpha, depth = f
        assert rgb.shape == (48, 64, 3) and alpha.shape == (48, 64) and depth.dtype == np.float32
        np.testing.assert_array_equal(rgb, r.rgb)
        np.testing.assert_array_equal(alpha, r.alpha)
        np.testing.assert_array_equal(depth, r.depth)
        assert alpha.max() > 0.1  # the scene is in view
    # Blender form: the raw numbers go to camera_from_blender in the backend
    obj = [[2.0, 0, 0, 0.1], [0, 2.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]
    bl = {"camera_matrix_world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 6.0], [0, 0, 0, 1]],
          "lens": 50.0, "sensor_width": 36.0, "sensor_height": 24.0, "sensor_fit": "AUTO",
          "shift_x": 0.05, "shift_y": -0.02, "resolution_x": 80, "resolution_y": 60,
          "resolution_percentage": 50, "pixel_aspect_x": 1.0, "pixel_aspect_y": 1.0,
          "object_matrix_world": obj, "clip_start": 0.1, "clip_end": 100.0, "name": "Camera"}
    (f,) = server.render(sid, [bl], passes=("rgb", "depth"), background=(0.2, 0.3, 0.4))
    cam = camera_from_blender(**bl)
    r = render.render(scene, cam, background=(0.2, 0.3, 0.4))
    assert f.alpha is None and f.rgb.shape == (30, 40, 3)
    np.testing.assert_array_equal(f.rgb, r.rgb)
    np.testing.assert_array_equal(f.depth, r.depth)
    # size override and PNG frames (straight alpha)
    (png,) = server.render(sid, cams[:1], size=(32, 24), format="png", passes=("rgb", "alpha"))
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(png)))
    rr = render.render(scene, cams[0].resized(32, 24))
    assert im.shape == (24, 32, 4)
    np.testing.assert_allclose(im[..., 3] / 255.0, rr.alpha, atol=1 / 255 + 1e-6)


def test_render_requests_are_validated(server, small_scene):
    require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    cam = _cams(1)[0].to_dict()
    bad = [
        (dict(cam, world_to_camera=[[0] * 4] * 4), 422, "singular"),
        (dict(cam, width=MAX_SIDE + 1), 422, "exceeds the limit"),
        (dict(cam, fx=-1), 422, "invalid request"),
    ]
    for c, status, text in bad:
        with pytest.raises(C.BackendError) as ei:
            server.render(sid, [c])
        assert ei.value.status == status and text in ei.value.message, ei.value.message
    with pytest.raises(C.BackendError) as ei:
        server.render(sid, [cam] * (MAX_FRAMES + 1))
    assert ei.value.status == 422 and "limit" in ei.value.message
    with pytest.raises(C.BackendError) as ei:
        server.render(sid, [cam], format="png", passes=("rgb", "depth"))
    assert ei.value.status == 422
    with pytest.raises(C.BackendError) as ei:
        server.render("0" * 64, [cam])
    assert ei.value.status == 404
    status, body = _raw(server, "POST", f"/v1/scenes/{sid}/render", body=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert status == 422 and body["error"].startswith("invalid request")


def test_restore_needs_painter_or_matches_it(server, small_scene):
    require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    cams = _cams(1, 64, 64)
    h = server.health()
    if not h["painter"]["available"]:
        with pytest.raises(C.BackendError) as ei:
            server.render(sid, cams, restore=True)
        assert ei.value.status == 503 and "not available" in ei.value.message
        pytest.skip(f"painter weights not shipped yet: {h['painter']['reason']}")
    from exgs.painter import load_painter
    from exgs.render import render

    (f,) = server.render(sid, cams, restore=True, passes=("rgb", "alpha"))
    r = render(small_scene[0], cams[0])
    expect = load_painter().restore(r.rgb, r.alpha)
    np.testing.assert_allclose(f.rgb, expect, atol=1e-4)


# --------------------------------------------------------------------------- compress
def test_upload_compress_download_render(server, small_scene, tmp_path):
    require("exgs.ugc", "compress")
    fmt = require("exgs.io.exgs_format")
    render = require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    seen = []
    res = server.compress(sid, ratio=8, sh_degree=0, progress=lambda f, m: seen.append(f))
    assert res["scene_id"] != sid and res["stats"] and res["file_bytes"] > 0
    assert seen[-1] == 1.0
    out = server.download(res["scene_id"], tmp_path / "c.exgs")
    data = open(out, "rb").read()
    assert data[:4] == b"EXGS" and hashlib.sha256(data).hexdigest() == res["scene_id"]
    assert server.scene(res["scene_id"])["source"] == "compress"
    local = fmt.read_exgs_scene(out)
    cams = _cams(2)
    frames = server.render(res["scene_id"], cams)
    for f, r in zip(frames, render.render_many(local, cams)):
        np.testing.assert_array_equal(f.rgb, r.rgb)
        np.testing.assert_array_equal(f.alpha, r.alpha)


def test_compress_rejects_bad_requests(server, small_scene):
    _, path = small_scene
    sid = server.upload(path)["id"]
    status, body = _raw(server, "POST", f"/v1/scenes/{sid}/compress",
                        body=json.dumps({"ratio": 10, "keep": 0.5}),
                        headers={"Content-Type": "application/json"})
    if status == 503:
        assert "exgs.ugc" in body["error"] or "exgs_format" in body["error"]
        pytest.skip(f"compression not in this build: {body['error']}")
    assert status == 422 and "not both" in body["error"]
    with pytest.raises(C.BackendError) as ei:
        server.compress(sid, ratio=10, sh_degree=3)
    assert ei.value.status == 422 and "SH degree" in ei.value.message


# --------------------------------------------------------------------------- jobs
def _long_cams(n=120):
    return _cams(n, 256, 256)


def test_cancel_stops_a_long_job_and_server_stays_responsive(server, small_scene):
    require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    job = server.submit_render(sid, _long_cams())
    jid = job["id"]
    assert job["state"] in ("queued", "running") and job["frames_total"] == 120
    info = server.job(jid)
    while info["frames_ready"] < 1 and info["state"] in ("queued", "running"):
        info = server.job(jid, since=info["version"], wait=2.0)
    assert info["state"] == "running"
    assert server.health()["jobs_open"] >= 1  # small requests answer while a job runs
    status, _ = _raw(server, "GET", f"/v1/jobs/{jid}/frames/119")
    assert status == 409  # not rendered yet
    f0 = server.frame(jid, 0)
    assert f0.rgb.shape == (256, 256, 3)
    stop = threading.Event()
    stop.set()
    with pytest.raises(C.JobCancelled):
        server.wait(jid, cancel=stop)
    final = server.job(jid)
    assert final["state"] == "cancelled"
    assert final["frames_ready"] < 120
    server.delete_job(jid)
    with pytest.raises(C.BackendError) as ei:
        server.job(jid)
    assert ei.value.status == 404
    # the worker is free again
    (f,) = server.render(sid, _cams(1))
    assert f.rgb.shape == (48, 64, 3)


def test_client_render_cancel_callback(server, small_scene):
    require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    progress = []
    with pytest.raises(C.JobCancelled):
        server.render(sid, _long_cams(), progress=lambda f, m: progress.append(f),
                      cancel=lambda: len(progress) > 2)
    assert len(progress) >= 3
    assert all(j["state"] in ("done", "failed", "cancelled")
               for j in _raw(server, "GET", "/v1/jobs")[1]["jobs"])


def test_killed_server_mid_job_gives_server_gone(tmp_path_factory, small_scene):
    require("exgs.render")
    cl = start(tmp_path_factory, "doomed", allow=False)
    try:
        _, path = small_scene
        sid = cl.upload(path)["id"]
        with pytest.raises(C.BackendError) as ei:  # no --allow-dir: opening by path is off
            cl.open_path(str(path))
        assert ei.value.status == 403
        jid = cl.submit_render(sid, _long_cams())["id"]
        killer = threading.Timer(1.0, cl.server.process.kill)
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(C.ServerGone) as ei:
            cl.render(sid, _long_cams(), progress=lambda f, m: None)
        killer.join()
        assert time.monotonic() - t0 < 60
        assert "stopped responding" in str(ei.value)
        with pytest.raises(C.ServerGone):
            cl.wait(jid)
    finally:
        cl.close()


def test_client_imports_without_numpy(tmp_path):
    """The client is stdlib-only: it imports and decodes frames with numpy blocked."""
    from exgs.service.frames import encode_f32

    rgb = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    depth = np.full((2, 3), np.inf, np.float32)
    blob = tmp_path / "f.bin"
    blob.write_bytes(encode_f32({"rgb": rgb, "depth": depth}))
    code = f"""
import sys, importlib.util
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('numpy', 'torch', 'exgs', 'fastapi', 'bpy'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location('c', {str(load_client().__file__)!r},
    submodule_search_locations=[{os.path.dirname(load_client().__file__)!r}])
m = importlib.util.module_from_spec(spec); sys.modules['c'] = m; spec.loader.exec_module(m)
f = m.decode_frame(open({str(blob)!r}, 'rb').read())
third = sorted(n for n in sys.modules if n.split('.')[0] not in sys.stdlib_module_names
               and n.split('.')[0] not in ('c', '__main__'))
print(type(f.rgb).__name__, f.width, f.height, list(f.rgb)[:4], f.depth[0], third)
"""
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["array", "3", "2"]
    assert "[0.0, 1.0, 2.0, 3.0] inf []" in out.stdout


def test_jobs_run_one_at_a_time_in_order(server, small_scene):
    require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    ids = [server.submit_render(sid, _cams(6, 128, 96))["id"] for _ in range(3)]
    infos = [server.wait(j) for j in ids]
    for a, b in zip(infos, infos[1:]):
        assert a["finished"] <= b["started"]  # one worker: no overlap, submission order
    assert all(i["frames_ready"] == 6 and i["result"]["frames"] == 6 for i in infos)
    for j in ids:
        server.delete_job(j)


# --------------------------------------------------------------------------- painter delta
def test_render_restore_uses_the_files_painter_delta(server, small_scene, tmp_path):
    """A .exgs with a painter delta: restore applies it (as exgs.painter.delta does
    locally); use_delta=false restores generically; a delta sent with the request is used
    for any scene; compress with adapt returns the delta (base64)."""
    import base64
    import math

    require("exgs.ugc", "compress")
    pytest.importorskip("diffusers")
    if not server.health()["painter"]["available"]:
        pytest.skip("painter weights not shipped")
    from exgs.io.exgs_format import DELTA_SECTION, attach_sections, read_exgs_delta
    from exgs.painter import load_painter
    from exgs.painter.adapt import AdaptConfig, adapt
    from exgs.pipeline import restorer_for
    from exgs.render import render
    from exgs.ugc import compress

    scene, ply = small_scene
    res = compress(scene, keep_target=0.1, device="cpu", views=4, view_size=(64, 48))
    cfg = AdaptConfig(views=5, holdout=2, size=64, crop=32, batch=2, steps=3, seconds=600,
                      min_gain_db=-math.inf)
    delta = adapt(scene, res.scene, config=cfg).delta
    p = tmp_path / "d.exgs"
    p.write_bytes(attach_sections(res.data, {DELTA_SECTION: delta}))
    sid = server.upload(p)["id"]
    cams = _cams(1)
    r = render(res.scene, cams[0])
    from exgs.painter.infer import kept_fraction

    keep = kept_fraction(p)  # the service opens the gate by the file's kept fraction too
    assert keep is not None and abs(keep - 0.1) < 0.01
    adapted = restorer_for(p)(r.rgb, r.alpha)
    generic = load_painter().restore(r.rgb, r.alpha, kept_fraction=keep)
    assert not np.allclose(adapted, generic, atol=1e-4)
    (f,) = server.render(sid, cams, restore=True, passes=("rgb", "alpha"))
    np.testing.assert_allclose(f.rgb, adapted, atol=1e-4)
    (f,) = server.render(sid, cams, restore=True, passes=("rgb", "alpha"), use_delta=False)
    np.testing.assert_allclose(f.rgb, generic, atol=1e-4)
    plain = server.upload(_write(tmp_path, res.data))
    (f,) = server.render(plain["id"], cams, restore=True, passes=("rgb", "alpha"),
                         painter_delta=delta)
    np.testing.assert_allclose(f.rgb, adapted, atol=1e-4)
    with pytest.raises(C.BackendError) as ei:
        server.render(plain["id"], cams, restore=True, painter_delta=b"EXPD junk")
    assert ei.value.status == 400 and "painter delta" in ei.value.message
    # compress with adapt (forced on): the result carries the delta, the file holds it
    sid0 = server.upload(ply)["id"]
    out = server.compress(sid0, keep=0.1, adapt=2.0, adapt_min_gain=-100.0)
    pd = out["painter_delta"]
    assert pd["enabled"] and pd["data_b64"]
    dl = server.download(out["scene_id"], tmp_path / "a.exgs")
    assert read_exgs_delta(dl) == base64.b64decode(pd["data_b64"])


def _write(tmp_path, data):
    q = tmp_path / "plain.exgs"
    q.write_bytes(data)
    return q


def test_render_restore_keep_sets_the_painter_gate(server, small_scene, tmp_path):
    """A scene uploaded as PLY has no kept fraction; ``keep`` in the request supplies it (the
    Blender add-on sends its compressed mesh's) and the frame equals the local painter's."""
    pytest.importorskip("diffusers")
    if not server.health()["painter"]["available"]:
        pytest.skip("painter weights not shipped")
    from exgs.painter import load_painter
    from exgs.render import render

    scene, ply = small_scene
    sid = server.upload(ply)["id"]
    cams = _cams(1)
    r = render(scene, cams[0])
    painter = load_painter()
    (f,) = server.render(sid, cams, restore=True, passes=("rgb", "alpha"), kept_fraction=0.01)
    np.testing.assert_allclose(f.rgb, painter.restore(r.rgb, r.alpha, kept_fraction=0.01), atol=1e-4)
    (g,) = server.render(sid, cams, restore=True, passes=("rgb", "alpha"))
    np.testing.assert_allclose(g.rgb, painter.restore(r.rgb, r.alpha), atol=1e-4)
    with pytest.raises(C.BackendError) as ei:
        server.render(sid, cams, restore=True, kept_fraction=1.5)
    assert ei.value.status == 422
