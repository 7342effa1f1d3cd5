"""GaussPainter on held-out REAL captures (and procedural scenes, reported apart).

    .venv/bin/python bench/painter_real.py [--painter DIR] [--variants shipped,alpha-only]
        [--scenes real:statue_st_peter,real:aerial_t3,real:statue_massa+shell]
        [--proc proc:1000-1006] [--views 8] [--size 256] [--keeps 0.01,0.03,0.10]

For every scene: ``--views`` cameras orbiting the object's robust bounds with the scene's own
up axis (:func:`exgs.painter.data.frame_views`: distance 0.3–1.3 × the framing radius, fov
25–75°, elevation −5–60°, seeded unlike any training view), the full render, and UGC-pruned
renders at each kept fraction (significance scored on 24 orbit views of the object, so a
``+shell`` background does not hide it). Per view: PSNR of the pruned render and of each
painter variant's restoration against the full render, the frame's full-coverage fraction
(full render alpha ≥ 0.99) and the mean brightness shift restored − pruned (0–255).

With ``--refine-steps N`` every pruned scene is refined first and restored as a reader of a
refined file restores it (``refined=True``: the weights' refined gate / detail tables when
they have them); ``--refined-tables both`` adds ``NAME:generic`` variants restoring the same
frames with the generic tables (what refined files got before session 7).

Variants: ``shipped`` (the weights' own gate), ``alpha-only`` (gate floor 0: opaque pixels are
returned exactly), ``DIR`` / ``name=DIR`` (another weights directory). Real and procedural
scenes are summarised apart; a scene counts as *full-coverage* when its views are ≥ 95 %
covered on average. ``--flicker`` adds a temporal-stability measurement on a smooth path.

Prints tables and writes bench/results/painter_real.json.
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

#: held-out real scenes (never in a training set): a statue on an empty background, the aerial
#: tile (ground fills most views), and a statue inside a generated background shell (alpha = 1
#: everywhere: the unbounded-capture case)
DEFAULT_SCENES = ("real:statue_st_peter,real:aerial_t3,real:statue_trumpet,"
                  "real:statue_massa+shell,real:statue_trumpet+shell")


def load_variants(spec: str) -> dict:
    """{name: Painter} for a comma list of shipped | alpha-only | covK (the shipped weights with
    ``gate_coverage_gain`` K) | [name=]DIR[@covK]."""
    from exgs.painter import load_painter

    out = {}
    for v in spec.split(","):
        v = v.strip()
        if v == "shipped":
            out[v] = load_painter()
        elif v == "alpha-only":
            p = load_painter()
            p.net.cfg.gate_floor = 0.0
            out[v] = p
        elif v.startswith("cov"):
            p = load_painter()
            p.net.cfg.gate_coverage_gain = float(v[3:])
            out[v] = p
        else:
            name, _, d = v.rpartition("=")
            d, _, cov = d.partition("@cov")
            p = load_painter(d)
            if cov:
                p.net.cfg.gate_coverage_gain = float(cov)
            out[name or Path(d).name] = p
    return out


def bench_scene(spec, painters, keeps, views, size, scenes_dir, seed=4242, flicker=0,
                refine_steps=0, refined=None):
    """``refined`` {variant name: bool}: restore that variant's frames as a refined file's
    (default: every variant when ``refine_steps``)."""
    if refined is None:
        refined = {n: bool(refine_steps) for n in painters}
    from exgs.metrics import psnr
    from exgs.painter.data import (_seed, frame_views, load_scene, prune_many, scene_frame,
                                   significance_views)
    from exgs.render import render

    t0 = time.time()
    scene = load_scene(spec, scenes_dir)
    frame = scene_frame(spec, scene)
    cams = frame_views(frame, views, size, seed=_seed(seed, spec) % (1 << 31))
    full = [render(scene, c, device="cpu") for c in cams]
    pruned = prune_many(scene, keeps, "ugc", cameras=significance_views(frame), up=frame["up"])
    if refine_steps:  # the files after refinement (issue 10), teachers unlike the views
        from exgs.painter.data import refine_many

        teach = frame_views(frame, 24, 128, seed=_seed(seed, spec, "teach") % (1 << 31))
        pruned = refine_many(scene, pruned, refine_steps, teach, frame["up"])
    rows = []
    for keep, ps in zip(keeps, pruned):
        kf = len(ps) / len(scene)
        for i, (r, c) in enumerate(zip(full, cams)):
            d = render(ps, c, device="cpu")
            row = {"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
                   "keep": keep, "view": i, "coverage": float((r.alpha >= 0.99).mean()),
                   "pruned_psnr": psnr(d.rgb, r.rgb), "restored": {}, "shift": {}}
            for name, p in painters.items():
                o = p.restore(d.rgb, d.alpha, kept_fraction=kf, refined=refined[name])
                row["restored"][name] = psnr(o, r.rgb)
                row["shift"][name] = float((o.mean() - d.rgb.mean()) * 255)
            rows.append(row)
    res = {"rows": rows, "seconds": time.time() - t0}
    if flicker:
        res["flicker"] = bench_flicker(scene, frame, pruned, keeps, painters, flicker, size,
                                       refined)
    return res


def bench_flicker(scene, frame, pruned, keeps, painters, n_frames, size, refined):
    """Temporal stability on a smooth orbit (``n_frames`` frames, 1.5° apart): mean
    |frame-to-frame difference| (0–255) of each restored sequence minus that of the full-scene
    sequence, next to the same for the unrestored (pruned) sequence. Lower is steadier; a
    restorer should not be above the unrestored value."""
    import math

    from exgs.cameras import orbit_cameras
    from exgs.render import render

    r = 0.8 * frame["half_diag"] / math.sin(math.radians(25))
    cams = orbit_cameras(frame["center"], r, 240, size, size, up=frame["up"],  # 1.5° apart
                         elevation_deg=(20, 20), fov_x_deg=50, seed=None)[:n_frames]

    def tv(seq):
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(seq[1:], seq[:-1])]) * 255)

    full = [render(scene, c, device="cpu").rgb for c in cams]
    base = tv(full)
    out = {"frames": n_frames, "full": base, "keeps": {}}
    for keep, ps in zip(keeps, pruned):
        kf = len(ps) / len(scene)
        ds = [render(ps, c, device="cpu") for c in cams]
        e = {"pruned": tv([d.rgb for d in ds]) - base}
        for name, p in painters.items():
            e[name] = tv([p.restore(d.rgb, d.alpha, kept_fraction=kf, refined=refined[name])
                          for d in ds]) - base
        out["keeps"][f"{keep:g}"] = e
    return out


def summarize(rows, names) -> list[dict]:
    """Per (kind, scene, keep) and per (kind, ALL, keep): mean PSNR, gain per variant, the
    worst view's gain and the coverage."""
    out = []
    for kind in sorted({r["kind"] for r in rows}):
        kr = [r for r in rows if r["kind"] == kind]
        for keep in sorted({r["keep"] for r in kr}):
            sel = [r for r in kr if r["keep"] == keep]
            for scene in sorted({r["scene"] for r in sel}) + ["ALL"]:
                s = [r for r in sel if scene == "ALL" or r["scene"] == scene]
                e = {"kind": kind, "scene": scene, "keep": keep, "n": len(s),
                     "coverage": float(np.mean([r["coverage"] for r in s])),
                     "pruned_psnr": float(np.mean([r["pruned_psnr"] for r in s]))}
                for n in names:
                    g = np.array([r["restored"][n] - r["pruned_psnr"] for r in s])
                    e[n] = {"restored_psnr": float(np.mean([r["restored"][n] for r in s])),
                            "gain_db": float(g.mean()), "worst_view_db": float(g.min()),
                            "shift": float(np.mean([r["shift"][n] for r in s]))}
                out.append(e)
    return out


