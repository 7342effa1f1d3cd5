"""GaussPainter benchmark: speed per frame and PSNR/SSIM with/without the painter.

    .venv/bin/python bench/painter.py [--painter DIR] [--quick] [--scenes playbot_lod3,proc:1000-1003]

* speed: median ms to restore a 512×512 and a 1280×720 frame on the CPU (2 threads);
* quality: for held-out scenes (never trained on: playbot_lod3, the built-in demo scene and
  procedural seeds ≥ 1000),
  held-out orbit views, and kept fractions 1 %, 3 %, 10 %: PSNR/SSIM of the pruned render
  ("UGC only", or the simple pruning when exgs.ugc is unavailable) and of the restored render
  against the full-scene render, plus the restored-vs-input PSNR on full renders (do-no-harm),
  and "bg": the mean brightness (0–255) where the full render is empty (alpha < 0.02) —
  content invented on the background shows up there.

Prints a table and writes bench/results/painter.json.
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


def bench_speed(painter, reps: int) -> dict:
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    out = {}
    for w, h in [(512, 512), (1280, 720)]:
        rgb = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        alpha = np.clip(rng.uniform(-0.5, 1.5, (h, w)), 0, 1).astype(np.float32)
        painter.restore(rgb, alpha)  # warm-up
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            painter.restore(rgb, alpha)
            ts.append(1000 * (time.perf_counter() - t))
        out[f"{w}x{h}"] = {"median_ms": float(np.median(ts)), "min_ms": float(np.min(ts)),
                           "reps": reps}
    return out


def _background(img, empty) -> float:
    """Mean brightness (0–255) of ``img`` where ``empty`` (the full render has nothing)."""
    return float(img[empty].mean() * 255) if empty.any() else 0.0


def bench_quality(painter, specs, keeps, views: int, size: int, prune_method: str,
                  scenes_dir: str) -> dict:
    from exgs.cameras import orbit_for_scene
    from exgs.metrics import psnr, ssim
    from exgs.painter.data import load_scene, prune_many
    from exgs.render import render

    rows = []
    for spec in specs:
        scene = load_scene(spec, scenes_dir)
        cams = []
        for i in range(views):  # held-out views: seeds and elevations unlike training
            cams += orbit_for_scene(scene, 1, size, size, up="-y", distance=0.9 + 0.2 * (i % 2),
                                    fov_x_deg=50, seed=9000 + i, elevation_deg=(20, 20),
                                    azimuth_offset_deg=360 * i / views + 17)
        full = [render(scene, c, device="cpu") for c in cams]
        for r in full:  # do-no-harm: nothing pruned
            o = painter.restore(r.rgb, r.alpha, kept_fraction=1.0)
            empty = r.alpha < 0.02
            rows.append({"scene": spec, "keep": 1.0, "pruned_psnr": 100.0,  # identical: capped
                         "restored_psnr": psnr(o, r.rgb), "pruned_ssim": 1.0,
                         "restored_ssim": ssim(o, r.rgb),
                         "pruned_bg": _background(r.rgb, empty),
                         "restored_bg": _background(o, empty)})
        for keep, ps in zip(keeps, prune_many(scene, keeps, prune_method)):
            for r, c in zip(full, cams):
                d = render(ps, c, device="cpu")
                o = painter.restore(d.rgb, d.alpha, kept_fraction=len(ps) / len(scene))
                empty = r.alpha < 0.02  # the full scene has nothing here: must stay background
                rows.append({"scene": spec, "keep": keep,
                             "pruned_psnr": psnr(d.rgb, r.rgb), "restored_psnr": psnr(o, r.rgb),
                             "pruned_ssim": ssim(d.rgb, r.rgb), "restored_ssim": ssim(o, r.rgb),
                             "pruned_bg": _background(d.rgb, empty),
                             "restored_bg": _background(o, empty)})
    return rows


def side_by_side(painter, spec: str, keeps, size: int, prune_method: str, scenes_dir: str,
                 path: str) -> None:
    """PNG grid: one row per kept fraction — full render | pruned render | restored."""
    from PIL import Image

    from exgs.cameras import orbit_for_scene
    from exgs.metrics import psnr
    from exgs.painter.data import load_scene, prune_many
    from exgs.render import render

    scene = load_scene(spec, scenes_dir)
    cam = orbit_for_scene(scene, 1, size, size, up="-y", distance=0.8, fov_x_deg=50, seed=9100,
                          elevation_deg=(15, 15), azimuth_offset_deg=40)[0]
    full = render(scene, cam, device="cpu")
    rows = []
    for keep, ps in zip(keeps, prune_many(scene, keeps, prune_method)):
        d = render(ps, cam, device="cpu")
        o = painter.restore(d.rgb, d.alpha, kept_fraction=len(ps) / len(scene))
        print(f"  figure {spec} keep {keep:.3f}: pruned {psnr(d.rgb, full.rgb):.2f} dB, "
              f"restored {psnr(o, full.rgb):.2f} dB")
        rows.append(np.concatenate([full.rgb, d.rgb, o], 1))
    img = (np.clip(np.concatenate(rows, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    print(f"wrote {path}")


def summarize(rows) -> list[dict]:
    out = []
    keys = sorted({(r["scene"], r["keep"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for keep in sorted({r["keep"] for r in rows}):
        sel = [r for r in rows if r["keep"] == keep]
        for scene in sorted({r["scene"] for r in sel}) + ["ALL"]:
            s = [r for r in sel if scene == "ALL" or r["scene"] == scene]
            f = lambda k: float(np.mean([r[k] for r in s]))  # noqa: E731
            out.append({"keep": keep, "scene": scene, "n": len(s),
                        "pruned_psnr": f("pruned_psnr"), "restored_psnr": f("restored_psnr"),
                        "gain_db": f("restored_psnr") - f("pruned_psnr"),
                        "pruned_ssim": f("pruned_ssim"), "restored_ssim": f("restored_ssim"),
                        "pruned_bg": f("pruned_bg"), "restored_bg": f("restored_bg")})
    del keys
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--painter", default=None, help="weights directory (default: shipped)")
    ap.add_argument("--scenes", default="playbot_lod3,demo,proc:1000-1006")
    ap.add_argument("--scenes-dir", default="/work/shared/scenes")
    ap.add_argument("--keeps", default="0.01,0.03,0.10")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--prune", default="auto", choices=["auto", "ugc", "simple"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="speed only")
    ap.add_argument("--figure", default=None, help="also write a side-by-side PNG here")
    ap.add_argument("--figure-scene", default="playbot_lod3")
    ap.add_argument("--figure-size", type=int, default=256, help="pixels per panel")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "painter.json"))
    args = ap.parse_args(argv)

    from exgs.painter import load_painter
    from exgs.painter.data import parse_scene_specs, ugc_available

    painter = load_painter(args.painter)
    prune_method = args.prune if args.prune != "auto" else ("ugc" if ugc_available() else "simple")
    res = {"painter": args.painter or "default", "machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start",
           "speed": bench_speed(painter, args.reps)}
    print("speed (median ms per frame, 2 threads):")
    for k, v in res["speed"].items():
        print(f"  {k:>9}  {v['median_ms']:8.0f} ms  (min {v['min_ms']:.0f})")
    if not args.quick:
        keeps = [float(x) for x in args.keeps.split(",")]
        rows = bench_quality(painter, parse_scene_specs([args.scenes]), keeps, args.views,
                             args.size, prune_method, args.scenes_dir)
        res["pruning"] = prune_method
        res["rows"] = rows
        res["summary"] = summarize(rows)
        print(f"\nquality on held-out scenes/views ({args.size}px, pruning: {prune_method}):")
        print(f"{'keep':>6} {'scene':>14} {'n':>3} {'pruned dB':>10} {'restored dB':>12} {'gain':>7}"
              f" {'SSIM pr':>8} {'SSIM re':>8} {'bg pr':>6} {'bg re':>6}")
        for s in res["summary"]:
            print(f"{s['keep']:>6.3f} {s['scene']:>14} {s['n']:>3} {s['pruned_psnr']:>10.2f} "
                  f"{s['restored_psnr']:>12.2f} {s['gain_db']:>+7.2f} {s['pruned_ssim']:>8.4f} "
                  f"{s['restored_ssim']:>8.4f} {s['pruned_bg']:>6.2f} {s['restored_bg']:>6.2f}")
    if args.figure:
        side_by_side(painter, args.figure_scene, [float(x) for x in args.keeps.split(",")],
                     args.figure_size, prune_method, args.scenes_dir, args.figure)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
