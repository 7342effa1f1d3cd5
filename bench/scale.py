"""Scale benchmark (issue 18 part 1): 6M and 20M Gaussians end to end on one machine.

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/scale.py \\
        [--sizes 6e6,20e6] [--scratch /work/scratch/scale] [--keep] [--repeats 1]

For each size N the big scene is built by tiling a shared real scene (PLAYBOT LOD2, 125,000
Gaussians, SH degree 2, Y-down: a character on a ground patch) on a grid in its ground plane
(x–z), each tile shifted by a small seeded jitter. SH degree 2 as the source, with normals:
164 B per Gaussian, so 6M → 0.98 GB and 20M → 3.28 GB (the issue's "~3.3 GB PLY"). The PLY
is written tile by tile (the builder holds one tile, never N).

Every stage then runs as its own subprocess and is measured from outside: wall time and
peak RSS (``ru_maxrss`` of that child via ``os.wait4``; file-backed pages it mapped count):

* ``read``: ``exgs.io.read_scene`` + ``validate`` of the PLY;
* ``compress``: ``exgs compress big.ply --ratio 100 --profile --json`` (its per-stage time
  and RSS are read from the JSON: scoring, SH reduction, selection, amplification, encoding);
* ``render_exgs`` / ``render_ply``: ``exgs render FILE --orbit 1 --size 1280x720`` (CPU),
  reading the file included.

numba's cache is warmed first on a 60k-Gaussian tile (not measured), so no stage pays for
compiling kernels.

Prints a markdown table; writes bench/results/scale.json and scale.md (machine, CPU, load
before/after). Scratch files are deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = os.environ.get("EXGS_SCENES") or next(
    (d for d in (os.path.join(os.path.dirname(ROOT), "shared", "scenes"),
                 os.path.join(os.path.dirname(os.path.dirname(ROOT)), "shared", "scenes"))
     if os.path.isdir(d)), "shared/scenes")
SOURCE = os.path.join(SCENES, "playbot_lod2.ply")
RESULTS = os.path.join(ROOT, "bench", "results")

READ_CHILD = r"""
import sys, time
t = time.perf_counter()
from exgs.io import read_scene
s = read_scene(sys.argv[1]).validate(sys.argv[1])
print(f"{len(s)} Gaussians read in {time.perf_counter() - t:.1f} s")
"""


def build_ply(n: int, path: str, *, source: str = SOURCE, seed: int = 0) -> dict:
    """Write an INRIA PLY (the source's SH degree) of ``n`` Gaussians tiling ``source`` on its x–z
    ground plane (y is up/down in the PLAYBOT frame), one tile at a time (atomic)."""
    import numpy as np

    from exgs.fsutil import atomic_path
    from exgs.io import read_scene

    src = read_scene(source)
    m = len(src)
    k_src = src.sh.shape[1]
    lo, hi = src.robust_bounds(0.01)
    pitch = float(max(hi[0] - lo[0], hi[2] - lo[2])) * 1.05
    tiles = -(-n // m)
    side = int(np.ceil(np.sqrt(tiles)))
    rng = np.random.default_rng(seed)
    fields = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
              + [f"f_rest_{i}" for i in range(3 * (k_src - 1))]
              + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    dt = np.dtype([(f, "<f4") for f in fields])
    nr = 3 * (k_src - 1)
    tile = np.zeros(m, dt)
    flat = tile.view(np.float32).reshape(m, len(fields))
    flat[:, 6:9] = src.sh[:, 0, :]
    flat[:, 9:9 + nr] = src.sh[:, 1:, :].transpose(0, 2, 1).reshape(m, nr)  # channel-major
    flat[:, 9 + nr] = src.opacity_logits
    flat[:, 10 + nr:13 + nr] = src.log_scales
    flat[:, 13 + nr:17 + nr] = src.quats
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {n}\n" + "".join(f"property float {f}\n" for f in fields)
              + "end_header\n").encode()
    written = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        for t in range(tiles):
            gx, gz = t % side, t // side
            off = np.array([gx * pitch, 0.0, gz * pitch], np.float32)
            off[[0, 2]] += rng.uniform(-0.03, 0.03, 2).astype(np.float32) * pitch
            flat[:, 0:3] = src.means + off
            take = min(m, n - written)
            f.write(tile[:take].tobytes())
            written += take
    return {"gaussians": n, "tiles": tiles, "grid": side, "pitch": pitch,
            "bytes": os.path.getsize(path), "source": os.path.basename(source),
            "source_gaussians": m, "source_sh_degree": src.sh_degree}


def run_child(cmd: list[str], log) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (GiB) of the child and its stdout."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"bench/scale.py: stage failed ({p.returncode}): {' '.join(cmd)}")
    return {"seconds": wall, "peak_rss_gib": ru.ru_maxrss / 2**20,
            "stdout": out.decode(errors="replace")}


def exgs_cmd(*args) -> list[str]:
    return [sys.executable, "-c", "import sys; from exgs.cli import main; sys.exit(main())",
            *args]


def warm_up(scratch: str, log) -> None:
    """Compile/load numba's cache once on a small scene (not measured): every stage below
    then runs with a warm JIT cache, as a second command on the same machine would."""
    ply = os.path.join(scratch, "warm.ply")
    run_child([sys.executable, os.path.abspath(__file__), "--_build", "60000", ply], log)
    run_child([sys.executable, "-c", READ_CHILD, ply], log)
    run_child(exgs_cmd("compress", ply, "-o", ply[:-4] + ".exgs", "--ratio", "100",
                       "--force", "--device", "cpu", "--json"), log)
    for f in (ply, ply[:-4] + ".exgs"):
        run_child(exgs_cmd("render", f, "--orbit", "1", "--size", "320x180", "--device",
                           "cpu", "--out", os.path.join(scratch, "warm")), log)


def bench_size(n: int, scratch: str, repeats: int, log, reuse: bool = False) -> dict:
    ply = os.path.join(scratch, f"tiled_{n}.ply")
    exgs = os.path.join(scratch, f"tiled_{n}.exgs")
    res: dict = {"gaussians": n}
    if reuse and os.path.exists(ply + ".json"):  # built by an earlier --keep run
        with open(ply + ".json") as f:
            res["build"] = {**json.load(f), "reused": True}
    else:
        b = run_child([sys.executable, os.path.abspath(__file__), "--_build", str(n), ply], log)
        res["build"] = {**json.loads(b["stdout"]), "seconds": b["seconds"],
                        "peak_rss_gib": b["peak_rss_gib"]}
        with open(ply + ".json", "w") as f:
            json.dump(res["build"], f)
    stages = {
        "read": [sys.executable, "-c", READ_CHILD, ply],
        "compress": exgs_cmd("compress", ply, "-o", exgs, "--ratio", "100", "--profile",
                             "--json", "--force", "--device", "cpu"),
        "render_exgs": exgs_cmd("render", exgs, "--orbit", "1", "--size", "1280x720",
                                "--device", "cpu", "--out", os.path.join(scratch, "r_exgs")),
        "render_ply": exgs_cmd("render", ply, "--orbit", "1", "--size", "1280x720",
                               "--device", "cpu", "--out", os.path.join(scratch, "r_ply")),
    }
    for name, cmd in stages.items():
        runs = []
        load = os.getloadavg()[0]
        for _ in range(repeats if name != "compress" else 1):
            print(f"[{time.strftime('%H:%M:%S')}] {n:,}: {name}", file=log, flush=True)
            runs.append(run_child(cmd, log))
        st = {"seconds": statistics.median(r["seconds"] for r in runs),
              "peak_rss_gib": statistics.median(r["peak_rss_gib"] for r in runs),
              "runs": len(runs), "seconds_all": [r["seconds"] for r in runs],
              "load_at_start": load}
        if name == "compress":
            js = json.loads(runs[0]["stdout"])
            st.update({k: js.get(k) for k in ("kept", "file_bytes", "ratio", "profile")})
            # --profile resets the kernel's high-water mark per stage (clear_refs), which
            # ru_maxrss reads too: the run's peak is the largest of the stages' peaks
            st["peak_rss_gib"] = max([st["peak_rss_gib"]] + [p["peak_rss_gib"]
                                                            for p in st["profile"] or []])
        res[name] = st
    return res


def _commit() -> str:
    """The code measured: a COMMIT file next to bench/ (snapshots) or git's HEAD."""
    try:
        with open(os.path.join(ROOT, "COMMIT")) as f:
            return f.read().strip()
    except OSError:
        pass
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True).stdout.strip() or "?"
    except OSError:
        return "?"


