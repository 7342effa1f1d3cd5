"""Issue 19 (service parts): request bodies are bounded before they are parsed, the event loop
stays free, and the schema lists what the service answers."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

BIG = 40 << 20


def _conn(server):
    return http.client.HTTPConnection(server._host, server._port, timeout=30)


def _health_ms(server) -> float:
    c = _conn(server)
    t = time.perf_counter()
    c.request("GET", "/v1/health", headers={"Authorization": f"Bearer {server.token}"})
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200
    return (time.perf_counter() - t) * 1000


def test_40mb_json_body_is_refused_before_parsing(server):
    sid = "0" * 64
    c = _conn(server)
    t = time.perf_counter()
    c.putrequest("POST", f"/v1/scenes/{sid}/render")
    c.putheader("Authorization", f"Bearer {server.token}")
    c.putheader("Content-Type", "application/json")
    c.putheader("Content-Length", str(BIG))
    c.endheaders()
    r = c.getresponse()  # answered from the header alone: nothing of the body was sent
    body = json.loads(r.read())
    c.close()
    assert r.status == 413 and "exceeds the limit" in body["error"]
    assert time.perf_counter() - t < 5


def test_chunked_40mb_body_is_cut_off_and_health_stays_fast(server):
    """A chunked body (no Content-Length) is counted as it arrives; while it streams,
    /v1/health keeps answering quickly."""
    out = {}

    def send():
        c = _conn(server)
        c.putrequest("POST", "/v1/scenes/" + "0" * 64 + "/render")
        c.putheader("Authorization", f"Bearer {server.token}")
        c.putheader("Content-Type", "application/json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        chunk = b'{"cameras": [' + b" " * (1 << 20)
        try:
            for _ in range(40):
                c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            c.send(b"0\r\n\r\n")
            r = c.getresponse()
            out["status"] = r.status
            out["body"] = r.read()
        except (BrokenPipeError, ConnectionResetError):
            out["status"] = "closed"  # the server answered and closed while we sent
            try:
                r = c.getresponse()
                out["status"], out["body"] = r.status, r.read()
            except Exception:
                pass
        finally:
            c.close()

    th = threading.Thread(target=send)
    th.start()
    times = [_health_ms(server) for _ in range(5)]
    th.join(60)
    assert not th.is_alive()
    assert out["status"] in (413, "closed"), out
    if out["status"] == 413:
        assert b"exceeds the limit" in out["body"]
    assert max(times) < 2000, times
    assert server.health()["ok"]


def test_too_many_cameras_are_refused(server):
    cam = {"width": 8, "height": 8, "fx": 8.0, "fy": 8.0, "cx": 4.0, "cy": 4.0,
           "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]}
    c = _conn(server)
    c.request("POST", "/v1/scenes/" + "0" * 64 + "/render",
              body=json.dumps({"cameras": [cam] * 10_001}),
              headers={"Authorization": f"Bearer {server.token}",
                       "Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    assert r.status == 422 and "cameras" in body["error"]


@pytest.mark.parametrize("path,method,codes", [
    ("/v1/scenes", "post", {"400", "401", "413", "422", "503"}),
    ("/v1/scenes/{scene_id}/render", "post", {"400", "401", "404", "413", "422", "429",
                                              "503"}),
    ("/v1/scenes/{scene_id}/compress", "post", {"400", "401", "404", "413", "422", "429",
                                                "503"}),
    ("/v1/scenes/{scene_id}/facts", "put", {"400", "401", "404", "413", "422"}),
    ("/v1/jobs/{job_id}/frames/{index}", "get", {"401", "404", "409", "422"}),
])
def test_openapi_lists_the_error_statuses(server, path, method, codes):
    c = _conn(server)
    c.request("GET", "/openapi.json", headers={"Authorization": f"Bearer {server.token}"})
    schema = json.loads(c.getresponse().read())
    c.close()
    got = set(schema["paths"][path][method]["responses"])
    assert codes <= got, sorted(codes - got)


# ------------------------------------------------------------ timeouts (issue 19 item 4)
@pytest.fixture(scope="module")
def quick_server(tmp_path_factory):
    from svc_helpers import start

    client = start(tmp_path_factory, "timeouts", extra=["--header-timeout", "1",
                                                         "--body-timeout", "1"])
    yield client
    client.close()


def test_slow_headers_are_cut_off(quick_server):
    import socket

    s = socket.create_connection((quick_server._host, quick_server._port), timeout=10)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
    t = time.perf_counter()
    try:
        got = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        got = b""
    s.close()
    assert got == b"" and time.perf_counter() - t < 5  # closed by the server after ~1 s
    idle = socket.create_connection((quick_server._host, quick_server._port), timeout=10)
    t = time.perf_counter()
    assert idle.recv(100) == b"" and time.perf_counter() - t < 5  # silent client: closed too
    idle.close()
    assert _health_ms(quick_server) < 2000


def test_stalled_body_is_a_408(quick_server):
    c = _conn(quick_server)
    c.putrequest("POST", "/v1/scenes/" + "0" * 64 + "/render")
    c.putheader("Authorization", f"Bearer {quick_server.token}")
    c.putheader("Content-Type", "application/json")
    c.putheader("Content-Length", "1000")
    c.endheaders()
    c.send(b'{"cameras": [')  # ... and nothing more
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    assert r.status == 408 and "stalled" in body["error"]


def test_serve_refuses_non_finite_limits(capsys):
    from exgs.cli import main

    for opt in ("--max-upload-mb", "--header-timeout", "--body-timeout"):
        for v in ("inf", "nan", "0"):
            assert main(["serve", opt, v]) == 2
            err = capsys.readouterr().err
            assert err.startswith("exgs: error:") and opt in err and err.count("\n") == 1


# ------------------------------------------------------------ disk (issue 19 items 7/8)
def test_full_disk_upload_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from fastapi.testclient import TestClient

    import exgs.service.routes.scenes as routes
    from exgs.service.app import create_app
    from exgs.service.config import ServiceConfig

    class Full:
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    monkeypatch.setattr(routes, "open", Full, raising=False)
    token = "z" * 32
    app = create_app(ServiceConfig(token=token, device="cpu", data_dir=str(tmp_path)))
    try:
        with TestClient(app) as tc:
            r = tc.post("/v1/scenes?filename=s.ply", content=b"ply\n" + b"x" * 5000,
                        headers={"Authorization": f"Bearer {token}"})
    finally:
        app.state.jobs.shutdown()
    assert r.status_code == 507 and "No space left" in r.json()["error"]
    assert "\n" not in r.json()["error"]
    assert not list((tmp_path / "scenes").glob(".incoming-*"))


def test_leftovers_of_a_killed_server_are_removed_at_start(tmp_path):
    from exgs.service.app import create_app
    from exgs.service.config import ServiceConfig

    (tmp_path / "scenes").mkdir()
    (tmp_path / "jobs" / "j1").mkdir(parents=True)
    inc = tmp_path / "scenes" / ".incoming-123-456-789"
    part = tmp_path / "jobs" / "j1" / "frame_000003.part"
    keep = tmp_path / "jobs" / "j1" / "frame_000002"
    for f in (inc, part, keep):
        f.write_bytes(b"x")
    app = create_app(ServiceConfig(token="y" * 32, device="cpu", data_dir=str(tmp_path)))
    app.state.jobs.shutdown()
    assert not inc.exists() and not part.exists() and keep.exists()


# ------------------------------------------------- scene size and memory (issue 19 item 2)
def _app(tmp_path, **limits):
    from exgs.service.app import create_app
    from exgs.service.config import Limits, ServiceConfig

    return create_app(ServiceConfig(token="m" * 32, device="cpu", data_dir=str(tmp_path),
                                    limits=Limits(**limits)))


MHDR = {"Authorization": "Bearer " + "m" * 32}


def _exgs_bomb(count: int) -> bytes:
    """A few-kB, digest-valid .exgs declaring ``count`` Gaussians (one chunk of zeros)."""
    import zstandard

    from exgs.io import exgs as X
    from exgs.io.exgs.container import assemble, digest
    from exgs.synth import random_scene

    h = X.decode_header(X.encode_exgs(random_scene(10, sh_degree=0, seed=1)))
    raw = X.bytes_per_gaussian(0) * count
    blob = zstandard.ZstdCompressor(level=3).compress(bytes(raw))
    h.update(count=count, chunks=[{"count": count, "offset": 0, "length": len(blob),
                                   "raw_length": raw, "checksum": digest(blob)}])
    return assemble(h, [blob], None)


def test_declared_count_bomb_is_refused_before_decoding(tmp_path):
    import resource

    from fastapi.testclient import TestClient

    bomb = _exgs_bomb(5_000_000)
    assert len(bomb) < 200_000
    app = _app(tmp_path, max_gaussians=1_000_000)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with TestClient(app) as tc:
            t = time.perf_counter()
            r = tc.post("/v1/scenes?filename=bomb.exgs", content=bomb, headers=MHDR)
            dt = time.perf_counter() - t
            assert r.status_code == 413 and "declares 5,000,000 Gaussians" in r.json()["error"]
            assert tc.get("/v1/scenes", headers=MHDR).json()["scenes"] == []
    finally:
        app.state.jobs.shutdown()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    assert dt < 5 and grown < 200 << 20  # decoding it would take ~0.5 GB
    assert not any((tmp_path / "scenes").iterdir())


def test_idle_scenes_are_evicted_and_read_again(tmp_path):
    from fastapi.testclient import TestClient

    from exgs.cameras import orbit_for_scene
    from exgs.io.ply import write_ply
    from exgs.service.scenes import scene_bytes
    from exgs.synth import random_scene

    paths = []
    for i in range(2):
        sc = random_scene(1000, sh_degree=1, seed=10 + i)
        paths.append(tmp_path / f"s{i}.ply")
        write_ply(sc, paths[-1])
    one = scene_bytes(1000, 1)
    app = _app(tmp_path / "d", max_scene_memory=int(1.5 * one))
    try:
        with TestClient(app) as tc:
            a = tc.post("/v1/scenes?filename=s0.ply", content=paths[0].read_bytes(),
                        headers=MHDR).json()
            b = tc.post("/v1/scenes?filename=s1.ply", content=paths[1].read_bytes(),
                        headers=MHDR).json()
            assert b["in_memory"]
            assert not tc.get(f"/v1/scenes/{a['id']}", headers=MHDR).json()["in_memory"]
            cam = orbit_for_scene(sc, 1, 16, 12)[0].to_dict()
            job = tc.post(f"/v1/scenes/{a['id']}/render", json={"cameras": [cam]},
                          headers=MHDR).json()
            while job["state"] in ("queued", "running"):
                job = tc.get(f"/v1/jobs/{job['id']}?wait=10&since={job['version']}",
                             headers=MHDR).json()
            assert job["state"] == "done", job
            held = {s["id"]: s["in_memory"] for s in
                    tc.get("/v1/scenes", headers=MHDR).json()["scenes"]}
            assert held == {a["id"]: True, b["id"]: False}
    finally:
        app.state.jobs.shutdown()
    small = _app(tmp_path / "e", max_scene_memory=one // 2)
    try:
        with TestClient(small) as tc:
            r = tc.post("/v1/scenes?filename=s0.ply", content=paths[0].read_bytes(),
                        headers=MHDR)
            assert r.status_code == 507 and "memory" in r.json()["error"]
    finally:
        small.state.jobs.shutdown()


def test_json_bodies_are_decoded_off_the_event_loop(tmp_path, monkeypatch):
    """The routes' JSON bodies are decoded in the thread pool, not on the event loop."""
    import asyncio

    from fastapi.testclient import TestClient

    import exgs.service.routes as R

    seen = []
    real = R.offloop_json

    def spy(body):
        try:
            asyncio.get_running_loop()
            seen.append("on the loop")
        except RuntimeError:
            seen.append("off the loop")
        return real(body)

    monkeypatch.setattr(R, "offloop_json", spy)
    app = _app(tmp_path)
    try:
        with TestClient(app) as tc:
            r = tc.post("/v1/scenes/" + "0" * 64 + "/render",
                        json={"cameras": [{"width": 8}]}, headers=MHDR)
            assert r.status_code in (404, 422)
            r = tc.put("/v1/scenes/nope/facts", json={"kept_fraction": 0.5}, headers=MHDR)
            assert r.status_code == 404
    finally:
        app.state.jobs.shutdown()
    assert seen == ["off the loop", "off the loop"]
