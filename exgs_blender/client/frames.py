"""Binary float32 frames of the service (``GET /v1/jobs/{id}/frames/{i}``) → :class:`Frame`.

Little-endian header ``b"EXGF"``, u16 version (1), u16 pass count P, u32 width, u32 height,
then P × (8-byte NUL padded name, u32 channels), then each pass as H·W·C float32, row 0 = top.
numpy is optional: without it a pass is a flat ``array.array('f')`` (row-major).
"""

from __future__ import annotations

import array
import struct
import sys

from .errors import BackendError

try:  # numpy is optional (Blender ships it, but the client must not require it)
    import numpy as _np
except Exception:  # pragma: no cover - exercised only without numpy
    _np = None

__all__ = ["Frame", "decode_frame", "FRAME_MAGIC"]

FRAME_MAGIC = b"EXGF"
_HEADER = struct.Struct("<4sHHII")
_PASS = struct.Struct("<8sI")


class Frame:
    """One rendered frame. ``rgb`` [H,W,3], ``alpha`` [H,W], ``depth`` [H,W] (None when the
    pass was not requested); numpy float32 arrays when numpy is available, else flat
    ``array.array('f')`` (row-major, row 0 = top). ``passes`` maps every pass name to its
    array. Unpacks as ``rgb, alpha, depth = frame``."""

    __slots__ = ("width", "height", "passes")

    def __init__(self, width: int, height: int, passes: dict):
        self.width, self.height, self.passes = width, height, passes

    rgb = property(lambda self: self.passes.get("rgb"))
    alpha = property(lambda self: self.passes.get("alpha"))
    depth = property(lambda self: self.passes.get("depth"))

    def __iter__(self):
        return iter((self.rgb, self.alpha, self.depth))

    def __repr__(self):
        return f"Frame({self.width}x{self.height}, passes={list(self.passes)})"


def decode_frame(data) -> Frame:
    """Binary float32 frame (``bytes`` or ``bytearray``) → :class:`Frame` (see the module
    docstring). With a ``bytearray`` the numpy arrays are writable views of it (no copy).
    Anything malformed raises :class:`BackendError` (never ``struct.error`` & co.)."""
    try:
        return _decode(data)
    except BackendError:
        raise
    except (struct.error, ValueError, TypeError, UnicodeDecodeError, MemoryError) as e:
        raise BackendError(0, f"the backend sent a malformed frame "
                              f"({' '.join(str(e).split()) or 'unreadable'})") from None


def _decode(data) -> Frame:
    if len(data) < _HEADER.size:
        raise BackendError(0, "frame data is truncated")
    magic, version, p, w, h = _HEADER.unpack_from(data, 0)
    if magic != FRAME_MAGIC or version != 1:
        raise BackendError(0, "not an ExGS frame (bad magic or version)")
    off = _HEADER.size
    if len(data) < off + p * _PASS.size:
        raise BackendError(0, f"frame data is truncated ({p} passes announced)")
    table = []
    for _ in range(p):
        name, c = _PASS.unpack_from(data, off)
        name = name.rstrip(b"\0").decode("ascii")
        if not name or any(name == t[0] for t in table) or not 1 <= c <= 4:
            raise BackendError(0, f"frame pass table is malformed (pass {name!r}, {c} channels)")
        table.append((name, c))
        off += _PASS.size
    need = off + 4 * w * h * sum(c for _, c in table)
    if len(data) != need:
        raise BackendError(0, f"frame data has {len(data)} bytes, expected {need}")
    passes = {}
    for name, c in table:
        n = w * h * c
        if _np is not None:
            a = _np.frombuffer(data, "<f4", n, off)
            if not isinstance(data, bytearray):  # bytes: read-only → own copy
                a = a.copy()
            a = a.astype(_np.float32, copy=False)  # native order on big-endian hosts
            passes[name] = a.reshape(h, w, c) if c > 1 else a.reshape(h, w)
        else:
            a = array.array("f")
            a.frombytes(data[off:off + 4 * n])
            if sys.byteorder != "little":
                a.byteswap()
            passes[name] = a
        off += 4 * n
    return Frame(w, h, passes)