def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "python": platform.python_version()}


def table(results: list[dict]) -> str:
    rows = ["| Gaussians | PLY | stage | wall s | peak RSS GiB | load |",
            "|---|---|---|---|---|---|"]
    for r in results:
        size = f"{r['build']['bytes'] / 1e9:.2f} GB"
        for st in ("read", "compress", "render_exgs", "render_ply"):
            s = r[st]
            rows.append(f"| {r['gaussians']:,} | {size} | {st} | {s['seconds']:.1f} | "
                        f"{s['peak_rss_gib']:.2f} | {s.get('load_at_start', 0):.1f} |")
        for p in r["compress"].get("profile") or []:
            rows.append(f"| | | compress: {p['stage']} ×{p['calls']} | {p['seconds']:.1f} | "
                        f"{p['peak_rss_gib']:.2f} (after: {p['rss_gib']:.2f}) | |")
    return "\n".join(rows)


def write_results(name: str, results: list[dict], load_before) -> str:
    """Write bench/results/<name>.json and .md; returns the markdown."""
    doc = {"machine": machine(), "load_before": load_before, "load_after": os.getloadavg(),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "source": "PLAYBOT lod2 (125k Gaussians, SH 2) tiled on its ground plane",
           "commit": _commit(), "results": results}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(doc, f, indent=2)
    md = (f"# Scale benchmark ({doc['when']}, code {doc['commit']})\n\nMachine: "
          f"{doc['machine']['cpu']}, {doc['machine']['cores']} cores, "
          f"{doc['machine']['memory_gib']} GiB, shared; load average {load_before[0]:.2f} "
          f"before, {doc['load_after'][0]:.2f} after. Scene: {doc['source']}. One run per "
          f"stage (medians if --repeats > 1); peak RSS measured from outside (ru_maxrss of "
          f"the stage's process), per compress stage from /proc/self/status.\n\n"
          f"{table(results)}\n")
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(md)
    return md


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--_build":
        print(json.dumps(build_ply(int(float(sys.argv[2])), sys.argv[3])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="6e6,20e6")
    ap.add_argument("--scratch", default="/work/scratch/scale")
    ap.add_argument("--repeats", type=int, default=1, help="runs of read/render (median)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch files")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a scene PLY a --keep run built (skips the build)")
    ap.add_argument("--out", default="scale", help="name of the results files")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    os.makedirs(args.scratch, exist_ok=True)
    load_before = os.getloadavg()
    results = []
    try:
        if not args.reuse:
            warm_up(args.scratch, sys.stderr)
        for n in sizes:
            results.append(bench_size(n, args.scratch, args.repeats, sys.stderr, args.reuse))
            print(write_results(args.out, results, load_before), flush=True)  # after each size
    finally:
        if not args.keep:
            shutil.rmtree(args.scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
