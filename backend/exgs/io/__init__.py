"""Scene file formats. ``read_scene`` picks the reader from the file's content (magic bytes,
JSON keys, the ``.ksplat`` header's self-consistent sizes) and, for ``.splat`` (no header),
the name.

Readers return a :class:`exgs.scene.GaussianScene` in the file's own frame, or raise
:class:`exgs.errors.SceneFormatError` (one line naming the file and the problem).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from ..errors import SceneFormatError
from ..scene import GaussianScene

#: format name → (module, reader function, writer function or None); a function given as
#: "module:function" lives in that module
FORMATS = {
    "ply": ("exgs.io.ply", "read_ply", "write_ply"),
    "compressed_ply": ("exgs.io.compressed_ply", "read_compressed_ply", "write_compressed_ply"),
    "spz": ("exgs.io.spz", "read_spz", "write_spz"),
    "sog": ("exgs.io.sog", "read_sog", "write_sog"),
    "sog_lod": ("exgs.io.sog_lod", "read_sog_lod", None),
    "splat": ("exgs.io.splat", "read_splat", "write_splat"),
    "ksplat": ("exgs.io.ksplat", "read_ksplat", None),
    "gltf": ("exgs.io.gltf", "read_gltf", "exgs.io.gltf_write:write_gltf"),
    "exgs": ("exgs.io.exgs_format", "read_exgs_scene", None),
}

#: output suffix → format written by :func:`write_scene`
WRITE_SUFFIXES = {".ply": "ply", ".spz": "spz", ".sog": "sog", ".splat": "splat",
                  ".glb": "gltf"}


def sniff_format(head: bytes) -> str | None:
    """Format name from a file's first bytes (≥ 4 KiB for PLY headers), None when unknown.
    A zip is reported as "sog"; :func:`detect_format` also checks it holds a SOG scene.
    JSON, ``.ksplat`` and ``.splat`` need more than the head: see :func:`detect_format`."""
    if head.startswith(b"ply"):
        return "compressed_ply" if b"element chunk" in head else "ply"
    if head[:2] == b"\x1f\x8b" or head[:4] == b"NGSP":
        return "spz"
    if head[:4] == b"EXGS":
        return "exgs"
    if head[:4] == b"PK\x03\x04":
        return "sog"
    if head[:4] == b"glTF":
        return "gltf"
    return None


def _json_kind(path: Path, size: int) -> str | None:
    """Format of a JSON file from its keys: lod-meta.json, SOG meta.json (v1/v2), glTF."""
    if size > 64 << 20:
        return None
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    if "lodLevels" in doc and "filenames" in doc:
        return "sog_lod"
    if "means" in doc and "quats" in doc:
        return "sog"
    if "asset" in doc and ("meshes" in doc or "extensionsUsed" in doc):
        return "gltf"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """Name of the format of ``path`` (see :data:`FORMATS`), from its content and name."""
    path = Path(path)
    if path.is_dir():
        if (path / "lod-meta.json").is_file():
            return "sog_lod"
        if (path / "meta.json").is_file():
            return "sog"
        raise SceneFormatError(path, "is a folder without meta.json or lod-meta.json (not a "
                                     "SOG scene)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise SceneFormatError(path, f"cannot open: {e.strerror or e}") from None
    if not head:
        raise SceneFormatError(path, "empty file")
    fmt = sniff_format(head)
    if fmt == "sog" and not (path.suffix.lower() == ".sog" or _zip_has_meta(path)):
        fmt = None  # a zip, but not a SOG scene
    if fmt is None and head.lstrip()[:1] == b"{":
        fmt = _json_kind(path, size)
    if fmt is None and _looks_like_ksplat(path, head, size):
        fmt = "ksplat"
    if fmt is None and path.suffix.lower() == ".splat" and size % 32 == 0:
        fmt = "splat"
    if fmt is not None:
        return fmt
    raise SceneFormatError(path, "unknown scene format (expected PLY, SPZ, SOG, .splat, "
                                 ".ksplat, glTF/GLB or .exgs)")


def _looks_like_ksplat(path: Path, head: bytes, size: int) -> bool:
    """True if the first 4 KiB parse as a .ksplat header whose section sizes add up."""
    from .ksplat import HEADER, SECTION_HEADER, _head, read_ksplat_layout

    named = path.suffix.lower() == ".ksplat"  # a corrupt .ksplat: let its reader say why
    if len(head) < HEADER or head[0] != 0 or head[20] > 2 or head[21] != 0:
        return named
    max_sec = int.from_bytes(head[4:8], "little")
    if max_sec == 0 or HEADER + SECTION_HEADER * max_sec > min(size, 64 << 20):
        return named
    try:
        full, _ = _head(path)
        read_ksplat_layout(path, full, size)
    except SceneFormatError:
        return named
    return True


def _zip_has_meta(path: Path) -> bool:
    """True if ``path`` is a zip holding a meta.json (a SOG bundle under another name)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.rsplit("/", 1)[-1] == "meta.json" for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
            RuntimeError):
        return False


