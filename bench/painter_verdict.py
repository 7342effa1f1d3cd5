"""The compressor's do-no-harm verdict on training-free files, on held-out real captures.

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/painter_verdict.py \
        [--scenes real:statue_st_peter,...] [--keeps 0.01,0.03,0.10] [--views 4] [--size 256]
        [--no-tune] [--refine SECONDS]

Per scene and kept fraction: ``compress_scene`` (``keep_target``, the default voxel rule, the
painter verdict on: :func:`exgs.pipeline.adapt.judge_training_free`, which judges on the file's
own held-out views — orbit views, or for ``+shell`` scenes the object views inside the shell
given as cameras — and, unless ``--no-tune``, picks the file's own gate bias / detail scale
there, :mod:`exgs.painter.tune`), then the file restored as every reader restores it (its
painter section applied: a "none" file comes back unrestored, a "tune" file with its own
setting) on the views of ``bench/painter_real.py`` (seed 4242, ``--views``), against the full
scene. Reports the verdict, the generic painter's gain (the weights' tables) and the gain of
the file as written. ``--refine S``: every file is refined after pruning (issue 10) for S
seconds first; its verdict is then the refined file's (:func:`exgs.pipeline.compress.
painter_verdict`: the refined tables, its own setting, or "none"), and "generic" uses the
weights' refined tables (a refinement that does not pay leaves the training-free file).
Real and procedural apart. Writes bench/results/painter_verdict.json.
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
sys.path.insert(0, str(ROOT / "bench"))
from painter_real import DEFAULT_SCENES  # noqa: E402


def bench_scene(spec, keeps, views, size, scenes_dir, cache, tune=True,
                refine_seconds=None) -> list[dict]:
    from exgs.metrics import psnr
    from exgs.painter.data import (_seed, frame_views, load_scene, scene_frame,
                                   significance_views)
    from exgs.pipeline import (CompressOptions, compress_scene, facts_of_bytes,
                               restorer_for)
    from exgs.render import render

    scene = load_scene(spec, scenes_dir)
    frame = scene_frame(spec, scene)
    cams = frame_views(frame, views, size, seed=_seed(4242, spec) % (1 << 31))
    full = [render(scene, c, device="cpu").rgb for c in cams]
    score_cams = significance_views(frame) if spec.endswith("+shell") else None
    refine = None
    if refine_seconds:
        from exgs.ugc.refine import RefineOptions

        refine = RefineOptions(seconds=refine_seconds)
    rows = []
    for keep in keeps:
        t = time.time()
        res = compress_scene(scene, CompressOptions(keep_target=keep, device="cpu",
                                                    up=frame["up"], cameras=score_cams,
                                                    painter_tune=tune), refine=refine)
        facts = facts_of_bytes(res.data)
        reader = restorer_for(facts, cache=cache)  # as readers restore it
        form = reader.delta["form"] or "generic"
        painter = cache.generic()  # the weights' tables on the same file (refined: theirs)
        kf = len(res.scene) / len(scene)
        p0, p1, p2 = [], [], []
        for c, f in zip(cams, full):
            d = render(res.scene, c, device="cpu")
            p0.append(psnr(d.rgb, f))
            p1.append(psnr(painter.restore(d.rgb, d.alpha, kept_fraction=kf,
                                           refined=facts.refined), f))
            p2.append(psnr(reader(d.rgb, d.alpha), f))
        gain = float(np.mean(p1) - np.mean(p0))
        written = float(np.mean(p2) - np.mean(p0))
        pd = res.stats["painter_delta"]
        t_ = pd.get("tune") or {}
        rows.append({"scene": spec, "kind": "real" if spec.startswith("real:") else "proc",
                     "keep": keep, "kept_fraction": kf, "restore": form,
                     "refined": facts.refined,
                     "marked_none": form == "none",
                     "tune": [t_.get("gate_bias"), t_.get("detail_scale")] if form == "tune"
                     else None,
                     "judge_none_db": pd.get("heldout_none_db"),
                     "judge_generic_db": pd.get("heldout_generic_db"),
                     "judge_tuned_db": pd.get("heldout_tuned_db"),
                     "unrestored_psnr": float(np.mean(p0)), "gain_db": gain,
                     "gain_as_written_db": written,
                     "worst_view_as_written_db": float(np.min(np.array(p2) - np.array(p0))),
                     "seconds": time.time() - t})
        what = form if form != "tune" else f"tune {rows[-1]['tune']}"
        print(f"{spec:28s} keep {keep:.2f}: {what:22s} | bench views: generic painter "
              f"{gain:+.2f} → as written {written:+.2f} dB (worst view "
              f"{rows[-1]['worst_view_as_written_db']:+.2f}) ({time.time() - t:.0f} s)",
              flush=True)
    return rows


def main(argv=None) -> int:
    from exgs.pipeline import PainterCache

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default=DEFAULT_SCENES)
    ap.add_argument("--keeps", default="0.01,0.03,0.10")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-tune", action="store_true", help="the verdict without the per-file "
                    "setting (CompressOptions.painter_tune=False)")
    ap.add_argument("--refine", type=float, default=None, metavar="SECONDS",
                    help="refine every file after pruning (issue 10) for this many seconds: "
                         "the refined file's verdict (painter_verdict), restored as written")
    ap.add_argument("--scenes-dir", default=str(ROOT.parent / "shared" / "scenes"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "painter_verdict.json"))
    a = ap.parse_args(argv)
    keeps = [float(k) for k in a.keeps.split(",")]
    load = [round(x, 2) for x in os.getloadavg()]
    cache = PainterCache()
    rows = []
    for spec in [s for s in a.scenes.split(",") if s]:
        rows += bench_scene(spec, keeps, a.views, a.size, a.scenes_dir, cache, not a.no_tune,
                            a.refine)
    summary = []
    for kind in ("real", "proc"):
        for keep in keeps:
            sel = [r for r in rows if r["kind"] == kind and r["keep"] == keep]
            if sel:
                summary.append({"kind": kind, "keep": keep, "scenes": len(sel),
                                "marked_none": sum(r["marked_none"] for r in sel),
                                "tuned": sum(r["restore"] == "tune" for r in sel),
                                "gain_db": float(np.mean([r["gain_db"] for r in sel])),
                                "gain_as_written_db": float(np.mean(
                                    [r["gain_as_written_db"] for r in sel])),
                                "worst_as_written_db": float(min(
                                    r["gain_as_written_db"] for r in sel))})
    print("\nkind  keep   scenes  none  tune  generic  as written  worst scene")
    for s in summary:
        print(f"{s['kind']:5s} {s['keep']:.2f} {s['scenes']:7d} {s['marked_none']:5d} "
              f"{s['tuned']:5d} {s['gain_db']:+8.2f} {s['gain_as_written_db']:+11.2f} "
              f"{s['worst_as_written_db']:+12.2f}")
    out = {"machine": f"{os.cpu_count()} CPU cores", "load_start": load, "tune": not a.no_tune,
           "refine_seconds": a.refine,
           "load_end": [round(x, 2) for x in os.getloadavg()], "views": a.views,
           "size": a.size, "rows": rows, "summary": summary}
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
