"""The .exgs file: a compact, progressive container for a pruned Gaussian scene (UGC output).

Byte layout (all integers little-endian)::

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

The header holds ``count``, ``sh_degree``, the quantization parameters (``quant``), the
bounds of the centres, the source (``source.bytes``: size of the input file, ``gaussians``,
``sh_degree``), the compression ``settings`` and ``stats``, and the chunk table:
``chunks = [{"count", "offset", "length", "raw_length", "checksum"}]`` (offset relative to the
start of the data; checksum = BLAKE2b-64 hex of the compressed chunk bytes).

**Extra sections** (version 2): ``sections = [{"name", "offset", "length", "checksum"}]``
(offset from the start of the data, right after the chunks and each other; checksum =
BLAKE2b-64 hex of the section bytes; names unique, ``[a-z0-9_]{1,64}``). The only one defined
is ``painter_delta`` (a per-scene GaussPainter delta, :mod:`exgs.painter.delta`). A file
without sections is written as version 1, byte for byte as before. The section table and the
total length are validated with the header, so a truncated file is refused as a whole; a
section's *content* is verified only when it is asked for (:func:`read_exgs_section`,
:func:`read_exgs_delta`): a corrupt delta never prevents reading the scene.

**Progressive order.** Gaussians are stored in significance order (most important first) in
chunks of growing size (4096, 4096, 8192, 16384, ... Gaussians): a chunk holds the next
significance ranks. Inside a chunk they are sorted by Morton code (so positions delta-code
well) and carry a ``rank`` byte (their significance rank inside the chunk scaled to
0..15: 16 sub-levels, ≈0.5 byte after zstd). Decoding the first ``k`` Gaussians (``keep``)
reads only the chunks it needs and, in the last one, the Gaussians with the lowest ``rank``
bytes: any prefix is a valid, coarser scene, without re-encoding.

**Chunk payload** (before zstd): the streams below, each as byte planes (see
:func:`exgs.ugc.quantize.to_planes`), concatenated in this order, ``n`` = chunk count:

=========  ===========  ==========================================================
stream     bytes × n    content
=========  ===========  ==========================================================
morton     8            u64 Morton-code deltas (first = code), ``position_bits``/axis
rank       1            u8 significance sub-level inside the chunk, 0..15 (0 = most)
scale      3            u8 log-scales over ``quant.log_scale`` [min, max]
rotation   4            u8 smallest-three: dropped index, three components
opacity    1            u8 activated opacity
colour     3            u8 display colour (degree 0) or DC over ``quant.dc`` ranges
sh_rest    3·(K−1)      u8 higher SH over ±``quant.sh_rest.absmax[band]`` with
                         ``quant.sh_rest.bits[band]`` bits (5, 4, 4; degree > 0 only)
=========  ===========  ==========================================================

Readers validate everything (magic, version, header digest, schema, chunk digests, sizes) and
raise :class:`exgs.errors.SceneFormatError` with one line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from ..errors import SceneFormatError
from ..scene import MAX_GAUSSIANS, GaussianScene, logit, sh_coeffs_for_degree

MAGIC = b"EXGS"
VERSION = 1
#: version of files that carry extra sections (version 1 + the ``sections`` table)
VERSION_SECTIONS = 2
VERSIONS = (VERSION, VERSION_SECTIONS)
#: the section holding a per-scene GaussPainter delta
DELTA_SECTION = "painter_delta"
MAX_SECTIONS = 16
PREFIX = struct.Struct("<4sHHI")  # magic, version, flags, header length
FLAG_HEADER_ZSTD = 1
MAX_HEADER_JSON = 64 << 20
DIGEST_BYTES = 8
MAX_HEADER_BYTES = 16 << 20
FIRST_CHUNK = 4096
#: bits per higher-SH coefficient for bands 1, 2, 3 (SPZ uses 5 and 4; stored in the header)
SH_REST_BITS = (5, 4, 4)
#: significance sub-levels inside a chunk (the ``rank`` byte holds 0..RANK_LEVELS−1)
RANK_LEVELS = 16

__all__ = ["encode_exgs", "decode_exgs", "read_exgs_scene", "read_exgs_header",
           "write_exgs_bytes", "chunk_counts", "attach_sections", "read_exgs_section",
           "read_exgs_delta", "exgs_section_from_bytes", "MAGIC", "VERSION",
           "VERSION_SECTIONS", "DELTA_SECTION"]


_SECTION_NAME = __import__("re").compile(r"[a-z0-9_]{1,64}")


def _digest(data) -> str:
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).hexdigest()


def chunk_counts(n: int, first: int = FIRST_CHUNK) -> list[int]:
    """Chunk sizes for ``n`` Gaussians: first, first, 2·first, 4·first, ... (last one partial)."""
    out, done, size = [], 0, first
    while done < n:
        c = min(size, n - done)
        out.append(c)
        done += c
        if len(out) > 1:
            size *= 2
    return out


def _bytes_per_gaussian(sh_degree: int) -> int:
    return 8 + 1 + 3 + 4 + 1 + 3 + 3 * (sh_coeffs_for_degree(sh_degree) - 1)


# ================================================================================= encode
def encode_exgs(scene: GaussianScene, *, position_bits: int = 16, zstd_level: int = 19,
                source: dict | None = None, settings: dict | None = None,
                stats: dict | None = None, first_chunk: int = FIRST_CHUNK,
                sections: dict[str, bytes] | None = None) -> bytes:
    """Encode ``scene`` (Gaussians already in significance order, most important first) into
    the bytes of a .exgs file. ``source``/``settings``/``stats`` are stored in the header;
    ``sections`` (name → bytes, e.g. ``{"painter_delta": delta}``) are appended as extra
    sections (the file is then version 2)."""
    import zstandard

    from ..ugc import quantize as Q

    if not 1 <= position_bits <= 21:
        raise ValueError("position_bits must be in 1..21")
    n, deg = len(scene), scene.sh_degree
    k = sh_coeffs_for_degree(deg)
    means = scene.means.astype(np.float64)
    lo = means.min(0) if n else np.zeros(3)
    hi = means.max(0) if n else np.zeros(3)
    ls = scene.log_scales
    ls_lo = float(ls.min()) if n else 0.0
    ls_hi = float(ls.max()) if n else 0.0
    quant: dict = {"position": {"bits": position_bits, "min": lo.tolist(), "max": hi.tolist()},
                   "log_scale": {"bits": 8, "min": ls_lo, "max": ls_hi},
                   "rotation": {"bits": 8, "scheme": "smallest-three"},
                   "opacity": {"bits": 8, "domain": "activated"}}
    if deg == 0:
        quant["colour"] = {"bits": 8, "domain": "display"}
    else:
        dc = scene.sh[:, 0].astype(np.float64)
        dlo = np.quantile(dc, 0.001, axis=0) if n else np.zeros(3)
        dhi = np.quantile(dc, 0.999, axis=0) if n else np.zeros(3)
        quant["colour"] = {"bits": 8, "domain": "dc", "min": dlo.tolist(), "max": dhi.tolist()}
        amax = []
        for band in range(1, deg + 1):
            coeffs = np.abs(scene.sh[:, band * band:(band + 1) ** 2])
            amax.append(max(float(np.quantile(coeffs, 0.999)) if n else 0.0, 1e-6))
        quant["sh_rest"] = {"bits": list(SH_REST_BITS[:deg]), "absmax": amax}

    # ---- per-Gaussian codes (file order = significance order for now)
    grid = Q.quantize_uniform(means, lo, hi, position_bits).astype(np.uint64)
    codes = Q.morton_encode(grid)
    scale_q = Q.quantize_uniform(ls, ls_lo, ls_hi, 8)
    rot_q = Q.pack_smallest_three(scene.quats)
    op_q = Q.quantize_uniform(scene.opacities, 0.0, 1.0, 8)[:, None]
    if deg == 0:
        col_q = Q.encode_colour_deg0(scene.sh[:, 0])
    else:
        col_q = Q.quantize_uniform(scene.sh[:, 0], quant["colour"]["min"],
                                   quant["colour"]["max"], 8)
        rest_q = np.empty((n, k - 1, 3), np.uint8)
        for band in range(1, deg + 1):
            a = quant["sh_rest"]["absmax"][band - 1]
            sl = slice(band * band - 1, (band + 1) ** 2 - 1)
            rest_q[:, sl] = Q.quantize_uniform(scene.sh[:, 1:][:, sl], -a, a,
                                               SH_REST_BITS[band - 1])
        rest_q = rest_q.reshape(n, -1)

    cctx = zstandard.ZstdCompressor(level=zstd_level)
    chunks, blobs, start, offset = [], [], 0, 0
    for c in chunk_counts(n, first_chunk):
        sl = slice(start, start + c)
        order = np.argsort(codes[sl], kind="stable")
        rank = ((np.arange(c, dtype=np.int64) * RANK_LEVELS) // max(c, 1)).astype(np.uint8)
        cs = codes[sl][order]
        deltas = np.diff(cs, prepend=np.uint64(0)).astype(np.uint64)
        parts = [Q.to_planes(deltas[:, None]), Q.to_planes(rank[order][:, None]),
                 Q.to_planes(scale_q[sl][order]), Q.to_planes(rot_q[sl][order]),
                 Q.to_planes(op_q[sl][order]), Q.to_planes(col_q[sl][order])]
        if deg > 0:
            parts.append(Q.to_planes(rest_q[sl][order]))
        raw = b"".join(parts)
        blob = cctx.compress(raw)
        chunks.append({"count": c, "offset": offset, "length": len(blob),
                       "raw_length": len(raw), "checksum": _digest(blob)})
        blobs.append(blob)
        offset += len(blob)
        start += c

    from .. import __version__ as exgs_version

    header = {"format": "exgs", "version": VERSION, "writer": f"exgs {exgs_version}",
              "count": n, "sh_degree": deg,
              "bounds": {"min": lo.tolist(), "max": hi.tolist()},
              "quant": quant, "chunks": chunks, "order": "significance",
              "source": source or {}, "settings": settings or {}, "stats": stats or {}}
    return _assemble(header, blobs, sections)


def _assemble(header: dict, blobs: list[bytes], sections: dict[str, bytes] | None) -> bytes:
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
            if not (isinstance(name, str) and _SECTION_NAME.fullmatch(name)):
                raise ValueError(f"bad section name {name!r}")
            blob = bytes(blob)
            table.append({"name": name, "offset": off, "length": len(blob),
                          "checksum": _digest(blob)})
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
                     bytes.fromhex(_digest(hstored))] + list(blobs) + extra)


def attach_sections(data: bytes, sections: dict[str, bytes | None], path=None) -> bytes:
    """The .exgs ``data`` with extra ``sections`` added or replaced (a value of None removes
    that section). The scene chunks are copied unchanged; the header is re-encoded (version
    2 when any section remains, else 1). Raises SceneFormatError if ``data`` is invalid."""
    buf = memoryview(data)
    h, start = _wrap(path, lambda: _parse_header(buf, len(buf)))
    end = start + sum(c["length"] for c in h["chunks"])
    blobs = [bytes(buf[start:end])]
    cur = {s["name"]: bytes(buf[start + s["offset"]:start + s["offset"] + s["length"]])
           for s in h.get("sections", [])}
    for k, v in sections.items():
        if v is None:
            cur.pop(k, None)
        else:
            cur[k] = bytes(v)
    return _assemble(h, blobs, cur)


def write_exgs_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write encoded .exgs bytes atomically (a reader never sees a partial file)."""
    from ..fsutil import write_bytes_atomic

    write_bytes_atomic(path, data)


