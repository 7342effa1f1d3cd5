"""glTF 2.0 / GLB with ``KHR_gaussian_splatting``: read (plain accessors and
``KHR_gaussian_splatting_compression_spz_2``).

Implemented from the Khronos extension texts (KHR_gaussian_splatting,
KHR_gaussian_splatting_compression_spz_2) and the glTF 2.0 specification.

A Gaussian primitive is a ``POINTS`` primitive whose ``extensions`` hold
``KHR_gaussian_splatting``. Its attributes (one element per Gaussian):

===========================================  ======  =====================================
``POSITION``                                 VEC3    centre
``KHR_gaussian_splatting:ROTATION``          VEC4    unit quaternion (x, y, z, w)
``KHR_gaussian_splatting:SCALE``             VEC3    σ per axis, linear (see below)
``KHR_gaussian_splatting:OPACITY``           SCALAR  opacity in [0, 1] (sigmoid applied)
``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` VEC3   SH coefficient (R, G, B); l = 0..3
``COLOR_0``                                  VEC4    fallback colour (used only when there is
                                                     no SH_DEGREE_0 / OPACITY)
===========================================  ======  =====================================

Component types: float, or (normalized) byte/short as the extension allows. Scale: the
ratified text and the SPZ mapping ("compute e^x") store *linear* σ; an early draft stored
log σ, so a SCALE accessor holding negative values is read as log σ (linear σ cannot be
negative). With ``KHR_gaussian_splatting_compression_spz_2`` (or the earlier
``..._compression_spz``) nested in the primitive's ``KHR_gaussian_splatting`` object, the
attributes carry no data: the Gaussians are the SPZ stream in the extension's ``bufferView``,
unpacked in glTF's Left-Up-Front frame as that extension requires (SPZ stores RUB: x and z
are negated, quaternion (w, −x, y, −z), SH multiplied by their parity under (x, z) → (−x, −z)).

Frame: glTF's world frame (right-handed, +Y up, +Z front, +X left: LUF). The nodes of the
default scene (``scene``, else the first; every root node when there is no scene) are walked
and each node's world matrix (``matrix`` or TRS, parents first) is applied to the Gaussians of
its mesh — centres, covariances and SH (:func:`exgs.transform.transform_scene`); a mesh used
by several nodes gives several copies. Files whose nodes use no Gaussian mesh are read in the
primitives' local frame. All Gaussian primitives are concatenated.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..scene import SH_C0, GaussianScene, logit
from .limits import check_declared_count
from .sog_common import inside

EXT = "KHR_gaussian_splatting"
SPZ_EXTS = ("KHR_gaussian_splatting_compression_spz_2", "KHR_gaussian_splatting_compression_spz")
MAX_JSON = 64 << 20
_COMP = {5120: ("i1", 127.0), 5121: ("u1", 255.0), 5122: ("<i2", 32767.0),
         5123: ("<u2", 65535.0), 5125: ("<u4", None), 5126: ("<f4", None)}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
#: SH parity under (x, z) → (−x, −z) (180° about y), coefficients k = 1..15
SH_FLIP_XZ = np.array([1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1], np.float32)


class _Gltf:
    """Parsed JSON and binary chunk of a .gltf/.glb file, with bounds-checked accessors."""

    def __init__(self, path: Path):
        self.path = path
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(12)
                if head[:4] == b"glTF":
                    self.json, self.bin = self._glb(f, head, size)
                else:
                    if size > MAX_JSON:
                        raise SceneFormatError(path, "glTF JSON larger than 64 MiB")
                    self.json, self.bin = self._parse_json(head + f.read()), None
        except SceneFormatError:
            raise
        except OSError as e:
            raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
        if not isinstance(self.json, dict):
            raise SceneFormatError(path, "glTF JSON must be an object")
        self.size = size
        self._buffers: dict[int, bytes] = {}

    def _parse_json(self, raw: bytes):
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise SceneFormatError(self.path, f"glTF JSON is not valid ({type(e).__name__})") from None

    def _glb(self, f, head, size):
        if len(head) < 12:
            raise SceneFormatError(self.path, "truncated GLB header")
        _, version, length = struct.unpack("<4sII", head)
        if version != 2:
            raise SceneFormatError(self.path, f"unsupported GLB version {version}")
        if length > size:
            raise SceneFormatError(self.path, f"truncated GLB: header says {length} bytes, "
                                              f"the file has {size}")
        doc, binary, off = None, None, 12
        while off + 8 <= length:
            clen, ctype = struct.unpack("<II", f.read(8))
            if off + 8 + clen > length:
                raise SceneFormatError(self.path, "GLB chunk extends past the end")
            if ctype == 0x4E4F534A and doc is None:
                if clen > MAX_JSON:
                    raise SceneFormatError(self.path, "GLB JSON chunk larger than 64 MiB")
                doc = self._parse_json(f.read(clen))
            elif ctype == 0x004E4942 and binary is None:
                binary = f.read(clen)
            else:
                f.seek(clen, 1)
            off += 8 + clen
        if doc is None:
            raise SceneFormatError(self.path, "GLB without a JSON chunk")
        return doc, binary

    def _list(self, key):
        v = self.json.get(key, [])
        if not isinstance(v, list):
            raise SceneFormatError(self.path, f"glTF: '{key}' must be a list")
        return v

    def _item(self, key, i) -> dict:
        lst = self._list(key)
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(lst) \
                or not isinstance(lst[i], dict):
            raise SceneFormatError(self.path, f"glTF: bad {key} index {i!r}")
        return lst[i]

    def buffer(self, i) -> bytes:
        if i in self._buffers:
            return self._buffers[i]
        b = self._item("buffers", i)
        uri = b.get("uri")
        if uri is None:
            if self.bin is None or i != 0:
                raise SceneFormatError(self.path, f"glTF buffer {i} has no data")
            data = self.bin
        elif not isinstance(uri, str):
            raise SceneFormatError(self.path, f"glTF buffer {i}: bad uri")
        elif uri.startswith("data:"):
            try:
                data = base64.b64decode(uri.split(",", 1)[1], validate=True)
            except (IndexError, ValueError) as e:
                raise SceneFormatError(self.path, f"glTF buffer {i}: bad data uri ({e})") from None
        else:
            from urllib.parse import unquote

            p = self.path.parent / unquote(uri)
            if not inside(self.path.parent, p) or not p.is_file():
                raise SceneFormatError(self.path, f"glTF buffer {i}: {uri!r} is missing or "
                                                  f"outside the glTF folder")
            try:
                data = p.read_bytes()
            except OSError as e:
                raise SceneFormatError(self.path, f"cannot read {uri}: {e.strerror or e}") from None
        length = b.get("byteLength")
        if not isinstance(length, int) or length > len(data):
            raise SceneFormatError(self.path, f"glTF buffer {i}: byteLength {length!r} but "
                                              f"{len(data)} bytes of data")
        self._buffers[i] = data[:length]
        return self._buffers[i]

    def view(self, i) -> tuple[bytes, int, int, int | None]:
        """(buffer bytes, offset, length, stride) of bufferView ``i``, bounds-checked."""
        v = self._item("bufferViews", i)
        data = self.buffer(v.get("buffer"))
        off, length, stride = v.get("byteOffset", 0), v.get("byteLength"), v.get("byteStride")
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                   for x in (off, length)) or off + length > len(data):
            raise SceneFormatError(self.path, f"glTF bufferView {i} lies outside its buffer")
        return data, off, length, stride

    def accessor(self, i, n=None) -> np.ndarray:
        """[count, ncomp] float64 values of accessor ``i`` (normalized types scaled)."""
        a = self._item("accessors", i)
        ctype, typ, count = a.get("componentType"), a.get("type"), a.get("count")
        if ctype not in _COMP or typ not in _NCOMP or not isinstance(count, int) or count < 0:
            raise SceneFormatError(self.path, f"glTF accessor {i}: unsupported "
                                              f"{typ!r}/{ctype!r}")
        if n is not None and count != n:
            raise SceneFormatError(self.path, f"glTF accessor {i} has {count} elements, "
                                              f"expected {n}")
        if a.get("sparse") is not None or a.get("bufferView") is None:
            raise SceneFormatError(self.path, f"glTF accessor {i}: no bufferView (sparse or "
                                              f"extension-provided data is not supported)")
        dt, norm = _COMP[ctype]
        k = _NCOMP[typ]
        data, off, length, stride = self.view(a["bufferView"])
        esize = np.dtype(dt).itemsize * k
        stride = stride or esize
        aoff = a.get("byteOffset", 0)
        if not isinstance(stride, int) or stride < esize or not isinstance(aoff, int) or aoff < 0 \
                or (count and aoff + stride * (count - 1) + esize > length):
            raise SceneFormatError(self.path, f"glTF accessor {i} reads past its bufferView")
        if count == 0:
            return np.zeros((0, k))
        arr = np.lib.stride_tricks.as_strided(
            np.frombuffer(data, np.uint8, count=aoff + stride * (count - 1) + esize,
                          offset=off + aoff), shape=(count, esize), strides=(stride, 1))
        vals = np.ascontiguousarray(arr).view(dt).reshape(count, k).astype(np.float64)
        if a.get("normalized") and norm is not None:
            vals = vals / norm
            if dt in ("i1", "<i2"):
                vals = np.maximum(vals, -1.0)
        return vals


def _primitives(g: _Gltf) -> list[dict]:
    prims = []
    for mesh in g._list("meshes"):
        if isinstance(mesh, dict) and isinstance(mesh.get("primitives"), list):
            for p in mesh["primitives"]:
                if isinstance(p, dict) and isinstance(p.get("extensions"), dict) \
                        and EXT in p["extensions"]:
                    prims.append(p)
    if not prims:
        raise SceneFormatError(g.path, f"glTF without a {EXT} primitive (not a Gaussian scene)")
    return prims


def _spz_view(g: _Gltf, prim: dict):
    ext = prim["extensions"][EXT]
    sub = ext.get("extensions") if isinstance(ext, dict) else None
    if isinstance(sub, dict):
        for name in SPZ_EXTS:
            if isinstance(sub.get(name), dict):
                return sub[name].get("bufferView")
    return None


def _from_spz(g: _Gltf, view) -> GaussianScene:
    from .spz import decode_spz_bytes

    data, off, length, _ = g.view(view)
    s = decode_spz_bytes(bytes(data[off:off + length]), g.path, raw=True)  # RUB
    s.means[:, [0, 2]] *= -1  # RUB → LUF (glTF): 180° about y
    s.quats[:, [1, 3]] *= -1
    if s.sh.shape[1] > 1:
        s.sh[:, 1:] *= SH_FLIP_XZ[: s.sh.shape[1] - 1, None]
    return s


def _from_accessors(g: _Gltf, prim: dict) -> GaussianScene:
    att = prim.get("attributes")
    if not isinstance(att, dict) or "POSITION" not in att:
        raise SceneFormatError(g.path, "glTF Gaussian primitive without POSITION")
    pos_acc = g._item("accessors", att["POSITION"])
    n = pos_acc.get("count")
    check_declared_count(g.path, n if isinstance(n, int) else -1, g.size, "POSITION accessor")

    def get(name, k):
        if name not in att:
            return None
        v = g.accessor(att[name], n)
        if v.shape[1] != k:
            raise SceneFormatError(g.path, f"glTF {name} must have {k} components")
        return v

    means = get("POSITION", 3)
    rot = get(f"{EXT}:ROTATION", 4)
    scale = get(f"{EXT}:SCALE", 3)
    if rot is None or scale is None:
        raise SceneFormatError(g.path, f"glTF Gaussian primitive needs {EXT}:ROTATION and :SCALE")
    opacity = get(f"{EXT}:OPACITY", 1)
    dc = get(f"{EXT}:SH_DEGREE_0_COEF_0", 3)
    color = get("COLOR_0", 4) if "COLOR_0" in att and (dc is None or opacity is None) else None
    if dc is None:
        if color is None:
            raise SceneFormatError(g.path, "glTF Gaussian primitive without SH_DEGREE_0 or COLOR_0")
        dc = (color[:, :3] - 0.5) / SH_C0
    if opacity is None:
        opacity = color[:, 3:4] if color is not None else np.ones((n, 1))
    sh = [dc[:, None, :]]
    for deg in (1, 2, 3):
        names = [f"{EXT}:SH_DEGREE_{deg}_COEF_{i}" for i in range(2 * deg + 1)]
        if not all(nm in att for nm in names):
            break
        sh.extend(get(nm, 3)[:, None, :] for nm in names)
    if (scale < 0).any():  # an early draft stored log σ
        log_scales = scale
    else:
        with np.errstate(divide="ignore"):
            log_scales = np.log(np.maximum(scale, 1e-30))
    return GaussianScene(means, rot[:, [3, 0, 1, 2]], log_scales,
                         logit(np.clip(opacity[:, 0], 0.0, 1.0), eps=1e-6), np.concatenate(sh, 1))


def _read_primitive(g: _Gltf, prim: dict) -> GaussianScene:
    view = _spz_view(g, prim)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            return _from_spz(g, view) if view is not None else _from_accessors(g, prim)
    except ValueError as e:
        raise SceneFormatError(g.path, f"inconsistent glTF Gaussian data ({e})") from None


def read_gltf(path: str | os.PathLike) -> GaussianScene:
    """Read the Gaussian primitive(s) of a .glb/.gltf file in glTF's world frame (LUF, +Y
    up): node transforms applied (see module doc)."""
    from ..transform import transform_scene

    path = Path(path)
    g = _Gltf(path)
    _primitives(g)  # refuses files without Gaussian primitives
    parts, by_mesh = [], {}
    for mesh, world in _mesh_instances(g):
        if mesh not in by_mesh:
            by_mesh[mesh] = [_read_primitive(g, p) for p in _mesh_primitives(g, mesh)]
        for part in by_mesh[mesh]:
            if world is None or np.array_equal(world, np.eye(4)):
                parts.append(part)
                continue
            try:
                parts.append(transform_scene(part, world))
            except ValueError as e:
                raise SceneFormatError(path, f"glTF node transform: {e}") from None
    deg = min(p.sh_degree for p in parts)
    parts = [p.with_sh_degree(deg) for p in parts]
    scene = parts[0] if len(parts) == 1 else GaussianScene(
        *(np.concatenate([getattr(p, a) for p in parts]) for a in
          ("means", "quats", "log_scales", "opacity_logits", "sh")))
    return scene.validate(path)


def read_gltf_header(path: str | os.PathLike) -> dict:
    """Summary from the JSON only: gaussians (accessor counts, once per node using the mesh),
    sh_degree, spz (bool), node_matrix (4×4 row-major world matrix of the first node using a
    Gaussian mesh, or None; :func:`read_gltf` applies it)."""
    path = Path(path)
    g = _Gltf(path)
    _primitives(g)
    n, deg, spz, first = 0, 3, False, None
    for mesh, world in _mesh_instances(g):
        first = world if first is None else first
        for p in _mesh_primitives(g, mesh):
            att = p.get("attributes") if isinstance(p.get("attributes"), dict) else {}
            a = g._item("accessors", att.get("POSITION"))
            c = a.get("count")
            if not isinstance(c, int) or c < 0:
                raise SceneFormatError(path, "glTF POSITION accessor without a count")
            n += c
            spz = spz or _spz_view(g, p) is not None
            d = 0
            for deg_i in (1, 2, 3):
                if all(f"{EXT}:SH_DEGREE_{deg_i}_COEF_{i}" in att for i in range(2 * deg_i + 1)):
                    d = deg_i
            deg = min(deg, d)
    check_declared_count(path, n, g.size, "glTF POSITION count")
    return {"gaussians": n, "sh_degree": deg, "spz": spz,
            "node_matrix": None if first is None else first.tolist()}


def _mesh_primitives(g: _Gltf, mesh: int) -> list[dict]:
    m = g._item("meshes", mesh)
    prims = m.get("primitives") if isinstance(m.get("primitives"), list) else []
    return [p for p in prims if isinstance(p, dict) and isinstance(p.get("extensions"), dict)
            and EXT in p["extensions"]]


def _local_matrix(g: _Gltf, node: dict) -> np.ndarray:
    """[4,4] local transform of a node: ``matrix`` (column-major) or T·R·S."""
    try:
        if "matrix" in node:
            m = np.asarray(node["matrix"], np.float64)
            if m.shape != (16,):
                raise ValueError
            return m.reshape(4, 4).T
        t = np.asarray(node.get("translation", [0, 0, 0]), np.float64).reshape(3)
        x, y, z, w = np.asarray(node.get("rotation", [0, 0, 0, 1]), np.float64).reshape(4)
        sc = np.asarray(node.get("scale", [1, 1, 1]), np.float64).reshape(3)
    except (TypeError, ValueError):
        raise SceneFormatError(g.path, "glTF node with a malformed matrix/translation/"
                                       "rotation/scale") from None
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * sc[None, :]
    m[:3, 3] = t
    if not np.isfinite(m).all():
        raise SceneFormatError(g.path, "glTF node transform is not finite")
    return m


def _mesh_instances(g: _Gltf) -> list[tuple[int, np.ndarray | None]]:
    """(mesh index, world matrix) of every node of the default scene that uses a mesh with
    Gaussian primitives, parents first; [(mesh, None) for each Gaussian mesh] when no node
    uses one (primitives read in their local frame)."""
    nodes = g._list("nodes")
    scenes = g._list("scenes")
    idx = g.json.get("scene", 0)
    if scenes and isinstance(idx, int) and 0 <= idx < len(scenes) \
            and isinstance(scenes[idx], dict):
        roots = scenes[idx].get("nodes", [])
    else:
        children = {c for nd in nodes if isinstance(nd, dict)
                    for c in nd.get("children", []) if isinstance(c, int)}
        roots = [i for i in range(len(nodes)) if i not in children]
    out, stack, seen = [], [(r, np.eye(4)) for r in reversed(roots)], 0
    while stack:
        i, parent = stack.pop()
        seen += 1
        if seen > 4 * len(nodes) + 16:
            raise SceneFormatError(g.path, "glTF node hierarchy has a cycle")
        node = g._item("nodes", i)
        world = parent @ _local_matrix(g, node)
        mesh = node.get("mesh")
        if mesh is not None and _mesh_primitives(g, mesh):
            out.append((mesh, world))
        kids = node.get("children", [])
        stack.extend((c, world) for c in reversed(kids if isinstance(kids, list) else []))
    if not out:
        out = [(m, None) for m in range(len(g._list("meshes"))) if _mesh_primitives(g, m)]
    return out
