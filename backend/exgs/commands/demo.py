"""``exgs demo``: the default job on the built-in scene, no arguments needed.

1. generate the demo scene (code only, no downloads) and write it as an INRIA PLY;
2. render held-out orbit views of the full scene;
3. compress it with UGC to a ``.exgs`` file at ``--ratio`` (default 100×);
4. render the compressed scene from the same views;
5. restore those renders with GaussPainter (shipped default weights);
6. write PSNR/SSIM per stage, a side-by-side image (full | compressed | restored) and
   ``report.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the default job on the built-in demo scene")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--gaussians", type=int, default=60_000, help="demo scene size")
    p.add_argument("--ratio", type=float, default=100.0,
                   help="target size ratio source/.exgs (default 100)")
    p.add_argument("--views", type=int, default=4, help="number of rendered views")
    p.add_argument("--size", default="640x480", help="render size WxH (default 640x480)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-restore", action="store_true", help="skip GaussPainter")
    p.set_defaults(func=run)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from ..fsutil import atomic_path

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def run(args) -> int:
    from ..cameras import orbit_for_scene
    from ..io.ply import write_ply
    from ..metrics import psnr, ssim
    from ..render import render
    from ..synth import demo_scene
    from ..pipeline import CompressOptions, compress_scene
    from ..ugc import write_exgs
    from ._common import parse_size
    from .info import describe

    width, height = parse_size(args.size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}

    def log(msg: str) -> None:
        print(f"[demo] {msg}", flush=True)

    t0 = time.perf_counter()
    scene = demo_scene(n=args.gaussians)
    ply = out / "demo_scene.ply"
    write_ply(scene, ply)
    report["scene"] = describe(ply)
    log(f"scene: {len(scene):,} Gaussians, SH degree {scene.sh_degree}, "
        f"{ply.stat().st_size / 1e6:.2f} MB -> {ply} ({time.perf_counter() - t0:.1f} s)")

    # Held-out views: a different seed and azimuth than any scoring views UGC generates.
    cams = orbit_for_scene(scene, args.views, width, height, seed=1234,
                           azimuth_offset_deg=17.0, distance=0.8)

    def render_all(sc, tag):
        t = time.perf_counter()
        results = [render(sc, c, device=args.device) for c in cams]
        dt = (time.perf_counter() - t) / len(cams)
        for i, r in enumerate(results):
            _save_png(out / tag / f"{i:04d}.png", r.rgb)
        log(f"rendered {len(cams)} views of the {tag} scene at {width}x{height} "
            f"({dt * 1000:.0f} ms/frame, {results[0].backend}) -> {out / tag}/")
        return results, dt

    full, dt_full = render_all(scene, "full")
    report["render_ms_per_frame"] = dt_full * 1000

    t = time.perf_counter()
    result = compress_scene(scene, CompressOptions(ratio=args.ratio, sh_degree=0,
                                                   source_bytes=ply.stat().st_size))
    exgs_path = out / "demo_scene.exgs"
    write_exgs(result, exgs_path)
    size = exgs_path.stat().st_size
    report["compress"] = {"seconds": time.perf_counter() - t, "file_bytes": size,
                          "ratio": ply.stat().st_size / size, "kept": len(result.scene),
                          **{k: v for k, v in result.stats.items() if _jsonable(v)}}
    log(f"compressed: {len(result.scene):,} of {len(scene):,} Gaussians kept, "
        f"{size / 1e3:.1f} kB, {ply.stat().st_size / size:.1f}x smaller -> {exgs_path} "
        f"({report['compress']['seconds']:.1f} s)")

    from ..io.exgs_format import read_exgs_scene

    decoded = read_exgs_scene(exgs_path)
    pruned, _ = render_all(decoded, "compressed")
    stages = {"compressed": [r.rgb for r in pruned]}

    from ..painter.infer import DEFAULT_WEIGHTS

    if not args.no_restore and not (Path(DEFAULT_WEIGHTS) / "painter.json").is_file():
        log(f"GaussPainter: no default weights shipped in {DEFAULT_WEIGHTS}; skipping restore")
    elif not args.no_restore:
        from ..pipeline import RestoreOptions, painter_device, resolve_device, restorer_for

        # the gate opens according to how much was pruned
        restorer = restorer_for(exgs_path, RestoreOptions(
            device=painter_device(resolve_device(args.device))))
        t = time.perf_counter()
        restored = [restorer(r.rgb, r.alpha) for r in pruned]
        dt = (time.perf_counter() - t) / len(pruned)
        for i, rgb in enumerate(restored):
            _save_png(out / "restored" / f"{i:04d}.png", rgb)
        log(f"restored {len(restored)} views with GaussPainter ({dt * 1000:.0f} ms/frame) "
            f"-> {out / 'restored'}/")
        stages["restored"] = restored
        report["restore_ms_per_frame"] = dt * 1000

    report["quality"] = {}
    for tag, imgs in stages.items():
        p = float(np.mean([psnr(f.rgb, im) for f, im in zip(full, imgs)]))
        s = float(np.mean([ssim(f.rgb, im) for f, im in zip(full, imgs)]))
        report["quality"][tag] = {"psnr_db": p, "ssim": s}
        log(f"{tag:>10}: PSNR {p:.2f} dB, SSIM {s:.4f} (vs full scene, mean of {len(cams)} views)")

    rows = [np.concatenate([full[i].rgb] + [stages[t][i] for t in stages], 1)
            for i in range(min(2, len(cams)))]
    _save_png(out / "side_by_side.png", np.concatenate(rows, 0))
    log(f"side by side (full | {' | '.join(stages)}) -> {out / 'side_by_side.png'}")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"report -> {out / 'report.json'}  (total {time.perf_counter() - t0:.1f} s)")
    return 0


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False
