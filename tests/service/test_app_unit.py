"""In-process checks of the pieces the end-to-end tests cannot provoke: an unexpected
exception in a handler or a job never leaks a traceback; token files; the frame codec."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from svc_helpers import C
from exgs.errors import UsageError
from exgs.service import frames
from exgs.service.app import create_app
from exgs.service.auth import check_bearer, load_or_create_token
from exgs.service.config import ServiceConfig

TOKEN = "t" * 32


@pytest.fixture()
def app(tmp_path):
    app = create_app(ServiceConfig(token=TOKEN, device="cpu", data_dir=str(tmp_path)))
    yield app
    app.state.jobs.shutdown()


def test_unexpected_exception_is_json_500_without_traceback(app, caplog):
    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as tc:
        r = tc.get("/boom", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 500
    body = r.json()
    assert body["error"].startswith("internal server error")
    assert "Traceback" not in r.text and "secret internal detail" not in r.text
    assert any("secret internal detail" in str(rec.exc_info) for rec in caplog.records)


def test_crashing_job_fails_with_one_line(app):
    jobs = app.state.jobs

    def bad(ctx):
        raise ZeroDivisionError("deep inside")

    def user_error(ctx):
        raise UsageError("sh_degree 9 is not allowed")

    j1 = jobs.submit("render", "cpu", bad)
    j2 = jobs.submit("compress", "cpu", user_error)
    t0 = time.monotonic()
    while (j1.state, j2.state) != ("failed", "failed") and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    assert j1.state == "failed" and "internal error in the render job" in j1.error
    assert "\n" not in j1.error and "deep inside" not in j1.error
    assert j2.state == "failed" and j2.error == "sh_degree 9 is not allowed"


def test_open_job_limit_is_429(tmp_path):
    from exgs.service.config import Limits

    app = create_app(ServiceConfig(token=TOKEN, device="cpu", data_dir=str(tmp_path),
                                   limits=Limits(max_open_jobs=1)))
    jobs = app.state.jobs
    import threading

    gate = threading.Event()
    jobs.submit("render", "cpu", lambda ctx: gate.wait(10))
    with pytest.raises(Exception) as ei:
        jobs.submit("render", "cpu", lambda ctx: None)
    assert type(ei.value).__name__ == "JobLimitError"
    gate.set()
    jobs.shutdown()


def test_token_file_created_private_and_reused(tmp_path):
    p = tmp_path / "sub" / "token"
    tok, path = load_or_create_token(p)
    assert len(tok) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(p)[0] == tok  # reused, not regenerated
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(UsageError):
        load_or_create_token(tmp_path / "short")
    assert check_bearer(f"Bearer {tok}", tok) and check_bearer(f"bearer  {tok}", tok)
    assert not check_bearer(tok, tok) and not check_bearer(None, tok)
    assert not check_bearer(f"Bearer {tok}x", tok) and not check_bearer("Basic abc", tok)


def test_frame_codec_round_trip_and_client_decoder():
    rng = np.random.default_rng(0)
    rgb = rng.random((5, 7, 3), np.float32)
    alpha = rng.random((5, 7), np.float32)
    depth = np.where(alpha > 0.5, alpha * 3, np.inf).astype(np.float32)
    blob = frames.encode_f32({"rgb": rgb, "alpha": alpha, "depth": depth})
    assert bytes(blob[:4]) == b"EXGF" and len(blob) == 16 + 3 * 12 + 4 * 5 * 7 * 5
    w, h, out = frames.decode_f32(bytes(blob))
    assert (w, h) == (7, 5)
    np.testing.assert_array_equal(out["rgb"], rgb)
    f = C.decode_frame(bytearray(blob))
    np.testing.assert_array_equal(f.rgb, rgb)
    np.testing.assert_array_equal(f.alpha, alpha)
    np.testing.assert_array_equal(f.depth, depth)
    assert f.rgb.flags.writeable
    with pytest.raises(C.BackendError):
        C.decode_frame(bytes(blob[:-4]))


def test_serve_bad_options_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    for args in (["--allow-dir", str(tmp_path / "missing")], ["--port", "70000"],
                 ["--max-jobs", "0"]):
        r = subprocess.run([sys.executable, "-m", "exgs.cli", "serve", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stdout == "" and r.stderr.startswith("exgs: error: ")
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_f32_size_matches_encoding():
    a = np.zeros((3, 4, 3), np.float32)
    b = np.zeros((3, 4), np.float32)
    assert frames.f32_size(4, 3, {"rgb": a, "depth": b}) == len(frames.encode_f32(
        {"rgb": a, "depth": b}))


def test_array_frame_streams_the_same_bytes():
    rng = np.random.default_rng(1)
    p = {"rgb": rng.random((9, 11, 3), np.float32), "alpha": rng.random((9, 11), np.float32)}
    af = frames.ArrayFrame(p)
    ref = bytes(frames.encode_f32(p))
    assert af.tobytes() == ref and af.nbytes == len(ref) == frames.f32_size(11, 9, p)
    assert b"".join(bytes(c) for c in af.chunks(100)) == ref
