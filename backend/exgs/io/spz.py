"""Niantic SPZ: read versions 1–4, write version 3 (gzip, smallest-three rotations).

Implemented from the published format description (nianticlabs/spz README and its loader).

Layout
------
Versions 1–3 are one gzip stream holding a 16-byte little-endian header followed by
attribute blocks, each stored attribute-major for all N points::

    u32 magic 0x5053474e ("NGSP")   u32 version   u32 numPoints
    u8 shDegree   u8 fractionalBits   u8 flags (0x1 antialiased, 0x2 extensions)   u8 reserved
    positions  N×3×3 B  24-bit signed fixed point, value = int24 / 2^fractionalBits
                         (version 1: N×3 float16)
    alphas     N   B    sigmoid(opacity) · 255
    colors     N×3 B    DC · (0.15·255) + 127.5   (0.15 instead of SH_C0 leaves head-room)
    scales     N×3 B    (log σ + 10) · 16
    rotations  N×3 B    version 2: quaternion x,y,z as (q·127.5 + 127.5) with w ≥ 0 implied
               N×4 B    version ≥ 3: "smallest three": u32 LE, bits 30–31 index (in x,y,z,w
                        order) of the largest |component| (made positive, not stored), then the
                        other three in index order from the high bits down, 10 bits each:
                        1 sign bit + 9-bit magnitude of |c|/√½
    sh         N×D×3 B  D = 3, 8, 15 (degree 1–3) coefficients without DC, coefficient-major
                        with the colour channel fastest; value = (byte − 128) / 128

Version 4 (newest Niantic library) keeps the same per-attribute encodings but has a 32-byte
plaintext header (magic, version, numPoints, shDegree, fractionalBits, flags, numStreams,
tocByteOffset, 12 reserved bytes), a table of contents of (compressed, uncompressed) u64
sizes and one ZSTD stream per non-empty attribute. It is read here; degree 4 is truncated to 3.

Frames
------
The SPZ specification stores coordinates in **RUB** (x right, y up, z back: OpenGL/three.js).
The scene frame of INRIA PLYs (and of :class:`exgs.scene.GaussianScene`) is **RDF** (x right,
y down, z forward: OpenCV/COLMAP). RDF ↔ RUB is the 180° rotation about x, diag(1, −1, −1):

* positions:   (x, y, z)    → (x, −y, −z)
* quaternions: (w, x, y, z) → (w, x, −y, −z)
* SH: each real SH basis function is multiplied by its parity under (y, z) → (−y, −z),
  per coefficient (index k = 1..15): −,−,+, −,+,+,−,+, −,+,−,−,+,−,+.

By default the writer converts RDF → RUB and the reader converts RUB → RDF, so PLY → SPZ → PLY
returns to the same frame and SPZ files agree with spec-following viewers (equivalent to
Niantic's ``saveSpz(from=RDF)`` / ``loadSpz(to=RDF)``). Some tools store SPZ without any
conversion (Niantic's ``ply_to_spz`` with default options, PlayCanvas splat-transform, which
also reads SPZ raw): pass ``raw=True`` to read or write such files unchanged.

Quantization (writer): positions 2^-fractionalBits (up to 12 bits, fewer when a coordinate
exceeds ±2048), log-scales 1/16 on [−10, 5.94], opacity 1/255, DC 1/(0.15·255) ≈ 0.026 on
[−3.33, 3.33], SH degree 1 in steps of 1/16 and degree 2–3 in steps of 1/8 on [−1, 1)
(Niantic's defaults ``sh1Bits=5``, ``shRestBits=4``), rotations ≈ 0.0014 per component.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..fsutil import write_bytes_atomic
from ..scene import MAX_GAUSSIANS, GaussianScene, logit, sigmoid
from .limits import check_declared_count

MAGIC = 0x5053474E
WRITE_VERSION = 3
COLOR_SCALE = 0.15
SQRT1_2 = 0.7071067811865476
#: Largest compressed file accepted (bytes): a sanity cap, not a format limit.
MAX_FILE_BYTES = 8 << 30
#: deflate cannot expand more than ~1032:1; a header claiming more data is corrupt.
_MAX_DEFLATE_RATIO = 1100
#: Extension records (flag 0x2) after the attribute data: accept (and ignore) up to this much.
_MAX_EXTENSION_BYTES = 1 << 20

# Sign of each non-DC SH coefficient (k = 1..15) under the 180° rotation about x.
_SH_FLIP = np.array([-1, -1, 1,
                     -1, 1, 1, -1, 1,
                     -1, 1, -1, -1, 1, -1, 1], np.float32)
_DIM_FOR_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}


# byte → value lookup tables of the decoder (float32, as the reference decodes in float)
_BYTES = np.arange(256, dtype=np.float64)
_LUT_ALPHA = logit(_BYTES / 255.0, eps=1e-4)
_LUT_COLOR = ((_BYTES / 255.0 - 0.5) / COLOR_SCALE).astype(np.float32)
_LUT_SCALE = (_BYTES / 16.0 - 10.0).astype(np.float32)
_LUT_SH = ((_BYTES - 128.0) / 128.0).astype(np.float32)


def _bytes_per_point(version: int, sh_degree: int) -> int:
    pos = 6 if version == 1 else 9
    rot = 3 if version <= 2 else 4
    return pos + 1 + 3 + 3 + rot + 3 * _DIM_FOR_DEGREE[sh_degree]


# ----------------------------------------------------------------------------- reading
def _check_header(path, version, n, degree, frac):
    if version < 1 or version > 4:
        raise SceneFormatError(path, f"unsupported SPZ version {version} (this reader knows 1-4)")
    if degree not in _DIM_FOR_DEGREE:
        raise SceneFormatError(path, f"SPZ header has SH degree {degree} (must be 0..4)")
    if n > MAX_GAUSSIANS:
        raise SceneFormatError(path, f"SPZ header claims {n} Gaussians (limit {MAX_GAUSSIANS})")
    if frac > 24:
        raise SceneFormatError(path, f"SPZ header has {frac} fractional bits (must be <= 24)")


def _gunzip_bounded(path, data: bytes) -> bytes:
    """Decompress a gzip SPZ (versions 1-3) without ever inflating more than the header
    allows (protects against gzip bombs and absurd point counts)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, 16)
        while len(head) < 16 and not d.eof and d.unconsumed_tail:
            head += d.decompress(d.unconsumed_tail, 16 - len(head))
    except zlib.error as e:
        raise SceneFormatError(path, f"corrupt gzip stream ({e})") from None
    if len(head) < 16:
        raise SceneFormatError(path, "truncated SPZ: gzip stream ends inside the header")
    magic, version, n, degree, frac, flags, _ = struct.unpack("<IIIBBBB", head)
    if magic != MAGIC:
        raise SceneFormatError(path, "not an SPZ file (gzip content lacks the NGSP magic)")
    _check_header(path, version, n, degree, frac)
    if version == 4:
        raise SceneFormatError(path, "SPZ version 4 must not be gzip-wrapped")
    check_declared_count(path, n, len(data), "SPZ header")
    need = n * _bytes_per_point(version, degree)
    if need > len(data) * _MAX_DEFLATE_RATIO + 4096:
        raise SceneFormatError(path, f"SPZ header claims {n} Gaussians ({need} bytes), more than "
                                     f"a {len(data)}-byte gzip file can hold")
    cap = need + (_MAX_EXTENSION_BYTES if flags & 0x2 else 0)
    try:
        body = d.decompress(d.unconsumed_tail, cap + 1)
    except zlib.error as e:
        raise SceneFormatError(path, f"corrupt gzip stream ({e})") from None
    if len(body) < need:
        raise SceneFormatError(path, f"truncated SPZ: {len(body)} of {need} data bytes for "
                                     f"{n} Gaussians")
    if len(body) > cap:
        raise SceneFormatError(path, f"SPZ has more data than {n} Gaussians need "
                                     f"(wrong count or trailing garbage)")
    if len(body) > need and not flags & 0x2:
        raise SceneFormatError(path, f"SPZ has {len(body) - need} bytes after the data of "
                                     f"{n} Gaussians (wrong count?)")
    return head + body[:need]


