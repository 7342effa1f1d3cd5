"""UGC's voxel rule with and without the significance mass share (``--voxel-mass-share``):
quality of the *unrestored* compressed file on real captures, procedural scenes apart.

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/voxel_share.py \
        [--scenes real:statue_st_peter,...] [--proc proc:1000-1003] [--ratios 30,100,300]
        [--shares 0,0.5] [--views 8] [--size 256]

Per scene: the significance of every Gaussian on UGC's default scoring views (24 orbit views
of 320×240 around the robust bounds with the scene's up axis: what ``exgs compress`` does
without ``--cameras``; for ``+shell`` scenes, views of the object inside the shell), then one
``compress_scene`` per (ratio, share) with that score — ratio against the INRIA PLY of the
scene's own SH degree, SH degree 0 kept, byte budget met by the usual search — and the mean
PSNR of the decoded file's renders against the full scene's over ``--views`` held-out views
(:func:`exgs.painter.data.frame_views`, distance 0.3–1.3 × the framing radius, fov 25–75°,
seeded per scene; the views ``bench/painter_real.py`` uses at 4 views). Real and procedural
scenes are summarised apart. Writes bench/results/voxel_share.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

REAL = ("real:statue_st_peter,real:statue_trumpet,real:statue_angel,real:statue_narcissus,"
        "real:statue_angel_kneeling,real:statue_angel_candlestick,real:statue_massa,"
        "real:aerial_t3,real:flowers,real:statue_massa+shell,real:statue_trumpet+shell")


def bench_scene(spec, ratios, shares, views, size, scenes_dir) -> list[dict]:
    from exgs.metrics import psnr
    from exgs.painter.data import (_seed, frame_views, load_scene, scene_frame,
                                   significance_views)
    from exgs.pipeline import CompressOptions, compress_scene
    from exgs.render import render
    from exgs.ugc.significance import default_views, significance

    scene = load_scene(spec, scenes_dir)
    frame = scene_frame(spec, scene)
    cams = frame_views(frame, views, size, seed=_seed(4242, spec) % (1 << 31))
    full = [render(scene, c, device="cpu").rgb for c in cams]
    score_views = (significance_views(frame) if spec.endswith("+shell")
                   else default_views(scene, up=frame["up"]))
    t0 = time.time()
    score = significance(scene, score_views, device="cpu")
    rows = []
    for ratio in ratios:
        for share in shares:
            t = time.time()
            opts = CompressOptions(ratio=ratio, device="cpu", up=frame["up"],
                                   voxel_mass_share=share, ugc={"score": score})
            res = compress_scene(scene, opts)
            p = [psnr(render(res.scene, c, device="cpu").rgb, f) for c, f in zip(cams, full)]
            rows.append({"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
                         "gaussians": len(scene), "ratio": ratio, "share": share,
                         "kept_fraction": res.stats["kept_fraction"],
                         "file_bytes": res.stats["file_bytes"], "psnr": float(np.mean(p)),
                         "worst_view": float(np.min(p)), "seconds": time.time() - t})
            print(f"{spec:30s} {ratio:5.0f}x share {share:.2f}: kept "
                  f"{100 * rows[-1]['kept_fraction']:5.2f} %  {rows[-1]['psnr']:6.2f} dB  "
                  f"(worst view {rows[-1]['worst_view']:.2f}; {time.time() - t0:.0f} s)",
                  flush=True)
    return rows


def summarize(rows, shares) -> list[dict]:
    out = []
    base = shares[0]
    for kind in ("real", "proc"):
        for ratio in sorted({r["ratio"] for r in rows}):
            sel = [r for r in rows if r["kind"] == kind and r["ratio"] == ratio]
            if not sel:
                continue
            ref = {r["scene"]: r["psnr"] for r in sel if r["share"] == base}
            for share in shares[1:]:
                d = [r["psnr"] - ref[r["scene"]] for r in sel if r["share"] == share]
                out.append({"kind": kind, "ratio": ratio, "share": share, "scenes": len(d),
                            "mean_db": float(np.mean(d)), "median_db": float(np.median(d)),
                            "worst_scene_db": float(np.min(d)),
                            "best_scene_db": float(np.max(d))})
    return out


def main(argv=None) -> int:
    from exgs.painter.data import parse_scene_specs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default=REAL)
    ap.add_argument("--proc", default="proc:1000-1003")
    ap.add_argument("--ratios", default="30,100,300")
    ap.add_argument("--shares", default="0,0.5", help="the first one is the reference")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scenes-dir", default=str(ROOT.parent / "shared" / "scenes"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "voxel_share.json"))
    a = ap.parse_args(argv)
    ratios = [float(r) for r in a.ratios.split(",")]
    shares = [float(s) for s in a.shares.split(",")]
    specs = [s for s in a.scenes.split(",") if s]
    specs += parse_scene_specs(a.proc.split(",")) if a.proc else []
    load = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for spec in specs:
        rows += bench_scene(spec, ratios, shares, a.views, a.size, a.scenes_dir)
    summary = summarize(rows, shares)
    print("\nkind  ratio  share  scenes  mean Δ dB  median  worst scene  best scene")
    for s in summary:
        print(f"{s['kind']:5s} {s['ratio']:5.0f}x {s['share']:5.2f} {s['scenes']:6d} "
              f"{s['mean_db']:+9.2f} {s['median_db']:+7.2f} {s['worst_scene_db']:+12.2f} "
              f"{s['best_scene_db']:+11.2f}")
    res = {"machine": f"{os.cpu_count()} CPU cores", "load_start": load,
           "load_end": [round(x, 2) for x in os.getloadavg()], "views": a.views,
           "size": a.size, "ratios": ratios, "shares": shares, "rows": rows,
           "summary": summary}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
