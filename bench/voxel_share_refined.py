"""Refined files (``exgs compress --ratio R --refine S``) with the voxel mass share 0 vs 0.5
(docs/ugc.md): does the new voxel rule's gain survive refinement (issue 10)?

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/voxel_share_refined.py \
        [--scenes real:statue_st_peter,real:aerial_t3,real:flowers] [--ratio 100] [--seconds 30]

Per scene: significance on UGC's default orbit views (the scene's up axis), then
``compress_scene`` at the ratio with refinement (``RefineOptions(seconds=…)``) for each share;
mean PSNR of the decoded file against the full scene over 8 held-out views (256², the views
of ``bench/voxel_share.py``). Writes bench/results/voxel_share_refined.json.
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


def main(argv=None) -> int:
    from exgs.metrics import psnr
    from exgs.painter.data import _seed, frame_views, load_scene, scene_frame
    from exgs.pipeline import CompressOptions, compress_scene
    from exgs.render import render
    from exgs.ugc.refine import RefineOptions
    from exgs.ugc.significance import default_views, significance

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="real:statue_st_peter,real:aerial_t3,real:flowers")
    ap.add_argument("--ratio", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--shares", default="0,0.5")
    ap.add_argument("--scenes-dir", default=str(ROOT.parent / "shared" / "scenes"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "voxel_share_refined.json"))
    a = ap.parse_args(argv)
    load = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for spec in a.scenes.split(","):
        scene = load_scene(spec, a.scenes_dir)
        frame = scene_frame(spec, scene)
        cams = frame_views(frame, 8, 256, seed=_seed(4242, spec) % (1 << 31))
        full = [render(scene, c, device="cpu").rgb for c in cams]
        score = significance(scene, default_views(scene, up=frame["up"]), device="cpu")
        for share in [float(s) for s in a.shares.split(",")]:
            t = time.time()
            opts = CompressOptions(ratio=a.ratio, device="cpu", up=frame["up"],
                                   voxel_mass_share=share, ugc={"score": score})
            res = compress_scene(scene, opts, refine=RefineOptions(seconds=a.seconds))
            p = float(np.mean([psnr(render(res.scene, c, device="cpu").rgb, f)
                               for c, f in zip(cams, full)]))
            r = res.stats.get("refine", {})
            rows.append({"scene": spec, "share": share, "ratio": a.ratio, "psnr": p,
                         "kept_fraction": res.stats["kept_fraction"],
                         "file_bytes": res.stats["file_bytes"], "refine": r.get("chosen"),
                         "refine_gain_db": r.get("gain_db"), "seconds": time.time() - t})
            print(f"{spec:24s} {a.ratio:.0f}x share {share:.2f}: {p:.2f} dB, kept "
                  f"{100 * rows[-1]['kept_fraction']:.2f} %, {r.get('chosen')} "
                  f"({time.time() - t:.0f} s)", flush=True)
    out = {"machine": f"{os.cpu_count()} CPU cores", "load_start": load,
           "load_end": [round(x, 2) for x in os.getloadavg()], "seconds": a.seconds,
           "rows": rows}
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
