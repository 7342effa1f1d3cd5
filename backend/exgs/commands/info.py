"""``exgs info SCENE``: count, SH degree, bounds, file size, memory, for every format.

The header (or meta.json) is read first, for every format that has one; the scene is
decoded for its bounds only when the decoded arrays fit :data:`DECODE_BUDGET` (issue 19: a
tiny file declaring millions of Gaussians must not make ``info`` allocate gigabytes).
``--header`` never decodes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._common import human_bytes

#: Largest decoded scene (bytes of float32 arrays) ``info`` decodes to report bounds.
DECODE_BUDGET = 768 << 20


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a scene file (.ply, .spz, .sog, .splat, .ksplat, "
                                    ".glb, LOD SOG, .exgs, ...)")
    p.add_argument("scene", help="scene file or SOG / LOD SOG folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--lod", type=int, default=None, metavar="N",
                   help="level of a streamed LOD SOG (default 0, the finest)")
    p.add_argument("--header", action="store_true",
                   help="read the header only (no bounds; never decodes the scene)")
    p.set_defaults(func=run)


def file_size(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def scene_bytes(n: int, sh_degree: int) -> int:
    """Bytes of the float32 arrays of a decoded scene of ``n`` Gaussians."""
    return 4 * n * (3 + 4 + 3 + 1 + 3 * (sh_degree + 1) ** 2)


def _exgs_header(path) -> dict:
    from ..io.exgs_format import read_exgs_header

    h = read_exgs_header(path)
    return {"format": "exgs", "gaussians": int(h.get("count") or 0),
            "sh_degree": int(h.get("sh_degree") or 0), "_raw": h}


def describe(path: str | os.PathLike, *, lod: int | None = None, header_only: bool = False,
             budget: int = DECODE_BUDGET) -> dict:
    from ..errors import SceneFormatError
    from ..io import detect_format, read_header, read_scene

    fmt = detect_format(path)
    hdr = _exgs_header(path) if fmt == "exgs" else read_header(path, lod=lod)
    if hdr is None and lod:
        raise SceneFormatError(path, f"--lod {lod}: this {fmt} scene has a single level")
    try:
        size = file_size(path)
    except OSError as e:
        raise SceneFormatError(path, f"cannot stat: {e.strerror or e}") from None
    info = {"file": str(path), "format": fmt, "file_bytes": size}
    decode = not header_only
    if hdr is not None:
        info["gaussians"], info["sh_degree"] = hdr["gaussians"], hdr["sh_degree"]
        info["memory_bytes"] = scene_bytes(hdr["gaussians"], hdr["sh_degree"])
        info["header"] = {k: v for k, v in hdr.items()
                          if k not in ("format", "gaussians", "sh_degree", "_raw")}
        decode = decode and info["memory_bytes"] <= budget
    elif header_only:
        raise SceneFormatError(path, f"--header: {fmt} files have no header to read alone")
    if decode:
        scene = read_scene(path, lod=lod)
        info.update(scene.summary())
    info["decoded"] = decode
    if info["gaussians"]:
        info["bytes_per_gaussian"] = info["file_bytes"] / info["gaussians"]
    if fmt == "exgs":
        secs = hdr["_raw"].get("sections") or []
        info["sections"] = [{"name": s["name"], "bytes": s["length"]} for s in secs]
    return info


def run(args) -> int:
    info = describe(args.scene, lod=args.lod, header_only=args.header)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}")
    print(f"  format          {info['format']}")
    print(f"  gaussians       {info['gaussians']:,}")
    print(f"  sh degree       {info['sh_degree']}")
    for k, v in info.get("header", {}).items():
        if k not in ("version",) and v is not None:
            print(f"  {k.replace('_', ' '):<15} {v}")
    fmt3 = lambda v: "(" + ", ".join(f"{x:.3f}" for x in v) + ")"  # noqa: E731
    if info["decoded"]:
        lo, hi = info["bounds_min"], info["bounds_max"]
        rlo, rhi = info["robust_bounds_min"], info["robust_bounds_max"]
        print(f"  bounds          {fmt3(lo)} .. {fmt3(hi)}")
        print(f"  robust bounds   {fmt3(rlo)} .. {fmt3(rhi)}  (2-98 %)")
    else:
        print("  bounds          not computed (header only: --header, or a scene larger "
              f"than {human_bytes(DECODE_BUDGET)} decoded)")
    print(f"  file size       {human_bytes(info['file_bytes'])}"
          + (f"  ({info['bytes_per_gaussian']:.1f} B/Gaussian)" if info["gaussians"] else ""))
    print(f"  memory          {human_bytes(info['memory_bytes'])}")
    if info.get("extras"):
        print(f"  extra props     {', '.join(info['extras'])}")
    for sec in info.get("sections", []):
        print(f"  section         {sec['name']} ({human_bytes(sec['bytes'])})")
    return 0
