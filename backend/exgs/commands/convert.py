"""``exgs convert IN OUT``: any readable scene (.ply, compressed .ply, .spz, SOG v1/v2, LOD SOG,
.splat, .ksplat, glTF/GLB, .exgs) → .ply, .spz, .sog (zip; ``OUT/meta.json`` for a folder),
.splat or .glb. Written atomically; never overwrites the input; a failed write (full disk,
read-only folder, a path under an existing file) is one line, exit 2, and leaves nothing.
``--keep K`` (a .exgs input only) writes just its most significant prefix: a count ≥ 1 or a
fraction in (0, 1], decoding only the chunks it needs (the Blender add-on's preview import)."""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import ExgsError, UsageError

OUTPUTS = (".ply", ".spz", ".sog", ".splat", ".glb")


def register(sub) -> None:
    from .compress import keep_value

    p = sub.add_parser("convert", help="convert a scene to .ply, .spz, .sog, .splat or .glb")
    p.add_argument("input", help="scene file, SOG folder or LOD SOG folder")
    p.add_argument("output", help="output file (.ply, .spz, .sog zip, .splat, .glb), or "
                                  "FOLDER/meta.json for a SOG folder")
    p.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], default=None,
                   help="truncate (or zero-pad) SH to this degree")
    p.add_argument("--spz-raw", action="store_true",
                   help="SPZ input/output without the RDF<->RUB frame conversion (for tools "
                        "that store SPZ in the PLY frame)")
    p.add_argument("--lod", type=int, default=None, metavar="N",
                   help="level of a streamed LOD SOG input (default 0, the finest)")
    p.add_argument("--glb-spz", action="store_true",
                   help=".glb output: store the Gaussians as SPZ "
                        "(KHR_gaussian_splatting_compression_spz_2, ~10x smaller)")
    p.add_argument("--keep", type=keep_value, default=None, metavar="K",
                   help=".exgs input: write only its K most significant Gaussians (a count "
                        "≥ 1, or a fraction in (0, 1]): the progressive prefix")
    p.set_defaults(func=run)


def _kind(dst: Path) -> str:
    if dst.name == "meta.json":
        return "sog_folder"
    kind = dst.suffix.lower()
    if kind not in OUTPUTS:
        raise UsageError(f"{dst}: output must end in {', '.join(OUTPUTS)} or be "
                         f"FOLDER/meta.json (SOG folder)")
    return kind


def _write(scene, dst: Path, kind: str, spz_raw: bool, glb_spz: bool = False) -> Path:
    """Write ``scene``; returns the path written (the folder for a SOG folder)."""
    from ..io import write_scene
    from ..io.sog import write_sog
    from ..io.spz import write_spz

    if kind == "sog_folder":
        write_sog(scene, dst.parent, sort=True)
        return dst.parent
    if kind == ".spz":
        write_spz(scene, dst, raw=spz_raw)
    elif kind == ".sog":
        write_sog(scene, dst, sort=True)
    elif kind == ".glb":
        write_scene(scene, dst, spz=glb_spz)
    else:
        write_scene(scene, dst)
    return dst


def convert(src, dst, *, sh_degree: int | None = None, spz_raw: bool = False,
            lod: int | None = None, glb_spz: bool = False, keep=None) -> dict:
    """Read ``src`` and write ``dst`` (format from its suffix). ``keep`` (a .exgs ``src``
    only): decode just that prefix (count ≥ 1 or fraction in (0, 1]). Returns a small
    summary (``total``: the Gaussians in ``src`` when a prefix was asked for)."""
    from ..fsutil import same_file
    from ..io import detect_format, read_scene
    from ..io.spz import read_spz

    src, dst = Path(src), Path(dst)
    kind = _kind(dst)
    target = dst.parent if kind == "sog_folder" else dst
    if same_file(src, target) or src.resolve() == target.resolve():
        raise UsageError(f"{target}: is the input (refusing to overwrite it)")
    if kind != "sog_folder" and dst.is_dir():
        raise UsageError(f"{dst}: is a folder")
    fmt = detect_format(src)
    total = None
    if keep is not None:
        if fmt != "exgs":
            raise UsageError(f"{src}: --keep needs a .exgs input (a progressive file), "
                             f"not {fmt}")
        from ..io.exgs_format import read_exgs_header, read_exgs_scene
        total = int(read_exgs_header(src)["count"])
        scene = read_exgs_scene(src, keep=keep)
    else:
        scene = read_spz(src, raw=spz_raw) if fmt == "spz" else read_scene(src, lod=lod)
    if len(scene) == 0:
        raise ExgsError(f"{src}: the scene has no Gaussians (nothing to convert)")
    if sh_degree is not None:
        scene = scene.with_sh_degree(sh_degree)
    try:
        written = _write(scene, dst, kind, spz_raw, glb_spz)
        size = (sum(f.stat().st_size for f in written.iterdir()) if written.is_dir()
                else written.stat().st_size)
    except OSError as e:
        why = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
               errno.EACCES: "permission denied", errno.ENOTDIR: "a parent is not a folder",
               errno.EEXIST: "already exists"}.get(e.errno, e.strerror or str(e))
        if any(q.exists() and not q.is_dir() for q in target.parents):
            why = "a parent is not a folder"
        raise ExgsError(f"{target}: cannot write ({why})") from None
    degree = 0 if kind == ".splat" else scene.sh_degree  # .splat stores no SH bands
    return {"input": str(src), "input_format": fmt, "output": str(written),
            "gaussians": len(scene), "sh_degree": degree, "bytes": size, "total": total}


def run(args) -> int:
    from ._common import human_bytes

    info = convert(args.input, args.output, sh_degree=args.sh_degree, spz_raw=args.spz_raw,
                   lod=args.lod, glb_spz=args.glb_spz, keep=args.keep)
    of = f" of {info['total']:,}" if info["total"] is not None else ""
    print(f"{info['input']} ({info['input_format']}) -> {info['output']}: "
          f"{info['gaussians']:,}{of} Gaussians, SH degree {info['sh_degree']}, "
          f"{human_bytes(info['bytes'])}")
    return 0
