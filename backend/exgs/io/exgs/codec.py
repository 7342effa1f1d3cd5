"""The .exgs codec: what the chunks of a .exgs file hold and how Gaussians are quantized into
them (the envelope — header, chunk table, checksums, sections — is :mod:`.container`; the
quantizers are :mod:`.quantize`).

**Progressive order.** Gaussians are stored in significance order (most important first) in
chunks of growing size (4096, 4096, 8192, 16384, ... Gaussians): a chunk holds the next
significance ranks. Inside a chunk they are sorted by Morton code (so positions delta-code
well) and carry a ``rank`` byte (their significance rank inside the chunk scaled to
0..15: 16 sub-levels, ≈0.5 byte after zstd). Decoding the first ``k`` Gaussians reads only
the chunks it needs and, in the last one, the Gaussians with the lowest ``rank`` bytes: any
prefix is a valid, coarser scene, without re-encoding.

**Chunk payload** (before zstd): the streams below, each as byte planes (see
:func:`exgs.io.exgs.quantize.to_planes`), concatenated in this order, ``n`` = chunk count:

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
"""

from __future__ import annotations

import numpy as np

from ...scene import GaussianScene, logit, sh_coeffs_for_degree
from .container import (VERSION, assemble, digest, int_field, need, parse_header, wrap,
                        zstd_bounded)

FIRST_CHUNK = 4096
#: bits per higher-SH coefficient for bands 1, 2, 3 (SPZ uses 5 and 4; stored in the header)
SH_REST_BITS = (5, 4, 4)
#: significance sub-levels inside a chunk (the ``rank`` byte holds 0..RANK_LEVELS−1)
RANK_LEVELS = 16


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


def bytes_per_gaussian(sh_degree: int) -> int:
    """Raw (pre-zstd) bytes of one Gaussian in a chunk."""
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

    from . import quantize as Q

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
                       "raw_length": len(raw), "checksum": digest(blob)})
        blobs.append(blob)
        offset += len(blob)
        start += c

    from ... import __version__ as exgs_version

    header = {"format": "exgs", "version": VERSION, "writer": f"exgs {exgs_version}",
              "count": n, "sh_degree": deg,
              "bounds": {"min": lo.tolist(), "max": hi.tolist()},
              "quant": quant, "chunks": chunks, "order": "significance",
              "source": source or {}, "settings": settings or {}, "stats": stats or {}}
    return assemble(header, blobs, sections)



# ================================================================================= decode
def _num_list(x, n, what):
    need(isinstance(x, list) and len(x) == n
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                  for v in x), f"header field {what} must be a list of {n} finite numbers")
    return np.asarray(x, np.float64)


def _num(x, what):
    need(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x),
          f"header field {what} must be a finite number")
    return float(x)



def check_header(h: dict) -> int:
    """Validate the codec's header fields (``sh_degree``, ``quant``) → raw bytes per
    Gaussian (what each chunk's ``raw_length`` is a multiple of)."""
    deg = int_field(h.get("sh_degree"), "sh_degree", 0, 3)
    q = h.get("quant")
    need(isinstance(q, dict), "header field quant missing")
    for key in ("position", "log_scale", "colour"):
        need(isinstance(q.get(key), dict), f"header field quant.{key} missing")
    int_field(q["position"].get("bits"), "quant.position.bits", 1, 21)
    _num_list(q["position"].get("min"), 3, "quant.position.min")
    _num_list(q["position"].get("max"), 3, "quant.position.max")
    _num(q["log_scale"].get("min"), "quant.log_scale.min")
    _num(q["log_scale"].get("max"), "quant.log_scale.max")
    if deg == 0:
        need(q["colour"].get("domain") == "display", "quant.colour.domain must be display")
    else:
        need(q["colour"].get("domain") == "dc", "quant.colour.domain must be dc")
        _num_list(q["colour"].get("min"), 3, "quant.colour.min")
        _num_list(q["colour"].get("max"), 3, "quant.colour.max")
        need(isinstance(q.get("sh_rest"), dict), "header field quant.sh_rest missing")
        _num_list(q["sh_rest"].get("absmax"), deg, "quant.sh_rest.absmax")
        b = q["sh_rest"].get("bits")
        if isinstance(b, int) and not isinstance(b, bool):  # files written before 5/4/4 bits
            b = q["sh_rest"]["bits"] = [b] * deg            # (2026-11-23): one width, 8
        need(isinstance(b, list) and len(b) == deg and all(
            isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 8 for x in b),
            f"header field quant.sh_rest.bits must be {deg} integers in 1..8")
    return bytes_per_gaussian(deg)


def resolve_count(keep, n: int) -> int:
    """How many of ``n`` Gaussians a "how much to keep" value ``keep`` means: None → n;
    float in (0, 1] → round(keep·n) (≥ 1 when n > 0); int ≥ 1 → min(keep, n)."""
    from ...errors import UsageError

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
    significance order; see :func:`resolve_count`), validated like every reader's output
    (finite values, sane scales: :meth:`GaussianScene.validate`). Raises SceneFormatError."""
    buf = memoryview(data)
    h, start = wrap(path, lambda: parse_header(buf, len(buf), check_header))
    scene = wrap(path, lambda: decode_body(h, lambda off, ln: buf[start + off:start + off + ln],
                                           keep))
    return scene.validate(path)


def decode_body(h: dict, read, keep=None) -> GaussianScene:
    """Decode the chunks of a validated header ``h``; ``read(offset, length)`` returns bytes
    of the data part; ``keep``: how many Gaussians to decode (:func:`resolve_count`)."""
    from . import quantize as Q

    n, deg = h["count"], h["sh_degree"]
    k = sh_coeffs_for_degree(deg)
    want = resolve_count(keep, n)
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
        need(len(blob) == c["length"], f"chunk {i} is truncated")
        need(digest(blob) == c["checksum"], f"chunk {i} checksum mismatch (file is corrupt)")
        raw = zstd_bounded(blob, c["raw_length"], f"chunk {i}")
        need(len(raw) == c["raw_length"], f"chunk {i} decompressed to {len(raw)} bytes, "
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
        need(bits == 21 or int(codes[-1]) < (1 << (3 * bits)),
              f"chunk {i}: position code out of range")
        sel = np.argsort(rank, kind="stable")
        if got + cnt > want:
            sel = sel[:want - got]
        got += len(sel)
        parts.append((codes[sel], scale_q[sel], rot_q[sel], op_q[sel], col_q[sel],
                      None if rest_q is None else rest_q[sel]))
    with np.errstate(all="ignore"):  # absurd header ranges: refused by validate()
        return _assemble_scene(h, parts, bits, lo, hi, deg, k)


def _assemble_scene(h, parts, bits, lo, hi, deg, k) -> GaussianScene:
    from . import quantize as Q

    q = h["quant"]
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


