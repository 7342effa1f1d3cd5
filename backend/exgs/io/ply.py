"""INRIA 3DGS PLY: read (binary little/big endian, ASCII) and write (binary little endian).

Layout (per vertex): ``x y z [nx ny nz] f_dc_0..2 f_rest_0..M-1 opacity scale_0..2 rot_0..3``
with M = 3·(K−1). ``f_rest`` is channel-major: ``f_rest[c·(K−1) + k]`` is coefficient k+1 of
channel c. Values are stored pre-activation (see :mod:`exgs.scene`). The SH degree is found
from the number of ``f_rest_*`` properties.

Files are parsed by plyfile (its memory map gives the layout) and converted in chunks of
:data:`CHUNK_ROWS` rows read with plain file reads (fast: ~1 s per million Gaussians; never row
by row; peak memory ≈ the scene's own arrays, 152 B per Gaussian at SH degree 2).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numba as nb
import numpy as np

from ..errors import SceneFormatError
from ..fsutil import atomic_path
from ..scene import GaussianScene, sh_degree_for_coeffs

REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
IGNORED = {"nx", "ny", "nz"}
_REST = re.compile(r"^f_rest_(\d+)$")


def _plyfile():
    import plyfile

    return plyfile


def _float_view(v: np.ndarray):
    """[N, P] float32 view of a structured vertex array whose P fields are all native
    float32 without padding (the usual binary little-endian 3DGS PLY), else None."""
    dt = v.dtype
    if dt.names is None or dt.itemsize != 4 * len(dt.names) or not v.flags.c_contiguous:
        return None
    if any(dt.fields[nm][0] != np.dtype(np.float32) for nm in dt.names):
        return None
    return np.asarray(v.view(np.float32)).reshape(len(v), len(dt.names))  # ndarray, not memmap


@nb.njit(parallel=True, cache=True)
def _gather_columns(flat, idx, out, a):
    """out[a + i, j] = flat[i, idx[j]] (a plain copy, parallel over rows)."""
    for i in nb.prange(flat.shape[0]):
        for j in range(idx.shape[0]):
            out[a + i, j] = flat[i, idx[j]]


#: rows converted at a time (bounds the transient memory of a read to a few chunk buffers)
CHUNK_ROWS = 1 << 18


def _row_chunks(path: Path, v: np.ndarray, rows: int):
    """Yield (a, b, structured rows a..b of the vertex array ``v``). When ``v`` is plyfile's
    memory map of ``path``, the rows are read with ordinary file reads instead of through
    the map, so that the pages of the whole file are never mapped into this process (its
    RSS holds the output arrays and one chunk, not the file as well)."""
    n = len(v)
    offset = getattr(v, "offset", None)
    if isinstance(v, np.memmap) and isinstance(offset, int) and n:
        with open(path, "rb") as f:
            f.seek(offset)
            first = np.fromfile(f, dtype=v.dtype, count=1)
            if len(first) == 1 and first.tobytes() == v[:1].tobytes():  # the map's layout
                f.seek(offset)
                buf = np.empty(min(rows, n), v.dtype)  # one buffer, refilled: no page faults
                raw = memoryview(buf).cast("B")
                for a in range(0, n, rows):
                    b = min(n, a + rows)
                    size = (b - a) * v.dtype.itemsize
                    if f.readinto(raw[:size]) != size:
                        raise ValueError("file shorter than its header says")
                    yield a, b, buf[:b - a]
                return
    for a in range(0, n, rows):
        yield a, min(n, a + rows), v[a:min(n, a + rows)]


def read_ply(path: str | os.PathLike, *, keep_extras: bool = True) -> GaussianScene:
    """Read an INRIA 3DGS PLY into a :class:`GaussianScene` (frame unchanged)."""
    path = Path(path)
    plyfile = _plyfile()
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SceneFormatError(path, f"cannot open: {e.strerror or e}") from None
    if size == 0:
        raise SceneFormatError(path, "empty file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"ply\n" and head[:3] != b"ply":
            raise SceneFormatError(path, "not a PLY file (missing 'ply' magic)")
        data = plyfile.PlyData.read(str(path))  # memory-maps binary files
    except SceneFormatError:
        raise
    except plyfile.PlyHeaderParseError as e:
        raise SceneFormatError(path, f"bad PLY header: {e}") from None
    except plyfile.PlyElementParseError as e:
        raise SceneFormatError(path, f"bad PLY data (truncated or wrong counts?): {e}") from None
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError,
            UnicodeDecodeError, EOFError) as e:
        raise SceneFormatError(path, f"unreadable PLY ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None

    try:
        vertex = data["vertex"]
    except KeyError:
        raise SceneFormatError(path, "no 'vertex' element") from None
    if "chunk" in [e.name for e in data.elements]:
        raise SceneFormatError(path, "this is a PlayCanvas compressed PLY; use read_scene()")
    names = [p.name for p in vertex.properties]
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise SceneFormatError(path, f"not a 3DGS PLY: missing properties {', '.join(missing)}")
    rest_idx = sorted(int(m.group(1)) for n in names if (m := _REST.match(n)))
    if rest_idx != list(range(len(rest_idx))) or len(rest_idx) % 3:
        raise SceneFormatError(path, f"f_rest_* properties are not 0..3M-1 (found {len(rest_idx)})")
    k = len(rest_idx) // 3 + 1
    try:
        sh_degree_for_coeffs(k)
    except ValueError:
        raise SceneFormatError(path, f"{len(rest_idx)} f_rest_* properties do not match an SH "
                                     f"degree 0..3 (need 0, 9, 24 or 45)") from None

    v = vertex.data
    n = len(v)
    try:
        def fill(c, a, b):  # rows a..b of the outputs from the structured chunk c
            flat = _float_view(c)
            if flat is not None:  # the usual layout: one parallel gather per output
                col = {nm: c.dtype.fields[nm][1] // 4 for nm in c.dtype.names}
                sh_cols = [col[f"f_dc_{ch}"] if j == 0 else col[f"f_rest_{ch * (k - 1) + j - 1}"]
                           for j in range(k) for ch in range(3)]
                for out, names in ((means, ["x", "y", "z"]), (quats, [f"rot_{i}" for i in range(4)]),
                                   (log_scales, [f"scale_{i}" for i in range(3)]),
                                   (opacity.reshape(n, 1), ["opacity"]),
                                   (sh.reshape(n, 3 * k), None)):
                    idx = np.array(sh_cols if names is None else [col[x] for x in names], np.int64)
                    _gather_columns(flat, idx, out, a)
                return

            def cols(names):  # [rows, len(names)] float32
                return np.stack([np.asarray(c[nm], dtype=np.float32) for nm in names], 1)

            means[a:b] = cols(["x", "y", "z"])
            sh[a:b, 0, :] = cols([f"f_dc_{i}" for i in range(3)])
            if k > 1:
                rest = cols([f"f_rest_{i}" for i in range(3 * (k - 1))])
                sh[a:b, 1:, :] = rest.reshape(b - a, 3, k - 1).transpose(0, 2, 1)
            quats[a:b] = cols([f"rot_{i}" for i in range(4)])
            log_scales[a:b] = cols([f"scale_{i}" for i in range(3)])
            opacity[a:b] = np.asarray(c["opacity"], dtype=np.float32)

        means = np.empty((n, 3), np.float32)
        quats = np.empty((n, 4), np.float32)
        log_scales = np.empty((n, 3), np.float32)
        opacity = np.empty(n, np.float32)
        sh = np.empty((n, k, 3), np.float32)
        for a, b, c in _row_chunks(path, v, CHUNK_ROWS):
            fill(c, a, b)
        scene = GaussianScene(means=means, quats=quats, log_scales=log_scales,
                              opacity_logits=opacity, sh=sh)
    except (ValueError, TypeError) as e:
        raise SceneFormatError(path, f"bad vertex data: {e}") from None

    known = set(REQUIRED) | IGNORED | {f"f_rest_{i}" for i in rest_idx}
    extra_names = [nm for nm in names if nm not in known]
    if extra_names:
        if keep_extras:
            for nm in extra_names:
                arr = np.asarray(v[nm])
                if arr.dtype.kind in "fiu":
                    scene.extras[nm] = np.ascontiguousarray(arr)
        else:
            warnings.warn(f"{path}: ignoring extra properties {', '.join(extra_names)}",
                          stacklevel=2)
    return scene.validate(path)


def write_ply(scene: GaussianScene, path: str | os.PathLike, *, with_extras: bool = True) -> None:
    """Write ``scene`` as a binary little-endian INRIA PLY, atomically."""
    plyfile = _plyfile()
    n, k = len(scene), scene.sh.shape[1]
    fields = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    fields += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    fields += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    extras = {nm: a for nm, a in scene.extras.items() if nm not in fields} if with_extras else {}
    dtype = [(f, "<f4") for f in fields] + [(nm, a.dtype.newbyteorder("<").str)
                                            for nm, a in extras.items()]
    arr = np.empty(n, dtype=dtype)
    for i, c in enumerate("xyz"):
        arr[c] = scene.means[:, i]
    for c in ("nx", "ny", "nz"):
        arr[c] = 0.0
    for i in range(3):
        arr[f"f_dc_{i}"] = scene.sh[:, 0, i]
    if k > 1:
        rest = scene.sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))
        for i in range(rest.shape[1]):
            arr[f"f_rest_{i}"] = rest[:, i]
    arr["opacity"] = scene.opacity_logits
    for i in range(3):
        arr[f"scale_{i}"] = scene.log_scales[:, i]
    for i in range(4):
        arr[f"rot_{i}"] = scene.quats[:, i]
    for nm, a in extras.items():
        arr[nm] = a
    el = plyfile.PlyElement.describe(arr, "vertex")
    with atomic_path(path) as tmp:
        plyfile.PlyData([el], text=False, byte_order="<").write(str(tmp))


def ply_size_for(n: int, sh_degree: int = 3) -> int:
    """Approximate size in bytes of an INRIA PLY with ``n`` Gaussians (header excluded):
    62 floats per Gaussian at degree 3 (248 bytes)."""
    k = (sh_degree + 1) ** 2
    return n * 4 * (3 + 3 + 3 + 3 * (k - 1) + 1 + 3 + 4)
