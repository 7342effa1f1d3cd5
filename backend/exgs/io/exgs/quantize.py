"""Quantizers for the .exgs attribute streams (pure numpy, vectorized, no loop per Gaussian).

Every quantizer is a pair ``encode(values, params) -> uint`` / ``decode(uint, params) ->
float32`` whose round-trip error is bounded by half a quantization step (values outside the
stored range are clamped to it first):

=============  ==================================================  ============================
stream         code                                                 step (error ≤ step/2)
=============  ==================================================  ============================
positions      ``b``-bit grid per axis over [min, max] of the kept  ``(max − min)/(2^b − 1)``
               centres, stored as Morton-code deltas (Morton order)
log-scales     8 bit, one [min, max] range for all three axes      ``(max − min)/255``
rotations      smallest-three: index of the largest |component|    ``√2/255`` per component
               (2 bit, own byte) + three 8-bit components in
               [−1/√2, 1/√2]; sign chosen so the dropped one ≥ 0
opacity        8 bit of the *activated* opacity in [0, 1]          ``1/255``
colour (SH 0)  8 bit per channel of the display colour              ``1/255`` in colour
               ``clip(dc·C0 + 0.5, 0, 1)`` (lossless for rendering  (``1/(255·C0)`` in dc)
               at degree 0: the renderer clamps anyway)
DC (SH > 0)    8 bit per channel over that channel's [min, max]     ``(max − min)/255``
higher SH      8 bit, symmetric range ±a_band per SH band           ``2·a_band/255``
               (a_band = 99.9 % quantile of |coefficient|)
=============  ==================================================  ============================
"""

from __future__ import annotations

import numpy as np

from ...scene import SH_C0

SQRT1_2 = np.float32(np.sqrt(0.5))


# ------------------------------------------------------------------------------ uniform
def quantize_uniform(x: np.ndarray, lo, hi, bits: int = 8) -> np.ndarray:
    """Map x ∈ [lo, hi] (broadcast) onto integers 0..2^bits−1 (clamped, rounded)."""
    levels = (1 << bits) - 1
    lo = np.asarray(lo, np.float64)
    span = np.maximum(np.asarray(hi, np.float64) - lo, 1e-30)
    q = np.rint((np.asarray(x, np.float64) - lo) / span * levels)
    q = np.clip(q, 0, levels)
    return q.astype(np.uint32 if bits > 16 else (np.uint16 if bits > 8 else np.uint8))


def dequantize_uniform(q: np.ndarray, lo, hi, bits: int = 8) -> np.ndarray:
    levels = (1 << bits) - 1
    lo = np.asarray(lo, np.float64)
    span = np.asarray(hi, np.float64) - lo
    return (lo + q.astype(np.float64) / levels * span).astype(np.float32)


# ------------------------------------------------------------------------------ Morton
def _spread3(v: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of v (uint64) so bit i lands at bit 3i."""
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


def _compact3(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread3`."""
    x = x.astype(np.uint64) & np.uint64(0x1249249249249249)
    x = (x ^ (x >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    x = (x ^ (x >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    x = (x ^ (x >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    x = (x ^ (x >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    x = (x ^ (x >> np.uint64(32))) & np.uint64(0x1FFFFF)
    return x


def morton_encode(grid: np.ndarray) -> np.ndarray:
    """[N,3] non-negative integer grid coordinates (< 2^21) → [N] uint64 Morton codes
    (x in bit 0, y in bit 1, z in bit 2 of every triple)."""
    g = np.asarray(grid)
    return _spread3(g[:, 0]) | (_spread3(g[:, 1]) << np.uint64(1)) | (_spread3(g[:, 2]) << np.uint64(2))


def morton_decode(code: np.ndarray) -> np.ndarray:
    """[N] uint64 Morton codes → [N,3] uint64 grid coordinates."""
    c = np.asarray(code, np.uint64)
    return np.stack([_compact3(c), _compact3(c >> np.uint64(1)), _compact3(c >> np.uint64(2))], 1)


# ------------------------------------------------------------------------------ rotations
def quat_normalize(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)


def pack_smallest_three(quats: np.ndarray, bits: int = 8) -> np.ndarray:
    """[N,4] quaternions (w,x,y,z, any length) → [N,4] uint8: (index of the dropped largest
    component, three remaining components quantized to ``bits`` over [−1/√2, 1/√2])."""
    q = quat_normalize(quats)
    idx = np.argmax(np.abs(q), axis=1)
    sign = np.where(q[np.arange(len(q)), idx] < 0, -1.0, 1.0)
    q = q * sign[:, None]
    keep = (np.arange(4)[None, :] != idx[:, None])
    rest = q[keep].reshape(-1, 3)
    out = np.empty((len(q), 4), np.uint8)
    out[:, 0] = idx
    out[:, 1:] = quantize_uniform(rest, -SQRT1_2, SQRT1_2, bits)
    return out


def unpack_smallest_three(packed: np.ndarray, bits: int = 8) -> np.ndarray:
    """Inverse of :func:`pack_smallest_three` → [N,4] float32 unit quaternions (w,x,y,z)."""
    packed = np.asarray(packed)
    idx = packed[:, 0].astype(np.int64) & 3
    rest = dequantize_uniform(packed[:, 1:], -SQRT1_2, SQRT1_2, bits).astype(np.float64)
    big = np.sqrt(np.clip(1.0 - np.einsum("ij,ij->i", rest, rest), 0.0, 1.0))
    q = np.empty((len(packed), 4), np.float64)
    keep = (np.arange(4)[None, :] != idx[:, None])
    q[keep] = rest.reshape(-1)
    q[np.arange(len(q)), idx] = big
    return quat_normalize(q).astype(np.float32)


# ------------------------------------------------------------------------------ colour
def encode_colour_deg0(dc: np.ndarray) -> np.ndarray:
    """[N,3] DC coefficients → [N,3] uint8 display colour (clamped to [0, 1])."""
    return quantize_uniform(np.clip(dc * SH_C0 + 0.5, 0.0, 1.0), 0.0, 1.0, 8)


def decode_colour_deg0(q: np.ndarray) -> np.ndarray:
    return ((dequantize_uniform(q, 0.0, 1.0, 8) - 0.5) / SH_C0).astype(np.float32)


# ------------------------------------------------------------------------------ bytes
def to_planes(a: np.ndarray) -> bytes:
    """[N, C] array of any unsigned dtype → bytes in byte-plane order (all byte 0 of column 0,
    then byte 1 of column 0, ...): groups similar bytes so zstd compresses them better."""
    a = np.ascontiguousarray(a)
    n = a.shape[0]
    b = a.reshape(n, -1).view(np.uint8).reshape(n, -1)  # [N, C·itemsize] little-endian bytes
    return np.ascontiguousarray(b.T).tobytes()


def from_planes(buf: bytes | memoryview, n: int, cols: int, dtype) -> np.ndarray:
    """Inverse of :func:`to_planes` → [n, cols] array of ``dtype`` (little-endian)."""
    dt = np.dtype(dtype).newbyteorder("<")
    width = cols * dt.itemsize
    b = np.frombuffer(buf, np.uint8, count=n * width).reshape(width, n)
    return np.ascontiguousarray(b.T).view(dt).reshape(n, cols)
