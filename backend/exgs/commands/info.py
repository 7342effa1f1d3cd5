"""``exgs info SCENE``: count, SH degree, bounds, file size, memory, for every format."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._common import human_bytes


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a scene file (.ply, .spz, .sog, .exgs, ...)")
    p.add_argument("scene", help="scene file or SOG folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def file_size(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def describe(path: str | os.PathLike) -> dict:
    from ..io import detect_format, read_scene

    fmt = detect_format(path)
    scene = read_scene(path)
    info = {"file": str(path), "format": fmt, "file_bytes": file_size(path)}
    info.update(scene.summary())
    if info["gaussians"]:
        info["bytes_per_gaussian"] = info["file_bytes"] / info["gaussians"]
    if fmt == "exgs":
        from ..io.exgs_format import read_exgs_header

        secs = read_exgs_header(path).get("sections") or []
        info["sections"] = [{"name": s["name"], "bytes": s["length"]} for s in secs]
    return info


def run(args) -> int:
    info = describe(args.scene)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}")
    print(f"  format          {info['format']}")
    print(f"  gaussians       {info['gaussians']:,}")
    print(f"  sh degree       {info['sh_degree']}")
    lo, hi = info["bounds_min"], info["bounds_max"]
    rlo, rhi = info["robust_bounds_min"], info["robust_bounds_max"]
    fmt3 = lambda v: "(" + ", ".join(f"{x:.3f}" for x in v) + ")"  # noqa: E731
    print(f"  bounds          {fmt3(lo)} .. {fmt3(hi)}")
    print(f"  robust bounds   {fmt3(rlo)} .. {fmt3(rhi)}  (2-98 %)")
    print(f"  file size       {human_bytes(info['file_bytes'])}"
          + (f"  ({info['bytes_per_gaussian']:.1f} B/Gaussian)" if info["gaussians"] else ""))
    print(f"  memory          {human_bytes(info['memory_bytes'])}")
    if info["extras"]:
        print(f"  extra props     {', '.join(info['extras'])}")
    for sec in info.get("sections", []):
        print(f"  section         {sec['name']} ({human_bytes(sec['bytes'])})")
    return 0
