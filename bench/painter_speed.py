"""GaussPainter speed per frame: the plain float32 path vs the fast path (infer.py / fast.py).

    flock /work/notes/heavy.lock nice -n 5 .venv/bin/python bench/painter_speed.py [--reps 12]

Frames (512×512 unless noted):

* ``random``: uniform rgb, alpha uniform with a third clipped to 0/1 (the old
  ``bench/painter.py --quick`` frame: the gate is open almost everywhere, nothing is skipped);
* ``random 1280x720``: the same at 720p;
* ``real``: a held-out real capture (``--real``, default ``real:statue_trumpet``) rendered at
  512² and pruned to 3 % (simple pruning: only the frame's structure matters for speed);
* ``real full-coverage``: the same capture inside a generated background shell
  (``+shell``, alpha = 1 almost everywhere) pruned to 10 %.

Variants: ``plain`` (the code before the fast path: the net as loaded, ``torch.no_grad``,
contiguous NCHW, every tile through the network on its own), ``fast`` (what ``Painter`` does:
the inference copy's fused float32 forward — oneDNN conv + ReLU / residual-add post-ops,
features shared by the gate and detail heads, channels-last feature stacks — tiles batched
``Painter.tile_batch_pixels`` at a time and blended in torch, tiles whose gate is shut
everywhere skipped) and ``fast-bf16`` (the previous channels-last path under bfloat16
autocast; ``--no-bf16`` skips it: emulated, ~4 s per 512² on CPUs without AVX512-BF16).
Runs interleaved, ``--reps`` each; median and 95th percentile ms; PSNR and max |diff| of each
variant's output against ``plain`` (identical = 99 dB). The load average is recorded before
and after. Writes bench/results/painter_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))


def plain_painter(net):
    """A Painter whose tiles run the net exactly as before the fast path."""
    import torch

    from exgs.painter.infer import Painter

    class Plain(Painter):
        tile_batch_pixels = 1  # one tile per network call, as before batching

        @torch.no_grad()
        def _run_tensor(self, x, a, kept_fraction=None, refined=False):
            out, parts = self.net(x, a, kept_fraction=kept_fraction, return_all=True,
                                  refined=refined)
            a_out = a + parts["gate"] * (1.0 - a)  # the restored alpha, as Painter._run_tensor
            return torch.cat([out.clamp(0.0, 1.0), a_out], 1)

    return Plain(net)


def frames(real: str, scenes_dir: str) -> dict:
    """name → (rgb [H,W,3], alpha [H,W], kept fraction or None)."""
    from exgs.painter.data import frame_views, load_scene, scene_frame, simple_prune
    from exgs.render import render

    rng = np.random.default_rng(0)
    out = {}
    for name, (w, h) in (("random", (512, 512)), ("random 1280x720", (1280, 720))):
        rgb = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        alpha = np.clip(rng.uniform(-0.5, 1.5, (h, w)), 0, 1).astype(np.float32)
        out[name] = (rgb, alpha, None)
    for label, spec, keep in (("real", real, 0.03), ("real full-coverage", real + "+shell", 0.10)):
        scene = load_scene(spec, scenes_dir)
        cam = frame_views(scene_frame(spec, scene), 1, 512, seed=7)[0]
        pruned = simple_prune(scene, keep)
        r = render(pruned, cam, device="cpu")
        out[f"{label} ({spec}, {keep:.0%} kept)"] = (r.rgb, r.alpha, len(pruned) / len(scene))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real", default="real:statue_trumpet")
    ap.add_argument("--scenes-dir", default="/work/shared/scenes")
    ap.add_argument("--painter", default=None,
                    help="weights directory (default: the shipped weights)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the fast-bf16 variant")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "painter_speed.json"))
    args = ap.parse_args(argv)

    import torch

    from exgs.metrics import psnr
    from exgs.painter.infer import Painter, load_net

    torch.set_num_threads(args.threads)
    net = load_net(args.painter)
    variants = {"plain": plain_painter(net), "fast": Painter(net, precision="fp32")}
    if not args.no_bf16:
        variants["fast-bf16"] = Painter(net, precision="bf16")
    load_before = os.getloadavg()
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "torch": torch.__version__, "tile_batch_pixels": Painter.tile_batch_pixels,
           "threads": args.threads, "reps": args.reps, "painter": args.painter or "shipped",
           "load_before": [round(x, 2) for x in load_before], "frames": {}}
    for name, (rgb, alpha, kf) in frames(args.real, args.scenes_dir).items():
        outs, ts = {}, {v: [] for v in variants}
        for v, p in variants.items():  # warm-up (builds the inference copy) + reference output
            outs[v] = p.restore(rgb, alpha, kept_fraction=kf)
        for _ in range(args.reps):
            for v, p in variants.items():
                t = time.perf_counter()
                p.restore(rgb, alpha, kept_fraction=kf)
                ts[v].append(1000 * (time.perf_counter() - t))
        row = {}
        for v in variants:
            d = float(np.abs(outs[v] - outs["plain"]).max())
            row[v] = {"median_ms": float(np.median(ts[v])), "p95_ms": float(np.percentile(ts[v], 95)),
                      "min_ms": float(np.min(ts[v])),
                      "psnr_vs_plain_db": 99.0 if d == 0 else min(99.0, psnr(outs[v], outs["plain"])),
                      "max_abs_diff": d}
        res["frames"][name] = row
        print(f"{name}  ({rgb.shape[1]}x{rgb.shape[0]})")
        for v, s in row.items():
            print(f"  {v:>10}: median {s['median_ms']:7.0f} ms  p95 {s['p95_ms']:7.0f}  "
                  f"vs plain {s['psnr_vs_plain_db']:5.1f} dB (max |diff| {s['max_abs_diff']:.1e})")
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
