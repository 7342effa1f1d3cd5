"""Blender import of big scenes (issue 18): peak resident memory and time of importing a big
INRIA PLY into a mesh — the earlier path (memory-mapped structured array, ``fill_mesh``) vs the
streamed one (``meshfill``: plain block reads, a few attributes per pass) — against the size
of the mesh itself, and the progressive .exgs import (preview prefix, then Load Full).

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/import_big.py \
        --scratch /work/scratch/progressive --sizes 2,6 --repeats 3

The big PLYs are built by tiling ``shared/scenes/playbot_lod2.ply`` (125k real Gaussians, SH
2; tiles shifted so no two Gaussians coincide) into ``--scratch`` (outside the repository;
``--clean`` deletes it afterwards). The .exgs is the largest tiled scene encoded as it is (file
order = "significance" order, zstd level 3): a loading benchmark, not a compression one.
Each measurement is a fresh bpy process (the add-on installed from a freshly built zip into a
temporary HOME); memory is the process's VmHWM/VmRSS from /proc. Prints a table, writes
bench/results/import_big.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
SHARED = os.environ.get("EXGS_SHARED_SCENES", "/work/shared/scenes") + "/playbot_lod2.ply"
sys.path.insert(0, ROOT)


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        raise SystemExit(r.stdout[-2000:] + r.stderr[-2000:])
    return r.stdout


def tile_ply(src: str, dst: str, n_target: int) -> int:
    """Write ``src`` tiled until ≥ ``n_target`` Gaussians (each tile shifted in x by the
    scene's width); streamed tile by tile. → count."""
    import numpy as np

    from exgs_blender import plyio

    if os.path.exists(dst):
        return plyio.vertex_layout(dst)[2]
    v = np.asarray(plyio.read_vertices(src))
    tiles = -(-n_target // len(v))
    width = float(v["x"].max() - v["x"].min()) * 1.05
    tmp = dst + ".part"
    with open(tmp, "wb") as f:
        f.write(plyio.header_bytes(v.dtype, len(v) * tiles, comment="tiled playbot_lod2"))
        t = v.copy()
        for k in range(tiles):
            t["x"] = v["x"] + np.float32(width * (k % 8))
            t["y"] = v["y"] + np.float32(width * (k // 8))
            t.tofile(f)
    os.replace(tmp, dst)
    return len(v) * tiles


def make_exgs(ply: str, dst: str) -> None:
    if not os.path.exists(dst):
        sh([PY, "-c", "import sys; from exgs.io import read_scene; from exgs.io.exgs_format "
            "import encode_exgs, write_exgs_bytes; s = read_scene(sys.argv[1]); "
            "write_exgs_bytes(encode_exgs(s.with_sh_degree(0), zstd_level=3, source="
            "{'gaussians': len(s)}), sys.argv[2])", ply, dst])


PRELUDE = """
import json, os, sys, time
import bpy
import addon_utils
addon_utils.enable("bl_ext.user_default.exgs", default_set=True)
from bl_ext.user_default.exgs import gaussians, io_import, plyio, progressive
from bl_ext.user_default.exgs.splat import SplatObject
def mem():
    d = {}
    for ln in open("/proc/self/status"):
        k, _, v = ln.partition(":")
        if k in ("VmRSS", "VmHWM"):
            d[k] = int(v.split()[0]) * 1024
    return d
def mesh_bytes(me):
    n, b = len(me.vertices), 12 * len(me.vertices)
    for a in me.attributes:
        if a.domain == "POINT" and a.name != "position":
            b += n * {"FLOAT_COLOR": 16, "FLOAT_VECTOR": 12}.get(a.data_type, 4)
    return b
base = mem()
t0 = time.perf_counter()
"""

CASES = {
    "memmap (before)": """
        v = plyio.read_vertices(PATH)
        obj = gaussians.create_object(bpy.context, "s", v)
        del v
    """,
    "streamed (now)": """
        obj, _ = io_import.import_file(bpy.context, PATH)
    """,
    "exgs preview": """
        obj, _ = io_import.import_file(bpy.context, PATH, preview_count=PREVIEW)
    """,
    "exgs preview + Load Full": """
        obj, _ = io_import.import_file(bpy.context, PATH, preview_count=PREVIEW)
        t_pre = time.perf_counter() - t0
        ld, longest = progressive.Loader(obj.name), 0.0  # the UI timer's steps, timed
        while True:
            t1 = time.perf_counter()
            more = ld.step()
            if ld.state != "convert":  # polling the child process costs nothing
                longest = max(longest, time.perf_counter() - t1)
            if not more:
                break
            time.sleep(0.01)
        assert ld.state == "done", ld.error
        EXTRA["preview_s"], EXTRA["longest_step_s"] = t_pre, longest
    """,
    "exgs direct": """
        obj, _ = io_import.import_file(bpy.context, PATH)
    """,
}


def run_case(home: str, case: str, path: str, preview: int) -> dict:
    code = (PRELUDE + f"EXTRA = {{}}\nPATH = {path!r}\nPREVIEW = {preview}\n"
            + textwrap.dedent(CASES[case])
            + "\nsecs = time.perf_counter() - t0\nm = mem()\n"
            "print(json.dumps(dict(EXTRA, secs=secs, n=len(obj.data.vertices), "
            "base=base['VmRSS'], peak=m['VmHWM'], after=m['VmRSS'], "
            "mesh=mesh_bytes(obj.data))))\n")
    env = dict(os.environ, HOME=home, EXGS_PYTHON=PY, EXGS_CACHE_DIR=os.path.join(home, "c"))
    out = sh([PY, "-c", code], env=env, timeout=3600)
    shutil.rmtree(os.path.join(home, "c"), ignore_errors=True)  # no cached conversions
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", default="/work/scratch/progressive")
    ap.add_argument("--sizes", default="2,6", help="millions of Gaussians, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preview", type=int, default=1_000_000, help="preview Gaussians (.exgs)")
    ap.add_argument("--clean", action="store_true", help="delete --scratch afterwards")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this "
                                               "(results merged into --out)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "import_big.json"))
    args = ap.parse_args()
    os.makedirs(args.scratch, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="exgs-bench-import-")
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    zp = sh([PY, os.path.join(ROOT, "scripts", "build_extension.py"), "--out", tmp]).split()[-1]
    sh([PY, "-c", f"import bpy; bpy.ops.extensions.package_install_files(filepath={zp!r}, "
        "repo='user_default', enable_on_install=True)"], env=dict(os.environ, HOME=home))
    rows = []
    sizes = [float(s) for s in args.sizes.split(",")]
    for m in sizes:
        ply = os.path.join(args.scratch, f"tiled_{m:g}M.ply")
        n = tile_ply(SHARED, ply, int(m * 1e6))
        jobs = [("memmap (before)", ply), ("streamed (now)", ply)]
        if m == max(sizes):
            ex = os.path.join(args.scratch, f"tiled_{m:g}M.exgs")
            make_exgs(ply, ex)
            jobs += [("exgs preview", ex), ("exgs preview + Load Full", ex),
                     ("exgs direct", ex)]
        for case, path in jobs:
            if args.only not in case:
                continue
            runs = [run_case(home, case, path, args.preview) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            row = {"case": case, "file": os.path.basename(path), "file_bytes":
                   os.path.getsize(path), "gaussians": int(med["n"]), "runs": runs,
                   **{f"median_{k}": v for k, v in med.items()}}
            row["peak_over_base"] = med["peak"] - med["base"]
            row["peak_over_mesh"] = row["peak_over_base"] / med["mesh"]
            rows.append(row)
            print(f"{case:26s} {row['file']:18s} N={row['gaussians']:>9,} "
                  f"{med['secs']:7.2f} s  peak {med['peak'] / 2**30:5.2f} GiB "
                  f"(+{row['peak_over_base'] / 2**30:5.2f} over base {med['base'] / 2**30:4.2f})"
                  f"  mesh {med['mesh'] / 2**30:5.2f} GiB  ratio {row['peak_over_mesh']:4.2f}"
                  + (f"  preview {med['preview_s']:.2f} s, longest UI step "
                     f"{med['longest_step_s']:.2f} s" if "preview_s" in med else ""),
                  flush=True)
    load = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo")
               if line.startswith("MemTotal"))
    res = {"preview_count": args.preview,
           "machine": f"{cpu}, {os.cpu_count()} cores, {mem / 2**20:.1f} GiB",
           "load_average_at_end": load, "bpy": "5.0.1", "repeats": args.repeats,
           "source": "playbot_lod2.ply (125k real Gaussians, SH 2) tiled", "rows": rows}
    if args.only and os.path.exists(args.out):  # keep the other cases' rows
        with open(args.out) as f:
            old = json.load(f)
        keep = [r for r in old.get("rows", []) if args.only not in r["case"]]
        res["rows"] = keep + rows
        res["load_average_at_end"] = {"earlier rows": old.get("load_average_at_end"),
                                      f"rows with {args.only!r}": load}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".part", "w") as f:
        json.dump(res, f, indent=1)
    os.replace(args.out + ".part", args.out)
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.clean:
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
