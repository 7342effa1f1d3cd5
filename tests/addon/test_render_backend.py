"""End to end with a real `exgs serve` process: the ExGS engine's F12 equals the backend's
direct render of the same camera, a Gaussian on a mesh vertex lands on the vertex's pixel in
a Workbench render, a 3-frame animation follows the camera, and wrong token / killed server
give a clean one-line report."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bpy_helpers import ONE_GAUSSIAN, RENDER_PASS, SETUP_CAMERA
from conftest import BACKEND_PYTHON, ROOT


def _service_ready() -> str:
    if not os.path.exists(os.path.join(ROOT, "exgs_blender", "client", "__init__.py")):
        return "exgs_blender/client not there yet"
    for mod in ("exgs.render", "exgs.service"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} not there yet"
    return ""


pytestmark = pytest.mark.skipif(bool(_service_ready()), reason=_service_ready() or "ok")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `exgs serve` on loopback (separate process), token in a file."""
    sys.path.insert(0, ROOT)
    from exgs_blender.backend import parse_ready_line

    d = tmp_path_factory.mktemp("serve")
    tok = d / "token"
    proc = subprocess.Popen([BACKEND_PYTHON, "-m", "exgs.cli", "serve", "--port", "0",
                             "--token-file", str(tok)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    url = None
    t0 = time.time()
    while time.time() - t0 < 90:
        line = proc.stdout.readline().decode()
        if not line and proc.poll() is not None:
            break
        url = parse_ready_line(line.strip())
        if url:
            break
    assert url, proc.stderr.read().decode()[-2000:]
    yield url, tok.read_text().strip(), proc
    proc.terminate()
    proc.wait(10)


def _psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def _lin_to_srgb_premult(comb):
    a = comb[..., 3:4]
    straight = np.where(a > 1e-6, comb[..., :3] / np.maximum(a, 1e-6), 0)
    s = np.where(straight <= 0.0031308, straight * 12.92,
                 1.055 * np.maximum(straight, 0) ** (1 / 2.4) - 0.055)
    return np.clip(s, 0, 1) * a


def test_f12_equals_direct_render(run_bpy, server, tmp_path):
    from exgs.cameras import camera_from_blender
    from exgs.io.ply import write_ply
    from exgs.render import render
    from exgs.synth import demo_scene

    url, token, _ = server
    scene = demo_scene(6000, sh_degree=1, seed=2)
    ply = str(tmp_path / "demo.ply")
    write_ply(scene, ply)
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import, render_core
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {ply!r})
        obj.location = (0.2, 0.1, 0.3); obj.scale = (1.1, 1.1, 1.1)
        cam = add_camera(loc=(0.3, -6.5, 1.6), rot=(1.35, 0, 0.05), lens=35, size=(96, 64))
        cam.data.shift_x = 0.05
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        sc.render.film_transparent = True  # compare with the backend's own (transparent) frame
        sc.view_layers[0].use_pass_z = True
        comb = render_pass("Image")
        dep = render_pass("Depth")[..., 0]
        camd = render_core.blender_camera(sc, cam)
        camd["object_matrix_world"] = render_core._mat(obj.matrix_world)
        RESULT = dict(comb=comb.tolist(), dep=dep.tolist(), cam=camd)
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=token, timeout=240)
    cam = res["cam"]
    cam.pop("name")
    direct = render(scene, camera_from_blender(**cam))
    comb = np.array(res["comb"])
    got = _lin_to_srgb_premult(comb)
    assert direct.alpha.max() > 0.5  # the scene is in view
    assert _psnr(got, direct.rgb) >= 40.0
    assert _psnr(comb[..., 3], direct.alpha) >= 40.0
    dep = np.array(res["dep"])
    hit = direct.alpha > 0.5
    np.testing.assert_allclose(dep[hit], direct.depth[hit], rtol=1e-3)
    assert (dep[direct.alpha < 1e-6] == 1e10).all()




