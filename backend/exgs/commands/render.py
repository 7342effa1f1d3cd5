"""``exgs render SCENE --out DIR``: render numbered PNGs (and depth) of any readable scene.

Cameras come from an INRIA ``cameras.json`` (``--cameras``) or an orbit around the scene's
robust bounds (``--orbit N``, default 8 views, ``--up`` gives the scene's up axis; captures
are usually y-down, so the default is ``-y``; ``--distance`` scales the orbit radius, 1.0
frames the bounds). With ``--cameras``, ``--size`` resizes every camera (intrinsics scaled). Files: ``DIR/0000.png`` ... (RGB over
``--background``; RGBA with *straight* alpha with ``--alpha``), ``DIR/0000.depth.npy``
(float32 [H,W] camera z, +inf where empty) or ``.depth.exr`` with ``--depth``. Every file is
written atomically, and the input scene is never overwritten. Bad input (missing or
unreadable scene, bad size, bad cameras.json, --cameras with --orbit) prints one line
``exgs: error: ...`` and exits 2 before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import UsageError


def _background(text: str) -> tuple[float, float, float]:
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"background must be R,G,B in [0,1], got {text!r}") from None
    if len(v) != 3 or not all(0.0 <= x <= 1.0 for x in v):
        raise argparse.ArgumentTypeError(f"background must be R,G,B in [0,1], got {text!r}")
    return v  # type: ignore[return-value]


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _one_line_error(message: str):
    """argparse errors of this sub-command as one line (no usage block), exit code 2."""
    print(f"exgs: error: render: {message}", file=sys.stderr)
    sys.exit(2)


def register(sub) -> None:
    from ._common import parse_size

    p = sub.add_parser("render", help="render a scene to numbered PNGs (and depth)")
    p.add_argument("scene", help="scene file or SOG folder (.ply, .spz, .sog, .exgs, ...)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--cameras", help="INRIA cameras.json")
    src.add_argument("--orbit", type=int, metavar="N", help="N orbit views (default 8)")
    p.add_argument("--size", type=parse_size, metavar="WxH",
                   help="image size (default 960x540 for orbits, the cameras' own otherwise)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = gsplat on CUDA if available, else our CPU renderer")
    p.add_argument("--depth", choices=["npy", "exr"], help="also write depth maps")
    p.add_argument("--alpha", action="store_true", help="write RGBA PNGs (straight alpha)")
    p.add_argument("--background", type=_background, default=(0.0, 0.0, 0.0),
                   metavar="R,G,B", help="background colour in [0,1] (default 0,0,0)")
    p.add_argument("--up", default=None,
                   help="scene up axis for --orbit: ±x, ±y or ±z (default -y)")
    p.add_argument("--distance", type=_positive, default=None, metavar="F",
                   help="orbit radius scale for --orbit (1.0 frames the scene; default 1.0)")
    p.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], default=None,
                   help="SH bands to use (default: all the scene has)")
    p.add_argument("--restore", action="store_true",
                   help="restore each frame with GaussPainter before writing it")
    p.add_argument("--painter", help="GaussPainter weights folder (default: shipped weights)")
    p.add_argument("--no-delta", action="store_true",
                   help="with --restore: ignore the per-scene painter delta of a .exgs file")
    p.add_argument("--temporal", action="store_true",
                   help="with --restore: the cameras form a smooth path (an animation); "
                        "stabilise the restored frames so they flicker no more than the "
                        "unrestored ones")
    p.set_defaults(func=run)
    p.add_argument("--profile", action="store_true",
                   help="print wall time and peak RSS per stage (read, prepare, project, ...)")
    p.error = _one_line_error  # type: ignore[method-assign]


def save_png(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write rgb [H,W,3] in [0,1] (and straight alpha [H,W]) as an 8-bit PNG, atomically."""
    from PIL import Image

    from ..fsutil import atomic_path

    a = np.clip(rgb, 0.0, 1.0)
    if alpha is not None:
        a = np.concatenate([a, np.clip(alpha, 0.0, 1.0)[..., None]], -1)
    img = Image.fromarray((a * 255.0 + 0.5).astype(np.uint8), "RGBA" if alpha is not None else "RGB")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_depth(path: Path, depth: np.ndarray, kind: str) -> None:
    """Write depth [H,W] float32 as .npy or single-channel ("Z") float EXR, atomically."""
    from ..fsutil import atomic_path

    if kind == "npy":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, depth.astype(np.float32))
        return
    import OpenEXR  # checked by _exr_check

    with atomic_path(path) as tmp:
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, np.float32)}) as f:
            f.write(str(tmp))


