"""Farm benchmark (issue 18): throughput of N headless Blender workers sharing ONE
`exgs serve` on loopback, for N = 1, 2, 4.

    nice -n 10 .venv/bin/python bench/farm.py [--frames 16] [--size 384] [--workers 1,2,4]
        [--repeats 2]

A shot of ``--frames`` frames (the shared playbot_lod2.ply, 125k Gaussians, a moving camera)
(``$EXGS_SCENES`` or ../shared/scenes) is split into N contiguous frame ranges; each range is rendered by its own bpy process, the
way `blender -b shot.blend -s A -e B -a` does on a farm node, with the backend found from
EXGS_BACKEND_URL / EXGS_TOKEN_FILE / EXGS_CLIENT_ID. The wall time runs from spawning the
workers to the last one exiting (Blender start-up included, as on a farm); frames/min =
frames / wall. Every run's frames are compared with the N = 1 run's (byte-identical PNGs).
Prints a table, writes bench/results/farm.json.

This machine is SHARED (2 CPU cores, several engineers' jobs): the workers, the service
and other people's work all compete for the same two cores, so N > 1 cannot speed up here;
what the figures show is the service's overhead under concurrent clients, not a farm's
scaling (on a farm each worker is its own machine and the GPU box only renders).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blender_env import install_extension, sh, start_server  # noqa: E402
SCENES = os.environ.get("EXGS_SCENES") or next(
    (d for d in (os.path.join(up, "shared", "scenes") for up in (
        os.path.dirname(ROOT), os.path.dirname(os.path.dirname(ROOT)))) if os.path.isdir(d)),
    os.path.join(os.path.dirname(ROOT), "shared", "scenes"))
SHARED = os.path.join(SCENES, "playbot_lod2.ply")
sys.path.insert(0, ROOT)

PRE = ("import bpy, json, os, addon_utils\n"
       "addon_utils.enable('bl_ext.user_default.exgs', default_set=True)\n"
       "from bl_ext.user_default.exgs.engine import final\n")
BUILD = """
from bl_ext.user_default.exgs import io_import
bpy.ops.wm.read_homefile(use_empty=True)
obj, _ = io_import.import_file(bpy.context, {ply!r})
sc = bpy.context.scene
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
sc.collection.objects.link(cam)
sc.camera = cam
cam.rotation_euler = (1.5707963, 0, 0)
c = [sum(v.co[i] for v in obj.data.vertices) / len(obj.data.vertices) for i in range(3)]
sc.render.engine = "EXGS"
sc.render.resolution_x = sc.render.resolution_y = {size}
sc.render.resolution_percentage = 100
sc.render.image_settings.file_format = "PNG"
sc.render.image_settings.color_mode = "RGBA"
sc.frame_start, sc.frame_end = 1, {frames}
for f, dx in ((1, -0.5), ({frames}, 0.5)):
    cam.location = (c[0] + dx, c[1] - 4.0, c[2])
    cam.keyframe_insert("location", frame=f)
