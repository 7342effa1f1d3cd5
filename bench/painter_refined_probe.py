"""Refined files as readers see them: every painter setting scored on them, and the refined
tables calibrated from those scores (issue 15, session 10).

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/painter_refined_probe.py \
        --scenes real:statue_angel,... [--keeps 0.01,0.03,0.1] [--seconds 40] --out DIR \
        [--calibrate WEIGHTS_DIR]

Per scene and kept fraction: ``compress_scene`` with ``keep_target`` and a *real* refinement
(``RefineOptions(seconds=S)``: hundreds of steps, as ``exgs compress --refine S`` does, not
the 15 steps the pair cache's ``--refine-steps`` uses), then every (gate bias, detail scale)
of :mod:`exgs.painter.tune` and the weights' refined tables scored as a reader of a refined
file restores (``refined=True``) on the 8 judging views the compressor would use and on the 4
bench views of ``bench/painter_real.py`` (seed 4242, 256 px), as gain in dB over the
unrestored frame. Files whose refinement switched itself off are skipped by the calibration.

Writes ``DIR/probe.json`` (one row per file) and ``DIR/<scene>_<keep>.npz`` (``Gj``/``Gb``
[C, views] gains, ``Tj``/``Tb`` the tables' gains, ``cands`` [C, 2], ``kf``, ``refined``).
``--calibrate W``: per kept fraction (bins with edges 0.005 / 0.02 / 0.05 / 0.2, nodes at 1,
3.2 and 10 %), the rule of :func:`exgs.painter.calibrate_refined.refined_tables` on all
frames of the refined files in DIR, written into ``W/painter.json`` as the refined tables.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
EDGES = (0.005, 0.02, 0.05, 0.2)  #: bins of kept fractions (one node per bin)


def probe(specs, keeps, seconds, out_dir, scenes_dir) -> list[dict]:
    from exgs.painter.adapt import AdaptConfig
    from exgs.painter.adapt_views import adaptation_cameras, judging_cameras, render_pairs
    from exgs.painter.data import (_seed, frame_views, load_scene, scene_frame,
                                   significance_views)
    from exgs.painter.infer import load_net
    from exgs.painter.tune import settings_sweep
    from exgs.pipeline import CompressOptions, compress_scene, facts_of_bytes
    from exgs.render import render
    from exgs.ugc.refine import RefineOptions

    net = load_net()
    net.eval()
    rows = []
    for spec in specs:
        scene = load_scene(spec, scenes_dir)
        frame = scene_frame(spec, scene)
        bcams = frame_views(frame, 4, 256, seed=_seed(4242, spec) % (1 << 31))
        full = [render(scene, c, device="cpu").rgb for c in bcams]
        score_cams = significance_views(frame) if spec.endswith("+shell") else None
        cfg = AdaptConfig(up=frame["up"]).validate()
        jc = judging_cameras(adaptation_cameras(scene, cfg, score_cams)[-cfg.holdout:], cfg)
        for keep in keeps:
            t0 = time.time()
            res = compress_scene(scene, CompressOptions(keep_target=keep, device="cpu",
                                                        up=frame["up"], cameras=score_cams,
                                                        painter_tune=False),
                                 refine=RefineOptions(seconds=seconds))
            refined = facts_of_bytes(res.data).refined
            kf = len(res.scene) / len(scene)
            hold = render_pairs(scene, res.scene, jc)
            sj = settings_sweep(net, [(h["rgb"], h["alpha"], h["clean"]) for h in hold], kf,
                                refined)
            bench = []
            for c, f in zip(bcams, full):
                d = render(res.scene, c, device="cpu")
                bench.append((d.rgb, d.alpha, f))
            sb = settings_sweep(net, bench, kf, refined)
            row = {"scene": spec, "keep": keep, "kf": kf, "refined": refined,
                   "steps": res.stats.get("refine", {}).get("steps"),
                   "tables_judge_db": float(sj["tables"].mean()),
                   "tables_bench_db": float(sb["tables"].mean()),
                   "seconds": round(time.time() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            np.savez(Path(out_dir) / f"{spec.replace(':', '_')}_{keep}.npz", Gj=sj["gain"],
                     Tj=sj["tables"], Gb=sb["gain"], Tb=sb["tables"],
                     cands=np.array(sj["cands"]), kf=kf, refined=refined)
            tmp = Path(out_dir) / "probe.json.part"
            tmp.write_text(json.dumps(rows, indent=1))
            os.replace(tmp, Path(out_dir) / "probe.json")
    return rows


def sweep_of(out_dir) -> dict:
    """The frames of every refined file probed in ``out_dir`` as a
    :func:`exgs.painter.calibrate_refined.refined_sweep`-like dict."""
    gains, keeps, tables, cands = [], [], [], None
    for f in sorted(glob.glob(str(Path(out_dir) / "*.npz"))):
        d = np.load(f)
        if not bool(d["refined"]):
            continue
        for g, t in ((d["Gj"], d["Tj"]), (d["Gb"], d["Tb"])):
            gains.append(g)
            tables.append(t)
            keeps += [float(d["kf"])] * g.shape[1]
        cands = d["cands"]
    if cands is None:
        raise SystemExit(f"{out_dir}: no refined files probed")
    return {"keeps": np.array(keeps), "gain": np.concatenate(gains, 1), "biases": cands[:, 0],
            "scales": cands[:, 1], "generic": np.concatenate(tables)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="")
    ap.add_argument("--keeps", default="0.01,0.03,0.1")
    ap.add_argument("--seconds", type=float, default=40.0, help="refinement budget per file")
    ap.add_argument("--out", required=True, help="directory for probe.json and the .npz files")
    ap.add_argument("--calibrate", metavar="WEIGHTS_DIR", default=None,
                    help="write refined tables chosen on the files in --out into this "
                         "weights directory's painter.json")
    ap.add_argument("--scenes-dir", default=str(ROOT.parent / "shared" / "scenes"))
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    specs = [s for s in a.scenes.split(",") if s]
    if specs:
        probe(specs, [float(k) for k in a.keeps.split(",")], a.seconds, a.out, a.scenes_dir)
    if a.calibrate:
        from exgs.painter.calibrate_refined import refined_tables, write_tables

        sw = sweep_of(a.out)
        bt, st, report = refined_tables(sw, edges=EDGES)
        write_tables(a.calibrate, True, bt, st, report, len(sw["keeps"]), {"edges": EDGES},
                     source=f"bench/painter_refined_probe.py --out {a.out}: files refined "
                            f"with RefineOptions(seconds={a.seconds:g}), judging + bench views")
    return 0


if __name__ == "__main__":
    sys.exit(main())
