"""Publishing benchmark: our 100× ``.exgs`` exported to SOG v2, next to the source's own size.

    nice -n 10 .venv/bin/python bench/formats.py [--scenes angel,st_peter,aerial,flowers,playbot]
        [--views 6] [--size 384x288] [--splat-transform /path/to/node_modules/.bin/splat-transform]

For every real scene in ../shared/scenes (published as SOG, SPZ or streamed LOD SOG):

1. read the source (its own format) and write it as an INRIA PLY (the size reference);
2. ``exgs compress PLY -o X.exgs --ratio R`` with R chosen so that the .exgs is 100× smaller
   than the scene as an SH-degree-3 INRIA PLY (248 B/Gaussian, the issue's reference);
3. ``exgs convert X.exgs X.sog`` (our SOG v2 writer, Morton order) and, as a reference,
   ``exgs convert SOURCE FULL.sog`` (the whole scene through our writer);
4. renders (CPU, orbit views around the robust bounds, seed 1234) of the source, the .exgs
   decode and the exported .sog (read back by our reader) → PSNR/SSIM;
5. optional outside check (``--splat-transform``, PlayCanvas splat-transform from npm; not a
   CI dependency): it converts X.sog to PLY; we compare its Gaussian count and renders with the
   .exgs decode (the "independent SOG v2 reader" criterion: same count, ≥ 35 dB).

Prints a table and writes bench/results/formats.json. Shared 2-core machine: times inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = next((p for p in (os.environ.get("EXGS_SCENES"),  # ../shared/scenes from a checkout
                            os.path.join(os.path.dirname(ROOT), "shared", "scenes"),
                            os.path.join(os.path.dirname(os.path.dirname(ROOT)), "shared", "scenes"))
               if p and os.path.isdir(p)), os.path.join(os.path.dirname(ROOT), "shared", "scenes"))
REAL = os.path.join(SCENES, "real")
SOURCES = {
    "angel": os.path.join(REAL, "statue_angel.sog"),
    "st_peter": os.path.join(REAL, "statue_st_peter.sog"),
    "aerial": os.path.join(REAL, "aerial_t3.spz"),
    "flowers": os.path.join(REAL, "flowers.lod-sog"),
    "playbot": os.path.join(SCENES, "sog", "playbot_lod4"),
}
EXGS = [sys.executable, "-m", "exgs.cli"]


def size_of(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-400:]}")
    return time.perf_counter() - t


def quality(ref_scene, scenes: dict, cams) -> dict:
    from exgs.metrics import psnr, ssim
    from exgs.render import render

    refs = [render(ref_scene, c, device="cpu").rgb for c in cams]
    out = {}
    for name, s in scenes.items():
        imgs = [render(s, c, device="cpu").rgb for c in cams]
        out[name] = {"psnr": float(sum(psnr(a, b) for a, b in zip(refs, imgs)) / len(cams)),
                     "ssim": float(sum(ssim(a, b) for a, b in zip(refs, imgs)) / len(cams))}
    return out


def bench_scene(name: str, src: str, tmp: str, args) -> dict:
    from exgs.cameras import orbit_for_scene
    from exgs.io import detect_format, read_scene

    t = time.perf_counter()
    source = read_scene(src)
    read_s = time.perf_counter() - t
    n, deg = len(source), source.sh_degree
    ply = os.path.join(tmp, f"{name}.ply")
    run(EXGS + ["convert", src, ply])
    ply_sh3 = n * 248 + 1024
    target = ply_sh3 / 100.0
    exgs_path = os.path.join(tmp, f"{name}.exgs")
    compress_s = run(EXGS + ["compress", ply, "-o", exgs_path, "--ratio",
                             f"{os.path.getsize(ply) / target:.4f}"])
    pub = os.path.join(tmp, f"{name}_100x.sog")
    export_s = run(EXGS + ["convert", exgs_path, pub])
    full = os.path.join(tmp, f"{name}_full.sog")
    full_s = run(EXGS + ["convert", src, full])
    decoded, published = read_scene(exgs_path), read_scene(pub)
    w, h = args.size
    cams = orbit_for_scene(source, args.views, w, h, seed=1234, azimuth_offset_deg=17.0)
    q = quality(source, {"exgs": decoded, "sog_100x": published}, cams)
    q_export = quality(decoded, {"sog_100x": published}, cams)["sog_100x"]
    row = {"source": os.path.relpath(src, SCENES), "source_format": detect_format(src),
           "gaussians": n, "sh_degree": deg, "source_bytes": size_of(src),
           "ply_sh3_bytes": ply_sh3, "read_s": read_s,
           "our_full_sog_bytes": size_of(full), "our_full_sog_s": full_s,
           "exgs_bytes": size_of(exgs_path), "exgs_gaussians": len(decoded),
           "compress_s": compress_s, "sog_100x_bytes": size_of(pub), "export_s": export_s,
           "sog_100x_gaussians": len(published),
           "quality_vs_source": q, "export_vs_exgs_decode": q_export}
    if args.splat_transform:
        st_ply = os.path.join(tmp, f"{name}_st.ply")
        run([args.splat_transform, "-q", "-w", pub, st_ply])
        outside = read_scene(st_ply)
        row["splat_transform"] = {"gaussians": len(outside),
                                  **quality(decoded, {"st": outside}, cams)["st"]}
    return row


def main() -> int:
    from exgs.commands._common import parse_size

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", default=",".join(SOURCES))
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--size", type=parse_size, default=(384, 288))
    ap.add_argument("--splat-transform", default=None,
                    help="path of PlayCanvas splat-transform (npm) for the outside check")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "formats.json"))
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="exgs-bench-formats-") as tmp:
        for name in args.scenes.split(","):
            if not os.path.exists(SOURCES[name]):
                print(f"{name}: {SOURCES[name]} missing, skipped")
                continue
            rows[name] = r = bench_scene(name, SOURCES[name], tmp, args)
            st = r.get("splat_transform")
            print(f"{name:9s} N={r['gaussians']:>7,} SH{r['sh_degree']} "
                  f"source {r['source_format']} {r['source_bytes'] / 1e6:6.2f} MB | our full .sog "
                  f"{r['our_full_sog_bytes'] / 1e6:6.2f} MB | .exgs {r['exgs_bytes'] / 1e3:7.1f} kB "
                  f"-> .sog {r['sog_100x_bytes'] / 1e3:7.1f} kB | PSNR vs source: exgs "
                  f"{r['quality_vs_source']['exgs']['psnr']:.2f} / sog "
                  f"{r['quality_vs_source']['sog_100x']['psnr']:.2f} dB, export "
                  f"{r['export_vs_exgs_decode']['psnr']:.2f} dB"
                  + (f" | splat-transform N={st['gaussians']:,} {st['psnr']:.2f} dB" if st else ""),
                  flush=True)
    load = os.getloadavg()
    result = {"machine": "shared 2-core x86_64, 24 GiB", "load_avg": load,
              "views": args.views, "size": list(args.size), "scenes": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"load average {load[0]:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
