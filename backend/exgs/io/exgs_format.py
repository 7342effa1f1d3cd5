"""The ``.exgs`` entry of the format registry (:data:`exgs.io.FORMATS`) and the stable names
callers outside the backend use (the Blender add-on's facts script). The format itself lives
in :mod:`exgs.io.exgs` (container, codec, quantizers); see that package for the byte layout.
"""

from __future__ import annotations

import os

from .exgs import (DELTA_SECTION, MAGIC, VERSION, VERSION_SECTIONS, attach_sections,
                   chunk_counts, decode_exgs, encode_exgs, exgs_section_from_bytes,
                   is_refined, kept_fraction, read_exgs_header, read_exgs_scene,
                   read_exgs_section, write_exgs_bytes)

__all__ = ["encode_exgs", "decode_exgs", "read_exgs_scene", "read_exgs_header",
           "write_exgs_bytes", "chunk_counts", "attach_sections", "read_exgs_section",
           "read_exgs_delta", "exgs_section_from_bytes", "exgs_kept_fraction", "is_refined",
           "MAGIC", "VERSION", "VERSION_SECTIONS", "DELTA_SECTION"]


def exgs_kept_fraction(path: str | os.PathLike, count: int | None = None) -> float | None:
    """Kept fraction of a .exgs file (:func:`exgs.io.exgs.kept_fraction` of its header).
    Raises SceneFormatError like :func:`read_exgs_header`."""
    return kept_fraction(read_exgs_header(path), count)


def read_exgs_delta(path: str | os.PathLike) -> bytes | None:
    """The bytes of a .exgs file's ``painter_delta`` section (checksum verified), or None.
    What the bytes mean is checked by the painter package when the delta is used
    (:func:`exgs.painter.delta.file_delta` reads *and* validates)."""
    return read_exgs_section(path, DELTA_SECTION)
