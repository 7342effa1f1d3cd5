"""Viewport speed: round trips of ``POST /v1/viewport`` over loopback, and the CLI's
per-frame cost at 1280×720, for a ~500k-Gaussian real scene.

    nice -n 5 .venv/bin/python bench/viewport.py [--views 12] [--repeats 3] [--cli-frames 8]

Scene: ``--scene PATH`` if given; otherwise ../shared/scenes/real/flowers.lod-sog (542k at
level 0, opened as the folder by the service and the CLI) when this build reads LOD SOG, else
playbot_lod2.ply (125k, real capture) tiled 2×2 on the capture's ground plane = 500k
Gaussians (written to a temporary PLY, deleted after).

1. ``exgs serve`` starts (loopback, ``--allow-dir`` = the scene's folder); the time until its
   kernel warm-up is done and until the first viewport frame arrives is recorded (the
   first frame must not stall on compilation).
2. Round trip = what the engine's worker thread waits for: JSON request → backend render of
   the resident, prepared scene → f16 frame → decoded into the float32 bottom-up buffer a
   ``gpu`` texture takes (``exgs_blender.viewport_client``). ``--views`` orbit views (as a
   Blender region would send them: view/window matrices, the Y-down capture's axis change as
   the object's matrix_world) at 640×360, each at the progressive steps ¼, ½ and full (the
   ¼ step with the engine's Gaussian budget for moving views, ``ResolutionPolicy``).
3. CLI: ``exgs render --orbit N --size 1280x720`` (PNG written per frame) with N = 1 and
   N = 1 + ``--cli-frames``; per-frame cost = (t_N − t_1) / (N − 1), i.e. render + PNG per
   frame without the process start and scene read, which the one-frame run also reports.

Machine load (1-minute load average before/after, a fixed single-thread busy loop's
slowdown) is recorded with the figures. Writes bench/results/viewport.json and the table as
bench/results/viewport.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
SCENES = Path(os.environ.get("EXGS_SCENES") or next(
    (p for p in (ROOT.parent / "shared" / "scenes", ROOT.parents[1] / "shared" / "scenes")
     if p.is_dir()), ROOT.parent / "shared" / "scenes"))  # checkout or worktree (wt/NAME)
Y_DOWN = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], np.float64)
B2CV = np.diag([1.0, -1.0, -1.0, 1.0])


def machine() -> dict:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return {"cpu": model, "cores": os.cpu_count(), "mem_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "system": platform.platform()}


def build_scene(tmp: Path, scene_arg: str | None):
    """(path, description, Gaussian count) of the benchmark scene."""
    from exgs.io import read_scene

    if scene_arg:
        s = read_scene(scene_arg)
        return scene_arg, os.path.basename(scene_arg), len(s)
    from exgs.io.ply import write_ply
    from exgs.scene import GaussianScene

    flowers = SCENES / "real" / "flowers.lod-sog"
    try:
        s = read_scene(str(flowers))  # the service and the CLI open the LOD SOG folder itself
        return str(flowers), "flowers.lod-sog level 0 (real capture)", len(s)
    except Exception as e:  # no LOD SOG reader in this build
        print(f"flowers.lod-sog not readable here ({type(e).__name__}: {e}); "
              "tiling playbot_lod2 2x2 instead")

    s = read_scene(str(SCENES / "playbot_lod2.ply"))
    lo, hi = s.robust_bounds()
    ext = hi - lo
    offs = [np.array([i * ext[0], 0.0, j * ext[2]], np.float32) for i in (0, 1) for j in (0, 1)]
    big = GaussianScene(np.concatenate([s.means + o for o in offs]), np.tile(s.quats, (4, 1)),
                        np.tile(s.log_scales, (4, 1)), np.tile(s.opacity_logits, 4),
                        np.tile(s.sh, (4, 1, 1)))
    path = tmp / "playbot_lod2_x4.ply"
    write_ply(big, path)
    return str(path), "playbot_lod2.ply tiled 2x2 (real capture, 4 x 125k)", len(big)


def start_server(allow_dir: str, tmp: Path):
    tok = tmp / "token"
    p = subprocess.Popen([sys.executable, "-m", "exgs.cli", "serve", "--host", "127.0.0.1",
                          "--port", "0", "--token-file", str(tok), "--allow-dir", allow_dir,
                          "--device", "cpu"], stdout=subprocess.PIPE,
                         stderr=open(tmp / "serve.log", "w"), text=True)
    t0 = time.perf_counter()
    for line in p.stdout:
        if line.startswith("EXGS_SERVER_READY "):
            info = json.loads(line.split(" ", 1)[1])
            return p, info["url"], tok.read_text().strip(), time.perf_counter() - t0
    raise SystemExit(f"exgs serve did not start: see {tmp / 'serve.log'}")


def call(url, token, method, path, body=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def region_views(scene_path: str, n: int, width: int, height: int):
    """Orbit views of the scene as a Blender region sends them: (view, window) matrices
    for an object whose matrix_world is the Y-down capture's axis change."""
    from exgs.cameras import orbit_for_scene
    from exgs.io import read_scene

    scene = read_scene(scene_path)
    out = []
    for c in orbit_for_scene(scene, n, width, height, up="-y", distance=0.8):
        view = B2CV @ c.world_to_camera @ np.linalg.inv(Y_DOWN)  # B·V·O = w2c
        n_, f_ = 0.01, 1000.0
        win = np.array([[2 * c.fx / width, 0, 1 - 2 * c.cx / width, 0],
                        [0, 2 * c.fy / height, 2 * c.cy / height - 1, 0],
                        [0, 0, -(f_ + n_) / (f_ - n_), -2 * f_ * n_ / (f_ - n_)],
                        [0, 0, -1, 0]])
        out.append((view.tolist(), win.tolist()))
    return out


