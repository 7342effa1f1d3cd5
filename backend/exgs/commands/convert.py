"""``exgs convert IN OUT``: any readable scene (.ply, compressed .ply, .spz, SOG, .exgs) →
INRIA .ply or Niantic .spz. Written atomically; never overwrites the input."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a scene to .ply or .spz")
    p.add_argument("input", help="scene file or SOG folder")
    p.add_argument("output", help="output file (.ply or .spz)")
    p.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], default=None,
                   help="truncate (or zero-pad) SH to this degree")
    p.add_argument("--spz-raw", action="store_true",
                   help="SPZ input/output without the RDF<->RUB frame conversion (for tools "
                        "that store SPZ in the PLY frame)")
    p.set_defaults(func=run)


def convert(src, dst, *, sh_degree: int | None = None, spz_raw: bool = False) -> dict:
    """Read ``src`` and write ``dst`` (format from its suffix). Returns a small summary."""
    from ..fsutil import same_file
    from ..io import detect_format, read_scene
    from ..io.ply import write_ply
    from ..io.spz import read_spz, write_spz

    src, dst = Path(src), Path(dst)
    kind = dst.suffix.lower()
    if kind not in (".ply", ".spz"):
        raise UsageError(f"{dst}: output must end in .ply or .spz")
    if same_file(src, dst) or src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: is the input file (refusing to overwrite it)")
    if dst.is_dir():
        raise UsageError(f"{dst}: is a folder")
    fmt = detect_format(src)
    scene = read_spz(src, raw=spz_raw) if fmt == "spz" else read_scene(src)
    if sh_degree is not None:
        scene = scene.with_sh_degree(sh_degree)
    if kind == ".spz":
        write_spz(scene, dst, raw=spz_raw)
    else:
        write_ply(scene, dst)
    return {"input": str(src), "input_format": fmt, "output": str(dst),
            "gaussians": len(scene), "sh_degree": scene.sh_degree,
            "bytes": dst.stat().st_size}


def run(args) -> int:
    from ._common import human_bytes

    info = convert(args.input, args.output, sh_degree=args.sh_degree, spz_raw=args.spz_raw)
    print(f"{info['input']} ({info['input_format']}) -> {info['output']}: "
          f"{info['gaussians']:,} Gaussians, SH degree {info['sh_degree']}, "
          f"{human_bytes(info['bytes'])}")
    return 0
