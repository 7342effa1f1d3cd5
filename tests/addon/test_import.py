"""Import: count, every attribute, axis change, preview, .blend round trip, PLY write-back."""

import numpy as np
import pytest


def test_import_attributes_axis_and_roundtrip(run_bpy, small_ply, tmp_path):
    path, scene = small_ply
    blend = str(tmp_path / "s.blend")
    res = run_bpy(f"""
        import numpy as np
        from bl_ext.user_default.exgs import io_import, gaussians, render_core, plyio
        obj, secs = io_import.import_file(bpy.context, {path!r})
        me = obj.data
        names = sorted(a.name for a in me.attributes if a.domain == "POINT")
        v = gaussians.read_struct(me)
        mw = [list(r) for r in obj.matrix_world]
        mods = [m.type for m in obj.modifiers]
        bpy.ops.wm.save_as_mainfile(filepath={blend!r})
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.wm.open_mainfile(filepath={blend!r})
        obj2 = bpy.data.objects[obj.name if False else "scene"]
        v2 = gaussians.read_struct(obj2.data)
        ply, digest, n = render_core.export_mesh_ply(obj2.data)
        back = plyio.read_vertices(ply)
        RESULT = dict(count=len(me.vertices) if False else n, names=names, mw=mw, mods=mods,
                      same=bool(np.array_equal(v, v2)), digest=digest,
                      fields=list(back.dtype.names),
                      dc=np.asarray(back["f_dc_0"][:5]).tolist(),
                      rest=np.asarray(back["f_rest_8"][:5]).tolist(),
                      rot=np.asarray(back["rot_3"][:5]).tolist(),
                      xyz=np.stack([back["x"], back["y"], back["z"]], 1)[:5].tolist(),
                      props=dict(src=obj2.data["exgs_source"], n=obj2.data["exgs_count"],
                                 size=obj2.data["exgs_source_bytes"]))
    """)
    n = len(scene)
    assert res["count"] == n
    for name in ["f_dc_0", "f_dc_2", "f_rest_0", "f_rest_8", "opacity", "scale_2", "rot_3",
                 "exgs_color", "exgs_radius"]:
        assert name in res["names"]
    assert "NODES" in res["mods"]
    # Y-down capture → Z-up: capture (x, y, z) ↦ (x, z, −y)
    np.testing.assert_allclose(np.array(res["mw"]),
                               [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], atol=1e-6)
    assert res["same"]
    np.testing.assert_array_equal(res["dc"], scene.sh[:5, 0, 0])
    # f_rest is channel-major: f_rest_8 = channel 2, coefficient 3 (K-1 = 3)
    np.testing.assert_array_equal(res["rest"], scene.sh[:5, 3, 2])
    np.testing.assert_array_equal(res["rot"], scene.quats[:5, 3])
    np.testing.assert_array_equal(res["xyz"], scene.means[:5])
    assert res["props"]["n"] == n and res["props"]["src"] == path
    import os
    assert res["props"]["size"] == os.path.getsize(path)


def test_spz_import_via_backend_convert_and_bad_file(run_bpy, small_ply, tmp_path):
    from exgs.io.compressed_ply import write_compressed_ply
    from exgs.io.sog import write_sog
    from exgs.io.spz import write_spz

    _, scene = small_ply
    spz = str(tmp_path / "s.spz")
    write_spz(scene, spz)
    cply, sog = str(tmp_path / "c.ply"), str(tmp_path / "s.sog")
    write_compressed_ply(scene, cply)
    write_sog(scene, sog)
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n")
    res = run_bpy(f"""
        import numpy as np
        from bl_ext.user_default.exgs import io_import, gaussians
        obj, _ = io_import.import_file(bpy.context, {spz!r})
        v = gaussians.read_struct(obj.data)
        xyz = np.stack([v["x"], v["y"], v["z"]], 1)
        try:
            r, msg = list(bpy.ops.exgs.import_splats(filepath={str(bad)!r})), ""
        except RuntimeError as e:  # background bpy turns an ERROR report into an exception
            r, msg = ["CANCELLED"], str(e)
        others = {{}}
        for p in ({cply!r}, {sog!r}):
            o, _ = io_import.import_file(bpy.context, p)
            others[o.data["exgs_format"]] = len(o.data.vertices)
        RESULT = dict(n=len(v), fmt=obj.data["exgs_format"], xyz=xyz.tolist(), r=r, msg=msg,
                      others=others)
    """)
    assert res["n"] == len(scene) and res["fmt"] == "spz"
    assert res["others"] == {"compressed ply": len(scene), "sog": len(scene)}
    np.testing.assert_allclose(np.array(res["xyz"]), scene.means, atol=2e-2)
    assert res["r"] == ["CANCELLED"]
    assert "bad.ply: not a 3DGS PLY: missing properties" in res["msg"]
    assert len(res["msg"].strip().splitlines()) == 1
    assert "Traceback" not in run_bpy.last.stdout + run_bpy.last.stderr