def _read_v4(path, data: bytes) -> tuple[dict, list[bytes]]:
    if len(data) < 32:
        raise SceneFormatError(path, "truncated SPZ: file shorter than the 32-byte header")
    magic, version, n, degree, frac, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", data)
    _check_header(path, version, n, degree, frac)
    if version != 4:
        raise SceneFormatError(path, f"uncompressed NGSP header with version {version} "
                                     f"(only version 4 is stored unwrapped)")
    check_declared_count(path, n, len(data), "SPZ v4 header")
    hdr = dict(version=version, n=n, degree=degree, frac=frac, flags=flags)
    sizes = [n * 9, n, n * 3, n * 3, n * 4, n * 3 * _DIM_FOR_DEGREE[degree]]
    sizes = [s for s in sizes if s]
    if nstreams != len(sizes):
        raise SceneFormatError(path, f"SPZ v4 has {nstreams} streams, expected {len(sizes)}")
    if toc < 32 or toc + 16 * nstreams > len(data):
        raise SceneFormatError(path, "truncated SPZ v4: table of contents outside the file")
    import zstandard

    off = toc + 16 * nstreams
    streams = []
    dctx = zstandard.ZstdDecompressor()
    for i, want in enumerate(sizes):
        csize, usize = struct.unpack_from("<QQ", data, toc + 16 * i)
        if usize != want:
            raise SceneFormatError(path, f"SPZ v4 stream {i} holds {usize} bytes, expected {want}")
        if csize > len(data) - off:
            raise SceneFormatError(path, f"truncated SPZ v4: stream {i} extends past the end")
        try:
            out = dctx.decompress(data[off:off + csize], max_output_size=want)
        except zstandard.ZstdError as e:
            raise SceneFormatError(path, f"corrupt ZSTD stream {i} ({e})") from None
        if len(out) != want:
            raise SceneFormatError(path, f"SPZ v4 stream {i} decompressed to {len(out)} bytes, "
                                         f"expected {want}")
        streams.append(out)
        off += csize
    if off != len(data):
        raise SceneFormatError(path, f"SPZ v4 has {len(data) - off} trailing bytes")
    return hdr, streams


