"""SOG v1 ("SOGS", PlayCanvas 2025): meta.json without ``version``; each attribute carries
``shape``, ``dtype`` and linear ``mins``/``maxs`` instead of v2's codebooks.

Implemented from the published description (PlayCanvas SOGS folders, as read by the
PlayCanvas engine and other public viewers)::

    meta.json {"means":  {"shape": [N, 3], "mins": [3], "maxs": [3],
                          "files": ["means_l.webp", "means_u.webp"]},
               "scales": {"shape": [N, 3], "mins": [3], "maxs": [3], "files": ["scales.webp"]},
               "quats":  {"shape": [N, 4], "encoding": "quaternion_packed",
                          "files": ["quats.webp"]},
               "sh0":    {"shape": [N, 1, 4], "mins": [4], "maxs": [4], "files": ["sh0.webp"]},
               "shN":    {"shape": [N, 9|24|45], "mins": m, "maxs": M, "quantization": 8,
                          "files": ["shN_centroids.webp", "shN_labels.webp"]}}   (optional)

* means and quats: as v2 (16-bit sign-log positions; smallest-three quaternions).
* scales: RGB byte b → log-scale ``mins + (maxs − mins)·b/255`` per axis.
* sh0: RGB → DC coefficient the same way; A → opacity *logit* ``mins[3] + (maxs[3] − mins[3])·a/255``.
* shN: as v2's palette (labels RG 16-bit, centroids 64·K texels wide, K = 3, 8, 15) with
  value ``m + (M − m)·b/255``; the palette size is the centroid image's rows · 64.

Images hold at least N texels (v1 files are often square); Gaussian i is texel i. Frame:
the PLY frame, as v2.
"""

from __future__ import annotations

import numpy as np

from ..errors import SceneFormatError
from ..scene import GaussianScene
from .limits import check_declared_count
from .sog_common import (MAX_SIDE, Source, decode_means, decode_quats, decode_shn,
                         decode_webp, files, floats)

_KEYS = ("means", "scales", "quats", "sh0")


def _count(src: Source, meta: dict) -> int:
    for k in _KEYS:
        if not isinstance(meta.get(k), dict):
            raise SceneFormatError(src.path, f"meta.json: not a SOG scene (no '{k}' object; "
                                             f"SOG v1 has no 'version', v2 has version 2)")
    shape = meta["means"].get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and isinstance(shape[0], int)
            and not isinstance(shape[0], bool) and shape[0] >= 0):
        raise SceneFormatError(src.path, f"SOG v1 meta.json: means.shape must be [N, 3], "
                                         f"got {shape!r}")
    n = shape[0]
    stored = 0
    for k in _KEYS + ("shN",):
        names = meta[k].get("files") if isinstance(meta.get(k), dict) else None
        if isinstance(names, list):
            stored += sum(src.size(nm) for nm in names[:2] if isinstance(nm, str))
    check_declared_count(src.path, n, stored, "SOG v1 means.shape")
    if n > MAX_SIDE * MAX_SIDE:
        raise SceneFormatError(src.path, f"{n} Gaussians do not fit a SOG texture")
    return n


def _sh_k(src: Source, shn) -> int:
    if not isinstance(shn, dict):
        raise SceneFormatError(src.path, "meta.json: shN must be an object")
    shape = shn.get("shape")
    per = None
    if isinstance(shape, list) and len(shape) >= 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in shape[1:]):
        per = int(np.prod(shape[1:]))
    k = {9: 3, 24: 8, 45: 15}.get(per)
    if k is None:
        raise SceneFormatError(src.path, f"SOG v1 meta.json: shN.shape must be [N, 9|24|45], "
                                         f"got {shape!r}")
    return k


def header_v1(src: Source, meta: dict) -> dict:
    n = _count(src, meta)
    degree = 0
    if meta.get("shN") is not None:
        degree = {3: 1, 8: 2, 15: 3}[_sh_k(src, meta["shN"])]
    return {"version": 1, "gaussians": n, "sh_degree": degree}


def _scalar(src, shn, key) -> float:
    v = shn.get(key)
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        raise SceneFormatError(src.path, f"SOG v1 meta.json: shN.{key} must be a number")
    return float(v)


def decode_v1(src: Source, meta: dict) -> GaussianScene:
    """Decode a v1 scene whose meta.json is ``meta`` (not yet validated)."""
    n = _count(src, meta)
    enc = meta["quats"].get("encoding", "quaternion_packed")
    if enc != "quaternion_packed":
        raise SceneFormatError(src.path, f"SOG v1: unsupported quats.encoding {enc!r}")
    smin, smax = floats(src, meta, "scales", "mins", 3), floats(src, meta, "scales", "maxs", 3)
    cmin, cmax = floats(src, meta, "sh0", "mins", 4), floats(src, meta, "sh0", "maxs", 4)
    shn = meta.get("shN")
    k = _sh_k(src, shn) if shn is not None else 0
    means = decode_means(src, meta, n)
    quats = decode_quats(src, meta, n)
    s8 = decode_webp(src, files(src, meta, "scales", 1)[0], n)[:n, :3].astype(np.float64)
    log_scales = smin + (smax - smin) * s8 / 255.0
    c8 = decode_webp(src, files(src, meta, "sh0", 1)[0], n)[:n].astype(np.float64)
    lin = cmin + (cmax - cmin) * c8 / 255.0
    sh = lin[:, None, :3]
    if k:
        lo, hi = _scalar(src, shn, "mins"), _scalar(src, shn, "maxs")
        f_cent, f_lab = files(src, meta, "shN", 2)
        cent = decode_webp(src, f_cent, 0, width=64 * k, max_pixels=64 * k * 1024)
        lab = decode_webp(src, f_lab, n)
        vals = decode_shn(src, n, k, cent, lab, lambda b: lo + (hi - lo) * b / 255.0)
        sh = np.concatenate([sh, vals], 1)
    try:
        return GaussianScene(means, quats, log_scales, lin[:, 3], sh)
    except ValueError as e:
        raise SceneFormatError(src.path, f"inconsistent SOG v1 data ({e})") from None