def test_gaussian_on_vertex_lands_on_vertex_pixel_and_animation_follows(run_bpy, server, tmp_path):
    url, token, _ = server
    ply = str(tmp_path / "one.ply")
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + ONE_GAUSSIAN, code=f"""
        from bpy_extras.object_utils import world_to_camera_view
        from mathutils import Vector
        from bl_ext.user_default.exgs import io_import
        bpy.ops.wm.read_homefile(use_empty=True)
        one_gaussian_ply({ply!r}, (0.3, -0.2, 0.5))
        obj, _ = io_import.import_file(bpy.context, {ply!r}, preview=False)
        obj.location = (0.1, 0.0, -0.1)
        bpy.context.view_layer.update()
        world = obj.matrix_world @ Vector((0.3, -0.2, 0.5))
        cam = add_camera(loc=(0.5, -3.0, 0.8), rot=(1.4, 0.0, 0.1), lens=40, size=(80, 60))
        cam.data.shift_y = -0.04
        sc = bpy.context.scene
        # Cycles render of a small sphere at the same world point
        bpy.ops.mesh.primitive_ico_sphere_add(radius=0.03, subdivisions=3, location=world)
        sph = bpy.context.active_object
        sc.render.engine = "CYCLES"  # bpy 4.2's Workbench (EGL) ignores the lens here
        sc.cycles.samples = 4
        sc.render.film_transparent = True
        wb = render_pass("Alpha")[..., 0]
        sph.hide_render = True
        sc.render.engine = "EXGS"
        ex = render_pass("Alpha")[..., 0]
        # 3-frame animation through the engine (stock render.render(animation=True))
        for f, x in ((1, 0.3), (2, 0.5), (3, 0.7)):
            cam.location.x = x
            cam.keyframe_insert("location", frame=f)
        sc.frame_start, sc.frame_end = 1, 3
        sc.render.image_settings.file_format = "OPEN_EXR"
        sc.render.filepath = {str(tmp_path / "anim_")!r}
        sc.render.use_compositing = False
        bpy.ops.render.render(animation=True)
        want = []
        for f in (1, 2, 3):
            sc.frame_set(f)
            p = world_to_camera_view(sc, cam, world)
            want.append([p.x * 80, (1 - p.y) * 60])
        got = []
        for f in (1, 2, 3):
            img = bpy.data.images.load({str(tmp_path)!r} + f"/anim_{{f:04d}}.exr")
            px = np.empty(80 * 60 * 4, np.float32); img.pixels.foreach_get(px)
            got.append(centroid(px.reshape(60, 80, 4)[::-1, :, 3]))
        RESULT = dict(wb=centroid(wb), ex=centroid(ex), want=want, got=got)
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=token, timeout=240)
    assert np.abs(np.array(res["wb"]) - np.array(res["ex"])).max() <= 1.0, res
    np.testing.assert_allclose(res["got"], res["want"], atol=1.0)
    xs = [g[0] for g in res["got"]]
    assert xs[0] > xs[1] > xs[2]  # camera moves right → the splat moves left


def test_wrong_token_and_unreachable_are_clean(run_bpy, server, small_ply):
    url, token, _ = server
    path, _ = small_ply
    code = f"""
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.engine import final
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {path!r})
        add_camera(size=(16, 12))
        bpy.context.scene.render.engine = "EXGS"
        try:
            bpy.ops.render.render()
            raised = ""
        except RuntimeError as e:
            raised = str(e)
        RESULT = dict(errors=final.ERRORS, raised=raised)
    """
    bad = run_bpy(helpers=SETUP_CAMERA, code=code, EXGS_BACKEND_URL=url, EXGS_TOKEN="wrong")
    assert bad["errors"] and "token" in bad["errors"][-1].lower()
    assert bad["errors"][-1].count("rejected the token") == 1  # one clear line, not nested
    assert "Error" not in bad["errors"][-1] and "\n" not in bad["errors"][-1]
    print("REPORTED:", bad["errors"][-1])
    assert "Traceback" not in run_bpy.last.stderr + run_bpy.last.stdout
    gone = run_bpy(helpers=SETUP_CAMERA, code=code, EXGS_BACKEND_URL="http://127.0.0.1:9",
                   EXGS_TOKEN="x", timeout=60)
    assert gone["errors"] and "reach" in gone["errors"][-1].lower()
    assert "Traceback" not in run_bpy.last.stderr + run_bpy.last.stdout


def test_server_killed_mid_render_is_clean(run_bpy, tmp_path):
    """A server we kill while it renders: the engine reports one line and returns."""
    from exgs.io.ply import write_ply
    from exgs.synth import random_scene

    sys.path.insert(0, ROOT)
    from exgs_blender.backend import parse_ready_line

    ply = str(tmp_path / "big.ply")
    write_ply(random_scene(60_000, sh_degree=0, seed=1, max_scale=0.2), ply)
    tok = tmp_path / "tok"
    proc = subprocess.Popen([BACKEND_PYTHON, "-m", "exgs.cli", "serve", "--port", "0",
                             "--token-file", str(tok)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = None
    while url is None:
        line = proc.stdout.readline().decode()
        assert line or proc.poll() is None
        url = parse_ready_line(line.strip())
    from exgs_blender.client import ExgsClient

    watcher = ExgsClient(url, tok.read_text().strip(), timeout=5)
    killed = threading.Event()

    def kill_when_rendering():  # kill the server as soon as a render job runs
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                jobs = watcher._request("GET", "/v1/jobs")
            except Exception:
                return
            jobs = jobs.get("jobs", jobs) if isinstance(jobs, dict) else jobs
            if any(j.get("state") == "running" for j in jobs):
                os.kill(proc.pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_rendering, daemon=True)
    killer.start()
    t0 = time.time()
    res = run_bpy(helpers=SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.engine import final
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {ply!r}, preview=False)
        add_camera(loc=(0, -3, 0), size=(1600, 1200))
        bpy.context.scene.render.engine = "EXGS"
        try:
            bpy.ops.render.render()
        except RuntimeError:
            pass
        RESULT = dict(errors=final.ERRORS)
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=tok.read_text().strip(), timeout=120)
    killer.join(10)
    proc.wait(10)
    assert killed.is_set(), "the render job was never seen running"
    assert time.time() - t0 < 100
    assert res["errors"], "render should fail cleanly once the server is gone"
    print("REPORTED:", res["errors"][-1])
    assert "Traceback" not in run_bpy.last.stderr + run_bpy.last.stdout


def test_camera_path_compositor_and_headless_render_match_backend(run_bpy, server, tmp_path):
    """Real backend: Render Camera Path → EXR sequence → compositor output equals the
    backend's direct frame; ``blender -c exgs render`` writes the frame range (exit 0)."""
    from exgs.cameras import camera_from_blender
    from exgs.io.ply import write_ply
    from exgs.render import render
    from exgs.synth import demo_scene

    url, token, _ = server
    scene = demo_scene(5000, sh_degree=0, seed=9)
    ply = str(tmp_path / "d.ply")
    write_ply(scene, ply)
    frames, blend = str(tmp_path / "frames"), str(tmp_path / "shot.blend")
    res = run_bpy(helpers=SETUP_CAMERA, code=f"""
        import io, contextlib
        import numpy as np
        from bl_ext.user_default.exgs import io_import, render_core, cli
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {ply!r})
        cam = add_camera(loc=(0.0, -6.0, 1.2), rot=(1.4, 0, 0), lens=35, size=(64, 48))
        sc = bpy.context.scene
        sc.frame_start, sc.frame_end = 1, 2
        for f, x in ((1, -0.3), (2, 0.3)):
            cam.location.x = x
            cam.keyframe_insert("location", frame=f)
        r = list(bpy.ops.exgs.render_camera_path(directory={frames!r} + "/"))
        sc.frame_set(2)
        camd = render_core.blender_camera(sc, cam)
        camd["object_matrix_world"] = render_core._mat(obj.matrix_world)
        sc.render.engine = "BLENDER_WORKBENCH"
        sc.render.use_compositing = True
        sc.render.image_settings.file_format = "OPEN_EXR"
        sc.render.image_settings.color_mode = "RGBA"
        sc.view_settings.view_transform = "Standard"
        sc.render.filepath = {frames!r} + "/comp.exr"
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load({frames!r} + "/comp.exr")
        px = np.empty(64 * 48 * 4, np.float32); img.pixels.foreach_get(px)
        comp = px.reshape(48, 64, 4)[::-1]
        # headless farm render of the saved file with the ExGS engine
        bpy.ops.wm.save_as_mainfile(filepath={blend!r})
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cli.main(["render", {blend!r}, "-s", "1", "-e", "2",
                           "-o", {str(tmp_path / "farm_####")!r}])
        RESULT = dict(r=r, comp=comp.tolist(), cam=camd, rc=rc, err=err.getvalue())
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=token, timeout=240)
    assert res["r"] == ["FINISHED"]
    cam = res["cam"]
    cam.pop("name")
    direct = render(scene, camera_from_blender(**cam))
    assert direct.alpha.max() > 0.5
    comp = np.array(res["comp"])
    assert _psnr(_lin_to_srgb_premult(comp), direct.rgb) >= 40.0
    assert res["rc"] == 0, res["err"]
    written = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("farm_"))
    assert written == ["farm_0001.exr", "farm_0002.exr"]


def test_two_objects_are_depth_composited(run_bpy, server, tmp_path):
    """Two splat objects (one backend call each) overlap on screen: the nearer one wins per
    pixel (the order-independence is unit-tested in test_conventions); Depth is the nearer one's."""
    url, token, _ = server
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA + ONE_GAUSSIAN, code=f"""
        from bl_ext.user_default.exgs import io_import, plyio
        bpy.ops.wm.read_homefile(use_empty=True)
        out = {{}}
        for name, colour in (("red", (1, 0, 0)), ("blue", (0, 0, 1))):
            p = {str(tmp_path)!r} + f"/{{name}}.ply"
            one_gaussian_ply(p, (0.0, 0.0, 0.0), sigma=0.3)
            v = np.array(plyio.read_vertices(p))
            for c in range(3):
                v[f"f_dc_{{c}}"] = (colour[c] - 0.5) / 0.28209479177387814
            plyio.write_ply(p, v)
            o, _ = io_import.import_file(bpy.context, p, name=name, preview=False)
            out[name] = o
        out["red"].location = (0, 0, 0)      # nearer to the camera (camera at y = -4)
        out["blue"].location = (0.2, 1.0, 0)
        add_camera(loc=(0, -4, 0), size=(40, 30))
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        sc.view_layers[0].use_pass_z = True
        img = render_pass("Image")
        dep = render_pass("Depth")[..., 0]
        RESULT = dict(c=img[15, 20].tolist(), d=float(dep[15, 20]))
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=token)
    r, g, b, a = res["c"]
    assert r > 0.9 and b < 0.05 and a > 0.99  # opaque red in front hides blue
    assert abs(res["d"] - 4.0) < 0.2


def test_f12_with_gausspainter_restore(run_bpy, server, tmp_path):
    """The engine's restore option reaches the backend (GaussPainter) and fills the passes."""
    import importlib.util as u

    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    weights = os.path.join(os.path.dirname(u.find_spec("exgs.painter").origin), "weights")
    if not os.path.exists(os.path.join(weights, "painter.json")):
        pytest.skip("no GaussPainter weights shipped yet")
    url, token, _ = server
    ply = str(tmp_path / "r.ply")
    write_ply(demo_scene(3000, sh_degree=0, seed=1), ply)
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.engine import final
        bpy.ops.wm.read_homefile(use_empty=True)
        io_import.import_file(bpy.context, {ply!r})
        add_camera(loc=(0.0, -6.0, 1.2), rot=(1.4, 0, 0), lens=35, size=(64, 48))
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        sc.exgs_render.restore = True
        img = render_pass("Image")
        RESULT = dict(errors=final.ERRORS, cover=float((img[..., 3] > 0.5).mean()),
                      peak=float(img[..., :3].max()))
    """, EXGS_BACKEND_URL=url, EXGS_TOKEN=token, timeout=240)
    assert res["errors"] == [] and res["cover"] > 0.05 and res["peak"] > 0.05


def test_facts_are_stored_once_with_the_real_service(server, small_ply):
    """The service on main keeps a scene's facts: the add-on's connection sees it from the
    upload answer and stores kept fraction / painter delta with PUT /facts (once)."""
    sys.path.insert(0, ROOT)
    from exgs_blender import backend

    url, token, _ = server
    path, _ = small_ply
    conn = backend.Connection(url, token, local=False, timeout=60)
    sid = conn.scene_for(path, "facts-test")
    assert conn._facts_api
    calls = []
    real = conn.api.set_facts
    conn.api.set_facts = lambda *a, **kw: calls.append(kw) or real(*a, **kw)
    conn._store_facts(sid, 0.25, None)
    conn._store_facts(sid, 0.25, None)  # unchanged: not sent again
    assert len(calls) == 1
    assert conn.api.scene(sid)["facts"]["kept_fraction"] == 0.25
    assert conn.api.scene(sid)["facts"]["refined"] is False
    conn._store_facts(sid, 0.25, None, True)  # a refined file's mesh: the refined gate table
    assert len(calls) == 2 and calls[-1]["refined"] is True
    assert conn.api.scene(sid)["facts"]["refined"] is True
