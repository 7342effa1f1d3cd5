"""Compressing for a shot (``exgs compress --shot``, the add-on's *Fit to shot*): the files as
written, with and without the shot, on the shot's held-out frames and on other views.

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/shot.py \
        [--scenes real:statue_st_peter,...] [--ratios 300] [--shots closeup,orbit] \
        [--refine-steps 300] [--frames 32] [--size 256] [--out bench/results/shot.json]

Per scene, ratio (of the scene's SH-3 INRIA PLY size, as in bench/adapt.py) and shot kind, a
camera path of ``--frames`` frames around the object (:func:`exgs.painter.data.scene_frame`):

* ``closeup``: a 90° arc at 0.55 × the framing radius, 15° elevation, 40° fov (the camera
  close to the object, moving sideways);
* ``orbit``: a 180° arc at 0.8 × the framing radius, 20° elevation, 50° fov (the smooth path
  of bench/painter_flicker.py).

The even frames are the shot given to the compressor, the odd frames (between them, never
given) are where the shot is measured; "other" is 8 views of bench/painter_real.py's kind
(seed 4242: distance 0.3–1.3, fov 25–75°, elevation −5–60°). Both files are compressed by
``compress_scene`` with the defaults (scoring orbits of the object; ``+shell`` scenes scored
inside the shell, as the painter benches do) and, with ``--refine-steps N``, refined for N
deterministic steps (the same steps for both, so the difference is the shot alone). Each is
rendered and restored as every reader restores it (its painter section: none, tune, or the
tables). Reports PSNR against the full scene: unrestored and as written, and the painter's
worst frame (as written − unrestored). Real and procedural scenes apart.
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

DEFAULT_SCENES = ("real:statue_st_peter,real:statue_trumpet,real:aerial_t3,"
                  "real:statue_massa+shell,proc:1000,proc:1001")
SHOTS = {  # radius × framing radius, arc degrees, elevation, fov
    "closeup": (0.55, 90.0, 15.0, 40.0),
    "orbit": (0.8, 180.0, 20.0, 50.0),
}


def shot_path(frame: dict, kind: str, n: int, size: int) -> list:
    """``n`` cameras along the ``kind`` path (see module doc) around a scene_frame."""
    from exgs.cameras import orbit_cameras

    radius, arc, el, fov = SHOTS[kind]
    r = radius * frame["half_diag"] / math.sin(math.radians(fov / 2))
    steps = max(n, round(n * 360.0 / arc))
    return orbit_cameras(frame["center"], r, steps, size, size, up=frame["up"],
                         elevation_deg=(el, el), fov_x_deg=fov, seed=None)[:n]


def measure(res, cams, full, cache) -> dict:
    """Mean PSNR of ``res``'s renders unrestored and restored as written, and the worst
    frame's painter gain (dB)."""
    from exgs.metrics import psnr
    from exgs.pipeline import facts_of_bytes, restorer_for
    from exgs.render import render

    reader = restorer_for(facts_of_bytes(res.data), cache=cache)
    un, wr = [], []
    for c, f in zip(cams, full):
        d = render(res.scene, c, device="cpu")
        un.append(psnr(d.rgb, f))
        wr.append(psnr(reader(d.rgb, d.alpha), f))
    return {"unrestored_db": float(np.mean(un)), "written_db": float(np.mean(wr)),
            "worst_painter_gain_db": float(np.min(np.array(wr) - np.array(un)))}