def _split_legacy(raw: bytes) -> tuple[dict, list[bytes]]:
    _, version, n, degree, frac, flags, _ = struct.unpack_from("<IIIBBBB", raw)
    hdr = dict(version=version, n=n, degree=degree, frac=frac, flags=flags)
    sizes = [n * (6 if version == 1 else 9), n, n * 3, n * 3, n * (3 if version <= 2 else 4),
             n * 3 * _DIM_FOR_DEGREE[degree]]
    out, off = [], 16
    for s in sizes:
        out.append(raw[off:off + s])
        off += s
    return hdr, out


def _unpack_smallest_three(r: np.ndarray) -> np.ndarray:
    """[N,4] uint8 → [N,4] float32 quaternion in SPZ order (x, y, z, w)."""
    comp = r.astype(np.uint32)
    comp = comp[:, 0] | (comp[:, 1] << 8) | (comp[:, 2] << 16) | (comp[:, 3] << 24)
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((len(r), 4), np.float32)
    # the three stored components, from the low bits up, belong to the highest indices first
    slots = np.array([[3, 2, 1], [3, 2, 0], [3, 1, 0], [2, 1, 0]])[largest]  # [N,3]
    rows = np.arange(len(r))
    for j in range(3):
        mag = (comp & 0x1FF).astype(np.float32) * np.float32(SQRT1_2 / 511.0)
        neg = (comp >> 9) & 1
        q[rows, slots[:, j]] = np.where(neg == 1, -mag, mag)
        comp = comp >> 10
    q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", q, q)))
    return q


def _pack_smallest_three(q_xyzw: np.ndarray) -> np.ndarray:
    """[N,4] quaternion (x, y, z, w), any length → [N,4] uint8."""
    q = q_xyzw.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    q = q * np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None]
    comp = largest.astype(np.uint32)
    for i in range(4):
        mag = np.minimum(np.floor(511.0 * np.abs(q[:, i]) / SQRT1_2 + 0.5), 511).astype(np.uint32)
        bits = ((q[:, i] < 0).astype(np.uint32) << 9) | mag
        keep = largest != i
        comp = np.where(keep, (comp << 10) | bits, comp)
    return comp.astype("<u4").view(np.uint8).reshape(-1, 4)


