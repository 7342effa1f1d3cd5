"""GaussPainter flicker on a smooth camera path over held-out scenes.

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/painter_flicker.py \
        [--scenes real:statue_trumpet,real:statue_st_peter,real:aerial_t3,real:statue_massa+shell]
        [--proc proc:1001] [--frames 32] [--step 1.0] [--size 256] [--keeps 0.01,0.03,0.10]

Per scene: a slow orbit (``--frames`` frames ``--step`` degrees apart, elevation 20°, fov 50°,
distance 0.8 × the framing radius of the object: :func:`exgs.painter.data.scene_frame`), the
full-scene render and UGC-pruned renders at each kept fraction (significance on 24 orbit
views of the object, as bench/painter_real.py). Flicker (:func:`exgs.painter.temporal.flicker`)
= mean |frame-to-frame difference| (0–255) of a sequence **minus that of the full-scene
sequence**, for:

* ``unrestored`` — the pruned frames;
* ``painter``    — each frame restored on its own (shipped weights, the file's kept fraction);
* ``stabilized`` — the painter's frames through :class:`exgs.painter.temporal.TemporalStabilizer`
  (``exgs render --restore --temporal``).

``--as-written``: the pruned scenes are the files ``compress_scene`` writes (``keep_target``,
default options: the painter verdict and the file's own setting, docs/painter.md "Session 9"),
and ``painter`` / ``stabilized`` restore each as readers do (its ``"tune"`` setting applied, a
``"none"`` file unrestored); the row records the file's painter section.

Target: restored ≤ unrestored. Mean PSNR of each sequence against the full render is reported
too (what stabilisation costs). Also checks the painter is deterministic (a frame restored
twice is bit-identical). Real and procedural scenes are reported apart.
Writes bench/results/painter_flicker.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

DEFAULT_SCENES = "real:statue_trumpet,real:statue_st_peter,real:aerial_t3,real:statue_massa+shell"


def path_cameras(frame: dict, n: int, step_deg: float, size: int) -> list:
    """``n`` cameras ``step_deg`` apart on an orbit around a scene_frame (smooth path)."""
    from exgs.cameras import orbit_cameras

    r = 0.8 * frame["half_diag"] / math.sin(math.radians(25))
    steps = max(2, round(360.0 / step_deg))
    return orbit_cameras(frame["center"], r, steps, size, size, up=frame["up"],
                         elevation_deg=(20, 20), fov_x_deg=50, seed=None)[:n]


def written_files(scene, frame, keeps, painter_dir=None):
    """[(decoded scene, its reader: :func:`exgs.pipeline.restorer_for` of the file's facts,
    section form)] of the files ``compress_scene`` writes at each kept fraction (see
    ``--as-written``)."""
    from exgs.painter.data import significance_views
    from exgs.pipeline import (CompressOptions, PainterCache, compress_scene, facts_of_bytes,
                               restorer_for)

    cache = PainterCache(painter_dir)
    out = []
    for keep in keeps:
        res = compress_scene(scene, CompressOptions(keep_target=keep, device="cpu",
                                                    up=frame["up"],
                                                    cameras=significance_views(frame)))
        reader = restorer_for(facts_of_bytes(res.data), cache=cache)
        out.append((res.scene, reader, reader.delta["form"] or "generic"))
    return out


def bench_scene(spec, painter, keeps, n, step, size, scenes_dir, as_written=False,
                painter_dir=None) -> dict:
    from exgs.metrics import psnr
    from exgs.painter.data import load_scene, prune_many, scene_frame, significance_views
    from exgs.painter.temporal import TemporalStabilizer, flicker
    from exgs.render import render

    t0 = time.time()
    scene = load_scene(spec, scenes_dir)
    frame = scene_frame(spec, scene)
    cams = path_cameras(frame, n, step, size)
    full = [render(scene, c, device="cpu") for c in cams]
    base = flicker([f.rgb for f in full])
    if as_written:
        files = written_files(scene, frame, keeps, painter_dir)
        pruned = [f[0] for f in files]
    else:
        pruned = prune_many(scene, keeps, "ugc", cameras=significance_views(frame),
                            up=frame["up"])
    out = {"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
           "gaussians": len(scene), "frames": n, "step_deg": step, "size": size,
           "full_flicker": base,
           "coverage": float(np.mean([(f.alpha >= 0.99).mean() for f in full])), "keeps": {}}
    for i, (keep, ps) in enumerate(zip(keeps, pruned)):
        kf = len(ps) / len(scene)
        ds = [render(ps, c, device="cpu") for c in cams]
        xs = [d.rgb for d in ds]
        if as_written:  # restored as readers restore the file (a "none" file unchanged)
            ys = [files[i][1](d.rgb, d.alpha) for d in ds]
            again = files[i][1](ds[0].rgb, ds[0].alpha)
        else:
            ys = [painter.restore(d.rgb, d.alpha, kept_fraction=kf) for d in ds]
            again = painter.restore(ds[0].rgb, ds[0].alpha, kept_fraction=kf)
        stab = TemporalStabilizer()
        zs = [stab(x, y) for x, y in zip(xs, ys)]
        e = {}
        for name, seq in (("unrestored", xs), ("painter", ys), ("stabilized", zs)):
            e[name] = {"flicker": flicker(seq) - base,
                       "psnr": float(np.mean([psnr(s, f.rgb) for s, f in zip(seq, full)]))}
        e["kept_fraction"] = kf
        if as_written:
            e["section"] = files[i][2]
        e["deterministic"] = bool(np.array_equal(again, ys[0]))
        out["keeps"][f"{keep:g}"] = e
        print(f"  {spec} {keep:.0%}: flicker (vs full {base:.2f}) unrestored "
              f"{e['unrestored']['flicker']:+.3f}, painter {e['painter']['flicker']:+.3f}, "
              f"stabilized {e['stabilized']['flicker']:+.3f}; PSNR "
              f"{e['unrestored']['psnr']:.2f} / {e['painter']['psnr']:.2f} / "
              f"{e['stabilized']['psnr']:.2f} dB", flush=True)
    out["seconds"] = time.time() - t0
    return out


def print_table(rows) -> None:
    print("\n| scene | kept | flicker unrestored | painter | stabilized | PSNR unrestored / "
          "painter / stabilized |")
    print("|---|---|---|---|---|---|")
    for kind in ("real", "proc"):
        for r in [r for r in rows if r["kind"] == kind]:
            for k, e in r["keeps"].items():
                print(f"| {r['scene']} | {float(k):.0%} | {e['unrestored']['flicker']:+.3f} | "
                      f"{e['painter']['flicker']:+.3f} | {e['stabilized']['flicker']:+.3f} | "
                      f"{e['unrestored']['psnr']:.2f} / {e['painter']['psnr']:.2f} / "
                      f"{e['stabilized']['psnr']:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default=DEFAULT_SCENES)
    ap.add_argument("--proc", default="proc:1001")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--step", type=float, default=1.0, help="degrees between frames")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--keeps", default="0.01,0.03,0.10")
    ap.add_argument("--painter", default=None)
    ap.add_argument("--as-written", action="store_true",
                    help="the files compress_scene writes, restored as readers do")
    ap.add_argument("--scenes-dir", default="/work/shared/scenes")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "painter_flicker.json"))
    args = ap.parse_args(argv)

    import torch

    from exgs.painter import load_painter

    torch.set_num_threads(2)
    painter = load_painter(args.painter)
    keeps = [float(k) for k in args.keeps.split(",")]
    specs = [s for s in args.scenes.split(",") + args.proc.split(",") if s.strip()]
    res = {"painter": args.painter or "shipped", "as_written": args.as_written,
           "load_before": list(os.getloadavg()),
           "rows": []}
    for spec in specs:
        res["rows"].append(bench_scene(spec.strip(), painter, keeps, args.frames, args.step,
                                       args.size, args.scenes_dir, args.as_written,
                                       args.painter))
        res["load_after"] = list(os.getloadavg())
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2))
        os.replace(tmp, args.out)
    print_table(res["rows"])
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
