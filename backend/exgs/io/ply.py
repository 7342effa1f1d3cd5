"""INRIA 3DGS PLY: read (binary little/big endian, ASCII) and write (binary little endian).

Layout (per vertex): ``x y z [nx ny nz] f_dc_0..2 f_rest_0..M-1 opacity scale_0..2 rot_0..3``
with M = 3·(K−1). ``f_rest`` is channel-major: ``f_rest[c·(K−1) + k]`` is coefficient k+1 of
channel c. Values are stored pre-activation (see :mod:`exgs.scene`). The SH degree is found
from the number of ``f_rest_*`` properties.

Files are read through plyfile's memory map (fast: ~1 s per million Gaussians); never row by row.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

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
        def col(name):
            return np.asarray(v[name], dtype=np.float32)

        flat = _float_view(v)

        def cols(names):  # [n, len(names)] float32: one gather from the float view if possible
            if flat is not None:
                return flat[:, [v.dtype.fields[nm][1] // 4 for nm in names]]
            return np.stack([col(nm) for nm in names], 1)

        means = cols(["x", "y", "z"])
        dc = cols([f"f_dc_{c}" for c in range(3)])
        if k > 1:
            rest = cols([f"f_rest_{i}" for i in range(3 * (k - 1))])
            rest = rest.reshape(n, 3, k - 1).transpose(0, 2, 1)
            sh = np.concatenate([dc[:, None, :], rest], 1)
        else:
            sh = dc[:, None, :]
        scene = GaussianScene(
            means=means,
            quats=cols([f"rot_{i}" for i in range(4)]),
            log_scales=cols([f"scale_{i}" for i in range(3)]),
            opacity_logits=col("opacity"),
            sh=sh,
        )
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
