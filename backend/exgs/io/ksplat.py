"""mkkellogg GaussianSplats3D ``.ksplat``: read (compression levels 0, 1, 2; SH degree 0–2).

Implemented from the published description (mkkellogg/GaussianSplats3D, ``SplatBuffer``).

Layout (little-endian)
----------------------
Main header, 4096 bytes: u8 versionMajor (0), u8 versionMinor, 2 unused bytes, then u32
maxSectionCount @4, sectionCount @8, maxSplatCount @12, splatCount @16, u16 compressionLevel
@20, f32 sceneCenter[3] @24, f32 minSH @36, f32 maxSH @40 (0 → ∓1.5, the 8-bit SH range).

``maxSectionCount`` section headers of 1024 bytes: u32 splatCount @0, maxSplatCount @4,
bucketSize @8, bucketCount @12, f32 bucketBlockSize @16, u16 bucketStorageSizeBytes @20,
u32 compressionScaleRange @24 (0 → 32767), storageSizeBytes @28, fullBucketCount @32,
partiallyFilledBucketCount @36, u16 shDegree @40.

Section data, one after the other from ``4096 + 1024·maxSectionCount``: the lengths of the
partially filled buckets (u32 each), the bucket centres (bucketStorageSizeBytes each: f32 x,y,z),
then ``maxSplatCount`` splat records::

    level 0 (44 B + 4 B per SH value)    level 1 (24 B + 2 B)     level 2 (24 B + 1 B)
    centre  f32 ×3                       u16 ×3 (bucket-relative) u16 ×3
    scale   f32 ×3 (linear σ)            f16 ×3                   f16 ×3
    rotation f32 ×4 (w, x, y, z)         f16 ×4                   f16 ×4
    colour  u8 ×4 (display RGB, opacity) u8 ×4                    u8 ×4
    SH      f32 ×9|24                    f16 ×9|24                u8 ×9|24 over [minSH, maxSH]

Level ≥ 1 centres: ``(v − range) · (blockSize / 2 / range) + bucketCentre``; Gaussian i of a
section lies in bucket ``i // bucketSize`` among the full buckets, then in the partially filled
buckets in order. SH values: degree 1 as R(c1..c3) G(c1..c3) B(c1..c3), then degree 2 as
R(c4..c8) G(c4..c8) B(c4..c8) (channel-major per degree, as the library reads INRIA PLYs).

What the format loses: the DC colour is an 8-bit *display* colour (clamped to [0, 1]), opacity
8 bits, SH degree 3. Frame: the source's own (the library copies PLY coordinates unchanged).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..scene import SH_C0, GaussianScene, logit
from .limits import check_declared_count

HEADER = 4096
SECTION_HEADER = 1024
_BASE = {0: (12, 12, 16, 4, 4), 1: (6, 6, 8, 4, 2), 2: (6, 6, 8, 4, 1)}  # ctr, scl, rot, col, sh
_SH_VALUES = {0: 0, 1: 9, 2: 24}


def bytes_per_splat(level: int, degree: int) -> int:
    c, s, r, col, shb = _BASE[level]
    return c + s + r + col + shb * _SH_VALUES[degree]


def read_ksplat_layout(path, head: bytes, file_size: int) -> dict:
    """Parse the main and section headers from ``head`` (the first bytes of the file, at
    least 4096 + 1024·maxSectionCount) and check every size against ``file_size``.
    Returns {level, splat_count, sh_degree, sh_range, sections: [...]}; raises
    :class:`SceneFormatError` on anything inconsistent. Nothing large is allocated."""
    if len(head) < HEADER:
        raise SceneFormatError(path, f"not a .ksplat file (shorter than its {HEADER}-byte header)")
    major, minor = head[0], head[1]
    max_sec, n_sec, max_splats, n_splats = struct.unpack_from("<4I", head, 4)
    level = struct.unpack_from("<H", head, 20)[0]
    sh_min, sh_max = struct.unpack_from("<2f", head, 36)
    if major != 0 or level not in _BASE:
        raise SceneFormatError(path, f"not a .ksplat file (version {major}.{minor}, "
                                     f"compression level {level})")
    if max_sec == 0 or n_sec > max_sec or n_splats > max_splats:
        raise SceneFormatError(path, f"bad .ksplat header: {n_sec}/{max_sec} sections, "
                                     f"{n_splats}/{max_splats} Gaussians")
    data_start = HEADER + SECTION_HEADER * max_sec
    if data_start > file_size:
        raise SceneFormatError(path, f".ksplat header declares {max_sec} sections, more than "
                                     f"the file can hold")
    if len(head) < data_start:
        raise SceneFormatError(path, "section headers not read")  # caller error
    check_declared_count(path, n_splats, file_size, ".ksplat header")
    if not (np.isfinite(sh_min) and np.isfinite(sh_max)) or (sh_min == 0 and sh_max == 0):
        sh_min, sh_max = -1.5, 1.5
    sh_min = sh_min or -1.5
    sh_max = sh_max or 1.5
    sections, base, total, total_max = [], data_start, 0, 0
    for i in range(max_sec):
        o = HEADER + SECTION_HEADER * i
        cnt, mx, bsize, bcount = struct.unpack_from("<4I", head, o)
        block = struct.unpack_from("<f", head, o + 16)[0]
        bstore = struct.unpack_from("<H", head, o + 20)[0]
        srange, _storage, full, partial = struct.unpack_from("<4I", head, o + 24)
        degree = struct.unpack_from("<H", head, o + 40)[0]
        if degree not in _SH_VALUES:
            raise SceneFormatError(path, f".ksplat section {i} has SH degree {degree} (0..2)")
        if cnt > mx:
            raise SceneFormatError(path, f".ksplat section {i}: {cnt} of {mx} Gaussians")
        bps = bytes_per_splat(level, degree)
        if level == 0:
            bcount = partial = 0
            bstore = 0
        elif bstore != 12 or bsize == 0 or full + partial > bcount \
                or not np.isfinite(block) or block < 0:
            raise SceneFormatError(path, f".ksplat section {i}: bad bucket table ({bcount} "
                                         f"buckets of {bsize}, {bstore}-byte entries)")
        meta_bytes = 4 * partial
        size = meta_bytes + bstore * bcount + bps * mx
        if base + size > file_size:
            raise SceneFormatError(path, f"truncated .ksplat: section {i} ends at byte "
                                         f"{base + size}, the file has {file_size}")
        sections.append(dict(count=cnt, max=mx, bucket_size=bsize, buckets=bcount,
                             block=block, range=srange or 32767, full=full, partial=partial,
                             degree=degree, bps=bps, base=base,
                             bucket_base=base + meta_bytes, data=base + meta_bytes + bstore * bcount))
        base += size
        total += cnt
        total_max += mx
    if total != n_splats:
        if total_max == n_splats:  # a complete file whose per-section counts were not updated
            for s in sections:
                s["count"] = s["max"]
        else:
            raise SceneFormatError(path, f".ksplat sections hold {total} Gaussians, the header "
                                         f"says {n_splats}")
    degree = min((s["degree"] for s in sections if s["count"]), default=0)
    return dict(level=level, splat_count=n_splats, sh_degree=degree, sh_range=(sh_min, sh_max),
                sections=sections, data_start=data_start, version=(major, minor))


def _head(path: Path) -> tuple[bytes, int]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER)
            if len(head) == HEADER:
                max_sec = struct.unpack_from("<I", head, 4)[0]
                if HEADER + SECTION_HEADER * max_sec <= size:
                    head += f.read(SECTION_HEADER * max_sec)
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
    return head, size


def read_ksplat_header(path: str | os.PathLike) -> dict:
    """Header summary without decoding: gaussians, sh_degree, compression_level, sections."""
    path = Path(path)
    head, size = _head(path)
    lay = read_ksplat_layout(path, head, size)
    return {"gaussians": lay["splat_count"], "sh_degree": lay["sh_degree"],
            "compression_level": lay["level"], "sections": len(lay["sections"])}


def _bucket_index(s: dict, n: int, lengths: np.ndarray, path) -> np.ndarray:
    idx = np.arange(n, dtype=np.int64)
    nfull = s["full"] * s["bucket_size"]
    out = idx // s["bucket_size"]
    if n > nfull:
        ends = nfull + np.cumsum(lengths.astype(np.int64))
        if len(ends) == 0 or ends[-1] < n:
            raise SceneFormatError(path, ".ksplat bucket lengths do not cover the section")
        out[nfull:] = s["full"] + np.searchsorted(ends, idx[nfull:], side="right")
    if n and out.max() >= s["buckets"]:
        raise SceneFormatError(path, ".ksplat Gaussian outside the bucket table")
    return out


def _decode_section(buf: memoryview, s: dict, level: int, degree: int, sh_range, path):
    n = s["count"]
    rec = np.frombuffer(buf, np.uint8, count=s["bps"] * n, offset=s["data"]).reshape(n, s["bps"])
    c, sc, r, col, shb = _BASE[level]
    flt = "<f4" if level == 0 else "<f2"
    if level == 0:
        means = rec[:, :12].copy().view("<f4").astype(np.float64)
    else:
        lengths = np.frombuffer(buf, "<u4", count=s["partial"], offset=s["base"])
        centres = np.frombuffer(buf, "<f4", count=3 * s["buckets"],
                                offset=s["bucket_base"]).reshape(-1, 3).astype(np.float64)
        b = _bucket_index(s, n, lengths, path)
        v = rec[:, :6].copy().view("<u2").astype(np.float64)
        sf = s["block"] / 2.0 / s["range"]
        means = (v - s["range"]) * sf + centres[b]
    scales = rec[:, c:c + sc].copy().view(flt).astype(np.float64)
    rot = rec[:, c + sc:c + sc + r].copy().view(flt).astype(np.float64)  # w, x, y, z
    o = c + sc + r
    rgba = rec[:, o:o + col].astype(np.float32) / 255.0
    dc = (rgba[:, :3] - 0.5) / SH_C0
    sh = [dc[:, None, :]]
    if degree:
        k = _SH_VALUES[degree]
        raw = rec[:, o + col:o + col + shb * _SH_VALUES[s["degree"]]]
        if level == 2:
            vals = sh_range[0] + raw[:, :k].astype(np.float64) / 255.0 * (sh_range[1] - sh_range[0])
        else:
            vals = raw[:, :shb * k].copy().view(flt).astype(np.float64)
        d1 = vals[:, :9].reshape(n, 3, 3).transpose(0, 2, 1)  # [n, coeff, channel]
        sh.append(d1)
        if degree == 2:
            sh.append(vals[:, 9:24].reshape(n, 3, 5).transpose(0, 2, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_scales = np.log(np.maximum(scales, 1e-30))
    return GaussianScene(means, rot, log_scales, logit(rgba[:, 3], eps=1e-4),
                         np.concatenate(sh, 1))


def read_ksplat(path: str | os.PathLike) -> GaussianScene:
    """Read a ``.ksplat`` file (levels 0–2, SH degree ≤ 2) in the file's own frame."""
    path = Path(path)
    head, size = _head(path)
    lay = read_ksplat_layout(path, head, size)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
    if len(data) != size:
        raise SceneFormatError(path, "file changed while reading")
    buf = memoryview(data)
    parts = []
    for s in lay["sections"]:
        if s["count"]:
            with np.errstate(over="ignore", invalid="ignore"):
                parts.append(_decode_section(buf, s, lay["level"], lay["sh_degree"],
                                             lay["sh_range"], path))
    if not parts:
        return GaussianScene.empty(0)
    try:
        scene = GaussianScene(*(np.concatenate([getattr(p, a) for p in parts]) for a in
                                ("means", "quats", "log_scales", "opacity_logits", "sh")))
    except ValueError as e:
        raise SceneFormatError(path, f"inconsistent .ksplat data ({e})") from None
    return scene.validate(path)
