"""Progressive .exgs import (issue 18): a preview prefix first, then the full resolution; the
streamed mesh fill equals the in-memory one; renders use the whole file; early files; bad
input leaves nothing behind."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from exgs_legacy import legacy_exgs_bytes

N = 10_000   # chunks of 4096, 4096, 1808 Gaussians
PREVIEW = 5_000  # ends inside the second chunk


@pytest.fixture(scope="module")
def exgs_files(tmp_path_factory):
    """A current (version 2, with a section) and an early-format .exgs of one scene, and the
    decoded scene (full and prefix) from the backend reader."""
    from exgs.io.exgs_format import encode_exgs, read_exgs_scene
    from exgs.synth import random_scene

    d = tmp_path_factory.mktemp("exgs")
    scene = random_scene(N, sh_degree=1, seed=11)
    cur, old = d / "scene.exgs", d / "early.exgs"
    cur.write_bytes(encode_exgs(scene, source={"gaussians": 4 * N},
                                sections={"painter_delta": b"not-a-real-delta"}))
    old.write_bytes(legacy_exgs_bytes(scene, source={"gaussians": 4 * N}))
    return {"cur": str(cur), "old": str(old), "full": read_exgs_scene(cur),
            "prefix": read_exgs_scene(cur, keep=PREVIEW)}


def test_prefix_import_then_full_equals_direct_import(run_bpy, exgs_files):
    path = exgs_files["cur"]
    res = run_bpy(f"""
        import numpy as np
        from bl_ext.user_default.exgs import io_import, gaussians, progressive, render_core
        from bl_ext.user_default.exgs.splat import SplatObject
        before = set(m.name for m in bpy.data.meshes)
        obj, _ = io_import.import_file(bpy.context, {path!r}, preview_count={PREVIEW})
        so = SplatObject(obj)
        pre = dict(count=so.count, full=so.full_count, preview=so.is_preview,
                   kept=so.kept_fraction, delta=(so.painter_delta or b"").decode(),
                   xyz=np.stack([gaussians.read_struct(obj.data)[c] for c in "xyz"], 1).tolist(),
                   mods=[m.name for m in obj.modifiers])
        items = render_core.gather(bpy.context.evaluated_depsgraph_get())
        gathered = [(it.ply_path, it.count, it.kept_fraction) for it in items]
        obj.location = (1.0, 2.0, 3.0)
        ld = progressive.Loader(obj.name)   # what the UI timer runs, stepped by hand
        states = []
        import time
        while ld.step():
            states.append(ld.state)
            time.sleep(0.01)
        full = gaussians.read_struct(obj.data)
        direct, _ = io_import.import_file(bpy.context, {path!r})
        ref = gaussians.read_struct(direct.data)
        def attrs(me):
            return {{a.name: a.data_type for a in me.attributes if a.domain == "POINT"}}
        col = np.empty({N} * 4, np.float32)
        obj.data.attributes["exgs_color"].data.foreach_get("color", col)
        col2 = np.empty({N} * 4, np.float32)
        direct.data.attributes["exgs_color"].data.foreach_get("color", col2)
        RESULT = dict(pre=pre, gathered=gathered, state=ld.state, states=sorted(set(states)),
                      steps=len(states), count=SplatObject(obj).count,
                      still_preview=SplatObject(obj).is_preview, same=bool(np.array_equal(full, ref)),
                      same_attrs=attrs(obj.data) == attrs(direct.data),
                      same_colour=bool(np.array_equal(col, col2)),
                      loc=list(obj.location), mods=[m.name for m in obj.modifiers],
                      mats=[m.name for m in obj.data.materials], mesh=obj.data.name,
                      meshes=sorted(m.name for m in bpy.data.meshes if m.name not in before),
                      kept=SplatObject(obj).kept_fraction)
    """)
    pre, prefix = res["pre"], exgs_files["prefix"]
    assert pre["count"] == PREVIEW and pre["full"] == N and pre["preview"]
    # the preview is the file's most significant prefix, in the decoder's order
    np.testing.assert_array_equal(np.asarray(pre["xyz"], np.float32), prefix.means)
    np.testing.assert_array_equal(exgs_files["full"].means[:PREVIEW], prefix.means)
    assert pre["kept"] == pytest.approx(0.25) and pre["delta"] == "not-a-real-delta"
    # the render path sends the whole .exgs file, not the preview mesh
    assert res["gathered"] == [[exgs_files["cur"], N, pytest.approx(0.25)]]
    assert res["state"] == "done" and {"convert", "fill"} <= set(res["states"])
    assert res["steps"] >= 4  # conversion polled, then the fill in several UI ticks
    assert res["count"] == N and not res["still_preview"]
    assert res["same"] and res["same_attrs"] and res["same_colour"]
    assert res["loc"] == [1.0, 2.0, 3.0] and res["mods"] == pre["mods"] == ["ExGS Preview"]
    assert res["mats"] == ["ExGS Splat Preview"] and res["kept"] == pytest.approx(0.25)
    assert res["meshes"] == sorted([res["mesh"], res["mesh"] + ".001"])  # no preview left


def test_streamed_fill_equals_in_memory_fill(run_bpy, tmp_path):
    """Tiny blocks and one column per step (many passes) vs the in-memory fill; an extra
    integer property and a big-endian file."""
    from exgs.io.ply import write_ply
    from exgs.synth import random_scene

    le = tmp_path / "le.ply"
    write_ply(random_scene(3001, sh_degree=2, seed=4), le)
    res = run_bpy(f"""
        import numpy as np
        from numpy.lib import recfunctions as rf
        from bl_ext.user_default.exgs import gaussians, meshfill, plyio
        v = np.asarray(plyio.read_vertices({str(le)!r}))
        v = rf.append_fields(v, "segment", np.arange(len(v), dtype="<i2") - 7,
                             usemask=False)
        plyio.write_ply({str(tmp_path / 'x.ply')!r}, v)
        be = v.astype([(n, ">" + v.dtype[n].str[1:]) for n in v.dtype.names])
        hdr = plyio.header_bytes(v.dtype, len(v)).replace(b"binary_little_endian",
                                                          b"binary_big_endian")
        with open({str(tmp_path / 'be.ply')!r}, "wb") as f:
            f.write(hdr)
            be.tofile(f)
        ref = gaussians.new_mesh("ref", v)
        out = {{}}
        for name in ("x.ply", "be.ply"):
            me = bpy.data.meshes.new(name)
            steps = list(meshfill.fill_steps(me, os.path.join({str(tmp_path)!r}, name),
                                             budget=1, block_bytes=1000))
            same = {{}}
            for a in ref.attributes:
                if a.domain != "POINT":
                    continue
                b = me.attributes.get(a.name)
                key = "color" if a.data_type == "FLOAT_COLOR" else (
                    "vector" if a.data_type == "FLOAT_VECTOR" else "value")
                width = {{"color": 4, "vector": 3}}.get(key, 1)
                dt = np.int32 if a.data_type == "INT" else np.float32
                x, y = np.empty(len(v) * width, dt), np.empty(len(v) * width, dt)
                a.data.foreach_get(key, x)
                ok = b is not None and b.data_type == a.data_type
                if ok:
                    b.data.foreach_get(key, y)
                same[a.name] = ok and bool(np.array_equal(x, y))
            out[name] = dict(steps=len(steps), same=same, layout=me["exgs_layout"],
                             ref_layout=ref["exgs_layout"], deg=me["exgs_sh_degree"])
        RESULT = out
    """)
    for name in ("x.ply", "be.ply"):
        r = res[name]
        # positions (x y z), every other column on its own, colour, radius
        assert r["steps"] == len(json.loads(r["layout"])) - 3 + 1 + 2
        assert r["same"] and all(r["same"].values()), r["same"]
        assert "segment" in r["same"] and "exgs_color" in r["same"]
        assert r["layout"] == r["ref_layout"] and r["deg"] == 2


def test_early_exgs_file_imports_prefix_and_full(run_bpy, exgs_files):
    path, full = exgs_files["old"], exgs_files["full"]
    res = run_bpy(f"""
        import numpy as np
        from bl_ext.user_default.exgs import io_import, gaussians, progressive
        from bl_ext.user_default.exgs.splat import SplatObject
        obj, _ = io_import.import_file(bpy.context, {path!r}, preview_count={PREVIEW})
        n0 = SplatObject(obj).count
        progressive.load_full(obj)          # background Blender: synchronous
        v = gaussians.read_struct(obj.data)
        RESULT = dict(n0=n0, n=SplatObject(obj).count, xyz=np.stack([v[c] for c in "xyz"],
                      1).tolist(), rest=np.asarray(v["f_rest_0"]).tolist())
    """)
    assert res["n0"] == PREVIEW and res["n"] == N
    np.testing.assert_array_equal(np.asarray(res["xyz"], np.float32), full.means)
    # 8-bit SH of the early file vs 5-bit of the current one: within a 5-bit step
    step = 2 * float(np.abs(full.sh[:, 1:]).max()) / 31
    assert np.abs(np.asarray(res["rest"]) - full.sh[:, 1, 0]).max() <= step


def test_headless_operator_loads_everything(run_bpy, exgs_files, tmp_path):
    path = exgs_files["cur"]
    blend = str(tmp_path / "h.blend")
    res = run_bpy(f"""
        from bl_ext.user_default.exgs.splat import SplatObject
        r = bpy.ops.exgs.import_splats(filepath={path!r}, preview_count={PREVIEW})
        so = SplatObject(bpy.context.active_object)
        RESULT = dict(r=list(r), n=so.count, preview=so.is_preview, bg=bpy.app.background)
    """)
    assert res == {"r": ["FINISHED"], "n": N, "preview": False, "bg": True}


def test_bad_files_leave_nothing(run_bpy, exgs_files, tmp_path):
    data = open(exgs_files["cur"], "rb").read()
    trunc = tmp_path / "trunc.exgs"
    trunc.write_bytes(data[:len(data) // 2])
    flip = tmp_path / "flip.exgs"
    flip.write_bytes(data[:-200] + bytes([data[-200] ^ 0xFF]) + data[-199:])  # last chunk
    gone = tmp_path / "gone.exgs"
    gone.write_bytes(data)
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import io_import, progressive
        from bl_ext.user_default.exgs.splat import SplatObject
        before = [len(bpy.data.objects), len(bpy.data.meshes)]
        out = {{}}
        for p, count in (({str(trunc)!r}, 0), ({str(trunc)!r}, {PREVIEW}), ({str(flip)!r}, 0)):
            try:
                io_import.import_file(bpy.context, p, preview_count=count)
                out[f"{{p}}|{{count}}"] = "imported"
            except Exception as e:
                out[f"{{p}}|{{count}}"] = str(e)
        try:
            bpy.ops.exgs.import_splats(filepath={str(trunc)!r})
            op = "finished"
        except RuntimeError as e:
            op = str(e)
        left = [len(bpy.data.objects) - before[0], len(bpy.data.meshes) - before[1]]
        # a preview whose file is corrupted before "Load full": one line, the preview stays
        obj, _ = io_import.import_file(bpy.context, {str(flip)!r}, preview_count=4096)
        n_pre = SplatObject(obj).count
        try:
            progressive.load_full(obj)
            late = "loaded"
        except Exception as e:
            late = str(e)
        obj2, _ = io_import.import_file(bpy.context, {str(gone)!r}, preview_count=4096)
        os.unlink({str(gone)!r})
        try:
            progressive.load_full(obj2)
            missing = "loaded"
        except Exception as e:
            missing = str(e)
        RESULT = dict(out=out, op=op, left=left, n_pre=n_pre, late=late, missing=missing,
                      after=[SplatObject(obj).count, len(bpy.data.meshes) - before[1],
                             SplatObject(obj2).is_preview])
    """)
    for key, msg in res["out"].items():
        p = key.split("|")[0]
        assert msg != "imported" and "\n" not in msg and os.path.basename(p) in msg, msg
    assert "trunc.exgs" in res["op"] and "\n" not in res["op"].strip()
    assert res["left"] == [0, 0]
    # the first chunk is intact, so a 4096 preview of the corrupted file imports ...
    assert res["n_pre"] == 4096
    assert "flip.exgs" in res["late"] and "checksum" in res["late"], res["late"]
    assert "gone.exgs" in res["missing"] and "no such file" in res["missing"]
    assert res["after"] == [4096, 2, True]  # ... and stays, with no half-loaded mesh


