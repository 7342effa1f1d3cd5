"""512² restore time of the fast fp32 path, two weights directories interleaved (e.g. with and
without the detail head), on held-out real frames whose kept fraction turns the head on.

    flock /work/notes/heavy.lock .venv/bin/python bench/painter_speed_detail.py WITHOUT_DIR WITH_DIR

Writes bench/results/painter_speed_detail.json (median / min / p90 ms, load before and after)."""
import json, os, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
import numpy as np, torch
torch.set_num_threads(2)
from exgs.painter import load_painter
from exgs.painter.data import frame_views, load_scene, scene_frame, simple_prune
from exgs.render import render
ps = {"without head": load_painter(sys.argv[1]), "with head": load_painter(sys.argv[2])}
out = {"load_before": os.getloadavg()}
for spec, keep in (("real:statue_trumpet", 0.03), ("real:statue_st_peter", 0.01)):
    scene = load_scene(spec)
    cam = frame_views(scene_frame(spec, scene), 1, 512, seed=7)[0]
    pr = simple_prune(scene, keep)
    r = render(pr, cam, device="cpu")
    kf = len(pr) / len(scene)
    ts = {k: [] for k in ps}
    for k, p in ps.items():
        p.restore(r.rgb, r.alpha, kept_fraction=kf)
    for _ in range(12):
        for k, p in ps.items():
            t = time.perf_counter(); p.restore(r.rgb, r.alpha, kept_fraction=kf); ts[k].append(1000 * (time.perf_counter() - t))
    row = {k: {"median_ms": float(np.median(v)), "min_ms": float(np.min(v)), "p90_ms": float(np.percentile(v, 90))} for k, v in ts.items()}
    row["detail_scale"] = ps["with head"].config.detail_scale_for_kept_fraction(kf)
    out[f"{spec} {keep:.0%} 512x512"] = row
    print(spec, keep, json.dumps(row), flush=True)
out["load_after"] = os.getloadavg()
print(out["load_before"], out["load_after"])
json.dump(out, open(ROOT / "bench" / "results" / "painter_speed_detail.json", "w"), indent=1)