bpy.ops.wm.save_as_mainfile(filepath={blend!r})
print(json.dumps(dict(gaussians=len(obj.data.vertices))))
"""
WORKER = """
bpy.ops.wm.open_mainfile(filepath={blend!r})
sc = bpy.context.scene
sc.frame_start, sc.frame_end = {start}, {end}
sc.render.filepath = {out!r}
bpy.ops.render.render(animation=True)
print(json.dumps(dict(errors=final.ERRORS)))
"""


def png_pixels(path: str) -> str:
    """sha256 of a PNG's decompressed IDAT (its pixel rows), ignoring the text chunks
    Blender writes (date, render time)."""
    import struct
    import zlib

    data, off, idat = open(path, "rb").read(), 8, b""
    while off < len(data):
        n, kind = struct.unpack(">I4s", data[off:off + 8])
        if kind == b"IDAT":
            idat += data[off + 8:off + 8 + n]
        off += 12 + n
    return hashlib.sha256(zlib.decompress(idat)).hexdigest()


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def ranges(frames: int, n: int) -> list[tuple[int, int]]:
    """Frames 1..frames in n contiguous ranges (as a farm's chunking does)."""
    out, start = [], 1
    for k in range(n):
        size = frames // n + (1 if k < frames % n else 0)
        out.append((start, start + size - 1))
        start += size
    return out


def main():
    import argparse


    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--bpy-python", default=PY)
    args = ap.parse_args()
    if not os.path.exists(SHARED):
        raise SystemExit(f"{SHARED}: shared scene not found")
    tmp = tempfile.mkdtemp(prefix="exgs-bench-farm-")
    home = install_extension(tmp, args.bpy_python)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("EXGS_")}
    base_env.update(HOME=home, EXGS_CACHE_DIR=os.path.join(home, "cache"))
    blend = os.path.join(tmp, "shot.blend")
    built = json.loads(sh([args.bpy_python, "-c", PRE + BUILD.format(
        ply=SHARED, size=args.size, frames=args.frames, blend=blend)],
        env=dict(base_env, EXGS_PYTHON=PY)).splitlines()[-1])

    srv, url, token_file = start_server(tmp)
    env = dict(base_env, EXGS_BACKEND_URL=url, EXGS_TOKEN_FILE=token_file,
               EXGS_EXIT_ON_ERROR="1")
    results = {"machine": "shared: 2 CPU cores, other engineers' jobs running; the workers and "
                          "the service share the same 2 cores (no farm scaling possible here)",
               "scene": os.path.basename(SHARED), "gaussians": built["gaussians"],
               "frames": args.frames, "size": args.size, "runs": []}
    reference = None
    try:
        # warm the service (kernels compiled, scene uploaded) with one 1-frame worker
        sh([args.bpy_python, "-c", PRE + WORKER.format(
            blend=blend, start=1, end=1, out=os.path.join(tmp, "warm", "####"))],
           env=dict(env, EXGS_CLIENT_ID="warm"))
        for rep, n in [(r, int(x)) for r in range(args.repeats)
                       for x in args.workers.split(",")]:
            out = os.path.join(tmp, f"n{n}-r{rep}")
            import resource

            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            la0, cpu0, t0 = load_avg(), proc_cpu_s(srv.pid), time.monotonic()
            procs = [subprocess.Popen(
                [args.bpy_python, "-c", PRE + WORKER.format(
                    blend=blend, start=a, end=b, out=os.path.join(out, "####"))],
                env=dict(env, EXGS_CLIENT_ID=f"worker-{k}"), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True) for k, (a, b) in enumerate(ranges(args.frames, n))]
            outs = [p.communicate(timeout=3600) for p in procs]
            wall = time.monotonic() - t0
            cpu = proc_cpu_s(srv.pid) - cpu0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            workers_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
            bad = [o[1][-500:] for p, o in zip(procs, outs) if p.returncode]
            if bad:
                raise SystemExit("worker failed: " + bad[0])
            files = sorted(os.listdir(out))
            digests = {f: png_pixels(os.path.join(out, f)) for f in files}
            reference = reference or digests
            run = {"workers": n, "repeat": rep, "wall_s": round(wall, 2),
                   "frames_per_min": round(args.frames / wall * 60, 1),
                   "service_cpu_s": round(cpu, 2), "workers_cpu_s": round(workers_cpu, 2),
                   "frames_written": len(files),
                   "identical_to_n1": digests == reference,
                   "load_before": la0, "load_after": load_avg()}
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    finally:
        srv.terminate()
        srv.wait(30)
    print(f"\n{results['scene']} ({results['gaussians']:,} Gaussians), {args.frames} frames at "
          f"{args.size}×{args.size}; {results['machine']}")
    print("| workers | wall (median) | frames/min | service CPU | Blender workers' CPU | frames "
          "| identical to N=1 | load avg (1 min) during |")
    print("|---|---|---|---|---|---|---|---|")
    import statistics

    summary = []
    for n in sorted({r["workers"] for r in results["runs"]}):
        rs = [r for r in results["runs"] if r["workers"] == n]
        wall = statistics.median(r["wall_s"] for r in rs)
        row = {"workers": n, "wall_s": round(wall, 2),
               "frames_per_min": round(args.frames / wall * 60, 1),
               "service_cpu_s": round(statistics.median(r["service_cpu_s"] for r in rs), 2),
               "workers_cpu_s": round(statistics.median(r["workers_cpu_s"] for r in rs), 2),
               "frames_written": min(r["frames_written"] for r in rs),
               "identical_to_n1": all(r["identical_to_n1"] for r in rs),
               "load": sorted({r["load_before"][0] for r in rs} | {r["load_after"][0] for r in rs})}
        summary.append(row)
        print(f"| {n} | {wall:.1f} s | {row['frames_per_min']:.1f} | "
              f"{row['service_cpu_s']:.1f} s | {row['workers_cpu_s']:.1f} s | "
              f"{row['frames_written']} | "
              f"{row['identical_to_n1']} | {row['load'][0]}–{row['load'][-1]} |")
    results["summary"] = summary
    dest = os.path.join(ROOT, "bench", "results", "farm.json")
    with open(dest + ".part", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(dest + ".part", dest)


if __name__ == "__main__":
    main()
