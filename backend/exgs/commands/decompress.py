"""``exgs decompress IN.exgs -o OUT.ply [--keep F]``: decode a .exgs (optionally only its most
significant prefix) into an INRIA .ply or .spz."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError


def register(sub) -> None:
    from .compress import keep_value

    p = sub.add_parser("decompress", help="decode a .exgs file into .ply or .spz")
    p.add_argument("input", help=".exgs file")
    p.add_argument("-o", "--output", required=True, help="output .ply or .spz")
    p.add_argument("--keep", type=keep_value, default=None,
                   help="decode only this fraction (0,1] or count of the most significant "
                        "Gaussians (progressive prefix)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fsutil import same_file
    from ..io import detect_format, write_scene
    from ..io.exgs_format import read_exgs_scene
    from ._common import human_bytes

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix.lower() not in (".ply", ".spz"):
        raise UsageError(f"{dst}: output must end in .ply or .spz")
    if same_file(src, dst) or src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: is the input file (refusing to overwrite it)")
    if dst.exists() and not args.force:
        raise UsageError(f"{dst}: already exists (use --force to overwrite)")
    if detect_format(src) != "exgs":
        raise UsageError(f"{src}: not a .exgs file")
    scene = read_exgs_scene(src, keep=args.keep)
    write_scene(scene, dst)
    print(f"{src} -> {dst}: {len(scene):,} Gaussians, SH degree {scene.sh_degree}, "
          f"{human_bytes(dst.stat().st_size)}")
    return 0
