"""PlayCanvas SOG v2 writer: a bundled ``.sog`` zip or a folder of meta.json + lossless WebP.

The layout is described in :mod:`exgs.io.sog`. This is a small reference encoder:
quantile-initialised 1-D k-means codebooks (256 entries) for log-scales, DC colour and the SH
palette values, plain k-means for the SH palette (up to 64k entries), optional Morton order
(``sort=True``: Gaussians are reordered along a 3-D Z-curve, which makes the WebP images
smaller; ``exgs convert`` uses it). Frame: the scene's own (SOG stores the PLY frame).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..fsutil import _umask, atomic_path
from ..scene import GaussianScene, sigmoid
from .sog_common import MAX_SIDE, SH_COEFFS as _SH_COEFFS, texture_size


def morton_order(means: np.ndarray, bits: int = 10) -> np.ndarray:
    """Permutation sorting [N,3] points along a Z-order (Morton) curve of ``bits`` per axis."""
    n = len(means)
    if n == 0:
        return np.zeros(0, np.int64)
    lo, hi = means.min(0), means.max(0)
    q = ((means - lo) / np.where(hi > lo, hi - lo, 1.0) * ((1 << bits) - 1)).astype(np.uint64)
    code = np.zeros(n, np.uint64)
    for b in range(bits):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(b)) & np.uint64(1)) << np.uint64(3 * b + axis)
    return np.argsort(code, kind="stable")



def _encode_webp(rgba: np.ndarray, w: int, h: int) -> bytes:
    from PIL import Image

    img = np.zeros((h * w, 4), np.uint8)
    img[: len(rgba)] = rgba
    buf = io.BytesIO()
    Image.fromarray(img.reshape(h, w, 4), "RGBA").save(
        buf, format="WEBP", lossless=True, quality=100, method=4, exact=True)
    return buf.getvalue()


def _codebook(values: np.ndarray, size: int = 256, iters: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """1-D codebook (sorted, ``size`` entries) and uint8 labels for ``values`` (any shape):
    quantile initialisation refined by a few Lloyd iterations."""
    v = values.reshape(-1).astype(np.float64)
    if v.size == 0:
        return np.zeros(size), np.zeros(values.shape, np.uint8)
    cb = np.quantile(v, np.linspace(0.0, 1.0, size))  # extremes included: tails stay exact
    for _ in range(iters):
        cb = np.unique(cb)
        edges = (cb[1:] + cb[:-1]) / 2
        lab = np.searchsorted(edges, v)
        sums = np.bincount(lab, v, len(cb))
        cnt = np.bincount(lab, minlength=len(cb))
        cb = np.where(cnt > 0, sums / np.maximum(cnt, 1), cb)
        cb.sort()
    cb = np.unique(cb)
    cb = np.concatenate([cb, np.full(size - len(cb), cb[-1])])
    edges = (cb[1:] + cb[:-1]) / 2
    lab = np.clip(np.searchsorted(edges, v), 0, size - 1)
    return cb, lab.reshape(values.shape).astype(np.uint8)


def _kmeans(x: np.ndarray, k: int, iters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means (Lloyd) on rows of ``x`` [N,D] → (centroids [k',D], labels [N]), k' ≤ k.
    Distance blocks hold at most 2^24 entries (64 MB). Large problems (N·k > 2^28) are
    clustered in two levels — √k coarse clusters, then each split in proportion to its size —
    which costs ≈ N·2√k instead of N·k per iteration."""
    n = len(x)
    k = max(1, min(k, n))
    if n * k > 1 << 28 and k > 64:
        return _kmeans_two_level(x, k, iters, seed)
    return _lloyd(x, k, iters, seed)


def _lloyd(x: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, dim = x.shape
    k = max(1, min(k, n))
    cent = x[rng.choice(n, k, replace=False)].astype(np.float32)
    lab = np.zeros(n, np.int64)
    rows = max(256, (1 << 24) // k)
    for _ in range(iters + 1):
        c2 = (cent * cent).sum(1)
        for s in range(0, n, rows):  # blocks keep the distance matrix small
            lab[s:s + rows] = np.argmin(c2[None, :] - 2.0 * x[s:s + rows] @ cent.T, axis=1)
        cnt = np.bincount(lab, minlength=k)
        sums = np.stack([np.bincount(lab, x[:, d], k) for d in range(dim)], 1)
        cent = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], cent
                        ).astype(np.float32)
    return cent, lab


def _kmeans_two_level(x, k, iters, seed):
    n = len(x)
    k1 = int(math.ceil(math.sqrt(k)))
    coarse_cent, coarse = _lloyd(x, k1, iters, seed)
    order = np.argsort(coarse, kind="stable")
    sizes = np.bincount(coarse, minlength=len(coarse_cent))
    share = np.maximum(1, np.floor(sizes / n * k)).astype(int)  # Σ ≤ k + k1 before the cap
    while share.sum() > k:
        share[np.argmax(share)] -= 1
    cents, labels, start, base = [], np.zeros(n, np.int64), 0, 0
    for c, size in enumerate(sizes):
        if size == 0:
            continue
        idx = order[start:start + size]
        start += size
        cc, ll = _lloyd(x[idx], int(share[c]), iters, seed + 1 + c)
        cents.append(cc)
        labels[idx] = ll + base
        base += len(cc)
    return np.concatenate(cents), labels


