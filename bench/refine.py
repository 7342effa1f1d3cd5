"""Refinement rate–distortion benchmark: training-free UGC vs UGC + ``refine`` at equal file
size, per time budget, on the shared real scenes.

    nice -n 0 .venv/bin/python bench/refine.py [--scenes trumpet,st_peter,aerial]
        [--ratios 30,100,300,1000] [--budgets 30,60,120] [--full-ratios 100,1000]
        [--sh 0] [--eval-size 384] [--eval-views 8] [--out refine]

For every scene and ratio the scene is compressed once (``exgs.ugc.compress``, SH degree
``--sh``); the training-free file is then refined with each budget in ``--budgets`` for the
ratios in ``--full-ratios`` and with the largest budget only for the other ratios
(``exgs.ugc.refine_file.refine_result``: teacher renders, steps, held-out switch-off,
re-encoding within the byte budget all inside the budget). **Ratio = size of the scene as
an SH-degree-3 INRIA PLY (248 B/Gaussian + 1 kB) / file size**, as bench/compress.py.

Quality: mean PSNR/SSIM of the decoded file's renders against the full scene's renders over
``--eval-views`` held-out orbit views (seed 1234, 17° azimuth offset — never a teacher view,
nor one of refine's own switch-off views) at ``--eval-size`` px square. Each scene runs in
its own process (peak RSS from ``getrusage``); the 1-minute load average is recorded around
every refinement (the machine is shared: timings are inflated when it is loaded).

Scenes: the development scenes (playbot_lod3, statue_angel) were used to write and tune the
method; the held-out scenes (statue_trumpet, statue_st_peter, aerial_t3) only for the final
figures. ``--scenes synth`` adds a procedural scene (exgs.synth.demo_scene), reported apart.

Writes bench/results/<out>.json, <out>.md (table) and <out>.png (plot, PIL).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = "/work/shared/scenes" if os.path.isdir("/work/shared/scenes") else os.path.join(
    os.path.dirname(ROOT), "shared", "scenes")
RESULTS = os.path.join(ROOT, "bench", "results")
#: name → (path, up axis, elevation band of views or None for the default 10–40°, role)
SCENES = {
    "trumpet": ("real/statue_trumpet.sog", "-y", None, "held-out"),
    "st_peter": ("real/statue_st_peter.sog", "-y", None, "held-out"),
    "aerial": ("real/aerial_t3.spz", "-z", (50.0, 80.0), "held-out"),
    "angel": ("real/statue_angel.sog", "-y", None, "development"),
    "lod3": ("playbot_lod3.ply", "-y", None, "development"),
    "synth": (None, "-y", None, "procedural"),
}


def child(name: str, args) -> dict:
    """One scene, all ratios and budgets (runs in its own process)."""
    import resource

    import numpy as np

    from exgs.cameras import orbit_for_scene
    from exgs.metrics import psnr, ssim
    from exgs.render import render_many
    from exgs.ugc import compress
    from exgs.ugc.compress import inria_ply_bytes
    from exgs.ugc.evaluate import HELD_OUT_AZIMUTH, HELD_OUT_SEED
    from exgs.ugc.refine import RefineOptions
    from exgs.ugc.refine_file import refine_result

    rel, up, elev, role = SCENES[name]
    if rel is None:
        from exgs.synth import demo_scene

        full = demo_scene(n=100_000, sh_degree=3, seed=7)
    else:
        from exgs.io import read_scene

        full = read_scene(os.path.join(SHARED, rel))
    n = len(full)
    src = inria_ply_bytes(n, 3)
    es = args.eval_size
    ev = orbit_for_scene(full, args.eval_views, es, es, up=up, distance=0.8,
                         seed=HELD_OUT_SEED, azimuth_offset_deg=HELD_OUT_AZIMUTH,
                         elevation_deg=elev or (10.0, 40.0))
    refs = [r.rgb for r in render_many(full, ev)]

    def quality(sc):
        outs = [r.rgb for r in render_many(sc, ev)]
        return (float(np.mean([psnr(a, b) for a, b in zip(refs, outs)])),
                float(np.mean([ssim(a, b) for a, b in zip(refs, outs)])))

    score_cams = None
    if elev is not None:  # views from above for scoring too (aerial capture)
        score_cams = orbit_for_scene(full, 24, 320, 240, up=up, distance=0.8, seed=0,
                                     elevation_deg=elev)
    rows, score = [], None
    full_ratios = set(args.full_ratios)
    for ratio in args.ratios:
        t0 = time.perf_counter()
        res = compress(full, budget_bytes=src / ratio, source_bytes=src, sh_degree=args.sh, up=up,
                       cameras=score_cams, score=score)
        score = res.score
        p0, s0 = quality(res.scene)
        base = {"scene": name, "role": role, "gaussians": n, "ratio": ratio, "sh": args.sh,
                "kept": len(res.scene), "bytes": len(res.data), "psnr": p0, "ssim": s0,
                "budget": 0, "compress_s": time.perf_counter() - t0}
        rows.append(base)
        print(json.dumps(base), file=sys.stderr, flush=True)
        budgets = args.budgets if ratio in full_ratios else [max(args.budgets)]
        for b in budgets:
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            out = refine_result(full, res, RefineOptions(seconds=b, up=up, elevation=elev))
            wall = time.perf_counter() - t0
            rep = out.stats["refine"]
            p1, s1 = quality(out.scene)
            row = {"scene": name, "role": role, "gaussians": n, "ratio": ratio, "sh": args.sh,
                   "budget": b, "kept": len(out.scene), "bytes": len(out.data),
                   "bytes_limit": int(src / ratio), "psnr": p1, "ssim": s1,
                   "gain_db": p1 - p0, "wall_s": wall, "over_budget": wall / b - 1.0,
                   "steps": rep["steps"], "s_per_step": rep["seconds_per_step"],
                   "teacher_s": rep["seconds_teacher"], "chosen": rep["chosen"],
                   "switched_off": rep["switched_off"],
                   "decision_psnr": rep["decision_psnr"], "load_before": load0,
                   "load_after": os.getloadavg()[0]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        r["peak_rss_mib"] = peak
    return {"scene": name, "role": role, "gaussians": n, "rows": rows}


def table(scenes) -> str:
    lines = ["| scene | role | ratio | kept | bytes | training-free PSNR | budget s | refined "
             "PSNR | gain dB | SSIM (free → refined) | steps | ms/step | wall s | load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for sc in scenes:
        base = {}
        for r in sc["rows"]:
            if r["budget"] == 0:
                base[r["ratio"]] = r
                continue
            b = base[r["ratio"]]
            lines.append(
                f"| {r['scene']} | {r['role']} | {r['ratio']:g}× | {r['kept']:,} | "
                f"{r['bytes']:,} | {b['psnr']:.2f} | {r['budget']} | {r['psnr']:.2f} | "
                f"{r['gain_db']:+.2f} | {b['ssim']:.3f} → {r['ssim']:.3f} | {r['steps']} | "
                f"{1e3 * (r['s_per_step'] or 0):.0f} | {r['wall_s']:.1f} | "
                f"{r['load_before']:.1f} |")
    return "\n".join(lines)


def plot(scenes, path: str) -> None:
    """PSNR vs ratio (log x), one panel per scene: training-free and each budget (PIL)."""
    from PIL import Image, ImageDraw

    cols = {0: (120, 120, 120), 30: (230, 140, 20), 60: (30, 100, 200), 120: (200, 30, 30)}
    pw, ph, m = 420, 320, 50
    img = Image.new("RGB", (pw * len(scenes), ph + 40), "white")
    d = ImageDraw.Draw(img)
    for i, sc in enumerate(scenes):
        x0 = i * pw
        rows = sc["rows"]
        xs = [math.log10(r["ratio"]) for r in rows]
        ys = [r["psnr"] for r in rows]
        xmin, xmax = math.floor(min(xs)), math.ceil(max(xs))
        ymin, ymax = math.floor(min(ys)) - 1, math.ceil(max(ys)) + 1
        X = lambda v: x0 + m + (v - xmin) / max(xmax - xmin, 1) * (pw - 2 * m)  # noqa: E731
        Y = lambda v: ph - m + 10 - (v - ymin) / (ymax - ymin) * (ph - 2 * m)  # noqa: E731
        d.rectangle([X(xmin), Y(ymax), X(xmax), Y(ymin)], outline="black")
        for e in range(xmin, xmax + 1):
            d.text((X(e) - 10, Y(ymin) + 6), f"{10 ** e:g}x", fill="black")
        for yv in range(int(ymin), int(ymax) + 1, 2):
            d.text((x0 + 10, Y(yv) - 6), f"{yv}", fill="black")
        d.text((x0 + m, 8), f"{sc['scene']} ({sc['role']}, {sc['gaussians']:,} G) PSNR dB",
               fill="black")
        for k, b in enumerate(sorted({r["budget"] for r in rows})):
            pts = sorted((X(math.log10(r["ratio"])), Y(r["psnr"])) for r in rows
                         if r["budget"] == b)
            col = cols.get(b, (0, 0, 0))
            if len(pts) > 1:
                d.line(pts, fill=col, width=2)
            for px, py in pts:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=col)
            d.text((x0 + 10 + k * 95, ph + 15), "training-free" if b == 0 else f"refine {b} s",
                   fill=col)
    img.save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="trumpet,st_peter,aerial")
    ap.add_argument("--ratios", default="30,100,300,1000")
    ap.add_argument("--budgets", default="30,60,120")
    ap.add_argument("--full-ratios", default="100,1000")
    ap.add_argument("--sh", type=int, default=0)
    ap.add_argument("--eval-size", type=int, default=384)
    ap.add_argument("--eval-views", type=int, default=8)
    ap.add_argument("--out", default="refine")
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    args.ratios = [float(x) for x in args.ratios.split(",")]
    args.budgets = [int(x) for x in args.budgets.split(",")]
    args.full_ratios = [float(x) for x in args.full_ratios.split(",") if x]
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    scenes = []
    argv = ["--ratios", ",".join(f"{r:g}" for r in args.ratios),
            "--budgets", ",".join(map(str, args.budgets)),
            "--full-ratios", ",".join(f"{r:g}" for r in args.full_ratios),
            "--sh", str(args.sh), "--eval-size", str(args.eval_size),
            "--eval-views", str(args.eval_views)]
    for name in args.scenes.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name] + argv
        out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True).stdout
        scenes.append(json.loads(out.strip().splitlines()[-1]))
        _write(scenes, args)
    return 0


def _write(scenes, args) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    meta = {"machine": f"{os.cpu_count()} CPU cores (shared)", "date": time.strftime(
        "%Y-%m-%d %H:%M UTC", time.gmtime()), "ratios": args.ratios, "budgets": args.budgets,
        "sh": args.sh, "eval": f"{args.eval_views} held-out orbit views, {args.eval_size}² px"}
    with open(os.path.join(RESULTS, f"{args.out}.json"), "w") as f:
        json.dump({"meta": meta, "scenes": scenes}, f, indent=1)
    with open(os.path.join(RESULTS, f"{args.out}.md"), "w") as f:
        f.write(table(scenes) + "\n")
    plot(scenes, os.path.join(RESULTS, f"{args.out}.png"))


if __name__ == "__main__":
    sys.exit(main())
