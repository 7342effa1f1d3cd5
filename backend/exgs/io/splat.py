"""antimatter15 ``.splat``: read and write (32 bytes per Gaussian, no header, no SH).

Implemented from the published description (antimatter15/splat viewer and its convert.py).

Layout: N records of 32 bytes, little-endian, N = file size / 32::

    0   f32 ×3   position x, y, z (scene units)
    12  f32 ×3   scale σx, σy, σz (linear, not log)
    24  u8  ×4   colour R, G, B = clamp(0.5 + SH_C0·DC, 0, 1)·255, A = sigmoid(opacity)·255
    28  u8  ×4   rotation (w, x, y, z) of the unit quaternion, each as q·128 + 128

What is lost: every SH band above 0 (the colour is the DC term only, clamped to [0, 1], so a
DC outside the displayable range is clipped), 8-bit colour/opacity/rotation. Positions and
scales are float32 and exact.

Frame: the file's own. Converters (antimatter15's convert.py, splat-transform) copy the PLY's
coordinates unchanged, so a ``.splat`` made from an INRIA PLY is in the PLY frame (RDF for
COLMAP captures); nothing is converted here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..fsutil import write_bytes_atomic
from ..scene import SH_C0, GaussianScene, logit, sigmoid
from .limits import check_declared_count

RECORD = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4),
                   ("rot", "u1", 4)])
assert RECORD.itemsize == 32


def splat_count(path: str | os.PathLike) -> int:
    """Number of Gaussians of a ``.splat`` file (from its size; raises if not a multiple of 32)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SceneFormatError(path, f"cannot open: {e.strerror or e}") from None
    if size == 0:
        raise SceneFormatError(path, "empty file")
    if size % 32:
        raise SceneFormatError(path, f"size {size} is not a multiple of 32 (not a .splat file, "
                                     f"or truncated)")
    check_declared_count(path, size // 32, size, "file size")
    return size // 32


def decode_splat(data: np.ndarray, path=None) -> GaussianScene:
    """Scene from a structured array of :data:`RECORD` (any length)."""
    n = len(data)
    rgba = data["rgba"].astype(np.float32) / 255.0
    dc = (rgba[:, :3] - 0.5) / SH_C0
    scale = data["scale"].astype(np.float64)
    if (scale < 0).any():
        raise SceneFormatError(path, f"negative scale at Gaussian {int(np.argmax((scale < 0).any(1)))}")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_scales = np.log(np.maximum(scale, 1e-30))
    quats = (data["rot"].astype(np.float32) - 128.0) / 128.0
    return GaussianScene(
        means=data["pos"], quats=quats, log_scales=log_scales,
        opacity_logits=logit(rgba[:, 3], eps=1e-4), sh=dc.reshape(n, 1, 3))


def read_splat(path: str | os.PathLike) -> GaussianScene:
    """Read a ``.splat`` file (frame unchanged; SH degree 0)."""
    path = Path(path)
    n = splat_count(path)
    try:
        data = np.fromfile(path, dtype=RECORD, count=n)
    except (OSError, ValueError) as e:
        raise SceneFormatError(path, f"cannot read: {e}") from None
    if len(data) != n:
        raise SceneFormatError(path, "truncated while reading")
    with np.errstate(all="ignore"):  # NaN/Inf (even signalling NaNs) are refused by validate
        return decode_splat(data, path).validate(path)


def encode_splat(scene: GaussianScene) -> bytes:
    """Bytes of a ``.splat`` file for ``scene`` (SH above degree 0 dropped)."""
    n = len(scene)
    out = np.zeros(n, RECORD)
    out["pos"] = scene.means
    out["scale"] = np.exp(scene.log_scales.astype(np.float64))
    col = np.clip(scene.sh[:, 0].astype(np.float64) * SH_C0 + 0.5, 0.0, 1.0)
    alpha = sigmoid(scene.opacity_logits).astype(np.float64)
    out["rgba"] = np.clip(np.round(np.concatenate([col, alpha[:, None]], 1) * 255), 0, 255)
    q = scene.quats.astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    out["rot"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255)
    return out.tobytes()


def write_splat(scene: GaussianScene, path: str | os.PathLike) -> None:
    """Write ``scene`` as a ``.splat`` file, atomically (SH bands above 0 are dropped)."""
    scene.validate(path)
    write_bytes_atomic(path, encode_splat(scene))
