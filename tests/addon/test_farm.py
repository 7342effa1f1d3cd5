"""A farm on loopback (issue 18): ONE `exgs serve`, three headless bpy workers each render a
frame range of the same .blend at once (what `blender -b shot.blend -s A -e B -a` does),
finding the backend only from environment variables. Their frames equal a single process's
render of the whole range byte for byte, no job is lost or failed, the three concurrent
uploads of the scene end as one scene, and the fair queue saw each worker as a client.
An unreachable backend gives one line and, with EXGS_EXIT_ON_ERROR=1, exit code 1."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import urllib.request

import pytest

from bpy_helpers import SETUP_CAMERA
from conftest import PRELUDE, EPILOGUE, bpy_env
from test_render_backend import _service_ready, server  # noqa: F401  (module fixture)

pytestmark = pytest.mark.skipif(bool(_service_ready()), reason=_service_ready() or "ok")

FRAMES = (1, 6)          # the shot's range; 3 workers × 2 frames
WORKERS = [(1, 2), (3, 4), (5, 6)]
SIZE = 32

WORKER = """
from bl_ext.user_default.exgs.engine import final
bpy.ops.wm.open_mainfile(filepath={blend!r})
sc = bpy.context.scene
sc.frame_start, sc.frame_end = {start}, {end}
sc.render.filepath = {out!r}
try:
    bpy.ops.render.render(animation=True)
except RuntimeError:
    pass
RESULT = dict(errors=final.ERRORS)
"""


def _script(code: str) -> str:
    pre, main = PRELUDE.split("def _main():")
    return pre + "\ndef _main():" + main + textwrap.indent(textwrap.dedent(code), "    ") \
        + EPILOGUE


def _spawn(bpy_python, home, code, **env):
    return subprocess.Popen([bpy_python, "-c", _script(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env=bpy_env(home, **env))


def _result(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    res = [json.loads(ln[len("@@RESULT@@"):]) for ln in out.splitlines()
           if ln.startswith("@@RESULT@@")]
    assert proc.returncode == 0 and res, f"rc={proc.returncode}\n{out[-2000:]}\n{err[-2000:]}"
    return res[0]


def png_pixels(path) -> tuple[bytes, bytes]:
    """(IHDR, decompressed IDAT) of a PNG: its exact pixel rows (filtered scanlines), without
    the text chunks Blender adds (date, render time)."""
    import struct
    import zlib

    data, off, ihdr, idat = open(path, "rb").read(), 8, b"", b""
    while off < len(data):
        n, kind = struct.unpack(">I4s", data[off:off + 8])
        body = data[off + 8:off + 8 + n]
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        off += 12 + n
    return ihdr, zlib.decompress(idat)


def _get(url, token, path):
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def shot(tmp_path_factory, ext_home, bpy_python, small_ply):
    """shot.blend: the small generated scene, a camera moving over frames 1..6, 32×32 PNG
    (16-bit RGBA) output."""
    path, _ = small_ply
    blend = str(tmp_path_factory.mktemp("shot") / "shot.blend")
    code = SETUP_CAMERA + f"""
from bl_ext.user_default.exgs import io_import
bpy.ops.wm.read_homefile(use_empty=True)
io_import.import_file(bpy.context, {path!r})
cam = add_camera(size=({SIZE}, {SIZE}))
sc = bpy.context.scene
sc.render.engine = "EXGS"
sc.render.image_settings.file_format = "PNG"
sc.render.image_settings.color_mode = "RGBA"
sc.render.image_settings.color_depth = "16"
sc.frame_start, sc.frame_end = {FRAMES[0]}, {FRAMES[1]}
for f, x in (({FRAMES[0]}, -0.6), ({FRAMES[1]}, 0.6)):
    cam.location.x = x
    cam.keyframe_insert("location", index=0, frame=f)
bpy.ops.wm.save_as_mainfile(filepath={blend!r})
RESULT = dict(ok=True)
"""
    _result(_spawn(bpy_python, ext_home, code), timeout=120)
    return blend


def test_three_workers_match_one_process(server, shot, ext_home, bpy_python,  # noqa: F811
                                         tmp_path):
    url, token, _ = server
    tok = tmp_path / "token"
    tok.write_text(token + "\n")
    # the workers know only the environment: URL, token file, their name; no local Python
    env = dict(EXGS_BACKEND_URL=url, EXGS_TOKEN_FILE=str(tok), EXGS_PYTHON="",
               EXGS_EXIT_ON_ERROR="1")
    t0 = time.monotonic()
    procs = [_spawn(bpy_python, ext_home, WORKER.format(
        blend=shot, start=a, end=b, out=str(tmp_path / "farm" / "####")),
        EXGS_CLIENT_ID=f"worker-{k}", **env) for k, (a, b) in enumerate(WORKERS)]
    results = [_result(p) for p in procs]
    farm_s = time.monotonic() - t0
    assert all(r["errors"] == [] for r in results), results
    solo = _result(_spawn(bpy_python, ext_home, WORKER.format(
        blend=shot, start=FRAMES[0], end=FRAMES[1], out=str(tmp_path / "solo" / "####")),
        EXGS_CLIENT_ID="solo", **env))
    assert solo["errors"] == []
    names = [f"{f:04d}.png" for f in range(FRAMES[0], FRAMES[1] + 1)]
    assert sorted(os.listdir(tmp_path / "farm")) == names      # no frame lost
    assert sorted(os.listdir(tmp_path / "solo")) == names
    for n in names:  # the same pixels, 16 bits per channel
        assert png_pixels(tmp_path / "farm" / n) == png_pixels(tmp_path / "solo" / n), n
    pixels = [png_pixels(tmp_path / "solo" / n)[1] for n in names]
    assert len(set(pixels)) == len(names)       # the camera moves: every frame differs
    assert png_pixels(tmp_path / "solo" / names[0])[0][8:10] == bytes([16, 6])  # RGBA16
    assert any(pixels[0][k] for k in range(len(pixels[0])) if k % (1 + 8 * SIZE))  # not empty

    load = _get(url, token, "/v1/health")["load"]
    assert (load["queued"], load["running"], load["clients"]) == (0, 0, {})
    served = {k: v for k, v in load["served"].items() if k.startswith(("worker-", "solo"))}
    assert served == {c: {"done": n, "failed": 0, "cancelled": 0, "frames": n}
                      for c, n in (("worker-0", 2), ("worker-1", 2), ("worker-2", 2),
                                   ("solo", 6))}       # one job per frame, none lost
    # four processes uploaded the shot's splats (three at once): the service holds one scene
    scenes = _get(url, token, "/v1/scenes")["scenes"]
    assert [(s["source"], s["gaussians"]) for s in scenes] == [("upload", 500)]
    assert load["scenes"] == 1 and load["scene_bytes"] > 0 and load["rss_bytes"] > 0
    print(f"3 workers × 2 frames at {SIZE}×{SIZE}: {farm_s:.1f} s wall")


def test_unreachable_backend_is_one_line_and_exit_1(shot, ext_home, bpy_python, tmp_path):
    p = _spawn(bpy_python, ext_home, WORKER.format(blend=shot, start=1, end=2,
                                                   out=str(tmp_path / "out" / "####")),
               EXGS_BACKEND_URL="http://127.0.0.1:9", EXGS_TOKEN="x", EXGS_PYTHON="",
               EXGS_EXIT_ON_ERROR="1")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, (out[-2000:], err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("exgs: error:")]
    assert lines == ["exgs: error: cannot reach the ExGS backend at http://127.0.0.1:9 "
                     "(Connection refused)"], err[-2000:]
    assert "Traceback" not in out + err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")  # no frame
