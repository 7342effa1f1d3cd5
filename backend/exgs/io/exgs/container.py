"""The .exgs container: prefix, JSON header, chunk table, checksums and extra sections.

This module knows the *envelope* of a .exgs file, not what the chunks hold (that is
:mod:`.codec`) nor what a section means (the ``painter_delta`` section is validated by
:mod:`exgs.painter.delta` when it is asked for). Byte layout (integers little-endian)::

    offset      size  field
    0           4     magic  b"EXGS"
    4           2     format version (u16): 1, or 2 when the file has extra sections
    6           2     flags (u16): bit 0 = header is zstd-compressed (set by this writer:
                      ~0.6 kB instead of ~1.2 kB, which matters for files of a few kB)
    8           4     H = length of the stored header (u32)
    12          H     JSON header, UTF-8, zstd-compressed when flag bit 0 is set
    12+H        8     BLAKE2b-64 digest of the H stored header bytes
    20+H        ...   data: one zstd frame per chunk, back to back
    ...         ...   extra sections (version 2 only), back to back after the last chunk

The header holds ``count``, ``sh_degree``, the quantization parameters (``quant``, see
:mod:`.codec`), the bounds of the centres, the source (``source.bytes``: size of the input
file, ``gaussians``, ``sh_degree``), the compression ``settings`` and ``stats``, and the chunk
table: ``chunks = [{"count", "offset", "length", "raw_length", "checksum"}]`` (offset relative
to the start of the data; checksum = BLAKE2b-64 hex of the compressed chunk bytes).

**Extra sections** (version 2): ``sections = [{"name", "offset", "length", "checksum"}]``
(offset from the start of the data, right after the chunks and each other; checksum =
BLAKE2b-64 hex of the section bytes; names unique, ``[a-z0-9_]{1,64}``). The only one defined
is ``painter_delta`` (a per-scene GaussPainter delta). A file without sections is written as
version 1, byte for byte as before sections existed. The section table and the total length
are validated with the header, so a truncated file is refused as a whole; a section's bytes
are checked against their checksum only when they are asked for (:func:`section_bytes`): a
corrupt section never prevents reading the scene.

Every validation failure raises :class:`exgs.errors.SceneFormatError` with one line naming
the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct

from ...errors import SceneFormatError
from ...scene import MAX_GAUSSIANS

MAGIC = b"EXGS"
VERSION = 1
#: version of files that carry extra sections (version 1 + the ``sections`` table)
VERSION_SECTIONS = 2
VERSIONS = (VERSION, VERSION_SECTIONS)
#: the section holding a per-scene GaussPainter delta (meaning: :mod:`exgs.painter.delta`)
DELTA_SECTION = "painter_delta"
MAX_SECTIONS = 16
PREFIX = struct.Struct("<4sHHI")  # magic, version, flags, header length
FLAG_HEADER_ZSTD = 1
MAX_HEADER_JSON = 64 << 20
DIGEST_BYTES = 8
MAX_HEADER_BYTES = 16 << 20

SECTION_NAME = re.compile(r"[a-z0-9_]{1,64}")


def digest(data) -> str:
    """BLAKE2b-64 hex of ``data`` (the checksum of headers, chunks and sections)."""
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).hexdigest()


class Bad(Exception):
    """A validation failure inside this package (becomes SceneFormatError naming the file,
    see :func:`wrap`)."""


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def int_field(x, what, lo=0, hi=None):
    need(isinstance(x, int) and not isinstance(x, bool) and x >= lo
         and (hi is None or x <= hi), f"header field {what} must be an integer ≥ {lo}"
         + (f" and ≤ {hi}" if hi is not None else ""))
    return x


def zstd_bounded(blob: bytes, limit: int, what: str) -> bytes:
    """Decompress one zstd frame whose output must not exceed ``limit`` bytes; a frame that
    declares a larger content size is refused before anything is allocated."""
    import zstandard

    cs = zstandard.get_frame_parameters(blob).content_size
    if cs != zstandard.CONTENTSIZE_UNKNOWN and cs > limit:
        raise Bad(f"{what} declares {cs} bytes of content, more than the {limit} expected")
    return zstandard.ZstdDecompressor().decompress(blob, max_output_size=limit)


def wrap(path, fn):
    """``fn()``; any validation or decoding failure → SceneFormatError naming ``path``."""
    import zstandard

    try:
        return fn()
    except Bad as e:
        raise SceneFormatError(path, str(e)) from None
    except SceneFormatError:
        raise
    except zstandard.ZstdError as e:
        raise SceneFormatError(path, f"corrupt compressed data: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, struct.error) as e:
        raise SceneFormatError(path, f"corrupt .exgs file: {type(e).__name__}: {e}") from None


# ================================================================================= write
def assemble(header: dict, blobs: list[bytes], sections: dict[str, bytes] | None) -> bytes:
    """Prefix + header + digest + chunk blobs (+ sections, version 2 when there are any)."""
    import zstandard

    header = dict(header)
    header.pop("sections", None)
    header.pop("file_bytes", None)
    extra = []
    if sections:
        off = sum(len(b) for b in blobs)
        table = []
        for name, blob in sections.items():
            if not (isinstance(name, str) and SECTION_NAME.fullmatch(name)):
                raise ValueError(f"bad section name {name!r}")
            blob = bytes(blob)
            table.append({"name": name, "offset": off, "length": len(blob),
                          "checksum": digest(blob)})
            extra.append(blob)
            off += len(blob)
        if len(table) > MAX_SECTIONS:
            raise ValueError(f"at most {MAX_SECTIONS} sections")
        header["sections"] = table
    version = VERSION_SECTIONS if extra else VERSION
    header["version"] = version
    hjson = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    hstored = zstandard.ZstdCompressor(level=19).compress(hjson)
    return b"".join([PREFIX.pack(MAGIC, version, FLAG_HEADER_ZSTD, len(hstored)), hstored,
                     bytes.fromhex(digest(hstored))] + list(blobs) + extra)


# ================================================================================= read
def parse_header(buf: bytes, total: int, check) -> tuple[dict, int]:
    """Validate the prefix, the JSON header, the chunk table and the section table of a
    .exgs file held in ``buf`` (at least the header part; ``total`` = the file's length);
    returns (header, data offset). ``check(header) -> bytes per Gaussian`` validates what
    the chunks hold (:func:`exgs.io.exgs.codec.check_header`); it runs before the chunk
    table is checked, and every chunk's ``raw_length`` must be its count × that."""
    need(len(buf) >= PREFIX.size, f"file too short for a .exgs prefix ({len(buf)} bytes)")
    magic, version, flags, hlen = PREFIX.unpack_from(buf, 0)
    need(magic == MAGIC, "not a .exgs file (bad magic)")
    need(version in VERSIONS, f"unsupported .exgs version {version} (this reader knows "
                              f"{', '.join(map(str, VERSIONS))})")
    need(flags & ~FLAG_HEADER_ZSTD == 0, f"unknown flags 0x{flags:04x}")
    need(0 < hlen <= MAX_HEADER_BYTES, f"header length {hlen} is out of range")
    data_start = PREFIX.size + hlen + DIGEST_BYTES
    need(len(buf) >= data_start, f"truncated: header needs {data_start} bytes, file has "
                                 f"{len(buf)}")
    hjson = bytes(buf[PREFIX.size:PREFIX.size + hlen])
    need(bytes(buf[PREFIX.size + hlen:data_start]).hex() == digest(hjson),
         "header checksum mismatch (file is corrupt)")
    if flags & FLAG_HEADER_ZSTD:
        import zstandard

        try:
            hjson = zstd_bounded(hjson, MAX_HEADER_JSON, "header")
        except zstandard.ZstdError as e:
            raise Bad(f"header does not decompress: {e}") from None
    try:
        h = json.loads(hjson.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Bad(f"header is not valid JSON: {e}") from None
    need(isinstance(h, dict), "header is not a JSON object")
    need(h.get("format") == "exgs" and h.get("version") == version,
         "header format/version do not match the prefix")
    n = int_field(h.get("count"), "count", 0, MAX_GAUSSIANS)
    per = check(h)
    chunks = h.get("chunks")
    need(isinstance(chunks, list), "header field chunks must be a list")
    total_count, expect_off = 0, 0
    for i, c in enumerate(chunks):
        need(isinstance(c, dict), f"chunk {i} is not an object")
        cnt = int_field(c.get("count"), f"chunks[{i}].count", 1, MAX_GAUSSIANS)
        off = int_field(c.get("offset"), f"chunks[{i}].offset")
        ln = int_field(c.get("length"), f"chunks[{i}].length", 1)
        raw = int_field(c.get("raw_length"), f"chunks[{i}].raw_length")
        need(raw == cnt * per, f"chunk {i}: raw length {raw} does not match "
                               f"{cnt} Gaussians × {per} bytes")
        need(off == expect_off, f"chunk {i}: offset {off} is not {expect_off}")
        need(isinstance(c.get("checksum"), str) and len(c["checksum"]) == 2 * DIGEST_BYTES,
             f"chunk {i}: bad checksum field")
        expect_off += ln
        total_count += cnt
    need(total_count == n, f"chunk counts add up to {total_count}, header says {n}")
    expect_off = _check_sections(h, version, expect_off)
    need(total >= data_start + expect_off,
         f"truncated: data needs {data_start + expect_off} bytes, file has {total}")
    need(total == data_start + expect_off,
         f"{total - data_start - expect_off} unexpected trailing bytes")
    return h, data_start


def _check_sections(h: dict, version: int, expect_off: int) -> int:
    """Validate the section table (offsets follow the chunks) → the end offset of the data."""
    secs = h.get("sections")
    if version == VERSION:
        need(secs is None, "header has sections but the file is version 1")
        return expect_off
    need(isinstance(secs, list) and 0 < len(secs) <= MAX_SECTIONS,
         f"header field sections must be a list of 1..{MAX_SECTIONS} entries")
    names = set()
    for i, sec in enumerate(secs):
        need(isinstance(sec, dict), f"section {i} is not an object")
        nm = sec.get("name")
        need(isinstance(nm, str) and SECTION_NAME.fullmatch(nm) is not None,
             f"section {i}: bad name")
        need(nm not in names, f"section {nm}: listed twice")
        names.add(nm)
        off = int_field(sec.get("offset"), f"sections[{i}].offset")
        ln = int_field(sec.get("length"), f"sections[{i}].length")
        need(off == expect_off, f"section {nm}: offset {off} is not {expect_off}")
        need(isinstance(sec.get("checksum"), str)
             and len(sec["checksum"]) == 2 * DIGEST_BYTES,
             f"section {nm}: bad checksum field")
        expect_off += ln
    return expect_off


def read_head(f) -> bytes:
    """The prefix and stored header of open file ``f`` (at most MAX_HEADER_BYTES)."""
    head = f.read(PREFIX.size)
    if len(head) == PREFIX.size and head[:4] == MAGIC:
        hlen = PREFIX.unpack(head)[3]
        head += f.read(min(hlen, MAX_HEADER_BYTES) + DIGEST_BYTES)
    return head


def open_file(path):
    """(open binary file, size) or SceneFormatError naming ``path``."""
    try:
        if os.path.isdir(path):
            raise SceneFormatError(path, "is a folder, not a .exgs file")
        return open(path, "rb"), os.path.getsize(path)
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None


def file_reader(f, base: int, what: str):
    """``read(offset, length) -> bytes`` of open file ``f`` at ``base + offset``; OS errors
    become one-line format errors about ``what``."""
    def read(off, ln):
        try:
            f.seek(base + off)
            return f.read(ln)
        except OSError as e:
            raise Bad(f"cannot read {what}: {e.strerror or e}") from None
    return read


# ================================================================================= sections
def section_bytes(h: dict, start: int, read, name: str) -> bytes | None:
    """The checksum-verified bytes of section ``name`` (``read(offset, length)`` from the
    file's start; ``start`` = data offset), or None when the header lists no such section."""
    for sec in h.get("sections") or []:
        if sec["name"] == name:
            blob = bytes(read(start + sec["offset"], sec["length"]))
            need(len(blob) == sec["length"], f"section {name} is truncated")
            need(digest(blob) == sec["checksum"],
                 f"section {name} checksum mismatch (the section is corrupt)")
            return blob
    return None