# ================================================================================= decode
class _Bad(Exception):
    """Internal: a validation failure (becomes SceneFormatError naming the file)."""


def _need(cond, msg):
    if not cond:
        raise _Bad(msg)


def _num_list(x, n, what):
    _need(isinstance(x, list) and len(x) == n
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                  for v in x), f"header field {what} must be a list of {n} finite numbers")
    return np.asarray(x, np.float64)


def _num(x, what):
    _need(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x),
          f"header field {what} must be a finite number")
    return float(x)


def _int(x, what, lo=0, hi=None):
    _need(isinstance(x, int) and not isinstance(x, bool) and x >= lo
          and (hi is None or x <= hi), f"header field {what} must be an integer ≥ {lo}"
          + (f" and ≤ {hi}" if hi is not None else ""))
    return x


def _zstd_bounded(blob: bytes, limit: int, what: str) -> bytes:
    """Decompress one zstd frame whose output must not exceed ``limit`` bytes; a frame that
    declares a larger content size is refused before anything is allocated."""
    import zstandard

    cs = zstandard.get_frame_parameters(blob).content_size
    if cs != zstandard.CONTENTSIZE_UNKNOWN and cs > limit:
        raise _Bad(f"{what} declares {cs} bytes of content, more than the {limit} expected")
    return zstandard.ZstdDecompressor().decompress(blob, max_output_size=limit)


