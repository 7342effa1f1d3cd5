"""*Fit to shot* end to end in Blender: the add-on's Compress operator with and without the
scene camera's shot, then the ExGS engine renders the shot (what an artist does).

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/blender_shot.py \
        [--scenes real:statue_st_peter,real:statue_trumpet] [--ratio 300] [--frames 32]
        [--size 256] [--refine 0]

Per scene (loaded as the painter benches do): the full scene written as a PLY and imported
into Blender *with the capture's axis conversion* (``Y_DOWN``: the object gets a rotation,
and it is moved by (0.3, −0.2, 0.5)), so the shot's cameras must be carried into the
object's own frame. The camera is keyed along ``bench/shot.py``'s close-up path (expressed
in Blender's world through the object's matrix); the frame range is 1..``--frames``.
``bpy.ops.exgs.compress`` runs twice from the full object — ``fit_shot=True`` (the default:
16 frames of the range, evenly spread) and ``fit_shot=False`` — at ``--ratio`` (the add-on's
ratio: of the exported PLY), training-free unless ``--refine S`` (both with the same
budget; wall-clock budgets make two refinements differ a little). The ExGS engine then
renders the animation of each object alone (no restoration), and PSNR against the full
object's frames (display sRGB, premultiplied over black) is reported on the frames *not*
given to the compressor. Writes bench/results/blender_shot.json.
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

BPY = r'''
import bpy, json, os, sys, time, addon_utils
import numpy as np
from mathutils import Matrix, Vector
addon_utils.enable("bl_ext.user_default.exgs", default_set=True)
from bl_ext.user_default.exgs import io_import, render_core
from bl_ext.user_default.exgs.engine import final
A = json.loads(sys.argv[-1])
bpy.ops.wm.read_homefile(use_empty=True)
sc = bpy.context.scene
full, _ = io_import.import_file(bpy.context, A["full"], axis="Y_DOWN", preview=False)
full.location = full.location + Vector((0.3, -0.2, 0.5))
bpy.context.view_layer.update()
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
sc.collection.objects.link(cam)
sc.camera = cam
cam.data.sensor_fit = "HORIZONTAL"
cam.data.sensor_width = 36.0
cam.data.lens = A["fx"] / A["size"] * 36.0
cam.data.clip_start, cam.data.clip_end = 0.01, 1000.0
flip = Matrix(((1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0), (0, 0, 0, 1)))
for f, m in enumerate(A["c2w"], start=1):  # the path is in the capture's frame
    cam.matrix_world = full.matrix_world @ Matrix(m) @ flip
    cam.keyframe_insert("location", frame=f)
    cam.keyframe_insert("rotation_euler", frame=f)
sc.frame_start, sc.frame_end = 1, A["frames"]
sc.render.resolution_x = sc.render.resolution_y = A["size"]
sc.render.resolution_percentage = 100
out = {"shot_frames": render_core.shot_frame_numbers(1, A["frames"]), "seconds": {}}
objs = {"full": full}
for name, fit in (("fitted", True), ("plain", False)):
    bpy.context.view_layer.objects.active = full
    for o in bpy.context.selected_objects:
        o.select_set(False)
    full.hide_set(False); full.hide_render = False
    t0 = time.monotonic()
    r = bpy.ops.exgs.compress(mode="RATIO", ratio=A["ratio"], refine=A["refine"] > 0,
                              refine_seconds=max(A["refine"], 1.0), fit_shot=fit)
    out["seconds"][name] = time.monotonic() - t0
    objs[name] = bpy.context.view_layer.objects.active
    out[name + "_count"] = len(objs[name].data.vertices)
    out[name + "_bytes"] = objs[name].data["exgs_source_bytes"]
sc.render.engine = "EXGS"
sc.exgs_render.restore = False
exr_settings(sc, A["size"])
for name, o in objs.items():
    for other in objs.values():
        other.hide_render = other is not o
    sc.render.filepath = os.path.join(A["out"], name, "")
    bpy.ops.render.render(animation=True)
    np.save(os.path.join(A["out"], name + ".npy"),
            read_exr_frames(os.path.join(A["out"], name), A["frames"], A["size"]))
out["errors"] = final.ERRORS
print("@@" + json.dumps(out))
'''


def prepare(spec: str, frames: int, size: int, scenes_dir: str, tmp: str) -> dict:
    from shot import shot_path

    from exgs.io.ply import write_ply
    from exgs.painter.data import load_scene, scene_frame

    scene = load_scene(spec, scenes_dir)
    frame = scene_frame(spec, scene)
    cams = shot_path(frame, "closeup", frames, size)
    d = os.path.join(tmp, spec.replace(":", "_").replace("+", "_"))
    os.makedirs(d, exist_ok=True)
    full = os.path.join(d, "full.ply")
    write_ply(scene, full)
    return {"full": full, "gaussians": len(scene), "dir": d, "fx": float(cams[0].fx),
            "c2w": [np.linalg.inv(c.world_to_camera).tolist() for c in cams]}


def main(argv=None) -> int:
    from blender_flicker import to_display

    from exgs.metrics import psnr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="real:statue_st_peter,real:statue_trumpet")
    ap.add_argument("--ratio", type=float, default=300.0)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--refine", type=float, default=0.0, metavar="SECONDS")
    ap.add_argument("--scenes-dir", default="/work/shared/scenes")
    ap.add_argument("--bpy-python", default=PY)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "blender_shot.json"))
    args = ap.parse_args(argv)
    if args.frames < 2 * 16:
        ap.error("--frames must be ≥ 32: the add-on fits to 16 frames of the range and the "
                 "frames between them measure it")
    tmp = tempfile.mkdtemp(prefix="exgs-bench-shot-")
    home = install_extension(tmp, args.bpy_python)
    srv, url, token_file = start_server(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXGS_")}
    env.update(HOME=home, EXGS_CACHE_DIR=os.path.join(home, "cache"), EXGS_BACKEND_URL=url,
               EXGS_TOKEN_FILE=token_file, EXGS_PYTHON=PY)
    res = {"load_before": list(os.getloadavg()), "args": vars(args), "rows": []}
    try:
        for spec in args.scenes.split(","):
            prep = prepare(spec, args.frames, args.size, args.scenes_dir, tmp)
            out = os.path.join(prep["dir"], "frames")
            a = {"full": prep["full"], "c2w": prep["c2w"], "fx": prep["fx"], "size": args.size,
                 "frames": args.frames, "out": out, "ratio": args.ratio,
                 "refine": args.refine}
            txt = sh([args.bpy_python, "-c", BPY_HELPERS + BPY, "--", json.dumps(a)],
                     env=env)
            info = json.loads([ln for ln in txt.splitlines() if ln.startswith("@@")][-1][2:])
            if info["errors"]:
                raise SystemExit(f"{spec}: {info['errors']}")
            seq = {m: [to_display(f) for f in np.load(os.path.join(out, m + ".npy"))]
                   for m in ("full", "fitted", "plain")}
            given = set(info["shot_frames"])
            held = [f for f in range(1, args.frames + 1) if f not in given]
            row = {"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
                   "gaussians": prep["gaussians"], "held_out_frames": held,
                   "load_after": list(os.getloadavg())}
            for m in ("fitted", "plain"):
                row[m] = {"kept": info[m + "_count"], "file_bytes": info[m + "_bytes"],
                          "compress_seconds": info["seconds"][m],
                          "held_out_psnr": float(np.mean([psnr(seq[m][f - 1], seq["full"][f - 1])
                                                          for f in held])),
                          "given_psnr": float(np.mean([psnr(seq[m][f - 1], seq["full"][f - 1])
                                                       for f in sorted(given)]))}
            res["rows"].append(row)
            pl = row["plain"]
            print(f"{spec:26s} plain {pl['held_out_psnr']:.2f} dB ({pl['kept']:,} kept,"
                  f" {row['plain']['file_bytes']:,} B) → fitted "
                  f"{row['fitted']['held_out_psnr']:.2f} dB ({row['fitted']['kept']:,} kept, "
                  f"{row['fitted']['file_bytes']:,} B) on {len(held)} frames never given; "
                  f"compress {row['plain']['compress_seconds']:.0f} / "
                  f"{row['fitted']['compress_seconds']:.0f} s", flush=True)
            res["load_after"] = list(os.getloadavg())
            with open(args.out + ".part", "w") as f:
                json.dump(res, f, indent=1)
            os.replace(args.out + ".part", args.out)
    finally:
        srv.terminate()
        srv.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