def print_table(summary, names) -> None:
    head = f"{'kind':>4} {'keep':>5} {'scene':>30} {'n':>3} {'cov':>5} {'pruned':>7}"
    for n in names:
        head += f" | {n[:14]:>14} {'gain':>6} {'worst':>6} {'shift':>6}"
    print(head)
    for e in summary:
        line = (f"{e['kind']:>4} {e['keep']:>5.3f} {e['scene'][:30]:>30} {e['n']:>3} "
                f"{e['coverage']:>5.2f} {e['pruned_psnr']:>7.2f}")
        for n in names:
            v = e[n]
            line += (f" | {v['restored_psnr']:>14.2f} {v['gain_db']:>+6.2f} "
                     f"{v['worst_view_db']:>+6.2f} {v['shift']:>+6.2f}")
        print(line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="shipped,alpha-only")
    ap.add_argument("--scenes", default=DEFAULT_SCENES, help="held-out real scenes")
    ap.add_argument("--proc", default="proc:1000-1006", help="held-out procedural scenes ('' = none)")
    ap.add_argument("--scenes-dir", default="/work/shared/scenes")
    ap.add_argument("--keeps", default="0.01,0.03,0.10")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--proc-views", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--refine-steps", type=int, default=0,
                    help="> 0: refine every pruned scene this many steps first (issue 10)")
    ap.add_argument("--refined-tables", choices=("on", "both"), default="on",
                    help="with --refine-steps: restore as refined files (on), or also with the "
                         "generic tables as NAME:generic (both)")
    ap.add_argument("--flicker", type=int, default=0, help="frames of the flicker path (0 = off)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "painter_real.json"))
    args = ap.parse_args(argv)

    import torch

    from exgs.painter.data import parse_scene_specs

    torch.set_num_threads(args.threads)
    painters = load_variants(args.variants)
    refined = {n: bool(args.refine_steps) for n in painters}
    if args.refine_steps and args.refined_tables == "both":
        for n in list(painters):
            painters[f"{n}:generic"] = painters[n]
            refined[f"{n}:generic"] = False
    names = list(painters)
    keeps = [float(x) for x in args.keeps.split(",")]
    res = {"variants": args.variants, "size": args.size, "keeps": keeps,
           "refine_steps": args.refine_steps, "refined": refined,
           "machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start",
           "scenes": {}}
    specs = [(s, args.views) for s in parse_scene_specs([args.scenes])]
    if args.proc:
        specs += [(s, args.proc_views) for s in parse_scene_specs([args.proc])]
    rows = []
    for spec, views in specs:
        r = bench_scene(spec, painters, keeps, views, args.size, args.scenes_dir,
                        flicker=args.flicker if spec.startswith("real:") else 0,
                        refine_steps=args.refine_steps, refined=refined)
        rows += r.pop("rows")
        res["scenes"][spec] = r
        print(f"  {spec}: {r['seconds']:.0f} s", flush=True)
    res["rows"] = rows
    res["summary"] = summarize(rows, names)
    res["load_end"] = os.getloadavg()[0]
    print_table(res["summary"], names)
    for spec, r in res["scenes"].items():
        if "flicker" in r:
            f = r["flicker"]
            print(f"flicker {spec} (full {f['full']:.2f}): " + "; ".join(
                f"{k}: " + ", ".join(f"{n} {v:+.2f}" for n, v in e.items())
                for k, e in f["keeps"].items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