def _decode(path, hdr: dict, s: list[bytes], raw: bool) -> GaussianScene:
    n, version, degree, frac = hdr["n"], hdr["version"], hdr["degree"], hdr["frac"]
    pos_b, alpha_b, col_b, scale_b, rot_b = s[:5]
    sh_b = s[5] if len(s) > 5 else b""
    if version == 1:
        means = np.frombuffer(pos_b, "<f2").reshape(n, 3).astype(np.float32)
    else:
        p = np.frombuffer(pos_b, np.uint8).reshape(n, 3, 3).astype(np.int32)
        v = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
        v = np.where(v & 0x800000, v - (1 << 24), v)
        means = (v.astype(np.float64) / float(1 << frac)).astype(np.float32)
    opacity_logits = _LUT_ALPHA[np.frombuffer(alpha_b, np.uint8)]
    log_scales = _LUT_SCALE[np.frombuffer(scale_b, np.uint8).reshape(n, 3)]
    r = np.frombuffer(rot_b, np.uint8)
    if version <= 2:
        xyz = r.reshape(n, 3).astype(np.float32) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", xyz, xyz)))
        q_xyzw = np.concatenate([xyz, w[:, None]], 1)
    else:
        q_xyzw = _unpack_smallest_three(r.reshape(n, 4))
    quats = q_xyzw[:, [3, 0, 1, 2]]
    dim = _DIM_FOR_DEGREE[degree]
    if degree == 4:
        warnings.warn(f"{path}: SH degree 4 truncated to 3", stacklevel=3)
    k = min(dim, 15) + 1
    dc = _LUT_COLOR[np.frombuffer(col_b, np.uint8).reshape(n, 1, 3)]
    rest = _LUT_SH[np.frombuffer(sh_b, np.uint8).reshape(n, dim, 3)[:, : k - 1]]
    if not raw:  # RUB (file) → RDF (scene)
        means[:, 1:] *= -1
        quats[:, 2:] *= -1
        rest *= _SH_FLIP[: k - 1, None]
    sh = np.concatenate([dc, rest], 1) if k > 1 else dc
    scene = GaussianScene(means, quats, log_scales, opacity_logits, sh)
    if hdr["flags"] & 0x1:
        scene.extras["spz_antialiased"] = np.ones(n, np.uint8)
    if hdr["flags"] & 0x2:
        warnings.warn(f"{path}: SPZ extension records skipped (a coordinate-system extension "
                      f"would change the frame; read as RUB)", stacklevel=3)
    return scene


def read_spz_header(path: str | os.PathLike) -> dict:
    """Header fields of an SPZ file: version, gaussians, sh_degree, fractional_bits, flags."""
    hdr, _ = _load(Path(path))
    return {"version": hdr["version"], "gaussians": hdr["n"], "sh_degree": hdr["degree"],
            "fractional_bits": hdr["frac"], "flags": hdr["flags"]}


def _load(path: Path):
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SceneFormatError(path, f"file of {size} bytes is larger than the SPZ limit")
        data = path.read_bytes()
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
    return _parse(path, data)


def _parse(path, data: bytes):
    if not data:
        raise SceneFormatError(path, "empty file")
    if data[:2] == b"\x1f\x8b":
        return _split_legacy(_gunzip_bounded(path, data))
    if data[:4] == struct.pack("<I", MAGIC):
        return _read_v4(path, data)
    raise SceneFormatError(path, "not an SPZ file (neither gzip nor NGSP magic)")


def decode_spz_bytes(data: bytes, path=None, *, raw: bool = False) -> GaussianScene:
    """Decode SPZ bytes (e.g. a glTF ``KHR_gaussian_splatting_compression_spz_2`` payload);
    errors name ``path``. ``raw=True`` returns the stored RUB data unconverted."""
    hdr, streams = _parse(path, data)
    try:
        scene = _decode(path, hdr, streams, raw)
    except ValueError as e:
        raise SceneFormatError(path, f"inconsistent SPZ data ({e})") from None
    return scene.validate(path)


