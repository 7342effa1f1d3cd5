"""Add-on benchmark: import time (125k shared PLAYBOT scene, synthetic 500k) and the ExGS
engine's per-frame overhead against the backend's direct render of the same camera.

    .venv/bin/python bench/addon.py [--frames 5] [--size 512]

bpy runs in a subprocess (the add-on installed from a freshly built zip into a temp HOME);
the engine comparison starts a real `exgs serve`. Prints a table, writes
bench/results/addon.json. Timings on a shared machine are inflated by other load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blender_env import install_extension, sh  # noqa: E402
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "scenes", "playbot_lod2.ply")


def bpy_run(home, code, bpy_python=PY, **env):
    e = dict(os.environ, HOME=home, EXGS_PYTHON=PY, EXGS_CACHE_DIR=os.path.join(home, "cache"))
    e.update(env)
    pre = ("import bpy, json, time, addon_utils, importlib\n"
           "addon_utils.enable('bl_ext.user_default.exgs', default_set=True)\n")
    out = sh([bpy_python, "-c", pre + textwrap.dedent(code)], env=e, timeout=1800)
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bpy-python", default=PY)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="exgs-bench-addon-")
    home = install_extension(tmp, args.bpy_python)
    synth = os.path.join(tmp, "synth500k.ply")
    sh([PY, "-c", "from exgs.synth import random_scene; from exgs.io.ply import write_ply; "
        f"write_ply(random_scene(500_000, sh_degree=3, seed=1), {synth!r})"])
    results = {"machine": "shared (≈7 engineers on 2 CPU cores); timings inflated",
               "import": {}, "engine": None}
    scenes = [("playbot_lod2 (125k, SH2)", SHARED), ("synthetic 500k (SH3)", synth)]
    for label, path in scenes:
        if not os.path.exists(path):
            continue
        r = bpy_run(home, f"""
            from bl_ext.user_default.exgs import io_import
            ts = []
            for i in range({args.repeats}):
                bpy.ops.wm.read_homefile(use_empty=True)
                obj, secs = io_import.import_file(bpy.context, {path!r})
                ts.append(secs)
            n = len(obj.data.vertices)
            t0 = time.perf_counter()
            from bl_ext.user_default.exgs import render_core
            render_core.export_mesh_ply(obj.data)
            exp = time.perf_counter() - t0
            print(json.dumps(dict(n=n, times=ts, export=exp, attrs=len(obj.data.attributes))))
        """, bpy_python=args.bpy_python)
        results["import"][label] = {"count": r["n"], "attributes": r["attrs"],
                                    "median_s": statistics.median(r["times"]),
                                    "runs_s": r["times"], "write_back_ply_s": r["export"]}
    try:
        results["engine"] = engine_overhead(home, tmp, args)
    except SystemExit as e:
        results["engine"] = {"error": str(e)[-500:]}
    print(f"{'scene':32s} {'N':>8s} {'import s':>9s} {'write-back s':>13s}")
    for label, r in results["import"].items():
        print(f"{label:32s} {r['count']:8d} {r['median_s']:9.2f} {r['write_back_ply_s']:13.2f}")
    if results["engine"] and "error" not in results["engine"]:
        e = results["engine"]
        print(f"engine per frame {e['engine_median_s']:.3f} s vs direct {e['direct_median_s']:.3f} s "
              f"({e['overhead_pct']:+.1f} %) at {args.size}², {e['count']} Gaussians")
        print("  per-frame parts (median s):", {k: round(v, 3) for k, v in
                                               e["breakdown_median_s"].items()})
    elif results["engine"]:
        print("engine:", results["engine"]["error"])
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "addon.json"), "w") as f:
        json.dump(results, f, indent=1)


def engine_overhead(home, tmp, args):
    """F12 of the ExGS engine (per frame, connection already warm) vs exgs.render directly."""
    path = SHARED if os.path.exists(SHARED) else None
    if path is None:
        raise SystemExit("shared scene missing")
    r = bpy_run(home, f"""
        from bl_ext.user_default.exgs import io_import, backend
        bpy.ops.wm.read_homefile(use_empty=True)
        obj, _ = io_import.import_file(bpy.context, {path!r})
        sc = bpy.context.scene
        cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
        sc.collection.objects.link(cam); sc.camera = cam
        import numpy as np
        from mathutils import Matrix, Vector
        co = np.empty(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3)
        lo, hi = np.percentile(co, 2, 0), np.percentile(co, 98, 0)
        c = obj.matrix_world @ Vector(((lo + hi) / 2).tolist())
        r = float(np.linalg.norm(hi - lo)) / 2
        cam.location = c + Vector((0, -2.2 * r, 0.3 * r))
        cam.rotation_euler = (1.45, 0, 0)
        sc.render.engine = "EXGS"
        sc.render.resolution_x = sc.render.resolution_y = {args.size}
        sc.render.resolution_percentage = 100
        ts = []
        for i in range({args.frames} + 1):  # the first one starts the server and opens the scene
            t0 = time.perf_counter(); bpy.ops.render.render(); ts.append(time.perf_counter() - t0)
        from bl_ext.user_default.exgs import render_core, conventions
        camd = render_core.blender_camera(sc, cam)
        camd["object_matrix_world"] = render_core._mat(obj.matrix_world)
        parts = dict(gather=[], service=[], convert=[])
        dg = bpy.context.evaluated_depsgraph_get()
        for i in range({args.frames}):  # where the time goes (same work as one F12)
            t0 = time.perf_counter(); items = render_core.gather(dg); t1 = time.perf_counter()
            conn = backend.connection(); sid = conn.scene_for(items[0].ply_path, items[0].digest)
            t2 = time.perf_counter(); outs = conn.render(sid, [camd]); t3 = time.perf_counter()
            fr = render_core.to_frame(outs); conventions.to_blender_rect(fr.rgb, fr.alpha)
            t4 = time.perf_counter()
            parts["gather"].append(t1 - t0); parts["service"].append(t3 - t2)
            parts["convert"].append(t4 - t3)
        backend.stop_local()
        print(json.dumps(dict(ts=ts[1:], cam=camd, n=len(obj.data.vertices), parts=parts)))
    """, bpy_python=args.bpy_python)
    cam = r["cam"]
    d = sh([PY, "-c", textwrap.dedent(f"""
        import json, time, numpy as np
        from exgs.cameras import camera_from_blender
        from exgs.io import read_scene
        from exgs.render import render
        cam = json.loads({json.dumps(json.dumps(cam))})
        cam.pop("name", None)
        c = camera_from_blender(**cam)
        s = read_scene({path!r})
        ts = []
        for i in range({args.frames} + 1):
            t0 = time.perf_counter(); out = render(s, c); ts.append(time.perf_counter() - t0)
        print(json.dumps(dict(ts=ts[1:], coverage=float((out.alpha > 0.5).mean()))))
    """)]).strip().splitlines()[-1]
    dd = json.loads(d)
    direct = dd["ts"]
    em, dm = statistics.median(r["ts"]), statistics.median(direct)
    return {"count": r["n"], "size": args.size, "alpha_coverage": dd["coverage"],
            "engine_runs_s": r["ts"], "direct_runs_s": direct,
            "engine_median_s": em, "direct_median_s": dm, "overhead_pct": 100 * (em - dm) / dm,
            "breakdown_median_s": {k: statistics.median(v) for k, v in r["parts"].items()}}


if __name__ == "__main__":
    main()
