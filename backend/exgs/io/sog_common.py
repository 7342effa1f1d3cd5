"""Shared parts of the SOG readers (v1, v2, streamed LOD): member access with containment
checks, bounded lossless-WebP decoding, meta.json field helpers. See :mod:`exgs.io.sog`."""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError

SH_COEFFS = {1: 3, 2: 8, 3: 15}
#: Largest image side SOG allows (WebP's limit).
MAX_SIDE = 16383
#: Largest meta.json / member accepted (bytes): a sanity cap.
MAX_META_BYTES = 64 << 20
MAX_MEMBER_BYTES = 1 << 30


def texture_size(n: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian textures for ``n`` Gaussians (SOG v2)."""
    w = max(4, int(math.ceil(math.sqrt(n) / 4)) * 4)
    h = max(4, int(math.ceil(n / w / 4)) * 4)
    return w, h


def inside(root: Path, p: Path) -> bool:
    """True if the real path of ``p`` lies inside the real path of ``root`` (symlinks
    resolved), so a member that is a link to a file elsewhere is refused (issue 19, item 6)."""
    try:
        real_root = os.path.realpath(root)
        real = os.path.realpath(p)
    except (OSError, ValueError):
        return False
    return os.path.commonpath([real_root, real]) == real_root


class Source:
    """Reads members of a SOG folder or zip by name. A folder member must resolve (symlinks
    followed) to a file inside ``root`` (the folder itself unless given)."""

    def __init__(self, path: Path, root: Path | None = None):
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
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                    RuntimeError, struct.error) as e:
                raise SceneFormatError(path, f"not a SOG zip ({e})") from None
            names = self.zip.namelist()
            metas = [nm for nm in names if nm.rsplit("/", 1)[-1] == "meta.json"]
            if not metas:
                raise SceneFormatError(path, "SOG zip without meta.json")
            self.meta_name = metas[0]
            self.prefix = metas[0][: -len("meta.json")]
        self.root = root if root is not None else getattr(self, "dir", None)

    def size(self, name: str) -> int:
        """Stored (compressed) size of a member, 0 if it is missing."""
        try:
            if self.zip is not None:
                full = name if name == self.meta_name else self.prefix + name
                return self.zip.getinfo(full).compress_size
            return (self.dir / name).stat().st_size
        except (KeyError, OSError, ValueError):
            return 0

    def read(self, name: str, limit: int) -> bytes:
        if not isinstance(name, str) or not name or "\\" in name or name.startswith("/") \
                or ".." in name.split("/") or "\x00" in name:
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
                if not inside(self.root, p):
                    raise SceneFormatError(self.path, f"{name} is a link to a file outside "
                                                      f"{self.root} (refused)")
                if not p.is_file():
                    raise FileNotFoundError(name)
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


def read_meta(src: Source) -> dict:
    """meta.json of ``src`` as a dict (one-line error otherwise)."""
    import json

    raw = src.read(src.meta_name, MAX_META_BYTES)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SceneFormatError(src.path, f"meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SceneFormatError(src.path, "meta.json must hold an object")
    return meta


def decode_webp(src: Source, name: str, min_pixels: int, width: int | None = None,
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


def floats(src, meta, key, sub, length=None) -> np.ndarray:
    """meta[key][sub] as a finite float64 vector (of ``length`` entries if given)."""
    try:
        a = np.asarray(meta[key][sub], dtype=np.float64)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise SceneFormatError(src.path, f"meta.json: bad or missing {key}.{sub}") from None
    if a.ndim != 1 or (length is not None and len(a) != length) or len(a) == 0:
        raise SceneFormatError(src.path, f"meta.json: {key}.{sub} must be a list of "
                                         f"{length or 'some'} numbers")
    if not np.isfinite(a).all():
        raise SceneFormatError(src.path, f"meta.json: {key}.{sub} holds NaN or Inf")
    return a


def files(src, meta, key, count) -> list[str]:
    """The first ``count`` names of meta[key]["files"]."""
    try:
        names = meta[key]["files"]
    except (KeyError, TypeError):
        raise SceneFormatError(src.path, f"meta.json: missing {key}.files") from None
    if not isinstance(names, list) or len(names) < count or \
            not all(isinstance(f, str) for f in names[:count]):
        raise SceneFormatError(src.path, f"meta.json: {key}.files must list {count} file(s)")
    return names[:count]


def inv_log(v: np.ndarray) -> np.ndarray:
    """Inverse of ``sign(x)·ln(1 + |x|)``."""
    return np.sign(v) * np.expm1(np.abs(v))


def lookup(src, codebook: np.ndarray, idx: np.ndarray, what: str) -> np.ndarray:
    if idx.size and int(idx.max()) >= len(codebook):
        raise SceneFormatError(src.path, f"{what} index {int(idx.max())} outside its codebook "
                                         f"of {len(codebook)}")
    return codebook[idx]


def decode_means(src, meta, n) -> np.ndarray:
    """[n,3] positions from means_l/means_u (16 bits per axis in sign-log space)."""
    mins = floats(src, meta, "means", "mins", 3)
    maxs = floats(src, meta, "means", "maxs", 3)
    f_means = files(src, meta, "means", 2)
    lo = decode_webp(src, f_means[0], n)[:n, :3].astype(np.uint32)
    hi = decode_webp(src, f_means[1], n)[:n, :3].astype(np.uint32)
    u = (lo | (hi << 8)).astype(np.float64) / 65535.0
    span = np.where(maxs - mins != 0, maxs - mins, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return inv_log(mins + span * u)


def decode_quats(src, meta, n) -> np.ndarray:
    """[n,4] (w,x,y,z) from quats.webp: RGB = the three smaller components as
    255·(c·√2/2 + 1/2), A = 252 + index of the largest (rebuilt, made positive)."""
    q8 = decode_webp(src, files(src, meta, "quats", 1)[0], n)[:n]
    tag = q8[:, 3].astype(np.int64)
    bad = tag < 252
    largest = np.where(bad, 0, tag - 252)
    abc = (q8[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    quats = np.zeros((n, 4))
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    rows = np.arange(n)
    for j in range(3):
        quats[rows, order[:, j]] = abc[:, j]
    quats[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(1)))
    quats[bad] = [1.0, 0.0, 0.0, 0.0]  # as splat-transform: an invalid tag is the identity
    return quats


def decode_shn(src, n, k, cent, lab, values, pal=None):
    """[n,k,3] SH rest from palette images: ``cent`` texels (64·k wide), ``lab`` labels (RG =
    16-bit index), ``values`` maps a centroid byte to its value (codebook or linear range)."""
    labels = lab[:n, 0].astype(np.int64) | (lab[:n, 1].astype(np.int64) << 8)
    rows_c = len(cent) // (64 * k)
    base = (labels // 64) * (64 * k) + (labels % 64) * k
    ok = labels // 64 < rows_c
    if pal is not None:
        ok &= labels < pal
    tex = np.where(ok[:, None], base[:, None] + np.arange(k)[None, :], 0)  # [n,k]
    vals = values(cent[tex][..., :3])  # [n,k,3]
    vals[~ok] = 0.0
    return vals
