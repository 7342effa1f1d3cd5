"""PlayCanvas SOG ("spatially ordered Gaussians"): read v2 and v1 (SOGS), write v2.

Implemented from the published description (PlayCanvas splat-transform / SuperSplat docs).

A SOG scene is a folder (or a zip file ``*.sog`` with the same members) holding ``meta.json``
and lossless WebP images, all images (except the SH palette) W×H RGBA with W = ceil(√N / 4)·4,
H = ceil(N / W / 4)·4; Gaussian i is texel i in row-major order (row 0 first)::

    meta.json  {"version": 2, "count": N,
                "means":  {"mins": [3], "maxs": [3], "files": ["means_l.webp", "means_u.webp"]},
                "scales": {"codebook": [256], "files": ["scales.webp"]},
                "quats":  {"files": ["quats.webp"]},
                "sh0":    {"codebook": [256], "files": ["sh0.webp"]},
                "shN":    {"count": P, "bands": 1..3, "codebook": [256],
                           "files": ["shN_centroids.webp", "shN_labels.webp"]}}   (optional)

* means: 16 bits per axis, low byte in ``means_l``, high byte in ``means_u`` (RGB = x,y,z);
  v = lerp(mins, maxs, u16 / 65535) in log space, position = sign(v) · (exp|v| − 1)
  (the inverse of ``sign(x)·ln(|x| + 1)``).
* quats: RGB = the three smaller components c of the unit quaternion (w,x,y,z), in order,
  as 255·(c·√2·0.5 + 0.5); A = 252 + index of the largest component (made positive and
  rebuilt as √(1 − Σc²)).
* scales: RGB = indices into the 256-entry codebook of log-scales (x, y, z).
* sh0: RGB = indices into the codebook of DC coefficients; A = sigmoid(opacity)·255.
* shN: ``shN_labels`` RG = 16-bit palette index (little-endian), ``shN_centroids`` is
  64·K texels wide (K = 3, 8, 15 coefficients): palette entry p occupies row p // 64,
  columns (p % 64)·K + j for coefficient j, RGB = codebook indices of the three channels.

Frame: SOG stores the data in the PLY frame (splat-transform bakes its data into "PLY space"
before writing); nothing is converted here. Exactness: lossless WebP decodes bit-exactly, so
reading a SOG reproduces splat-transform's own decode to float32 rounding.

SOG v1 (the 2025 "SOGS" folders: meta.json without ``version``, with ``shape``/``mins``/
``maxs`` per attribute) is read by :mod:`exgs.io.sog_v1`; streamed LOD SOG (``lod-meta.json``)
by :mod:`exgs.io.sog_lod`. The writer is :mod:`exgs.io.sog_write` (re-exported here).

Robustness: members of a folder must resolve (symlinks followed) inside the folder; the
declared count is checked against the members' stored size before any image is decoded
(:func:`exgs.io.limits.check_declared_count`); images are bounded in size by the count.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..scene import GaussianScene, logit
from .limits import check_declared_count
from .sog_common import (MAX_SIDE, SH_COEFFS, Source, decode_means, decode_quats, decode_shn,
                         decode_webp, files, floats, lookup, read_meta, texture_size)
from .sog_write import encode_sog, morton_order, write_sog  # noqa: F401  (public API)

__all__ = ["read_sog", "read_sog_header", "write_sog", "encode_sog", "texture_size",
           "morton_order"]

_MEMBERS = [("means", 2), ("scales", 1), ("quats", 1), ("sh0", 1)]


def _stored_bytes(src: Source, meta: dict) -> int:
    total = 0
    for key, cnt in _MEMBERS + [("shN", 2)]:
        sub = meta.get(key)
        names = sub.get("files") if isinstance(sub, dict) else None
        if isinstance(names, list):
            total += sum(src.size(nm) for nm in names[:cnt] if isinstance(nm, str))
    return total


def _count_v2(src: Source, meta: dict) -> int:
    version = meta.get("version")
    if version != 2:
        raise SceneFormatError(src.path, f"unsupported SOG version {version!r} (expected 2)")
    n = meta.get("count")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise SceneFormatError(src.path, f"meta.json: count must be a non-negative integer, "
                                         f"got {n!r}")
    check_declared_count(src.path, n, _stored_bytes(src, meta), "meta.json count")
    w, h = texture_size(n)
    if w > MAX_SIDE or h > MAX_SIDE:
        raise SceneFormatError(src.path, f"{n} Gaussians do not fit a SOG texture")
    return n


def _bands(src: Source, shn) -> tuple[int, int]:
    if not isinstance(shn, dict):
        raise SceneFormatError(src.path, "meta.json: shN must be an object")
    bands = shn.get("bands")
    if not isinstance(bands, int) or isinstance(bands, bool) or bands not in SH_COEFFS:
        raise SceneFormatError(src.path, f"meta.json: shN.bands must be 1, 2 or 3, got {bands!r}")
    pal = shn.get("count")
    if not isinstance(pal, int) or isinstance(pal, bool) or not 0 < pal <= 65536:
        raise SceneFormatError(src.path, f"meta.json: shN.count must be 1..65536, got {pal!r}")
    return bands, pal


def read_sog_header(path: str | os.PathLike, *, root: Path | None = None) -> dict:
    """meta.json summary without decoding images: version, gaussians, sh_degree."""
    path = Path(path)
    src = Source(path, root)
    meta = read_meta(src)
    if "version" not in meta:
        from .sog_v1 import header_v1

        return header_v1(src, meta)
    n = _count_v2(src, meta)
    degree = _bands(src, meta["shN"])[0] if meta.get("shN") is not None else 0
    return {"version": 2, "gaussians": n, "sh_degree": degree}


def read_sog(path: str | os.PathLike, *, root: Path | None = None) -> GaussianScene:
    """Read a SOG scene (v2 or v1; folder, its meta.json, or a zipped ``.sog``) in the PLY
    frame. ``root``: folder members must resolve inside it (default: the SOG folder)."""
    path = Path(path)
    src = Source(path, root)
    meta = read_meta(src)
    with np.errstate(all="ignore"):  # absurd ranges become inf/NaN, refused by validate
        if "version" not in meta:
            from .sog_v1 import decode_v1

            scene = decode_v1(src, meta)
        else:
            scene = _decode_v2(src, meta)
        return scene.validate(path)


def _decode_v2(src: Source, meta: dict) -> GaussianScene:
    n = _count_v2(src, meta)
    shn = meta.get("shN")
    if shn is not None:
        bands, pal = _bands(src, shn)
    scb = floats(src, meta, "scales", "codebook")
    ccb = floats(src, meta, "sh0", "codebook")
    means = decode_means(src, meta, n)
    quats = decode_quats(src, meta, n)
    s8 = decode_webp(src, files(src, meta, "scales", 1)[0], n)[:n, :3]
    log_scales = lookup(src, scb, s8, "scale")
    c8 = decode_webp(src, files(src, meta, "sh0", 1)[0], n)[:n]
    dc = lookup(src, ccb, c8[:, :3], "sh0")
    opacity_logits = logit(c8[:, 3].astype(np.float32) / 255.0, eps=1e-6)
    sh = dc[:, None, :]
    if shn is not None:
        k = SH_COEFFS[bands]
        ncb = floats(src, meta, "shN", "codebook")
        f_cent, f_lab = files(src, meta, "shN", 2)
        cent = decode_webp(src, f_cent, 0, width=64 * k, max_pixels=64 * k * 1024)
        lab = decode_webp(src, f_lab, n)
        vals = decode_shn(src, n, k, cent, lab, lambda b: lookup(src, ncb, b, "shN"), pal)
        sh = np.concatenate([sh, vals], 1)
    try:
        return GaussianScene(means, quats, log_scales, opacity_logits, sh)
    except ValueError as e:
        raise SceneFormatError(src.path, f"inconsistent SOG data ({e})") from None