def _parse_header(buf: bytes, total: int) -> tuple[dict, int]:
    """Validate the prefix and JSON header of a .exgs file held in ``buf`` (at least the
    header part); returns (header, data offset)."""
    _need(len(buf) >= PREFIX.size, f"file too short for a .exgs prefix ({len(buf)} bytes)")
    magic, version, flags, hlen = PREFIX.unpack_from(buf, 0)
    _need(magic == MAGIC, "not a .exgs file (bad magic)")
    _need(version in VERSIONS, f"unsupported .exgs version {version} (this reader knows "
                               f"{', '.join(map(str, VERSIONS))})")
    _need(flags & ~FLAG_HEADER_ZSTD == 0, f"unknown flags 0x{flags:04x}")
    _need(0 < hlen <= MAX_HEADER_BYTES, f"header length {hlen} is out of range")
    data_start = PREFIX.size + hlen + DIGEST_BYTES
    _need(len(buf) >= data_start, f"truncated: header needs {data_start} bytes, file has "
                                  f"{len(buf)}")
    hjson = bytes(buf[PREFIX.size:PREFIX.size + hlen])
    _need(bytes(buf[PREFIX.size + hlen:data_start]).hex() == _digest(hjson),
          "header checksum mismatch (file is corrupt)")
    if flags & FLAG_HEADER_ZSTD:
        import zstandard

        try:
            hjson = _zstd_bounded(hjson, MAX_HEADER_JSON, "header")
        except zstandard.ZstdError as e:
            raise _Bad(f"header does not decompress: {e}") from None
    try:
        h = json.loads(hjson.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Bad(f"header is not valid JSON: {e}") from None
    _need(isinstance(h, dict), "header is not a JSON object")
    _need(h.get("format") == "exgs" and h.get("version") == version,
          "header format/version do not match the prefix")
    n = _int(h.get("count"), "count", 0, MAX_GAUSSIANS)
    deg = _int(h.get("sh_degree"), "sh_degree", 0, 3)
    q = h.get("quant")
    _need(isinstance(q, dict), "header field quant missing")
    for key in ("position", "log_scale", "colour"):
        _need(isinstance(q.get(key), dict), f"header field quant.{key} missing")
    _int(q["position"].get("bits"), "quant.position.bits", 1, 21)
    _num_list(q["position"].get("min"), 3, "quant.position.min")
    _num_list(q["position"].get("max"), 3, "quant.position.max")
    _num(q["log_scale"].get("min"), "quant.log_scale.min")
    _num(q["log_scale"].get("max"), "quant.log_scale.max")
    if deg == 0:
        _need(q["colour"].get("domain") == "display", "quant.colour.domain must be display")
    else:
        _need(q["colour"].get("domain") == "dc", "quant.colour.domain must be dc")
        _num_list(q["colour"].get("min"), 3, "quant.colour.min")
        _num_list(q["colour"].get("max"), 3, "quant.colour.max")
        _need(isinstance(q.get("sh_rest"), dict), "header field quant.sh_rest missing")
        _num_list(q["sh_rest"].get("absmax"), deg, "quant.sh_rest.absmax")
        b = q["sh_rest"].get("bits")
        _need(isinstance(b, list) and len(b) == deg and all(
            isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 8 for x in b),
            f"header field quant.sh_rest.bits must be {deg} integers in 1..8")
    chunks = h.get("chunks")
    _need(isinstance(chunks, list), "header field chunks must be a list")
    per = _bytes_per_gaussian(deg)
    total_count, expect_off = 0, 0
    for i, c in enumerate(chunks):
        _need(isinstance(c, dict), f"chunk {i} is not an object")
        cnt = _int(c.get("count"), f"chunks[{i}].count", 1, MAX_GAUSSIANS)
        off = _int(c.get("offset"), f"chunks[{i}].offset")
        ln = _int(c.get("length"), f"chunks[{i}].length", 1)
        raw = _int(c.get("raw_length"), f"chunks[{i}].raw_length")
        _need(raw == cnt * per, f"chunk {i}: raw length {raw} does not match "
                                f"{cnt} Gaussians × {per} bytes")
        _need(off == expect_off, f"chunk {i}: offset {off} is not {expect_off}")
        _need(isinstance(c.get("checksum"), str) and len(c["checksum"]) == 2 * DIGEST_BYTES,
              f"chunk {i}: bad checksum field")
        expect_off += ln
        total_count += cnt
    _need(total_count == n, f"chunk counts add up to {total_count}, header says {n}")
    secs = h.get("sections")
    if version == VERSION:
        _need(secs is None, "header has sections but the file is version 1")
    else:
        _need(isinstance(secs, list) and 0 < len(secs) <= MAX_SECTIONS,
              f"header field sections must be a list of 1..{MAX_SECTIONS} entries")
        names = set()
        for i, sec in enumerate(secs):
            _need(isinstance(sec, dict), f"section {i} is not an object")
            nm = sec.get("name")
            _need(isinstance(nm, str) and _SECTION_NAME.fullmatch(nm) is not None,
                  f"section {i}: bad name")
            _need(nm not in names, f"section {nm}: listed twice")
            names.add(nm)
            off = _int(sec.get("offset"), f"sections[{i}].offset")
            ln = _int(sec.get("length"), f"sections[{i}].length")
            _need(off == expect_off, f"section {nm}: offset {off} is not {expect_off}")
            _need(isinstance(sec.get("checksum"), str)
                  and len(sec["checksum"]) == 2 * DIGEST_BYTES,
                  f"section {nm}: bad checksum field")
            expect_off += ln
    _need(total >= data_start + expect_off,
          f"truncated: data needs {data_start + expect_off} bytes, file has {total}")
    _need(total == data_start + expect_off,
          f"{total - data_start - expect_off} unexpected trailing bytes")
    return h, data_start


def _wrap(path, fn):
    import zstandard

    try:
        return fn()
    except _Bad as e:
        raise SceneFormatError(path, str(e)) from None
    except SceneFormatError:
        raise
    except zstandard.ZstdError as e:
        raise SceneFormatError(path, f"corrupt compressed data: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, struct.error) as e:
        raise SceneFormatError(path, f"corrupt .exgs file: {type(e).__name__}: {e}") from None


def _resolve_keep(keep, n: int) -> int:
    """keep: None → n; float in (0, 1] → round(keep·n) (≥ 1 when n > 0); int ≥ 1 → min(n)."""
    from ..errors import UsageError

    if keep is None:
        return n
    if isinstance(keep, (bool, np.bool_)):
        raise UsageError(f"keep must be a fraction in (0, 1] or a count ≥ 1, got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 1:
            raise UsageError(f"keep count must be ≥ 1, got {keep}")
        return min(int(keep), n)
    k = float(keep)
    if not 0.0 < k <= 1.0:
        raise UsageError(f"keep fraction must be in (0, 1], got {keep}")
    return min(n, max(1 if n else 0, int(round(k * n))))


def decode_exgs(data: bytes | memoryview, keep=None, path=None) -> GaussianScene:
    """Decode .exgs bytes into a :class:`GaussianScene` (the first ``keep`` Gaussians in
    significance order; see :func:`_resolve_keep`). Raises SceneFormatError."""
    buf = memoryview(data)
    h, start = _wrap(path, lambda: _parse_header(buf, len(buf)))
    return _wrap(path, lambda: _decode_body(h, lambda off, ln: buf[start + off:start + off + ln],
                                            keep))


def _decode_body(h: dict, read, keep) -> GaussianScene:
    from ..ugc import quantize as Q

    n, deg = h["count"], h["sh_degree"]
    k = sh_coeffs_for_degree(deg)
    want = _resolve_keep(keep, n)
    if want == 0:
        return GaussianScene.empty(deg)
    q = h["quant"]
    bits = q["position"]["bits"]
    lo, hi = np.asarray(q["position"]["min"]), np.asarray(q["position"]["max"])
    parts, got = [], 0
    for i, c in enumerate(h["chunks"]):
        if got >= want:
            break
        blob = bytes(read(c["offset"], c["length"]))
        _need(len(blob) == c["length"], f"chunk {i} is truncated")
        _need(_digest(blob) == c["checksum"], f"chunk {i} checksum mismatch (file is corrupt)")
        raw = _zstd_bounded(blob, c["raw_length"], f"chunk {i}")
        _need(len(raw) == c["raw_length"], f"chunk {i} decompressed to {len(raw)} bytes, "
                                           f"expected {c['raw_length']}")
        cnt, mv, pos = c["count"], memoryview(raw), 0

        def take(cols, dtype, _cnt=cnt):
            nonlocal pos
            width = _cnt * cols * np.dtype(dtype).itemsize
            out = Q.from_planes(mv[pos:pos + width], _cnt, cols, dtype)
            pos += width
            return out

        deltas = take(1, np.uint64)[:, 0]
        rank = take(1, np.uint8)[:, 0]
        scale_q, rot_q, op_q, col_q = take(3, np.uint8), take(4, np.uint8), take(1, np.uint8), \
            take(3, np.uint8)
        rest_q = take(3 * (k - 1), np.uint8) if deg > 0 else None
        codes = np.cumsum(deltas, dtype=np.uint64)
        _need(bits == 21 or int(codes[-1]) < (1 << (3 * bits)),
              f"chunk {i}: position code out of range")
        sel = np.argsort(rank, kind="stable")
        if got + cnt > want:
            sel = sel[:want - got]
        got += len(sel)
        parts.append((codes[sel], scale_q[sel], rot_q[sel], op_q[sel], col_q[sel],
                      None if rest_q is None else rest_q[sel]))
    codes, scale_q, rot_q, op_q, col_q = (np.concatenate([p[j] for p in parts])
                                          for j in range(5))
    m = len(codes)
    means = Q.dequantize_uniform(Q.morton_decode(codes), lo, hi, bits)
    log_scales = Q.dequantize_uniform(scale_q, q["log_scale"]["min"], q["log_scale"]["max"], 8)
    quats = Q.unpack_smallest_three(rot_q)
    opac = Q.dequantize_uniform(op_q[:, 0], 0.0, 1.0, 8)
    sh = np.zeros((m, k, 3), np.float32)
    if deg == 0:
        sh[:, 0] = Q.decode_colour_deg0(col_q)
    else:
        sh[:, 0] = Q.dequantize_uniform(col_q, q["colour"]["min"], q["colour"]["max"], 8)
        rest_q = np.concatenate([p[5] for p in parts]).reshape(m, k - 1, 3)
        for band in range(1, deg + 1):
            a = q["sh_rest"]["absmax"][band - 1]
            sl = slice(band * band, (band + 1) ** 2)
            sh[:, sl] = Q.dequantize_uniform(rest_q[:, band * band - 1:(band + 1) ** 2 - 1],
                                             -a, a, q["sh_rest"]["bits"][band - 1])
    # opacity 0 and 1 are representable in the file: keep logits finite
    return GaussianScene(means, quats, log_scales, logit(opac, eps=1e-4), sh)


# ================================================================================= files
def _read_head(f, path) -> bytes:
    head = f.read(PREFIX.size)
    if len(head) == PREFIX.size and head[:4] == MAGIC:
        hlen = PREFIX.unpack(head)[3]
        head += f.read(min(hlen, MAX_HEADER_BYTES) + DIGEST_BYTES)
    return head


def _open(path):
    try:
        if os.path.isdir(path):
            raise SceneFormatError(path, "is a folder, not a .exgs file")
        return open(path, "rb"), os.path.getsize(path)
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None


def read_exgs_header(path: str | os.PathLike) -> dict:
    """The validated JSON header of a .exgs file, plus ``file_bytes``. Does not decode data."""
    f, size = _open(path)
    with f:
        head = _wrap(path, lambda: _read_head(f, path))
    h, _ = _wrap(path, lambda: _parse_header(head, size))
    h["file_bytes"] = size
    return h


def exgs_kept_fraction(path: str | os.PathLike, count: int | None = None) -> float | None:
    """Kept fraction of a .exgs file's Gaussians: the stored count (or ``count``, when only a
    prefix was decoded) / the source's count, in (0, 1]. None when the header has no source
    count. Raises SceneFormatError like :func:`read_exgs_header`."""
    h = read_exgs_header(path)
    try:
        src = int((h.get("source") or {}).get("gaussians") or 0)
        n = int(count if count is not None else h.get("count") or 0)
    except (TypeError, ValueError):
        return None
    return min(1.0, n / src) if src > 0 and n > 0 else None


def read_exgs_scene(path: str | os.PathLike, keep: float | int | None = None) -> GaussianScene:
    """Read a .exgs file → :class:`GaussianScene` (SH degree as stored). ``keep`` (fraction
    in (0, 1] or count ≥ 1) decodes only that many of the most significant Gaussians, reading
    only the chunks they are in."""
    f, size = _open(path)
    with f:
        head = _wrap(path, lambda: _read_head(f, path))
        h, start = _wrap(path, lambda: _parse_header(head, size))
        return _wrap(path, lambda: _decode_body(h, _reader(f, start, "chunk data"), keep))


def _reader(f, base: int, what: str):
    """``read(offset, length) -> bytes`` of open file ``f`` at ``base + offset``; OS errors
    become one-line format errors about ``what``."""
    def read(off, ln):
        try:
            f.seek(base + off)
            return f.read(ln)
        except OSError as e:
            raise _Bad(f"cannot read {what}: {e.strerror or e}") from None
    return read


# ================================================================================= sections
def _section(h: dict, start: int, read, name: str) -> bytes | None:
    for sec in h.get("sections") or []:
        if sec["name"] == name:
            blob = bytes(read(start + sec["offset"], sec["length"]))
            _need(len(blob) == sec["length"], f"section {name} is truncated")
            _need(_digest(blob) == sec["checksum"],
                  f"section {name} checksum mismatch (the section is corrupt)")
            return blob
    return None


def exgs_section_from_bytes(data: bytes, name: str, path=None) -> bytes | None:
    """The verified bytes of section ``name`` of .exgs ``data``, or None if absent."""
    buf = memoryview(data)
    h, start = _wrap(path, lambda: _parse_header(buf, len(buf)))
    return _wrap(path, lambda: _section(h, start, lambda o, n: buf[o:o + n], name))


def read_exgs_section(path: str | os.PathLike, name: str) -> bytes | None:
    """The bytes of extra section ``name`` of a .exgs file (checksum verified), or None when
    the file has no such section. Raises SceneFormatError naming the file when the file or
    the section is corrupt. Reads only the header and that section."""
    f, size = _open(path)
    with f:
        head = _wrap(path, lambda: _read_head(f, path))
        h, start = _wrap(path, lambda: _parse_header(head, size))
        return _wrap(path, lambda: _section(h, start, _reader(f, 0, "section data"), name))


def _check_delta(path, blob):
    from ..painter.delta import DeltaError, decode_delta

    try:
        decode_delta(blob)
    except DeltaError as e:
        raise SceneFormatError(path, f"section {DELTA_SECTION}: {e}") from None
    return blob


def read_exgs_delta(path: str | os.PathLike) -> bytes | None:
    """The per-scene GaussPainter delta stored in a .exgs file (bytes for
    :func:`exgs.painter.delta.apply_delta`), or None when the file has none. Raises
    SceneFormatError (one line naming the file) when the delta section is corrupt (checksum,
    size, or a payload that does not decode)."""
    blob = read_exgs_section(path, DELTA_SECTION)
    return None if blob is None else _check_delta(path, blob)


def exgs_delta_from_bytes(data: bytes, path=None) -> bytes | None:
    """:func:`read_exgs_delta` for .exgs bytes in memory."""
    blob = exgs_section_from_bytes(data, DELTA_SECTION, path)
    return None if blob is None else _check_delta(path, blob)