def pct(xs, q):
    return float(np.percentile(np.asarray(xs, np.float64), q))


def loadavg() -> float:
    return os.getloadavg()[0]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads), from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_viewport(url, token, sid, views, width, height, repeats, pid, n) -> dict:
    from exgs_blender.viewport_client import ViewportClient
    from exgs_blender.viewport_sched import ResolutionPolicy

    policy = ResolutionPolicy()  # what the engine uses: steps and the coarse step's budget
    cl = ViewportClient(url, token)
    gen = 0
    rows = {}
    for scale in policy.steps:
        rt, be = [], []
        cpu0 = proc_cpu_s(pid)
        for _ in range(repeats):
            for view, win in views:
                gen += 1
                f = cl.render({"objects": [{"scene_id": sid, "matrix_world": Y_DOWN.tolist()}],
                               "view_matrix": view, "window_matrix": win, "width": width,
                               "height": height, "scale": scale, "session": "bench",
                               "generation": gen, **({"max_gaussians": policy.budget(scale)}
                                                     if policy.budget(scale) else {})})
                rt.append(f.round_trip_ms)
                be.append(f.backend_ms)
        cpu = 1e3 * (proc_cpu_s(pid) - cpu0) / len(rt)
        used = policy.next_scale(scale / 2, 1e9, n > (policy.coarse_gaussians or n)) == scale \
            or scale == policy.steps[0]
        rows[str(scale)] = {"size": f"{f.width}x{f.height}", "frames": len(rt),
                            "max_gaussians": policy.budget(scale), "engine_uses_it": used,
                            "server_cpu_ms_per_frame": cpu,
                            "round_trip_ms_median": statistics.median(rt),
                            "round_trip_ms_p95": pct(rt, 95), "backend_ms_median":
                            statistics.median(be), "coverage": float(f.rgba[3::4].mean())}
        print(f"  scale {scale:<4} {f.width}x{f.height}: round trip median "
              f"{rows[str(scale)]['round_trip_ms_median']:.0f} ms, p95 "
              f"{rows[str(scale)]['round_trip_ms_p95']:.0f} ms (backend "
              f"{rows[str(scale)]['backend_ms_median']:.0f} ms; server CPU {cpu:.0f} ms/frame)")
    cl.close()
    return rows


def cli_run(scene_path: str, frames: int, out: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "exgs.cli", "render", scene_path, "--orbit",
                        str(frames), "--size", "1280x720", "--distance", "0.8", "--device",
                        "cpu", "--out", str(out)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"exgs render failed: {r.stderr.strip()[-400:]}")
    return time.perf_counter() - t0


