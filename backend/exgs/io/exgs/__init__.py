"""The .exgs file format as a layer of :mod:`exgs.io`: :mod:`.container` (prefix, header,
chunk table, checksums, extra sections), :mod:`.codec` (what the chunks hold: quantized,
Morton-ordered, progressive Gaussians) and :mod:`.quantize` (the quantizers). This module is
the public API; it depends only on the basics (errors, scene, fsutil).

A section's *meaning* is not this layer's business: :func:`read_exgs_section` returns
checksum-verified bytes; the painter package validates a ``painter_delta`` section when it
is asked for one (:func:`exgs.painter.delta.file_delta`).
"""

from __future__ import annotations

import os

from ...scene import GaussianScene
from .codec import (FIRST_CHUNK, RANK_LEVELS, SH_REST_BITS, bytes_per_gaussian, check_header,
                    chunk_counts, decode_body, decode_exgs, encode_exgs, resolve_count)
from .container import (DELTA_SECTION, MAGIC, VERSION, VERSION_SECTIONS, assemble,
                        file_reader, open_file, parse_header, read_head, section_bytes, wrap)

__all__ = ["encode_exgs", "decode_exgs", "read_exgs_scene", "read_exgs_header",
           "write_exgs_bytes", "chunk_counts", "attach_sections", "read_exgs_section",
           "exgs_section_from_bytes", "kept_fraction", "is_refined", "decode_header",
           "resolve_count", "bytes_per_gaussian", "MAGIC", "VERSION", "VERSION_SECTIONS", "DELTA_SECTION", "FIRST_CHUNK",
           "RANK_LEVELS", "SH_REST_BITS"]


def _parse(buf, total):
    return parse_header(buf, total, check_header)


def attach_sections(data: bytes, sections: dict[str, bytes | None], path=None) -> bytes:
    """The .exgs ``data`` with extra ``sections`` added or replaced (a value of None removes
    that section). The scene chunks are copied unchanged; the header is re-encoded (version
    2 when any section remains, else 1). Raises SceneFormatError if ``data`` is invalid."""
    buf = memoryview(data)
    h, start = wrap(path, lambda: _parse(buf, len(buf)))
    end = start + sum(c["length"] for c in h["chunks"])
    blobs = [bytes(buf[start:end])]
    cur = {s["name"]: bytes(buf[start + s["offset"]:start + s["offset"] + s["length"]])
           for s in h.get("sections", [])}
    for k, v in sections.items():
        if v is None:
            cur.pop(k, None)
        else:
            cur[k] = bytes(v)
    return assemble(h, blobs, cur)


def write_exgs_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write encoded .exgs bytes atomically (a reader never sees a partial file)."""
    from ...fsutil import write_bytes_atomic

    write_bytes_atomic(path, data)


def read_exgs_header(path: str | os.PathLike) -> dict:
    """The validated JSON header of a .exgs file, plus ``file_bytes``. Reads only the
    header, never the chunks."""
    f, size = open_file(path)
    with f:
        head = wrap(path, lambda: read_head(f))
    h, _ = wrap(path, lambda: _parse(head, size))
    h["file_bytes"] = size
    return h


def decode_header(data: bytes, path=None) -> dict:
    """The validated JSON header of .exgs ``data`` in memory, plus ``file_bytes``."""
    buf = memoryview(data)
    h, _ = wrap(path, lambda: _parse(buf, len(buf)))
    h["file_bytes"] = len(buf)
    return h


def kept_fraction(header: dict, count: int | None = None) -> float | None:
    """Kept fraction of a .exgs file's Gaussians from its (validated) ``header``: the stored
    count (or ``count``, when only a prefix was decoded) / the source's count, in (0, 1].
    None when the header has no source count."""
    try:
        src = int((header.get("source") or {}).get("gaussians") or 0)
        n = int(count if count is not None else header.get("count") or 0)
    except (TypeError, ValueError):
        return None
    return min(1.0, n / src) if src > 0 and n > 0 else None


def is_refined(header: dict) -> bool:
    """Whether a .exgs file's Gaussians were refined after pruning (issue 10,
    :func:`exgs.ugc.refine_file.refine_result` writes ``stats.refined`` and
    ``settings.refine``); False for training-free files and headers that do not say."""
    stats = header.get("stats") if isinstance(header.get("stats"), dict) else {}
    settings = header.get("settings") if isinstance(header.get("settings"), dict) else {}
    return stats.get("refined") is True or isinstance(settings.get("refine"), dict)


def read_exgs_scene(path: str | os.PathLike, keep: float | int | None = None) -> GaussianScene:
    """Read a .exgs file → :class:`GaussianScene` (SH degree as stored). ``keep`` (how much
    to decode: a fraction in (0, 1] or a count ≥ 1) decodes only that many of the most
    significant Gaussians, reading only the chunks they are in. The decoded values are
    validated like every reader's (:meth:`GaussianScene.validate`): a header whose ranges
    decode to NaN/Inf or absurd scales is refused with one line."""
    f, size = open_file(path)
    with f:
        head = wrap(path, lambda: read_head(f))
        h, start = wrap(path, lambda: _parse(head, size))
        scene = wrap(path, lambda: decode_body(h, file_reader(f, start, "chunk data"), keep))
    return scene.validate(path)


def exgs_section_from_bytes(data: bytes, name: str, path=None) -> bytes | None:
    """The checksum-verified bytes of section ``name`` of .exgs ``data``, or None if absent."""
    buf = memoryview(data)
    h, start = wrap(path, lambda: _parse(buf, len(buf)))
    return wrap(path, lambda: section_bytes(h, start, lambda o, n: buf[o:o + n], name))


def read_exgs_section(path: str | os.PathLike, name: str) -> bytes | None:
    """The bytes of extra section ``name`` of a .exgs file (checksum verified), or None when
    the file has no such section. Raises SceneFormatError naming the file when the file or
    the section is corrupt. Reads only the header and that section."""
    f, size = open_file(path)
    with f:
        head = wrap(path, lambda: read_head(f))
        h, start = wrap(path, lambda: _parse(head, size))
        return wrap(path, lambda: section_bytes(h, start, file_reader(f, 0, "section data"),
                                                name))