def _psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def test_f12_of_a_preview_renders_the_whole_file(run_bpy, tmp_path):
    """F12 of a preview object = F12 after Load Full Resolution, and ≠ F12 of the preview's
    own Gaussians imported as a plain object (the local backend, started by the add-on)."""
    from bpy_helpers import RENDER_PASS, SETUP_CAMERA
    from exgs.io.exgs_format import encode_exgs, read_exgs_scene
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    scene = demo_scene(12000, sh_degree=0, seed=7)
    src, pre_ply = tmp_path / "big.exgs", tmp_path / "prefix.ply"
    src.write_bytes(encode_exgs(scene, source={"gaussians": 12000}))
    write_ply(read_exgs_scene(src, keep=4096), pre_ply)
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import, progressive
        from bl_ext.user_default.exgs.splat import SplatObject
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {str(src)!r}, preview_count=4096)
        add_camera(loc=(0.3, -6.5, 1.6), rot=(1.35, 0, 0.05), lens=35, size=(96, 64))
        sc = bpy.context.scene
        sc.render.engine = "EXGS"
        sc.render.film_transparent = True
        n_pre = SplatObject(obj).count
        a = render_pass("Image")
        progressive.load_full(obj)
        n_full = SplatObject(obj).count
        b = render_pass("Image")
        obj.hide_render = True
        plain, _ = io_import.import_file(bpy.context, {str(pre_ply)!r})
        c = render_pass("Image")
        RESULT = dict(n=[n_pre, n_full, SplatObject(plain).count], a=a.tolist(),
                      b=b.tolist(), c=c.tolist())
    """, timeout=300)
    assert res["n"] == [4096, 12000, 4096]
    a, b, c = (np.asarray(res[k]) for k in "abc")
    assert a[..., 3].max() > 0.5  # the scene is in view
    assert _psnr(a, b) >= 50.0
    assert _psnr(a, c) < _psnr(a, b) - 10  # the preview mesh alone renders visibly less


def test_opening_a_file_cancels_loaders_and_disable_cleans_up(run_bpy, exgs_files):
    path = exgs_files["cur"]
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import backend, io_import, progressive
        obj, _ = io_import.import_file(bpy.context, {path!r}, preview_count={PREVIEW})
        cached = backend.convert_plan({path!r})[1]
        if os.path.exists(cached):  # converted by an earlier test: convert again
            os.unlink(cached)
        ld = progressive.Loader(obj.name)   # conversion child process running
        proc = ld.proc
        progressive.LOADERS[obj.name] = ld
        bpy.ops.wm.read_homefile(use_empty=True)
        state = [ld.state, ld.proc is None, proc is not None and proc.poll() is not None,
                 len(progressive.LOADERS)]
        import addon_utils
        addon_utils.disable(MOD, default_set=True)
        names = [getattr(h, "__name__", "") for h in bpy.app.handlers.load_pre]
        RESULT = dict(state=state, handlers=names)
    """)
    assert res["state"] == ["cancelled", True, True, 0]
    assert "_on_load_pre" not in res["handlers"]


