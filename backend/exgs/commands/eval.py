"""``exgs eval REFERENCE CANDIDATE [--views 16] [--size 512x512] [--json] [--restore]``:
render both scenes from the same held-out views (not UGC's scoring views) and print PSNR,
SSIM and the size ratio size(REFERENCE)/size(CANDIDATE)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UsageError


def register(sub) -> None:
    from ._common import parse_size

    p = sub.add_parser("eval", help="PSNR/SSIM of a compressed scene vs its reference")
    p.add_argument("reference", help="reference scene (e.g. the original .ply)")
    p.add_argument("candidate", help="candidate scene (.exgs, .ply, .spz, ...)")
    p.add_argument("--views", type=int, default=16, help="held-out orbit views (default 16)")
    p.add_argument("--size", type=parse_size, default=(512, 512), help="WxH (default 512x512)")
    p.add_argument("--cameras", help="cameras.json of held-out (test) views instead of orbits")
    p.add_argument("--up", default="-y", help="scene up axis for orbit views (default -y)")
    p.add_argument("--keep", default=None,
                   help="decode only this prefix of a .exgs candidate (fraction or count)")
    p.add_argument("--restore", action="store_true",
                   help="also score GaussPainter-restored candidate renders")
    p.add_argument("--painter-weights", default=None, help="GaussPainter weights (default: shipped)")
    p.add_argument("--no-delta", action="store_true",
                   help="with --restore: ignore the candidate's per-scene painter delta")
    p.add_argument("--device", default="auto", help="render device (auto|cpu|cuda)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def evaluate(reference, candidate, *, views: int = 16, size=(512, 512), cameras=None,
             up="-y", keep=None, restore: bool = False, painter_weights=None,
             device: str = "auto", use_delta: bool = True) -> dict:
    """Python API of ``exgs eval`` (paths in, dict out). With ``restore`` a .exgs
    candidate's painter delta is used unless ``use_delta`` is False (``restored_delta`` in
    the result says whether it was)."""
    from ..cameras import read_cameras_json
    from ..io import detect_format, read_scene
    from ..io.exgs_format import read_exgs_scene
    from ..ugc.evaluate import compare, held_out_views, render_views
    from .info import file_size

    if views < 1:
        raise UsageError(f"--views must be ≥ 1, got {views}")
    ref = read_scene(reference).validate(reference)
    is_exgs = detect_format(candidate) == "exgs"
    if is_exgs:
        cand = read_exgs_scene(candidate, keep=keep)
    else:
        if keep is not None:
            raise UsageError("--keep only applies to a .exgs candidate")
        cand = read_scene(candidate).validate(candidate)
    restorer = None
    if restore:  # the painter's gate follows how much of the reference the candidate kept
        import sys

        from ..pipeline import RestoreOptions, restorer_for

        restorer = restorer_for(candidate if is_exgs else None, RestoreOptions(
            painter_dir=painter_weights, use_delta=use_delta,
            kept_fraction=min(1.0, len(cand) / max(len(ref), 1)),
            warn=lambda m: print(f"exgs: warning: {m}", file=sys.stderr)))
    if cameras:
        cams = [c.resized(*size) if size else c for c in read_cameras_json(cameras)]
    else:
        cams = held_out_views(ref, views, size, up=up)
    refs = render_views(ref, cams, device)
    res = compare(refs, cand, cams, device=device, restore=restorer)
    rb, cb = file_size(reference), file_size(candidate)
    res.update({"reference": str(reference), "candidate": str(candidate),
                "reference_gaussians": len(ref), "candidate_gaussians": len(cand),
                "reference_bytes": rb, "candidate_bytes": cb, "size_ratio": rb / max(cb, 1),
                "size": [cams[0].width, cams[0].height]})
    if restore:
        res["restored_delta"] = bool(restorer.delta["applied"])
    return res


def run(args) -> int:
    if args.no_delta and not args.restore:
        raise UsageError("--no-delta needs --restore")
    keep = None
    if args.keep is not None:
        from .compress import keep_value

        import argparse

        try:
            keep = keep_value(args.keep)
        except argparse.ArgumentTypeError as e:
            raise UsageError(str(e)) from None
    res = evaluate(args.reference, args.candidate, views=args.views, size=args.size,
                   cameras=args.cameras, up=args.up, keep=keep, restore=args.restore,
                   painter_weights=args.painter_weights, device=args.device,
                   use_delta=not args.no_delta)
    if args.json:
        print(json.dumps(res, indent=2, default=lambda x: None if isinstance(x, float)
                         and not math.isfinite(x) else str(x)))
        return 0
    print(f"{Path(args.reference).name} ({res['reference_gaussians']:,} Gaussians) vs "
          f"{Path(args.candidate).name} ({res['candidate_gaussians']:,}), "
          f"{res['views']} held-out views at {res['size'][0]}x{res['size'][1]}")
    print(f"  PSNR {res['psnr']:.2f} dB   SSIM {res['ssim']:.4f}   "
          f"size ratio {res['size_ratio']:.1f}x")
    if args.restore:
        how = " (with the file's painter delta)" if res.get("restored_delta") else ""
        print(f"  restored{how}: PSNR {res['restored_psnr']:.2f} dB   "
              f"SSIM {res['restored_ssim']:.4f}")
    return 0
