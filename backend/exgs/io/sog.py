"""PlayCanvas SOG v2 ("spatially ordered Gaussians"): read, plus a simple writer.

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

:func:`write_sog` is a small reference encoder (quantile codebooks, a few k-means iterations
for the SH palette, no Morton sort); it exists for round-trip tests and export, and is not
tuned for size like splat-transform.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..fsutil import atomic_path
from ..scene import MAX_GAUSSIANS, GaussianScene, logit, sigmoid

_SH_COEFFS = {1: 3, 2: 8, 3: 15}
#: Largest image side SOG allows (WebP's limit).
MAX_SIDE = 16383
#: Largest meta.json / member accepted (bytes): a sanity cap.
MAX_META_BYTES = 64 << 20
MAX_MEMBER_BYTES = 1 << 30


def texture_size(n: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian textures for ``n`` Gaussians."""
    w = max(4, int(math.ceil(math.sqrt(n) / 4)) * 4)
    h = max(4, int(math.ceil(n / w / 4)) * 4)
    return w, h


# ----------------------------------------------------------------------------- reading
class _Source:
    """Reads members of a SOG folder or zip by name."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = None
        if path.is_dir():
            self.dir = path
            self.meta_name = "meta.json"
        elif path.name == "meta.json" or path.suffix.lower() == ".json":
            self.dir = path.parent
            self.meta_name = path.name
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
                raise SceneFormatError(path, f"not a SOG zip ({e})") from None
            names = self.zip.namelist()
            metas = [nm for nm in names if nm.rsplit("/", 1)[-1] == "meta.json"]
            if not metas:
                raise SceneFormatError(path, "SOG zip without meta.json")
            self.meta_name = metas[0]
            self.prefix = metas[0][: -len("meta.json")]

    def read(self, name: str, limit: int) -> bytes:
        if not isinstance(name, str) or not name or "\\" in name or name.startswith("/") \
                or ".." in name.split("/"):
            raise SceneFormatError(self.path, f"bad file name in meta.json: {name!r}")
        try:
            if self.zip is not None:
                full = name if name == self.meta_name else self.prefix + name
                info = self.zip.getinfo(full)
                if info.file_size > limit:
                    raise SceneFormatError(self.path, f"{name} is too large ({info.file_size} bytes)")
                with self.zip.open(info) as f:
                    data = f.read(limit + 1)
            else:
                p = self.dir / name
                if p.stat().st_size > limit:
                    raise SceneFormatError(self.path, f"{name} is too large")
                data = p.read_bytes()
        except SceneFormatError:
            raise
        except (KeyError, FileNotFoundError):
            raise SceneFormatError(self.path, f"missing {name}") from None
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError,
                zlib.error, NotImplementedError) as e:  # zlib.error: corrupt deflate member
            raise SceneFormatError(self.path, f"cannot read {name}: {e}") from None
        if len(data) > limit:
            raise SceneFormatError(self.path, f"{name} is too large")
        return data


def _decode_webp(src: _Source, name: str, min_pixels: int, width: int | None = None,
                 max_pixels: int | None = None) -> np.ndarray:
    """[H·W, 4] uint8 RGBA texels of a lossless WebP member (at least ``min_pixels``, at most
    ``max_pixels``, default 4·max(min_pixels, 65536): a bound against decompression bombs)."""
    if max_pixels is None:
        max_pixels = 4 * max(min_pixels, 1 << 16)
    from PIL import Image

    data = src.read(name, MAX_MEMBER_BYTES)
    try:
        with Image.open(io.BytesIO(data), formats=["WEBP"]) as im:
            w, h = im.size
            if w > MAX_SIDE or h > MAX_SIDE:
                raise SceneFormatError(src.path, f"{name} is {w}x{h}, larger than WebP allows")
            if w * h < min_pixels:
                raise SceneFormatError(src.path, f"{name} has {w * h} texels, needs {min_pixels}")
            if w * h > max_pixels:
                raise SceneFormatError(src.path, f"{name} is {w}x{h}, far larger than "
                                                 f"{min_pixels} Gaussians need")
            if width is not None and w != width:
                raise SceneFormatError(src.path, f"{name} is {w} wide, expected {width}")
            rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except SceneFormatError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as e:
        raise SceneFormatError(src.path, f"cannot decode {name}: {e}") from None
    return rgba.reshape(-1, 4)


def _floats(src, meta, key, sub, length=None) -> np.ndarray:
    try:
        a = np.asarray(meta[key][sub], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise SceneFormatError(src.path, f"meta.json: bad or missing {key}.{sub}") from None
    if a.ndim != 1 or (length is not None and len(a) != length) or len(a) == 0:
        raise SceneFormatError(src.path, f"meta.json: {key}.{sub} must be a list of "
                                         f"{length or 'some'} numbers")
    if not np.isfinite(a).all():
        raise SceneFormatError(src.path, f"meta.json: {key}.{sub} holds NaN or Inf")
    return a


def _files(src, meta, key, count) -> list[str]:
    try:
        files = meta[key]["files"]
    except (KeyError, TypeError):
        raise SceneFormatError(src.path, f"meta.json: missing {key}.files") from None
    if not isinstance(files, list) or len(files) < count or \
            not all(isinstance(f, str) for f in files[:count]):
        raise SceneFormatError(src.path, f"meta.json: {key}.files must list {count} file(s)")
    return files[:count]


def _inv_log(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.expm1(np.abs(v))


def _lookup(src, codebook: np.ndarray, idx: np.ndarray, what: str) -> np.ndarray:
    if idx.size and int(idx.max()) >= len(codebook):
        raise SceneFormatError(src.path, f"{what} index {int(idx.max())} outside its codebook "
                                         f"of {len(codebook)}")
    return codebook[idx]


def read_sog(path: str | os.PathLike) -> GaussianScene:
    """Read a SOG v2 scene (folder, its meta.json, or a zipped ``.sog``) in the PLY frame."""
    path = Path(path)
    src = _Source(path)
    raw = src.read(src.meta_name, MAX_META_BYTES)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SceneFormatError(path, f"meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SceneFormatError(path, "meta.json must hold an object")
    version = meta.get("version")
    if version is None:
        raise SceneFormatError(path, "SOG v1 (meta.json without 'version') is not supported; "
                                     "re-export it as SOG v2")
    if version != 2:
        raise SceneFormatError(path, f"unsupported SOG version {version!r} (expected 2)")
    n = meta.get("count")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise SceneFormatError(path, f"meta.json: count must be a non-negative integer, got {n!r}")
    if n > MAX_GAUSSIANS:
        raise SceneFormatError(path, f"meta.json claims {n} Gaussians (limit {MAX_GAUSSIANS})")
    w, h = texture_size(n)
    if w > MAX_SIDE or h > MAX_SIDE:
        raise SceneFormatError(path, f"{n} Gaussians do not fit a SOG texture")

    mins = _floats(src, meta, "means", "mins", 3)
    maxs = _floats(src, meta, "means", "maxs", 3)
    scb = _floats(src, meta, "scales", "codebook")
    ccb = _floats(src, meta, "sh0", "codebook")
    f_means = _files(src, meta, "means", 2)
    lo = _decode_webp(src, f_means[0], n)[:n, :3].astype(np.uint32)
    hi = _decode_webp(src, f_means[1], n)[:n, :3].astype(np.uint32)
    u = (lo | (hi << 8)).astype(np.float64) / 65535.0
    span = np.where(maxs - mins != 0, maxs - mins, 1.0)
    means = _inv_log(mins + span * u)

    q8 = _decode_webp(src, _files(src, meta, "quats", 1)[0], n)[:n]
    tag = q8[:, 3].astype(np.int64)
    bad = (tag < 252)
    largest = np.where(bad, 0, tag - 252)
    abc = (q8[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    quats = np.zeros((n, 4))
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    rows = np.arange(n)
    for j in range(3):
        quats[rows, order[:, j]] = abc[:, j]
    quats[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(1)))
    quats[bad] = [1.0, 0.0, 0.0, 0.0]  # as splat-transform: an invalid tag is the identity

    s8 = _decode_webp(src, _files(src, meta, "scales", 1)[0], n)[:n, :3]
    log_scales = _lookup(src, scb, s8, "scale")
    c8 = _decode_webp(src, _files(src, meta, "sh0", 1)[0], n)[:n]
    dc = _lookup(src, ccb, c8[:, :3], "sh0")
    opacity_logits = logit(c8[:, 3].astype(np.float32) / 255.0, eps=1e-6)

    sh = dc[:, None, :]
    shn = meta.get("shN")
    if shn is not None:
        if not isinstance(shn, dict):
            raise SceneFormatError(path, "meta.json: shN must be an object")
        bands = shn.get("bands")
        if not isinstance(bands, int) or isinstance(bands, bool) or bands not in _SH_COEFFS:
            raise SceneFormatError(path, f"meta.json: shN.bands must be 1, 2 or 3, got {bands!r}")
        k = _SH_COEFFS[bands]
        pal = shn.get("count")
        if not isinstance(pal, int) or isinstance(pal, bool) or not 0 < pal <= 65536:
            raise SceneFormatError(path, f"meta.json: shN.count must be 1..65536, got {pal!r}")
        ncb = _floats(src, meta, "shN", "codebook")
        f_cent, f_lab = _files(src, meta, "shN", 2)
        cent = _decode_webp(src, f_cent, 0, width=64 * k, max_pixels=64 * k * 1024)
        lab = _decode_webp(src, f_lab, n)[:n]
        labels = lab[:, 0].astype(np.int64) | (lab[:, 1].astype(np.int64) << 8)
        rows_c = len(cent) // (64 * k)
        # texel index of (label, coefficient j) in the centroid image
        base = (labels // 64) * (64 * k) + (labels % 64) * k
        ok = (labels < pal) & (labels // 64 < rows_c)
        tex = np.where(ok[:, None], base[:, None] + np.arange(k)[None, :], 0)  # [n,k]
        vals = _lookup(src, ncb, cent[tex][..., :3], "shN")  # [n,k,3]
        vals[~ok] = 0.0
        sh = np.concatenate([sh, vals], 1)
    try:
        scene = GaussianScene(means, quats, log_scales, opacity_logits, sh)
    except ValueError as e:
        raise SceneFormatError(path, f"inconsistent SOG data ({e})") from None
    return scene.validate(path)


# ----------------------------------------------------------------------------- writing
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
    """Plain k-means (Lloyd) on rows of ``x`` [N,D] → (centroids [k,D], labels [N])."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = min(k, n)
    cent = x[rng.choice(n, k, replace=False)].astype(np.float32)
    lab = np.zeros(n, np.int64)
    for _ in range(iters + 1):
        c2 = (cent * cent).sum(1)
        for s in range(0, n, 16384):  # blocks keep the distance matrix small
            xb = x[s:s + 16384]
            lab[s:s + 16384] = np.argmin(c2[None, :] - 2.0 * xb @ cent.T, axis=1)
        sums = np.zeros_like(cent)
        np.add.at(sums, lab, x)
        cnt = np.bincount(lab, minlength=k)
        cent = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], cent)
    return cent, lab


def encode_sog(scene: GaussianScene, *, palette: int | None = None, iters: int = 8
               ) -> dict[str, bytes]:
    """Members (name → bytes) of a SOG v2 scene for ``scene``; see :func:`write_sog`."""
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
    """Write ``scene`` as SOG v2: a zip when ``path`` ends in ``.sog``, else a folder (made,
    or refilled) holding meta.json and the WebP images. Written atomically (zip) or member
    by member with meta.json last (folder)."""
    path = Path(path)
    members = encode_sog(scene, **kw)
    if path.suffix.lower() == ".sog":
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                for name, data in members.items():
                    z.writestr(name, data)
        return
    path.mkdir(parents=True, exist_ok=True)
    for name in sorted(members, key=lambda nm: nm == "meta.json"):
        with atomic_path(path / name) as tmp:
            tmp.write_bytes(members[name])
