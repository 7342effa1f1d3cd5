"""Gaussian splat objects: a mesh whose vertices are the means (capture frame) and whose
point attributes keep every PLY property, set and read with numpy ``foreach_set/get``.

The ``exgs_*`` custom properties (layout, count, facts) are read and written through
:class:`splat.SplatObject` only. The layout lists ``[property, numpy dtype]`` in the PLY's
order: ``x y z`` are the vertex positions, everything else a POINT attribute of that name.

Preview attributes (not written back): ``exgs_color`` (FLOAT_COLOR, scene-linear RGB from the
SH DC term, alpha = opacity) and ``exgs_radius`` (FLOAT, ≈ the largest σ).
"""

from __future__ import annotations

import bpy
import numpy as np

from . import conventions, plyio
from .splat import SplatObject
from .splat import is_splat as is_splat  # re-exported: the test every module uses

SH_C0 = 0.28209479177387814
PREVIEW_ATTRS = ("exgs_color", "exgs_radius")
_INT_KINDS = "iu"


def splat_objects(objects):
    return [o for o in objects if is_splat(o)]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def preview_colors(v: np.ndarray) -> np.ndarray:
    """[N,4] float32 scene-linear colour + opacity from the DC term (display sRGB decoded)."""
    n = len(v)
    out = np.empty((n, 4), np.float32)
    for c in range(3):
        out[:, c] = np.clip(np.asarray(v[f"f_dc_{c}"], np.float32) * SH_C0 + 0.5, 0, 1)
    out[:, :3] = conventions.srgb_to_linear(out[:, :3])
    out[:, 3] = _sigmoid(v["opacity"])
    return out


def is_int_field(dt: np.dtype) -> bool:
    """A PLY property stored as an INT attribute (signed/unsigned ≤ 32 bits except uint32)."""
    return dt.kind in _INT_KINDS and dt.itemsize <= 4 and dt.str[1:] != "u4"


def raw_radius(v: np.ndarray) -> np.ndarray:
    """[N] float32 largest σ of each Gaussian (before :func:`clip_radius`)."""
    s = np.maximum(np.maximum(np.asarray(v["scale_0"], np.float32), v["scale_1"]), v["scale_2"])
    return np.exp(s.astype(np.float32))


def clip_radius(r: np.ndarray) -> np.ndarray:
    """Radii clipped at their 99th percentile (in place when already float32)."""
    if len(r):
        np.minimum(r, np.float32(np.percentile(r, 99.0)), out=r)
    return r.astype(np.float32, copy=False)


def preview_radius(v: np.ndarray) -> np.ndarray:
    return clip_radius(raw_radius(v))


def set_active_colour(mesh) -> None:
    """Make ``exgs_color`` the mesh's active and default colour attribute."""
    for prop in ("active_color_name", "default_color_name"):
        if hasattr(mesh.attributes, prop):
            setattr(mesh.attributes, prop, "exgs_color")


def fill_mesh(mesh, v: np.ndarray, *, preview: bool = True) -> None:
    """Put a structured vertex array into an empty mesh (vertices + POINT attributes)."""
    n = len(v)
    mesh.vertices.add(n)
    xyz = np.empty((n, 3), np.float32)
    xyz[:, 0], xyz[:, 1], xyz[:, 2] = v["x"], v["y"], v["z"]
    mesh.vertices.foreach_set("co", xyz.reshape(-1))
    layout = []
    for name in v.dtype.names:
        dt = v.dtype[name]
        layout.append([name, dt.newbyteorder("<").str])
        if name in ("x", "y", "z"):
            continue
        if is_int_field(dt):
            attr = mesh.attributes.new(name, "INT", "POINT")
            attr.data.foreach_set("value", np.ascontiguousarray(v[name], np.int32))
        else:
            attr = mesh.attributes.new(name, "FLOAT", "POINT")
            attr.data.foreach_set("value", np.ascontiguousarray(v[name], np.float32))
    SplatObject(mesh).init(layout, plyio.sh_degree_of(v.dtype.names))
    if preview:
        col = mesh.attributes.new("exgs_color", "FLOAT_COLOR", "POINT")
        col.data.foreach_set("color", preview_colors(v).reshape(-1))
        rad = mesh.attributes.new("exgs_radius", "FLOAT", "POINT")
        rad.data.foreach_set("value", preview_radius(v))
        set_active_colour(mesh)
    mesh.update()


def read_struct(mesh) -> np.ndarray:
    """The mesh's Gaussians as a structured little-endian array in the original PLY layout."""
    layout = SplatObject(mesh).layout
    n = len(mesh.vertices)
    dtype = np.dtype([(name, dt) for name, dt in layout])
    out = np.empty(n, dtype)
    xyz = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", xyz)
    xyz = xyz.reshape(n, 3)
    for name, dt in layout:
        if name in ("x", "y", "z"):
            out[name] = xyz[:, "xyz".index(name)]
            continue
        attr = mesh.attributes.get(name)
        if attr is None or attr.domain != "POINT":
            raise ValueError(f"mesh {mesh.name!r} lost its Gaussian attribute {name!r}")
        if attr.data_type == "INT":
            buf = np.empty(n, np.int32)
        else:
            buf = np.empty(n, np.float32)
        attr.data.foreach_get("value", buf)
        out[name] = buf
    return out


def object_stats(obj) -> dict:
    """See :meth:`splat.SplatObject.summary`."""
    return SplatObject(obj).summary()


def new_mesh(name: str, v: np.ndarray, *, preview: bool = True):
    """A new mesh datablock holding the Gaussians of ``v`` (no object)."""
    mesh = bpy.data.meshes.new(name)
    fill_mesh(mesh, v, preview=preview)
    return mesh


def create_object(context, name: str, v: np.ndarray, *, axis: str = "Y_DOWN",
                  preview: bool = True, collection=None, mesh=None):
    """A new splat object linked to ``collection`` (default: the active collection);
    ``mesh``: an already filled mesh (see :func:`new_mesh`)."""
    from mathutils import Matrix

    mesh = mesh if mesh is not None else new_mesh(name, v, preview=preview)
    obj = bpy.data.objects.new(name, mesh)
    obj.matrix_world = Matrix(conventions.axis_matrix(axis).tolist())
    SplatObject(obj).axis = axis
    (collection or context.collection).objects.link(obj)
    if preview:
        from . import preview as pv
        pv.add_preview(obj)
    return obj
