"""Renderer speed: median ms/frame, Gaussians/s and peak RSS per scene.

Scenes: the shared playbot scenes (../shared/scenes, orbit cameras, up = −y, distance 0.8)
and synthetic 500k / 1M demo scenes (exgs.synth.demo_scene, distance 1.0). Each scene runs in its own process (so peak
RSS is per scene), 1 warm-up frame then ``--frames`` timed orbit frames at ``--size``.
Reports wall-clock and process CPU time per frame: the CPU time divided by the thread count
approximates the wall time on an otherwise idle machine.

The machine is shared, so the table also gives the 1-minute load average per scene and a
single-threaded pure-Python busy loop timed before and after (wall / CPU = how much slower
than an idle core one thread runs right now).

    nice -n 5 .venv/bin/python bench/render.py [--frames 5] [--size 1280x720]

Writes bench/results/render.json. The machine is shared: say so when quoting figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES_DIR = Path(os.environ.get("EXGS_SCENES", ROOT.parent / "shared" / "scenes"))
SCENES = [  # (name, source, orbit distance)
    ("playbot_lod4", SCENES_DIR / "playbot_lod4.ply", 0.8),
    ("playbot_lod3", SCENES_DIR / "playbot_lod3.ply", 0.8),
    ("playbot_lod2", SCENES_DIR / "playbot_lod2.ply", 0.8),
    ("playbot_lod4_sog", SCENES_DIR / "sog" / "playbot_lod4", 0.8),
    ("synth_500k", "synth:500000", 1.0),
    ("synth_1M", "synth:1000000", 1.0),
]
BUSY = "import time; t=time.process_time(); s=0\nfor i in range(3_000_000): s+=i\n" \
       "print(time.process_time()-t)"


def busy_loop() -> dict:
    """Wall and CPU seconds of a fixed single-threaded Python loop run in a subprocess."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", BUSY], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = float(p.stdout.strip())
    return {"wall_s": wall, "cpu_s": cpu, "slowdown": wall / max(cpu, 1e-9)}


def one(source: str, frames: int, size: tuple[int, int], device: str,
        distance: float = 1.0) -> dict:
    """Benchmark one scene in this process; returns a result row."""
    import numba

    from exgs.cameras import orbit_for_scene
    from exgs.render import render_many

    if source.startswith("synth:"):
        from exgs.synth import demo_scene

        scene = demo_scene(int(source.split(":")[1]), sh_degree=3)
    else:
        from exgs.io import read_scene

        scene = read_scene(source)
    cams = orbit_for_scene(scene, frames + 1, size[0], size[1], up="-y", distance=distance)
    walls, cpus = [], []
    it = render_many(scene, cams, device=device)
    t0, c0 = time.perf_counter(), time.process_time()
    first = next(it)
    warm = time.perf_counter() - t0
    for _ in range(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        r = next(it)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    med = statistics.median(walls)
    return {
        "gaussians": len(scene), "sh_degree": scene.sh_degree,
        "width": size[0], "height": size[1], "distance": distance, "frames": frames,
        "backend": r.backend,
        "threads": numba.get_num_threads(),
        "median_ms": 1000 * med, "min_ms": 1000 * min(walls),
        "median_cpu_ms": 1000 * statistics.median(cpus),
        "gaussians_per_s": len(scene) / med,
        "warmup_ms": 1000 * warm, "mean_alpha": float(first.alpha.mean()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", nargs="*", help="scene names to run")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--distance", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "render.json"))
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.lower().split("x"))
    if args.one:
        print(json.dumps(one(args.one, args.frames, size, args.device, args.distance)))
        return 0
    rows = []
    load0 = os.getloadavg()
    busy0 = busy_loop()
    print(f"busy loop before: {busy0['wall_s']:.2f} s wall / {busy0['cpu_s']:.2f} s CPU "
          f"(x{busy0['slowdown']:.1f}), load average {load0[0]:.1f}")
    print(f"{'scene':<18} {'N':>9} {'size':>9} {'ms/frame':>9} {'cpu ms':>8} "
          f"{'Gauss/s':>10} {'RSS MiB':>8} {'load':>5}")
    for name, src, dist in SCENES:
        if args.only and name not in args.only:
            continue
        if not str(src).startswith("synth:") and not Path(src).exists():
            print(f"{name:<18} (missing: {src})")
            continue
        cmd = [sys.executable, __file__, "--one", str(src), "--frames", str(args.frames),
               "--size", args.size, "--device", args.device, "--distance", str(dist)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            print(f"{name:<18} failed: {p.stderr.strip().splitlines()[-1:]}")
            continue
        row = {"scene": name, **json.loads(p.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{name:<18} {row['gaussians']:>9,} {row['width']}x{row['height']:<4} "
              f"{row['median_ms']:>9.0f} {row['median_cpu_ms']:>8.0f} "
              f"{row['gaussians_per_s']:>10.3g} {row['peak_rss_mib']:>8.0f} "
              f"{row['load_avg_1min']:>5.1f}")
    load1 = os.getloadavg()
    busy1 = busy_loop()
    print(f"busy loop after: {busy1['wall_s']:.2f} s wall / {busy1['cpu_s']:.2f} s CPU "
          f"(x{busy1['slowdown']:.1f}), load average {load1[0]:.1f}")
    info = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other "
                       f"jobs (load average {load0[0]:.1f} before, {load1[0]:.1f} after)",
            "busy_loop_before": busy0, "busy_loop_after": busy1,
            "nice": os.nice(0),
            "python": platform.python_version(), "time_utc": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=1) + "\n")
    print(f"machine: {info['machine']}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
