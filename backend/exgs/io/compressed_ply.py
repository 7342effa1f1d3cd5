"""PlayCanvas / SuperSplat compressed PLY: read, plus a small writer (for tests and export).

Implemented from the published description (PlayCanvas engine / splat-transform).

Layout (binary little-endian PLY, 2 or 3 elements)
--------------------------------------------------
``element chunk C`` (C = ceil(N / 256); Gaussian i belongs to chunk i // 256), float32::

    min_x min_y min_z max_x max_y max_z                      position bounds of the chunk
    min_scale_x .. max_scale_z                               log-scale bounds
    [min_r min_g min_b max_r max_g max_b]                    colour bounds (newer files only)

``element vertex N``, uint32 each::

    packed_position  11/10/11 bits x/y/z (x in the high bits), lerp(min, max, v / (2^b − 1))
    packed_rotation  2 bits: index of the largest |component| in (rot_0..rot_3) = (w,x,y,z)
                     order, then the other three in order, 10 bits each (high bits first),
                     c = (v/1023 − 0.5) · √2; the largest is √(1 − Σc²) (non-negative)
    packed_scale     11/10/11 bits, lerp between the chunk's log-scale bounds
    packed_color     8/8/8/8 bits r,g,b,opacity (r in the high byte); colour is
                     lerp(min_c, max_c, v/255) when the chunk has colour bounds, else v/255;
                     DC = (colour − 0.5) / SH_C0; opacity is sigmoid(logit) (clamped to
                     [1e-4, 1 − 1e-4] before the logit here so it stays finite)

``element sh N`` (optional), uchar ``f_rest_0..f_rest_{M−1}``, M = 9, 24 or 45, INRIA
channel-major order; value = (n − 0.5) · 8 with n = 0 for 0, 1 for 255, else (b + 0.5)/256.

The frame is the PLY's own (RDF for INRIA captures); nothing is converted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..fsutil import atomic_path
from ..scene import SH_C0, GaussianScene, logit, sigmoid, sh_degree_for_coeffs

CHUNK = 256
CHUNK_PROPS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
               "min_scale_x", "min_scale_y", "min_scale_z",
               "max_scale_x", "max_scale_y", "max_scale_z"]
COLOR_PROPS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
VERTEX_PROPS = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]


# uchar f_rest byte → value: 0 → -4, 255 → 4, else ((b + 0.5) / 256 − 0.5) · 8
_b = np.arange(256, dtype=np.float64)
_SH_LUT = ((np.where(_b == 0, 0.0, np.where(_b == 255, 1.0, (_b + 0.5) / 256.0)) - 0.5) * 8.0
           ).astype(np.float32)


def _unorm(v: np.ndarray, bits: int) -> np.ndarray:
    return (v & ((1 << bits) - 1)).astype(np.float32) / float((1 << bits) - 1)


def _lerp(lo, hi, t):
    return lo * (1.0 - t) + hi * t


def read_compressed_ply(path: str | os.PathLike) -> GaussianScene:
    """Read a PlayCanvas compressed PLY into a :class:`GaussianScene` (frame unchanged)."""
    import plyfile

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise SceneFormatError(path, "empty file")
        data = plyfile.PlyData.read(str(path))
    except SceneFormatError:
        raise
    except plyfile.PlyHeaderParseError as e:
        raise SceneFormatError(path, f"bad PLY header: {e}") from None
    except plyfile.PlyElementParseError as e:
        raise SceneFormatError(path, f"bad PLY data (truncated or wrong counts?): {e}") from None
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError,
            UnicodeDecodeError, EOFError, AttributeError) as e:
        raise SceneFormatError(path, f"unreadable PLY ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None

    names = [e.name for e in data.elements]
    if "chunk" not in names or "vertex" not in names:
        raise SceneFormatError(path, "compressed PLY needs 'chunk' and 'vertex' elements")
    chunk, vertex = data["chunk"], data["vertex"]
    cprops = [p.name for p in chunk.properties]
    vprops = [p.name for p in vertex.properties]
    missing = [p for p in CHUNK_PROPS if p not in cprops] + [p for p in VERTEX_PROPS
                                                             if p not in vprops]
    if missing:
        raise SceneFormatError(path, f"compressed PLY lacks properties {', '.join(missing)}")
    has_color = all(p in cprops for p in COLOR_PROPS)
    n = len(vertex.data)
    c = len(chunk.data)
    if c != (n + CHUNK - 1) // CHUNK:
        raise SceneFormatError(path, f"{c} chunks for {n} Gaussians (expected "
                                     f"{(n + CHUNK - 1) // CHUNK})")
    try:
        with np.errstate(all="ignore"):  # Inf/NaN bounds are reported by validate() below
            scene = _decode(path, data, chunk, vertex, names, has_color, n)
    except SceneFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise SceneFormatError(path, f"bad compressed PLY data: {e}") from None
    return scene.validate(path)


def _decode(path, data, chunk, vertex, names, has_color, n) -> GaussianScene:
    def cget(name):
        a = np.asarray(chunk.data[name], np.float32)
        return np.repeat(a, CHUNK)[:n]

    def vget(name):
        a = np.asarray(vertex.data[name])
        if a.dtype.kind not in "ui":
            raise ValueError(f"{name} is not an integer property")
        return a.astype(np.uint32)

    pp, pr, ps, pc = (vget(p) for p in VERTEX_PROPS)
    means = np.stack([
        _lerp(cget("min_x"), cget("max_x"), _unorm(pp >> 21, 11)),
        _lerp(cget("min_y"), cget("max_y"), _unorm(pp >> 11, 10)),
        _lerp(cget("min_z"), cget("max_z"), _unorm(pp, 11))], 1)
    log_scales = np.stack([
        _lerp(cget("min_scale_x"), cget("max_scale_x"), _unorm(ps >> 21, 11)),
        _lerp(cget("min_scale_y"), cget("max_scale_y"), _unorm(ps >> 11, 10)),
        _lerp(cget("min_scale_z"), cget("max_scale_z"), _unorm(ps, 11))], 1)
    norm = np.float32(np.sqrt(2.0))
    abc = np.stack([(_unorm(pr >> s, 10) - 0.5) * norm for s in (20, 10, 0)], 1)
    m = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", abc, abc)))
    which = (pr >> 30).astype(np.int64)
    quats = np.empty((n, 4), np.float32)
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[which]
    rows = np.arange(n)
    quats[rows, which] = m
    for j in range(3):
        quats[rows, order[:, j]] = abc[:, j]
    rgb = np.stack([_unorm(pc >> s, 8) for s in (24, 16, 8)], 1)
    if has_color:
        lo = np.stack([cget(p) for p in COLOR_PROPS[:3]], 1)
        hi = np.stack([cget(p) for p in COLOR_PROPS[3:]], 1)
        rgb = _lerp(lo, hi, rgb)
    dc = (rgb - 0.5) / SH_C0
    opacity_logits = logit(_unorm(pc, 8), eps=1e-4)
    sh = dc[:, None, :]
    if "sh" in names:
        she = data["sh"]
        rest_names = [p.name for p in she.properties]
        k = len(rest_names) // 3 + 1
        if len(rest_names) % 3 or rest_names != [f"f_rest_{i}" for i in range(len(rest_names))]:
            raise SceneFormatError(path, "sh element must hold f_rest_0..f_rest_{M-1}")
        try:
            sh_degree_for_coeffs(k)
        except ValueError:
            raise SceneFormatError(path, f"{len(rest_names)} f_rest properties do not match "
                                         f"an SH degree 1..3") from None
        if len(she.data) != n:
            raise SceneFormatError(path, f"sh element has {len(she.data)} rows, vertex {n}")
        cols = [np.asarray(she.data[nm]) for nm in rest_names]
        if any(c.dtype.kind not in "ui" for c in cols):
            raise ValueError("f_rest properties of the sh element must be integers")
        out = np.empty((n, k, 3), np.float32)
        out[:, 0] = dc
        for i, c in enumerate(cols):  # f_rest_i = channel i // (k-1), coefficient i % (k-1) + 1
            out[:, i % (k - 1) + 1, i // (k - 1)] = _SH_LUT[np.clip(c, 0, 255).astype(np.uint8)]
        sh = out
    return GaussianScene(means, quats, log_scales, opacity_logits, sh)


# ----------------------------------------------------------------------------- writing
def _pack_unorm(t: np.ndarray, bits: int) -> np.ndarray:
    mx = (1 << bits) - 1
    return np.clip(np.floor(t * mx + 0.5), 0, mx).astype(np.uint32)


def _norm01(v, lo, hi):
    d = hi - lo
    return np.where(d > 0, (v - lo) / np.where(d > 0, d, 1.0), 0.0)


def write_compressed_ply(scene: GaussianScene, path: str | os.PathLike) -> None:
    """Write ``scene`` as a PlayCanvas compressed PLY (with per-chunk colour bounds), keeping
    the Gaussian order (PlayCanvas sorts into Morton order first; readers do not care)."""
    import plyfile

    n = len(scene)
    c = (n + CHUNK - 1) // CHUNK
    pad = c * CHUNK - n
    idx = np.concatenate([np.arange(n), np.full(pad, max(n - 1, 0))]).astype(np.int64)

    def chunked(a):
        return a[idx].reshape(c, CHUNK, *a.shape[1:])

    means = chunked(scene.means.astype(np.float64))
    ls = chunked(scene.log_scales.astype(np.float64))
    rgb = chunked(np.clip(scene.sh[:, 0].astype(np.float64) * SH_C0 + 0.5, 0.0, 1.0))
    ch = np.empty(c, dtype=[(p, "<f4") for p in CHUNK_PROPS + COLOR_PROPS])
    bounds = {}
    for name, arr, keys in (("pos", means, "xyz"), ("scale", ls, "xyz"), ("col", rgb, "rgb")):
        lo, hi = arr.min(1), arr.max(1)
        bounds[name] = (lo.astype(np.float32).astype(np.float64),
                        hi.astype(np.float32).astype(np.float64))
        for i, k in enumerate(keys):
            pre = "" if name == "col" else ("scale_" if name == "scale" else "")
            ch[f"min_{pre}{k}"] = lo[:, i]
            ch[f"max_{pre}{k}"] = hi[:, i]

    def pack3(arr, name):
        lo, hi = bounds[name]
        t = _norm01(arr, lo[:, None], hi[:, None]).reshape(-1, 3)[:n]
        return (_pack_unorm(t[:, 0], 11) << 21) | (_pack_unorm(t[:, 1], 10) << 11) | \
            _pack_unorm(t[:, 2], 11)

    q = scene.quats.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    which = np.argmax(np.abs(q), axis=1)
    rows = np.arange(n)
    q = q * np.where(q[rows, which] < 0, -1.0, 1.0)[:, None]
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[which]
    rot = which.astype(np.uint32) << 30
    for j, s in enumerate((20, 10, 0)):
        v = q[rows, order[:, j]] / np.sqrt(2.0) + 0.5
        rot |= _pack_unorm(v, 10) << s
    lo, hi = bounds["col"]
    t = _norm01(rgb, lo[:, None], hi[:, None]).reshape(-1, 3)[:n]
    op = sigmoid(scene.opacity_logits).astype(np.float64)
    col = (_pack_unorm(t[:, 0], 8) << 24) | (_pack_unorm(t[:, 1], 8) << 16) | \
        (_pack_unorm(t[:, 2], 8) << 8) | _pack_unorm(op, 8)
    vert = np.empty(n, dtype=[(p, "<u4") for p in VERTEX_PROPS])
    vert["packed_position"] = pack3(means, "pos")
    vert["packed_rotation"] = rot
    vert["packed_scale"] = pack3(ls, "scale")
    vert["packed_color"] = col
    elements = [plyfile.PlyElement.describe(ch, "chunk"), plyfile.PlyElement.describe(vert, "vertex")]
    k = scene.sh.shape[1]
    if k > 1:
        rest = scene.sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * (k - 1)).astype(np.float64)
        b = np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        sh = np.empty(n, dtype=[(f"f_rest_{i}", "u1") for i in range(b.shape[1])])
        for i in range(b.shape[1]):
            sh[f"f_rest_{i}"] = b[:, i]
        elements.append(plyfile.PlyElement.describe(sh, "sh"))
    with atomic_path(path) as tmp:
        plyfile.PlyData(elements, text=False, byte_order="<").write(str(tmp))