def encode_sog(scene: GaussianScene, *, palette: int | None = None, iters: int = 8,
               sort: bool = False) -> dict[str, bytes]:
    """Members (name → bytes) of a SOG v2 scene for ``scene``; see :func:`write_sog`.
    ``sort=True`` stores the Gaussians in Morton order (smaller files, order changed)."""
    if sort:
        scene = scene.subset(morton_order(scene.means.astype(np.float64)))
    n = len(scene)
    w, h = texture_size(n)
    if w > MAX_SIDE or h > MAX_SIDE:
        raise ValueError(f"{n} Gaussians do not fit a SOG texture")
    out: dict[str, bytes] = {}
    lt = np.sign(scene.means.astype(np.float64)) * np.log1p(np.abs(scene.means.astype(np.float64)))
    mins = lt.min(0) if n else np.zeros(3)
    maxs = lt.max(0) if n else np.zeros(3)
    span = np.where(maxs - mins > 0, maxs - mins, 1.0)
    u = np.clip(np.round((lt - mins) / span * 65535.0), 0, 65535).astype(np.uint32)
    ones = np.full((n, 1), 255, np.uint8)
    out["means_l.webp"] = _encode_webp(np.concatenate([(u & 255).astype(np.uint8), ones], 1), w, h)
    out["means_u.webp"] = _encode_webp(np.concatenate([(u >> 8).astype(np.uint8), ones], 1), w, h)

    q = scene.quats.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), 1)
    rows = np.arange(n)
    q = q * np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None] * math.sqrt(2.0)
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    abc = np.stack([q[rows, order[:, j]] for j in range(3)], 1) if n else np.zeros((0, 3))
    q8 = np.clip(np.round(255.0 * (abc * 0.5 + 0.5)), 0, 255).astype(np.uint8)
    out["quats.webp"] = _encode_webp(
        np.concatenate([q8, (252 + largest).astype(np.uint8)[:, None]], 1), w, h)

    scb, s8 = _codebook(scene.log_scales)
    out["scales.webp"] = _encode_webp(np.concatenate([s8, ones], 1), w, h)
    ccb, c8 = _codebook(scene.sh[:, 0])
    op = np.clip(np.round(sigmoid(scene.opacity_logits).astype(np.float64) * 255), 0, 255)
    out["sh0.webp"] = _encode_webp(np.concatenate([c8, op.astype(np.uint8)[:, None]], 1), w, h)
    meta = {
        "version": 2, "asset": {"generator": "exgs"}, "count": n,
        "means": {"mins": mins.tolist(), "maxs": maxs.tolist(),
                  "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": scb.tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": ccb.tolist(), "files": ["sh0.webp"]},
    }
    degree = scene.sh_degree
    if degree > 0 and n:
        k = _SH_COEFFS[degree]
        rest = scene.sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major f_rest
        if palette is None:
            palette = min(64, 2 ** max(0, int(math.floor(math.log2(max(n / 1024, 1)))))) * 1024
        cent, labels = _kmeans(rest, min(palette, n), iters)
        pcount = len(cent)
        ncb, cl = _codebook(cent)  # [P, 3k] labels
        rows_c = (pcount + 63) // 64
        tex = np.zeros((rows_c * 64 * k, 4), np.uint8)
        tex[:, 3] = 255
        idx = (np.arange(pcount)[:, None] * k + np.arange(k)[None, :]).reshape(-1)
        for c in range(3):
            tex[idx, c] = cl[:, c * k:(c + 1) * k].reshape(-1)
        out["shN_centroids.webp"] = _encode_webp(tex, 64 * k, rows_c)
        lab = np.zeros((n, 4), np.uint8)
        lab[:, 0] = labels & 255
        lab[:, 1] = labels >> 8
        lab[:, 3] = 255
        out["shN_labels.webp"] = _encode_webp(lab, w, h)
        meta["shN"] = {"count": pcount, "bands": degree, "codebook": ncb.tolist(),
                       "files": ["shN_centroids.webp", "shN_labels.webp"]}
    out["meta.json"] = json.dumps(meta).encode()
    return out


def write_sog(scene: GaussianScene, path: str | os.PathLike, **kw) -> None:
    """Write ``scene`` as SOG v2: a zip when ``path`` ends in ``.sog``, else a folder holding
    meta.json and the WebP images. Atomic: the zip through a temporary file; the folder is
    built beside ``path`` and renamed into place (members of an existing folder are replaced,
    meta.json last). A failure leaves nothing behind. Options: :func:`encode_sog`."""
    import shutil
    import tempfile

    path = Path(path)
    members = encode_sog(scene, **kw)
    if path.suffix.lower() == ".sog":
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                for name, data in members.items():
                    z.writestr(name, data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual folder mode
        for name, data in members.items():
            (tmp / name).write_bytes(data)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        if not path.exists():
            os.rename(tmp, path)
            return
        if not path.is_dir():
            raise FileExistsError(17, "exists and is not a folder", str(path))
        for name in sorted(members, key=lambda nm: nm == "meta.json"):
            os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