def _func(fmt: str, which: int):
    """Reader (which=1) or writer (2) of ``fmt``; a name ``"module:function"`` lives in a
    module of its own (e.g. the glTF writer)."""
    name = FORMATS[fmt][which]
    module, _, name = name.rpartition(":") if ":" in name else (FORMATS[fmt][0], ":", name)
    return getattr(importlib.import_module(module), name)


def read_scene(path: str | os.PathLike, *, lod: int | None = None) -> GaussianScene:
    """Read any supported scene file (format detected from content). ``lod`` picks a level
    of a streamed LOD SOG (default 0, the finest); other formats refuse it."""
    import numpy as np

    fmt = detect_format(path)
    if fmt != "sog_lod" and lod is not None and lod != 0:
        raise SceneFormatError(path, f"--lod {lod}: this {fmt} scene has a single level")
    # absurd stored values become inf/NaN, which every reader's validate() refuses with one
    # line: numpy's floating-point warnings (overflow, signalling NaNs) must not reach stderr
    with np.errstate(all="ignore"):
        if fmt == "sog_lod":
            return _func(fmt, 1)(path, lod=lod)
        return _func(fmt, 1)(path)


def read_header(path: str | os.PathLike, *, lod: int | None = None) -> dict | None:
    """{format, gaussians, sh_degree, ...} read from the header / meta.json only (no decode),
    for the formats that allow it; None for the others (PLY, compressed PLY, .exgs)."""
    fmt = detect_format(path)
    info = None
    if fmt == "spz":
        from .spz import read_spz_header

        info = read_spz_header(path)
    elif fmt == "sog":
        from .sog import read_sog_header

        info = read_sog_header(path)
    elif fmt == "sog_lod":
        from .sog_lod import read_lod_header

        info = read_lod_header(path, lod)
    elif fmt == "ksplat":
        from .ksplat import read_ksplat_header

        info = read_ksplat_header(path)
    elif fmt == "splat":
        from .splat import splat_count

        info = {"gaussians": splat_count(path), "sh_degree": 0}
    elif fmt == "gltf":
        from .gltf import read_gltf_header

        info = read_gltf_header(path)
    if info is not None:
        info = {"format": fmt, **info}
    return info


def write_scene(scene: GaussianScene, path: str | os.PathLike, fmt: str | None = None,
                **options) -> None:
    """Write ``scene`` atomically; the format comes from ``fmt`` or the file suffix
    (:data:`WRITE_SUFFIXES`). ``options`` go to the format's writer."""
    path = Path(path)
    fmt = fmt or WRITE_SUFFIXES.get(path.suffix.lower())
    if fmt is None or FORMATS.get(fmt, (None, None, None))[2] is None:
        raise SceneFormatError(path, "can only write .ply, .spz, .sog, .splat or .glb here "
                                     "(use 'exgs compress' for .exgs)")
    _func(fmt, 2)(scene, path, **options)