def bench_scene(spec, ratios, shots, frames, size, refine_steps, scenes_dir, cache) -> list:
    from exgs.painter.data import (_seed, frame_views, load_scene, scene_frame,
                                   significance_views)
    from exgs.pipeline import CompressOptions, compress_scene
    from exgs.render import render
    from exgs.ugc import inria_ply_bytes
    from exgs.ugc.refine import RefineOptions

    scene = load_scene(spec, scenes_dir)
    src = inria_ply_bytes(len(scene), 3)  # ratios of the SH-3 INRIA PLY, as bench/adapt.py
    frame = scene_frame(spec, scene)
    score_cams = significance_views(frame) if spec.endswith("+shell") else None
    other = frame_views(frame, 8, size, seed=_seed(4242, spec) % (1 << 31))
    full_o = [render(scene, c, device="cpu").rgb for c in other]
    rows = []
    for kind in shots:
        path = shot_path(frame, kind, frames, size)
        given, held = path[0::2], path[1::2]
        full_h = [render(scene, c, device="cpu").rgb for c in held]
        for ratio in ratios:
            for variant, shot in (("no shot", None), ("shot", given)):
                t = time.time()
                refine = RefineOptions(seconds=None, steps=refine_steps) if refine_steps else None
                res = compress_scene(scene, CompressOptions(
                    ratio=ratio, source_bytes=src, device="cpu", up=frame["up"],
                    cameras=score_cams, shot=shot),
                    refine=refine)
                pd = res.stats.get("painter_delta") or {}
                row = {"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
                       "shot_kind": kind, "ratio": ratio, "variant": variant,
                       "refine_steps": refine_steps, "file_bytes": len(res.data),
                       "kept": len(res.scene), "kept_fraction": len(res.scene) / len(scene),
                       "painter": pd.get("choice"),
                       "shot": measure(res, held, full_h, cache),
                       "other": measure(res, other, full_o, cache),
                       "seconds": time.time() - t, "load": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(f"{spec:26s} {kind:8s} {ratio:5g}x {variant:8s} {row['kept']:7,d} kept "
                      f"{row['file_bytes']:8,d} B painter {row['painter'] or '-':8s} | shot "
                      f"{row['shot']['unrestored_db']:6.2f} → {row['shot']['written_db']:6.2f} "
                      f"(worst {row['shot']['worst_painter_gain_db']:+.2f}) | other "
                      f"{row['other']['unrestored_db']:6.2f} → {row['other']['written_db']:6.2f} "
                      f"({row['seconds']:.0f} s)", flush=True)
    return rows


def summarise(rows) -> list:
    """Per kind (real / proc) and shot kind: mean as-written PSNR with and without the shot,
    on the shot and elsewhere, and the worst painter frame."""
    out = []
    for kind in ("real", "proc"):
        for sk in SHOTS:
            sel = [r for r in rows if r["kind"] == kind and r["shot_kind"] == sk]
            if not sel:
                continue
            a = [r for r in sel if r["variant"] == "no shot"]
            b = [r for r in sel if r["variant"] == "shot"]
            out.append({
                "kind": kind, "shot_kind": sk, "files": len(a),
                "shot_db": [float(np.mean([r["shot"]["written_db"] for r in x])) for x in (a, b)],
                "other_db": [float(np.mean([r["other"]["written_db"] for r in x]))
                             for x in (a, b)],
                "shot_gain_db": float(np.mean([y["shot"]["written_db"] - x["shot"]["written_db"]
                                               for x, y in zip(a, b)])),
                "other_change_db": float(np.mean([y["other"]["written_db"]
                                                  - x["other"]["written_db"]
                                                  for x, y in zip(a, b)])),
                "worst_painter_frame_db": [float(min(r["shot"]["worst_painter_gain_db"]
                                                     for r in x)) for x in (a, b)]})
    return out


def main(argv=None) -> int:
    from exgs.pipeline import PainterCache

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default=DEFAULT_SCENES)
    ap.add_argument("--ratios", default="300")
    ap.add_argument("--shots", default="closeup,orbit")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--refine-steps", type=int, default=0, metavar="N",
                    help="refine both files for N deterministic steps (0: training-free)")
    ap.add_argument("--scenes-dir", default=str(ROOT.parent / "shared" / "scenes"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "shot.json"))
    a = ap.parse_args(argv)
    ratios = [float(r) for r in a.ratios.split(",")]
    shots = [s for s in a.shots.split(",") if s]
    for s in shots:
        if s not in SHOTS:
            ap.error(f"unknown shot kind {s!r} (expected {', '.join(SHOTS)})")
    res = {"machine": f"{os.cpu_count()} CPU cores", "load_start": list(os.getloadavg()),
           "args": vars(a), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    cache = PainterCache()
    rows = []
    for spec in [s for s in a.scenes.split(",") if s]:
        rows += bench_scene(spec, ratios, shots, a.frames, a.size, a.refine_steps,
                            a.scenes_dir, cache)
    res.update(rows=rows, summary=summarise(rows), load_end=list(os.getloadavg()))
    print("\nkind shot     files  shot: none → fitted (Δ)      other: none → fitted (Δ)    "
          "worst painter frame on the shot")
    for s in res["summary"]:
        print(f"{s['kind']:4s} {s['shot_kind']:8s} {s['files']:5d}  {s['shot_db'][0]:6.2f} → "
              f"{s['shot_db'][1]:6.2f} ({s['shot_gain_db']:+.2f})   {s['other_db'][0]:6.2f} → "
              f"{s['other_db'][1]:6.2f} ({s['other_change_db']:+.2f})   "
              f"{s['worst_painter_frame_db'][0]:+.2f} / {s['worst_painter_frame_db'][1]:+.2f}")
    tmp = a.out + ".part"
    Path(tmp).write_text(json.dumps(res, indent=1))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
