"""Scene file formats. ``read_scene`` picks the reader from the file's content and name.

Readers return a :class:`exgs.scene.GaussianScene` in the file's own frame, or raise
:class:`exgs.errors.SceneFormatError` (one line naming the file and the problem).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import SceneFormatError
from ..scene import GaussianScene

#: format name → (module, reader function, writer function or None)
FORMATS = {
    "ply": ("exgs.io.ply", "read_ply", "write_ply"),
    "compressed_ply": ("exgs.io.compressed_ply", "read_compressed_ply", None),
    "spz": ("exgs.io.spz", "read_spz", "write_spz"),
    "sog": ("exgs.io.sog", "read_sog", None),
    "exgs": ("exgs.io.exgs_format", "read_exgs_scene", None),
}


def sniff_format(head: bytes) -> str | None:
    """Format name from a file's first bytes (≥ 4 KiB for PLY headers), None when unknown.
    A zip is reported as "sog"; :func:`detect_format` also checks it holds a SOG scene."""
    if head.startswith(b"ply"):
        return "compressed_ply" if b"element chunk" in head else "ply"
    if head[:2] == b"\x1f\x8b" or head[:4] == b"NGSP":
        return "spz"
    if head[:4] == b"EXGS":
        return "exgs"
    if head[:4] == b"PK\x03\x04":
        return "sog"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """Name of the format of ``path`` (see :data:`FORMATS`), from its magic bytes and name."""
    path = Path(path)
    if path.is_dir():
        if (path / "meta.json").is_file():
            return "sog"
        raise SceneFormatError(path, "is a folder without meta.json (not a SOG scene)")
    if path.name == "meta.json":
        return "sog"
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise SceneFormatError(path, f"cannot open: {e.strerror or e}") from None
    if not head:
        raise SceneFormatError(path, "empty file")
    fmt = sniff_format(head)
    if fmt == "sog" and not (path.suffix.lower() == ".sog" or _zip_has_meta(path)):
        fmt = None  # a zip, but not a SOG scene
    if fmt is not None:
        return fmt
    raise SceneFormatError(path, "unknown scene format (expected PLY, SPZ, SOG or .exgs)")


def _zip_has_meta(path: Path) -> bool:
    """True if ``path`` is a zip holding a meta.json (a SOG bundle under another name)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.rsplit("/", 1)[-1] == "meta.json" for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def _func(fmt: str, which: int):
    mod = importlib.import_module(FORMATS[fmt][0])
    return getattr(mod, FORMATS[fmt][which])


def read_scene(path: str | os.PathLike) -> GaussianScene:
    """Read any supported scene file (format detected from content)."""
    fmt = detect_format(path)
    return _func(fmt, 1)(path)


def write_scene(scene: GaussianScene, path: str | os.PathLike, fmt: str | None = None) -> None:
    """Write ``scene`` atomically; the format comes from ``fmt`` or the file suffix."""
    path = Path(path)
    fmt = fmt or {".ply": "ply", ".spz": "spz"}.get(path.suffix.lower())
    if fmt is None or FORMATS.get(fmt, (None, None, None))[2] is None:
        raise SceneFormatError(path, "can only write .ply or .spz here (use 'exgs compress' "
                                     "for .exgs)")
    _func(fmt, 2)(scene, path)
