"""Wire format of viewport frames (``POST /v1/viewport``), little-endian::

    offset  size  field
    0       4     magic  b"EXVF"
    4       2     version (uint16) = 1
    6       2     flags (uint16): bit 0 = a depth plane follows, bit 1 = orthographic view
    8       4     width W (uint32)
    12      4     height H (uint32)
    16      4     generation (uint32) of the request this frame answers
    20      4     backend time in ms (float32): scene lookup + render + colour + encode
    24      8·W·H RGBA float16 [H,W,4], row 0 = TOP: scene-linear RGB premultiplied by alpha
                  (what a Blender render pass holds; the engine draws it through Blender's
                  display-space shader, i.e. the scene's view transform, like F12)
    ...     4·W·H depth float32 [H,W] (with flag bit 0): camera z in Blender world units,
                  +inf where empty

Half floats halve the transfer of float32 frames (640×360: 1.8 MB instead of 3.7 MB) and keep
linear values to ≈ 3 significant digits (finer than 8-bit sRGB in the darks).
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"EXVF"
VERSION = 1
HEADER = struct.Struct("<4sHHIIIf")
FLAG_DEPTH, FLAG_ORTHO = 1, 2
MEDIA_TYPE = "application/x-exgs-viewport"


def encode(rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray | None = None, *,
           generation: int = 0, ms: float = 0.0, ortho: bool = False) -> bytearray:
    """[H,W,3] linear premultiplied rgb, [H,W] alpha (+ [H,W] depth) → frame bytes."""
    h, w = alpha.shape
    flags = (FLAG_DEPTH if depth is not None else 0) | (FLAG_ORTHO if ortho else 0)
    n_rgba = 8 * w * h
    out = bytearray(HEADER.size + n_rgba + (4 * w * h if depth is not None else 0))
    HEADER.pack_into(out, 0, MAGIC, VERSION, flags, w, h, int(generation) & 0xFFFFFFFF,
                     float(ms))
    px = np.frombuffer(out, "<f2", 4 * w * h, HEADER.size).reshape(h, w, 4)
    px[..., :3] = rgb
    px[..., 3] = alpha
    if depth is not None:
        np.frombuffer(out, "<f4", w * h, HEADER.size + n_rgba).reshape(h, w)[...] = depth
    return out


def set_ms(data: bytearray, ms: float) -> None:
    """Overwrite the header's backend time (set once the frame is encoded)."""
    struct.pack_into("<f", data, 20, float(ms))


def decode(data) -> dict:
    """Frame bytes → {"width", "height", "generation", "ms", "ortho", "rgba" [H,W,4] float16,
    "depth" [H,W] float32 | None}. ValueError on a malformed frame."""
    if len(data) < HEADER.size:
        raise ValueError("viewport frame too short")
    magic, version, flags, w, h, gen, ms = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not an ExGS viewport frame (bad magic or version)")
    need = HEADER.size + 8 * w * h + (4 * w * h if flags & FLAG_DEPTH else 0)
    if len(data) != need:
        raise ValueError(f"viewport frame is {len(data)} bytes, expected {need}")
    rgba = np.frombuffer(data, "<f2", 4 * w * h, HEADER.size).reshape(h, w, 4)
    depth = None
    if flags & FLAG_DEPTH:
        depth = np.frombuffer(data, "<f4", w * h, HEADER.size + 8 * w * h).reshape(h, w)
    return {"width": w, "height": h, "generation": gen, "ms": ms,
            "ortho": bool(flags & FLAG_ORTHO), "rgba": rgba, "depth": depth}