def test_sidebar_rows_of_a_preview(run_bpy, exgs_files):
    """The sidebar's preview rows (drawn into a recording stand-in layout): loaded / total,
    Load Full when idle, progress + cancel while loading, the error after a failure."""
    path = exgs_files["cur"]
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import gaussians, io_import, progressive
        from bl_ext.user_default.exgs.ui import panel
        class Rec:
            def __init__(self, log): self.log = log
            def label(self, text="", icon="NONE"): self.log.append(("label", text, icon))
            def operator(self, op, text="", icon="NONE"): self.log.append(("op", op, icon))
            def row(self, align=False): return self
        obj, _ = io_import.import_file(bpy.context, {path!r}, preview_count={PREVIEW})
        def draw():
            log = []
            panel._progressive_rows(Rec(log), obj, gaussians.object_stats(obj))
            return log
        idle = draw()
        ld = progressive.Loader(obj.name)
        progressive.LOADERS[obj.name] = ld
        busy = draw()
        ld.cancel()
        cancelled = draw()
        ld.state, ld.error = "failed", "scene.exgs: chunk 2 checksum mismatch"
        RESULT = dict(idle=idle, busy=busy, cancelled=cancelled, after=draw(),
                      polls=[bpy.ops.exgs.load_full.poll(), bpy.ops.exgs.cancel_load.poll()])
        bpy.context.view_layer.objects.active = obj
        RESULT["polls"] = [bpy.ops.exgs.load_full.poll(), bpy.ops.exgs.cancel_load.poll()]
    """)
    assert res["idle"][0][1].startswith(f"preview: {PREVIEW:,} of {N:,} loaded (50 %)")
    assert res["idle"][-1][:2] == ["op", "exgs.load_full"]
    assert any(r[0] == "label" and r[1].startswith("loading full resolution") for r in
               res["busy"]) and ["op", "exgs.cancel_load", "CANCEL"] in res["busy"]
    assert res["cancelled"] == res["idle"]  # a cancel is no error
    assert ["label", "scene.exgs: chunk 2 checksum mismatch", "ERROR"] in res["after"]
    assert res["after"][-1][:2] == ["op", "exgs.load_full"]
    assert res["polls"] == [True, False]