def test_viewport_preview_renders_in_workbench_eevee_cycles(run_bpy, small_ply):
    from bpy_helpers import RENDER_PASS, SETUP_CAMERA

    path, _ = small_ply
    res = run_bpy(helpers=RENDER_PASS + SETUP_CAMERA, code=f"""
        from bl_ext.user_default.exgs import io_import
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {path!r})
        # the synthetic cloud sits at capture z≈3 → Blender y≈3 after the axis change
        add_camera(loc=(0, -3.0, 0), rot=(1.5707963, 0, 0), lens=30, size=(32, 24))
        sc = bpy.context.scene
        sc.render.film_transparent = True
        cover = {{}}
        for eng in ("BLENDER_WORKBENCH", "BLENDER_EEVEE_NEXT", "BLENDER_EEVEE", "CYCLES"):
            if eng.startswith("BLENDER_EEVEE") and bpy.app.version < (4, 3, 0):
                continue  # 4.2's Eevee Next compiles shaders for ~1 min on a CPU-only box
            try:
                sc.render.engine = eng
            except TypeError:
                continue
            if eng == "CYCLES":
                sc.cycles.samples = 1
                sc.cycles.device = "CPU"
            img = render_pass("Image")
            cover[eng] = [float((img[..., 3] > 0.5).mean()), float(img[..., :3].max())]
        RESULT = cover
    """, timeout=180)
    assert "BLENDER_WORKBENCH" in res and "CYCLES" in res
    import os
    if "bpy42" not in os.environ.get("EXGS_BPY_PYTHON", ""):
        assert any(k.startswith("BLENDER_EEVEE") for k in res)
    for eng, (cov, peak) in res.items():
        assert cov > 0.01 and peak > 0.05, (eng, cov, peak)


def test_export_ply_and_spz(run_bpy, small_ply, tmp_path):
    from exgs.io import read_scene

    path, scene = small_ply
    out_ply, out_spz = str(tmp_path / "out.ply"), str(tmp_path / "out.spz")
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import io_import
        obj, _ = io_import.import_file(bpy.context, {path!r})
        bpy.context.view_layer.objects.active = obj
        r1 = list(bpy.ops.exgs.export_splats(filepath={out_ply!r}, format=".ply"))
        r2 = list(bpy.ops.exgs.export_splats(filepath={out_spz!r}, format=".spz"))
        try:
            bpy.ops.exgs.export_splats(filepath={str(tmp_path / "x.exgs")!r}, format=".exgs")
            msg = ""
        except RuntimeError as e:
            msg = str(e)
        RESULT = dict(r=[r1, r2], msg=msg)
    """)
    assert res["r"] == [["FINISHED"], ["FINISHED"]]
    assert "compress the object first" in res["msg"]
    back = read_scene(out_ply)
    np.testing.assert_array_equal(back.sh, scene.sh)
    np.testing.assert_array_equal(back.quats, scene.quats)
    spz = read_scene(out_spz)
    assert len(spz) == len(scene)
    np.testing.assert_allclose(spz.means, scene.means, atol=2e-2)


def test_export_web_formats_and_gltf_import_axis(run_bpy, small_ply, tmp_path):
    """Export offers SOG v2, .splat and glTF (converted by the backend); importing the .glb
    back picks glTF's y-up axes by itself (AUTO), every other format stays y-down."""
    from exgs.io import read_scene

    path, scene = small_ply
    outs = {f: str(tmp_path / f"out{f}") for f in (".sog", ".splat", ".glb")}
    res = run_bpy(f"""
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.splat import SplatObject
        obj, _ = io_import.import_file(bpy.context, {path!r})
        bpy.context.view_layer.objects.active = obj
        outs = {outs!r}
        r = [list(bpy.ops.exgs.export_splats(filepath=p, format=f)) for f, p in outs.items()]
        glb, _ = io_import.import_file(bpy.context, outs[".glb"])
        RESULT = dict(r=r, axes=[SplatObject(obj).axis, SplatObject(glb).axis],
                      n=len(glb.data.vertices))
    """)
    assert res["r"] == [["FINISHED"]] * 3
    assert res["axes"] == ["Y_DOWN", "Y_UP"] and res["n"] == len(scene)
    for f, p in outs.items():
        back = read_scene(p)
        assert len(back) == len(scene), f


