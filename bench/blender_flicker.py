"""Flicker of restored animations rendered THROUGH BLENDER (issue 15, item 5): the ExGS
engine's ``render(animation=True)`` (what ``blender -b shot.blend -a`` runs) against one
``exgs serve``, on a slow camera path.

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/blender_flicker.py \
        [--scenes real:statue_trumpet,proc:1001] [--keeps 0.01,0.03] [--frames 40]
        [--step 1.0] [--size 256]

Per scene (loaded as bench/painter_flicker.py does; real and procedural reported apart): the
path of bench/painter_flicker.py (``--frames`` frames ``--step`` degrees apart), the full
scene written as a PLY, and UGC ``.exgs`` files at each kept fraction (``compress_scene`` with
``keep_target``, significance on 24 orbit views of the object; the file carries its kept
fraction for the painter's gate). A bpy process imports them (z up: the capture frame is
Blender's), keys a camera on the path (OpenCV → Blender axes, lens from fx) and renders
frames 1..N with the ExGS engine, four ways:

* ``full``        — the full scene, no restore (the reference);
* ``unrestored``  — the .exgs, no restore;
* ``per_frame``   — GaussPainter restore, *Stable animation* off (each frame on its own);
* ``stable``      — restore with *Stable animation* (default: 32-frame segments, so the
  range 1..40 holds one restart, at frame 32).

Flicker (:func:`exgs.painter.temporal.flicker`, 0–255) of what Blender wrote (32-bit EXR,
Combined pass = premultiplied scene-linear, transparent film) minus that of ``full``; also
of its display-sRGB encoding. Cost: wall seconds per frame of each mode (``render_post``
handler timestamps; the stable mode's first frame restores its warm-up too) and the mean
PSNR of each sequence against ``full`` (display sRGB); pair by pair, the largest excess over
the unrestored pair and how many pairs exceed it. Writes bench/results/blender_flicker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "backend"))
from blender_env import BPY_HELPERS, install_extension, sh, start_server  # noqa: E402

MODES = ("full", "unrestored", "per_frame", "stable")

BPY = r'''
import bpy, json, os, sys, time, addon_utils
import numpy as np
from mathutils import Matrix
addon_utils.enable("bl_ext.user_default.exgs", default_set=True)
from bl_ext.user_default.exgs import io_import
from bl_ext.user_default.exgs.engine import final
from bl_ext.user_default.exgs.splat import SplatObject
A = json.loads(sys.argv[-1])
bpy.ops.wm.read_homefile(use_empty=True)
full, _ = io_import.import_file(bpy.context, A["full"], axis="Z_UP", preview=False)
comp, _ = io_import.import_file(bpy.context, A["exgs"], axis="Z_UP", preview=False,
                                preview_count=0)
sc = bpy.context.scene
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
sc.collection.objects.link(cam)
sc.camera = cam
cam.data.sensor_fit = "HORIZONTAL"
cam.data.sensor_width = 36.0
cam.data.lens = A["fx"] / A["size"] * 36.0
cam.data.clip_start, cam.data.clip_end = 0.01, 1000.0
flip = Matrix(((1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0), (0, 0, 0, 1)))
for f, m in enumerate(A["c2w"], start=1):
    cam.matrix_world = Matrix(m) @ flip
    cam.keyframe_insert("location", frame=f)
    cam.keyframe_insert("rotation_euler", frame=f)
sc.render.engine = "EXGS"
exr_settings(sc, A["size"])
sc.frame_start, sc.frame_end = 1, A["frames"]
stamps = []
bpy.app.handlers.render_post.append(lambda *a: stamps.append(time.monotonic()))
out = {"kept_fraction": SplatObject(comp).kept_fraction, "seconds": {}}
for mode in ("full", "unrestored", "per_frame", "stable"):
    full.hide_render = mode != "full"
    comp.hide_render = mode == "full"
    sc.exgs_render.restore = mode in ("per_frame", "stable")
    sc.exgs_render.stable = mode == "stable"
    sc.render.filepath = os.path.join(A["out"], mode, "")
    stamps.clear()
    t0 = time.monotonic()
    bpy.ops.render.render(animation=True)
    out["seconds"][mode] = np.diff([t0] + stamps).tolist()
    np.save(os.path.join(A["out"], mode + ".npy"),
            read_exr_frames(os.path.join(A["out"], mode), A["frames"], A["size"]))
out["errors"] = final.ERRORS
print("@@" + json.dumps(out))
'''


def to_display(f: np.ndarray) -> np.ndarray:
    """[H,W,4] premultiplied scene-linear RGBA → [H,W,3] premultiplied display sRGB."""
    a = f[..., 3:4]
    s = np.where(a > 1e-6, f[..., :3] / np.maximum(a, 1e-6), 0.0)
    s = np.clip(s, 0, 1)
    s = np.where(s <= 0.0031308, s * 12.92, 1.055 * s ** (1 / 2.4) - 0.055)
    return (s * a).astype(np.float32)


def prepare(spec: str, keeps, n, step, size, scenes_dir, tmp) -> dict:
    """Full PLY + .exgs per kept fraction + the path (camera-to-world, fx)."""
    from painter_flicker import path_cameras

    from exgs.io.ply import write_ply
    from exgs.painter.data import load_scene, scene_frame, significance_views
    from exgs.pipeline import CompressOptions, compress_scene

    scene = load_scene(spec, scenes_dir)
    frame = scene_frame(spec, scene)
    cams = path_cameras(frame, n, step, size)
    d = os.path.join(tmp, spec.replace(":", "_").replace("+", "_"))
    os.makedirs(d, exist_ok=True)
    full = os.path.join(d, "full.ply")
    write_ply(scene, full)
    files = {}
    for k in keeps:
        res = compress_scene(scene, CompressOptions(keep_target=k, sh_degree=0,
                                                    cameras=significance_views(frame)))
        files[k] = os.path.join(d, f"keep{k:g}.exgs")
        with open(files[k], "wb") as f:
            f.write(bytes(res.data))
    return {"full": full, "exgs": files, "gaussians": len(scene),
            "c2w": [np.linalg.inv(c.world_to_camera).tolist() for c in cams],
            "fx": float(cams[0].fx), "dir": d}


def main(argv=None) -> int:
    from exgs.metrics import psnr
    from exgs.painter.temporal import flicker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="real:statue_trumpet,proc:1001")
    ap.add_argument("--keeps", default="0.01,0.03")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--step", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scenes-dir", default="/work/shared/scenes")
    ap.add_argument("--bpy-python", default=PY)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  "blender_flicker.json"))
    args = ap.parse_args(argv)
    keeps = [float(k) for k in args.keeps.split(",")]
    tmp = tempfile.mkdtemp(prefix="exgs-bench-flicker-")
    home = install_extension(tmp, args.bpy_python)
    srv, url, token_file = start_server(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXGS_")}
    env.update(HOME=home, EXGS_CACHE_DIR=os.path.join(home, "cache"), EXGS_BACKEND_URL=url,
               EXGS_TOKEN_FILE=token_file, EXGS_PYTHON=PY)
    res = {"load_before": list(os.getloadavg()), "frames": args.frames, "step_deg": args.step,
           "size": args.size, "segment": 32, "rows": []}
    try:
        for spec in args.scenes.split(","):
            t0 = time.time()
            prep = prepare(spec, keeps, args.frames, args.step, args.size, args.scenes_dir, tmp)
            for k in keeps:
                out = os.path.join(prep["dir"], f"k{k:g}")
                a = {"full": prep["full"], "exgs": prep["exgs"][k], "c2w": prep["c2w"],
                     "fx": prep["fx"], "size": args.size, "frames": args.frames, "out": out}
                txt = sh([args.bpy_python, "-c", BPY_HELPERS + BPY, "--", json.dumps(a)],
                         env=env)
                info = json.loads([ln for ln in txt.splitlines() if ln.startswith("@@")][-1][2:])
                if info["errors"]:
                    raise SystemExit(f"{spec} {k}: {info['errors']}")
                seq = {m: np.load(os.path.join(out, m + ".npy")) for m in MODES}
                lin = {m: [f[..., :3] for f in s] for m, s in seq.items()}
                disp = {m: [to_display(f) for f in s] for m, s in seq.items()}
                base_l, base_d = flicker(lin["full"]), flicker(disp["full"])
                row = {"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
                       "gaussians": prep["gaussians"], "keep": k,
                       "kept_fraction": info["kept_fraction"],
                       "full_flicker_linear": base_l, "full_flicker_display": base_d,
                       "modes": {}}
                for m in MODES[1:]:
                    sec = info["seconds"][m]
                    row["modes"][m] = {
                        "flicker_linear": flicker(lin[m]) - base_l,
                        "flicker_display": flicker(disp[m]) - base_d,
                        "psnr_display": float(np.mean([psnr(x, y) for x, y in
                                                       zip(disp[m], disp["full"])])),
                        "s_per_frame_median": float(np.median(sec)),
                        "s_first_frame": float(sec[0])}
                pu = np.array([flicker(lin["unrestored"][t - 1:t + 1])
                               for t in range(1, args.frames)])
                for m in ("per_frame", "stable"):  # pair by pair: where it exceeds
                    pm = np.array([flicker(lin[m][t - 1:t + 1]) for t in range(1, args.frames)])
                    row["modes"][m]["max_pair_excess_linear"] = float((pm - pu).max())
                    row["modes"][m]["pairs_above_unrestored"] = int((pm > pu + 1e-4).sum())
                row["full_s_per_frame_median"] = float(np.median(info["seconds"]["full"]))
                row["load_after"] = list(os.getloadavg())
                res["rows"].append(row)
                print(json.dumps(row), flush=True)
            print(f"{spec}: {time.time() - t0:.0f} s", flush=True)
            res["load_after"] = list(os.getloadavg())
            with open(args.out + ".part", "w") as f:
                json.dump(res, f, indent=1)
            os.replace(args.out + ".part", args.out)
    finally:
        srv.terminate()
        srv.wait(30)
    print("\n| scene | kept | flicker − full, linear: unrestored / per-frame / stable | "
          "display: unrestored / per-frame / stable | PSNR display u / p / s | s/frame "
          "u / p / s (stable 1st) |")
    print("|---|---|---|---|---|---|")
    for kind in ("real", "proc"):
        for r in [r for r in res["rows"] if r["kind"] == kind]:
            m = r["modes"]
            f = lambda key, fmt: " / ".join(format(m[x][key], fmt) for x in MODES[1:])  # noqa
            print(f"| {r['scene']} | {r['keep']:.0%} | {f('flicker_linear', '+.3f')} | "
                  f"{f('flicker_display', '+.3f')} | {f('psnr_display', '.2f')} | "
                  f"{f('s_per_frame_median', '.2f')} ({m['stable']['s_first_frame']:.1f}) |")
    print(f"load average before {res['load_before']}, after {res.get('load_after')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
