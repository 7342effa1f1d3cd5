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