def test_panels_draw_without_errors(run_bpy, small_ply):
    """Smoke: the sidebar, render and preferences panels draw for a splat object (a recording
    stand-in for UILayout; catches wrong property names)."""
    path, _ = small_ply
    res = run_bpy(f"""
        from types import SimpleNamespace
        from bl_ext.user_default.exgs import io_import, preferences
        from bl_ext.user_default.exgs.ui.panel import EXGS_PT_sidebar
        from bl_ext.user_default.exgs.engine import EXGS_PT_render
        calls = []
        class L:
            def __getattr__(self, name):
                def f(*a, **k):
                    if name == "prop":
                        getattr(a[0], a[1])  # the property must exist
                    calls.append((name, k.get("text", a[1] if len(a) > 1 and isinstance(a[1], str) else "")))
                    return L()
                return f
        obj, _ = io_import.import_file(bpy.context, {path!r})
        ctx = SimpleNamespace(active_object=obj, scene=bpy.context.scene,
                              view_layer=bpy.context.view_layer, engine="EXGS")
        EXGS_PT_sidebar.draw(SimpleNamespace(layout=L()), ctx)
        EXGS_PT_render.draw(SimpleNamespace(layout=L()), ctx)
        prefs = bpy.context.preferences.addons[MOD].preferences
        class P:  # the real preferences, drawn into the recording layout
            layout = L()
            def __getattr__(self, name):
                return getattr(prefs, name)
        preferences.ExgsPreferences.draw(P(), ctx)
        RESULT = [c[1] for c in calls]
    """)
    joined = " | ".join(map(str, res))
    assert "500 Gaussians, SH degree 1" in joined
    assert "Compress (UGC)" in joined and "python_path" in joined


def test_exgs_import_keeps_kept_fraction_and_painter_delta(run_bpy, tmp_path):
    """Importing a .exgs (compressed elsewhere) puts its kept fraction and painter delta on
    the mesh, so Blender restore renders use them like `exgs render --restore`."""
    import base64

    from exgs.io.exgs_format import DELTA_SECTION, attach_sections
    from exgs.synth import random_scene
    from exgs.ugc import compress

    scene = random_scene(3000, seed=5)
    res = compress(scene, keep_target=0.1, zstd_level=1, device="cpu", views=4, view_size=(64, 48))
    from exgs.painter.delta import encode_delta

    delta = encode_delta("last", [("gate_head.net.4.bias", "diff", np.array([0.25], np.float32))],
                         base="0123456789abcdef")
    path = str(tmp_path / "d.exgs")
    with open(path, "wb") as f:
        f.write(attach_sections(res.data, {DELTA_SECTION: delta}))
    out = run_bpy(f"""
        import base64
        from bl_ext.user_default.exgs import io_import
        from bl_ext.user_default.exgs.splat import SplatObject
        obj, _ = io_import.import_file(bpy.context, {path!r})
        so = SplatObject(obj)
        RESULT = dict(n=so.count, kept=so.kept_fraction, fmt=so.format,
                      delta=base64.b64encode(so.painter_delta).decode())
    """)
    assert out["fmt"] == "exgs" and out["n"] == len(res.scene)
    assert abs(out["kept"] - len(res.scene) / len(scene)) < 1e-6
    assert base64.b64decode(out["delta"]) == delta


def test_refined_exgs_import_marks_the_mesh_refined(run_bpy, tmp_path):
    """A .exgs whose header records refinement (issue 10) marks the mesh ``refined``, and the
    render items carry it (GaussPainter's refined gate table); a training-free one does not."""
    from exgs.io.exgs import decode_header, encode_exgs
    from exgs.synth import random_scene
    from exgs.ugc import compress

    scene = random_scene(2000, seed=6)
    res = compress(scene, keep_target=0.1, zstd_level=1, device="cpu", views=2, view_size=(32, 24))
    h = decode_header(res.data)  # the header exgs.ugc.refine_file.refine_result writes
    refined = encode_exgs(res.scene, zstd_level=1, source=h["source"],
                          settings=dict(h["settings"], refine={"steps": 1, "chosen": "end"}),
                          stats=dict(h["stats"], refined=True))
    paths = {}
    for name, data in (("free", res.data), ("refined", refined)):
        paths[name] = str(tmp_path / f"{name}.exgs")
        with open(paths[name], "wb") as f:
            f.write(data)
    out = run_bpy(f"""
        from bl_ext.user_default.exgs import io_import, render_core
        from bl_ext.user_default.exgs.splat import SplatObject
        RESULT = {{}}
        for name, path in {paths!r}.items():
            obj, _ = io_import.import_file(bpy.context, path)
            RESULT[name] = SplatObject(obj).refined
        dg = bpy.context.evaluated_depsgraph_get()
        RESULT["items"] = sorted(it.refined for it in render_core.gather(dg))
    """)
    assert out == {"free": False, "refined": True, "items": [False, True]}


def test_compress_stats_mark_a_refined_result(run_bpy):
    """The compress job's stats say whether the file was refined (its ``refine`` report,
    not switched off): the mesh gets ``refined`` like an imported refined .exgs."""
    out = run_bpy("""
        from bl_ext.user_default.exgs.splat import SplatObject
        me = bpy.data.meshes.new("m")
        me["exgs_layout"] = [["x", "<f4"]]
        so = SplatObject(me)
        RESULT = []
        for stats in ({"kept_fraction": 0.1, "refine": {"switched_off": False, "steps": 9}},
                      {"kept_fraction": 0.1, "refine": {"switched_off": True}},
                      {"kept_fraction": 0.1}):
            so.set_stats(stats)
            RESULT.append([so.refined, so.kept_fraction])
    """)
    assert out == [[True, 0.1], [False, 0.1], [False, 0.1]]
