"""``exgs demo``: the default job on the built-in scene, no arguments needed.

Stages: generate the demo scene (PLY) → describe it. Later stages (render, compress,
restore) are added as their subsystems land.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the default job on the built-in demo scene")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--gaussians", type=int, default=60_000, help="demo scene size")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io.ply import write_ply
    from ..synth import demo_scene
    from .info import describe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scene = demo_scene(n=args.gaussians)
    ply = out / "demo_scene.ply"
    write_ply(scene, ply)
    info = describe(ply)
    print(f"[demo] scene: {info['gaussians']:,} Gaussians, SH degree {info['sh_degree']}, "
          f"{info['file_bytes'] / 1e6:.2f} MB -> {ply}  ({time.perf_counter() - t0:.1f} s)")
    report = {"scene": info}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[demo] report -> {out / 'report.json'}")
    return 0