def _exr_check() -> None:
    try:
        import OpenEXR  # noqa: F401
    except ImportError:
        raise UsageError("--depth exr needs the OpenEXR package (pip install OpenEXR); "
                         "use --depth npy") from None


def straight(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied rgb (rendered over black) → straight colour (0 where alpha is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(alpha[..., None] > 1e-6, rgb / alpha[..., None], 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def cameras_for(args, scene):
    from ..cameras import orbit_for_scene, read_cameras_json

    if args.cameras:
        if args.up is not None or args.distance is not None:
            raise UsageError("--up and --distance apply to --orbit, not --cameras")
        cams = read_cameras_json(args.cameras)
        if args.size:
            cams = [c.resized(*args.size) for c in cams]
        return cams
    count = 8 if args.orbit is None else args.orbit
    if count < 1:
        raise UsageError(f"--orbit must be ≥ 1, got {count}")
    w, h = args.size or (960, 540)
    return orbit_for_scene(scene, count, w, h, up=args.up or "-y",
                           distance=1.0 if args.distance is None else args.distance)


def run(args) -> int:
    from tqdm import tqdm

    from ..fsutil import same_file
    from ..io import read_scene
    from ..pipeline import RestoreOptions, painter_device, render_frames, resolve_device

    if args.alpha and tuple(args.background) != (0.0, 0.0, 0.0):
        raise UsageError("--alpha writes straight alpha, --background does not apply")
    if args.painter and not args.restore:
        raise UsageError("--painter needs --restore")
    if args.no_delta and not args.restore:
        raise UsageError("--no-delta needs --restore")
    if args.temporal and not args.restore:
        raise UsageError("--temporal needs --restore")
    if args.depth == "exr":
        _exr_check()
    device = resolve_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    from .. import profiling

    if args.profile:
        profiling.enable()
    with profiling.stage("read"):
        scene = read_scene(args.scene)
    if args.sh_degree is not None and args.sh_degree > scene.sh_degree:
        raise UsageError(f"--sh-degree {args.sh_degree} is more than the scene's "
                         f"{scene.sh_degree}")
    cams = cameras_for(args, scene)
    names = [(out / f"{i:04d}.png", out / f"{i:04d}.depth.{args.depth}" if args.depth else None)
             for i in range(len(cams))]
    for path in (q for pair in names for q in pair if q is not None):
        if same_file(path, args.scene):
            raise UsageError(f"{path}: is the input scene (refusing to overwrite it)")
    restorer = None
    if args.restore:
        from ..pipeline import restorer_for

        restorer = restorer_for(args.scene, RestoreOptions(
            painter_dir=args.painter, device=painter_device(device),
            use_delta=not args.no_delta, temporal=args.temporal,
            warn=lambda m: print(f"exgs: warning: {m}", file=sys.stderr)))
        if restorer.delta["applied"] and restorer.delta["form"] == "none":
            print("not restoring: the file says restoration lowers this scene's quality "
                  "(--no-delta restores with the generic painter)", file=sys.stderr)
        elif restorer.delta["applied"]:
            print(f"restoring with the file's painter delta ({restorer.delta['form']}, "
                  f"{restorer.delta['bytes']:,} bytes)", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    frames = render_frames(scene, cams, device=device, sh_degree=args.sh_degree,
                           background=args.background, restorer=restorer)
    for (png, dpath), r in zip(names, tqdm(frames, total=len(cams), desc="render",
                                           unit="frame", disable=args.profile or None)):
        with profiling.stage("save"):
            save_png(png, straight(r.rgb, r.alpha) if args.alpha else r.rgb,
                     r.alpha if args.alpha else None)
            if dpath is not None:
                save_depth(dpath, r.depth, args.depth)
    backend = "gsplat" if device == "cuda" else "cpu"
    print(f"{len(cams)} frame(s) {cams[0].width}x{cams[0].height} ({backend}) -> {out}")
    for r in profiling.records():
        print(f"  {r['stage']:8s} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_gib']:.2f} GiB "
              f"(RSS after {r['rss_gib']:.2f} GiB, {r['calls']} call(s))")
    return 0
