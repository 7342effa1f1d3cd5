"""Encoding of rendered frames for ``GET /v1/jobs/{id}/frames/{i}``.

Binary float32 frame (``format="f32"``, media type ``application/x-exgs-frame``), all
little-endian::

    offset  size  field
    0       4     magic  b"EXGF"
    4       2     version (uint16) = 1
    6       2     pass count P (uint16)
    8       4     width W (uint32)
    12      4     height H (uint32)
    16      12·P  pass table: name (8 bytes ASCII, NUL-padded), channels C (uint32)
    16+12P  ...   the passes in table order, each H·W·C float32, row-major, row 0 = TOP of
                  the image, channels interleaved ([H,W,C] C-order)

Passes: ``rgb`` (C=3, display sRGB composited over the request's background; over black it
is premultiplied), ``alpha`` (C=1, 1 − transmittance), ``depth`` (C=1, camera z in scene
units of the view transform, ``+inf`` where nothing was hit).

PNG frames (``format="png"``): 8-bit sRGB; RGBA with *straight* alpha when the alpha pass
is requested (colour un-premultiplied over a black background), otherwise RGB.
"""

from __future__ import annotations

import io
import struct

import numpy as np

MAGIC = b"EXGF"
VERSION = 1
HEADER = struct.Struct("<4sHHII")
PASS_ENTRY = struct.Struct("<8sI")
F32_MEDIA_TYPE = "application/x-exgs-frame"
CHANNELS = {"rgb": 3, "alpha": 1, "depth": 1}


class ArrayFrame:
    """A binary float32 frame kept as its parts (header + the pass arrays, no copy until
    it is fetched); ``tobytes()`` joins them into the wire format."""

    def __init__(self, passes: dict[str, np.ndarray]):
        arrays = []
        for name, a in passes.items():
            a = np.ascontiguousarray(a, dtype="<f4")
            arrays.append((name, a[:, :, None] if a.ndim == 2 else a))
        h, w = arrays[0][1].shape[:2]
        head = bytearray(HEADER.pack(MAGIC, VERSION, len(arrays), w, h))
        for name, a in arrays:
            if a.shape[:2] != (h, w):
                raise ValueError(f"pass {name!r} is {a.shape[:2]}, expected {(h, w)}")
            head += PASS_ENTRY.pack(name.encode("ascii")[:8], a.shape[2])
        self.parts = [memoryview(bytes(head))] + [memoryview(a).cast("B") for _, a in arrays]
        self.nbytes = sum(p.nbytes for p in self.parts)

    def __len__(self) -> int:
        return self.nbytes

    def chunks(self, size: int = 1 << 18):
        """The bytes in slices of at most ``size`` (memoryviews)."""
        for p in self.parts:
            for off in range(0, p.nbytes, size):
                yield p[off:off + size]

    def tobytes(self) -> bytes:
        return b"".join(self.parts)


def f32_size(width: int, height: int, passes: dict) -> int:
    """Byte size of the binary frame holding ``passes`` ({name: array}) at width×height."""
    ch = sum(1 if np.ndim(a) == 2 else np.shape(a)[2] for a in passes.values())
    return HEADER.size + PASS_ENTRY.size * len(passes) + 4 * width * height * ch


def encode_f32(passes: dict[str, np.ndarray]) -> bytearray:
    """``{name: [H,W,C] or [H,W] array}`` (insertion order kept) → binary frame bytes
    (a ``bytearray``; each pass is copied once, straight into place)."""
    if not passes:
        raise ValueError("no passes to encode")
    arrays = []
    for name, a in passes.items():
        a = np.asarray(a)
        arrays.append((name, a[:, :, None] if a.ndim == 2 else a))
    h, w = arrays[0][1].shape[:2]
    head = HEADER.size + PASS_ENTRY.size * len(arrays)
    total = head + sum(4 * h * w * a.shape[2] for _, a in arrays)
    out = bytearray(total)
    HEADER.pack_into(out, 0, MAGIC, VERSION, len(arrays), w, h)
    off = HEADER.size
    for name, a in arrays:
        if a.shape[:2] != (h, w):
            raise ValueError(f"pass {name!r} is {a.shape[:2]}, expected {(h, w)}")
        PASS_ENTRY.pack_into(out, off, name.encode("ascii")[:8], a.shape[2])
        off += PASS_ENTRY.size
    for _, a in arrays:
        n = h * w * a.shape[2]
        np.frombuffer(out, "<f4", n, off).reshape(a.shape)[...] = a
        off += 4 * n
    return out


def decode_f32(data: bytes) -> tuple[int, int, dict[str, np.ndarray]]:
    """Inverse of :func:`encode_f32` → (width, height, {name: [H,W,C] float32})."""
    magic, version, p, w, h = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not an ExGS frame (bad magic or version)")
    off = HEADER.size
    table = []
    for _ in range(p):
        name, c = PASS_ENTRY.unpack_from(data, off)
        table.append((name.rstrip(b"\0").decode("ascii"), c))
        off += PASS_ENTRY.size
    out = {}
    for name, c in table:
        n = h * w * c
        out[name] = np.frombuffer(data, "<f4", n, off).reshape(h, w, c)
        off += 4 * n
    return w, h, out


def encode_png(rgb: np.ndarray, alpha: np.ndarray | None, background=(0.0, 0.0, 0.0)) -> bytes:
    """8-bit PNG: RGB, or RGBA with straight alpha (colour over ``background`` undone)."""
    from PIL import Image

    rgb = np.asarray(rgb, np.float32)
    if alpha is not None:
        a = np.asarray(alpha, np.float32)[..., None]
        bg = np.asarray(background, np.float32).reshape(1, 1, 3)
        premult = rgb - (1.0 - a) * bg
        with np.errstate(divide="ignore", invalid="ignore"):
            straight = np.where(a > 1e-6, premult / np.maximum(a, 1e-6), 0.0)
        img = np.concatenate([straight, a], -1)
    else:
        img = rgb
    u8 = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