def table(res: dict) -> list[str]:
    """The result table (markdown lines, first one empty) of a result dict."""
    per = res["cli"]["per_frame_s"]
    lines = ["", "| what | median | p95 | server CPU / frame | target |",
             "|---|---|---|---|---|"]
    for scale, row in res["viewport"].items():
        what = f"viewport {row['size']} round trip (step {scale}"
        what += f", {row['max_gaussians']:,} Gaussians)" if row["max_gaussians"] else ")"
        what += "" if row["engine_uses_it"] else " — skipped by the engine for this scene"
        lines.append(f"| {what} | {row['round_trip_ms_median']:.0f} ms | "
                     f"{row['round_trip_ms_p95']:.0f} ms | "
                     f"{row['server_cpu_ms_per_frame']:.0f} ms | "
                     f"{'≤ 250 ms' if scale == '1.0' else '—'} |")
    lines.append(f"| CLI 1280x720 per frame incl. PNG | {res['cli']['per_frame_s_median'] * 1e3:.0f}"
                 f" ms | {max(per) * 1e3:.0f} ms (max of {len(per)}) | — | ≤ 600 ms |")
    lines.append(f"load average {res['load_before']:.2f} / {res['load_mid']:.2f} / "
                 f"{res['load_after']:.2f}; busy loop x{res['busy_before']['slowdown']:.2f} / "
                 f"x{res['busy_after']['slowdown']:.2f}")
    m = res["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['system']}; "
                 f"scene: {res['scene']['what']} ({res['scene']['gaussians']:,}); "
                 f"{res['started']}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", help="scene file (default: see module doc)")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--cli-frames", type=int, default=8)
    ap.add_argument("--cli-runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "viewport.json"))
    args = ap.parse_args(argv)
    from render import busy_loop  # bench/render.py

    width, height = (int(v) for v in args.size.lower().split("x"))
    res = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                          time.gmtime())}
    res["load_before"], res["busy_before"] = loadavg(), busy_loop()
    with tempfile.TemporaryDirectory(prefix="exgs-bench-vp-") as td:
        tmp = Path(td)
        path, desc, n = build_scene(tmp, args.scene)
        res["scene"] = {"path": path, "what": desc, "gaussians": n}
        print(f"scene: {desc}, {n:,} Gaussians")
        proc, url, token, t_ready = start_server(os.path.dirname(os.path.abspath(path)), tmp)
        try:
            t0 = time.perf_counter()
            sid = call(url, token, "POST", "/v1/scenes/open", {"path": path})["id"]
            t_open = time.perf_counter() - t0
            views = region_views(path, args.views, width, height)
            from exgs_blender.viewport_client import ViewportClient

            first = ViewportClient(url, token).render(
                {"objects": [{"scene_id": sid, "matrix_world": Y_DOWN.tolist()}],
                 "view_matrix": views[0][0], "window_matrix": views[0][1], "width": width,
                 "height": height})
            warm = call(url, token, "GET", "/v1/health")["warm_up"]
            res["startup"] = {"server_ready_s": t_ready, "scene_open_s": t_open,
                              "first_frame_ms": first.round_trip_ms, "warm_up": warm}
            print(f"server ready {t_ready:.1f} s, scene open {t_open:.1f} s, first frame "
                  f"{first.round_trip_ms:.0f} ms (warm-up {warm})")
            res["viewport"] = bench_viewport(url, token, sid, views, width, height,
                                             args.repeats, proc.pid, n)
        finally:
            proc.terminate()
            proc.wait(10)
        res["load_mid"] = loadavg()
        one, many = [], []
        for _ in range(args.cli_runs):
            one.append(cli_run(path, 1, tmp / "cli1"))
            many.append(cli_run(path, 1 + args.cli_frames, tmp / "clin"))
        per = [(m - o) / args.cli_frames for o, m in zip(one, many)]
        res["cli"] = {"size": "1280x720", "runs": args.cli_runs, "frames": args.cli_frames,
                      "one_frame_process_s": one, "per_frame_s": per,
                      "per_frame_s_median": statistics.median(per),
                      "one_frame_process_s_median": statistics.median(one)}
        print(f"CLI 1280x720: per frame (render + PNG) median {statistics.median(per):.3f} s "
              f"{[round(x, 3) for x in per]}; one-frame process {statistics.median(one):.1f} s")
    res["load_after"], res["busy_after"] = loadavg(), busy_loop()
    lines = table(res)
    print("\n".join(lines))
    Path(args.out).with_suffix(".md").write_text("\n".join(lines[1:]) + "\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
