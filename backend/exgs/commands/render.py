"""``exgs render SCENE --out DIR``: render numbered PNGs (and depth) of any readable scene.

Cameras come from an INRIA ``cameras.json`` (``--cameras``) or an orbit around the scene's
robust bounds (``--orbit N``, default 8 views, ``--up`` gives the scene's up axis; captures
are usually y-down, so the default is ``-y``). Files: ``DIR/0000.png`` ... (RGB over
``--background``; RGBA with *straight* alpha with ``--alpha``), ``DIR/0000.depth.npy``
(float32 [H,W] camera z, +inf where empty) or ``.depth.exr`` with ``--depth``. Every file is
written atomically.
"""

from __future__ import annotations

import argparse
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
    p.add_argument("--up", default="-y", help="scene up axis for --orbit (default -y)")
    p.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], default=None,
                   help="SH bands to use (default: all the scene has)")
    p.add_argument("--restore", action="store_true",
                   help="restore each frame with GaussPainter before writing it")
    p.add_argument("--painter", help="GaussPainter weights folder (default: shipped weights)")
    p.set_defaults(func=run)


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


def load_restorer(painter_dir: str | None, device: str):
    """GaussPainter's ``restore`` or UsageError when the painter is not available."""
    try:
        from .. import painter
        load = painter.load_painter
    except (ImportError, AttributeError):
        raise UsageError("GaussPainter is not available") from None
    return load(painter_dir, device="cuda" if device == "gsplat" else "cpu").restore


def cameras_for(args, scene):
    from ..cameras import orbit_for_scene, read_cameras_json

    if args.cameras:
        cams = read_cameras_json(args.cameras)
        if args.size:
            cams = [c.resized(*args.size) for c in cams]
        return cams
    count = 8 if args.orbit is None else args.orbit
    if count < 1:
        raise UsageError(f"--orbit must be ≥ 1, got {count}")
    w, h = args.size or (960, 540)
    return orbit_for_scene(scene, count, w, h, up=args.up)


def run(args) -> int:
    from tqdm import tqdm

    from ..fsutil import same_file
    from ..io import read_scene
    from ..render import render_many, select_device

    if args.alpha and tuple(args.background) != (0.0, 0.0, 0.0):
        raise UsageError("--alpha writes straight alpha, --background does not apply")
    if args.painter and not args.restore:
        raise UsageError("--painter needs --restore")
    if args.depth == "exr":
        _exr_check()
    backend = select_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    scene = read_scene(args.scene)
    if args.sh_degree is not None and args.sh_degree > scene.sh_degree:
        raise UsageError(f"--sh-degree {args.sh_degree} is more than the scene's "
                         f"{scene.sh_degree}")
    cams = cameras_for(args, scene)
    restore = load_restorer(args.painter, backend) if args.restore else None
    out.mkdir(parents=True, exist_ok=True)
    frames = render_many(scene, cams, sh_degree=args.sh_degree, device=backend if backend != "gsplat" else "cuda",
                         background=args.background)
    for i, r in enumerate(tqdm(frames, total=len(cams), desc="render", unit="frame")):
        rgb = r.rgb
        if restore is not None:
            rgb = restore(rgb, r.alpha)
        png = out / f"{i:04d}.png"
        if same_file(png, args.scene):
            raise UsageError(f"{png}: is the input scene (refusing to overwrite it)")
        save_png(png, straight(rgb, r.alpha) if args.alpha else rgb,
                 r.alpha if args.alpha else None)
        if args.depth:
            save_depth(out / f"{i:04d}.depth.{args.depth}", r.depth, args.depth)
    print(f"{len(cams)} frame(s) {cams[0].width}x{cams[0].height} ({backend}) -> {out}")
    return 0