def read_spz(path: str | os.PathLike, *, raw: bool = False) -> GaussianScene:
    """Read an SPZ file (versions 1–4) into a :class:`GaussianScene` in the RDF scene frame.

    ``raw=True`` skips the RUB → RDF conversion (for files written without one).
    """
    path = Path(path)
    hdr, streams = _load(path)
    try:
        scene = _decode(path, hdr, streams, raw)
    except ValueError as e:  # wrong sizes that slipped through (should not happen)
        raise SceneFormatError(path, f"inconsistent SPZ data ({e})") from None
    return scene.validate(path)


# ----------------------------------------------------------------------------- writing
def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.round(x.astype(np.float32) * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(scene: GaussianScene, *, version: int = WRITE_VERSION, raw: bool = False,
               fractional_bits: int | None = None, sh1_bits: int = 5, sh_rest_bits: int = 4,
               antialiased: bool = False, compresslevel: int = 6) -> bytes:
    """Bytes of an SPZ file (gzip, version 2 or 3) for ``scene`` (RDF frame, stored as RUB
    unless ``raw``). ``fractional_bits`` defaults to 12 (Niantic's choice, ~0.24 mm at 1 m
    units), lowered automatically so the largest coordinate fits 24 bits."""
    if version not in (2, 3):
        raise ValueError("can write SPZ version 2 or 3")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ValueError("sh1_bits and sh_rest_bits must be in 1..8")
    n, degree = len(scene), scene.sh_degree
    means = scene.means.astype(np.float64)
    quats = scene.quats.astype(np.float64)
    sh = scene.sh.astype(np.float32)
    if not raw:  # RDF → RUB
        means = means * [1.0, -1.0, -1.0]
        quats = quats * [1.0, 1.0, -1.0, -1.0]
        sh = sh.copy()
        sh[:, 1:] *= _SH_FLIP[: sh.shape[1] - 1, None]
    m = float(np.abs(means).max()) if n else 0.0
    limit = (1 << 23) - 1
    if fractional_bits is None:
        fractional_bits = 12
        while fractional_bits > 0 and m * (1 << fractional_bits) > limit:
            fractional_bits -= 1
    if m * (1 << fractional_bits) > limit:
        raise ValueError(f"coordinate {m:g} does not fit SPZ's 24-bit fixed point")
    fixed = np.round(means * (1 << fractional_bits)).astype(np.int32)
    pos = (fixed.astype("<i4").view(np.uint8).reshape(n, 3, 4)[..., :3]).reshape(-1)
    alphas = _to_u8(sigmoid(scene.opacity_logits).astype(np.float64) * 255.0)
    colors = _to_u8(sh[:, 0].astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5)
    scales = _to_u8((scene.log_scales.astype(np.float64) + 10.0) * 16.0)
    q_xyzw = quats[:, [1, 2, 3, 0]]
    if version == 3:
        rot = _pack_smallest_three(q_xyzw)
    else:
        qn = q_xyzw / np.linalg.norm(q_xyzw, axis=1, keepdims=True)
        qn = qn * np.where(qn[:, 3:] < 0, -1.0, 1.0)
        rot = _to_u8(qn[:, :3] * 127.5 + 127.5)
    rest = sh[:, 1:]
    shq = np.empty(rest.shape, np.uint8)
    if degree > 0:
        shq[:, :3] = _quantize_sh(rest[:, :3], sh1_bits)
        shq[:, 3:] = _quantize_sh(rest[:, 3:], sh_rest_bits)
    header = struct.pack("<IIIBBBB", MAGIC, version, n, degree, fractional_bits,
                         0x1 if antialiased else 0, 0)
    body = b"".join([header, pos.tobytes(), alphas.tobytes(), colors.tobytes(),
                     scales.tobytes(), rot.tobytes(), shq.tobytes()])
    return gzip.compress(body, compresslevel=compresslevel, mtime=0)


def write_spz(scene: GaussianScene, path: str | os.PathLike, **kw) -> None:
    """Write ``scene`` as an SPZ file (version 3 by default), atomically.

    Version 3 is what current readers accept (Niantic's library reads 1–4, PlayCanvas
    splat-transform/SuperSplat and most web viewers read 2–3 or 2–4); version 4 (ZSTD) is
    only read by the newest Niantic library, so it is not written. See :func:`encode_spz`.
    """
    scene.validate(path)
    write_bytes_atomic(path, encode_spz(scene, **kw))
