"""Gaussian splat objects: a mesh whose vertices are the means (capture frame) and whose
point attributes keep every PLY property, set and read with numpy ``foreach_set/get``.

Mesh custom properties:

* ``exgs_layout`` — JSON list of ``[property, numpy dtype]`` in the PLY's order (``x y z``
  are the vertex positions, everything else a POINT attribute of the same name),
* ``exgs_count``, ``exgs_sh_degree``, ``exgs_source``, ``exgs_source_bytes``, ``exgs_format``.

Preview attributes (not written back): ``exgs_color`` (FLOAT_COLOR, scene-linear RGB from the
SH DC term, alpha = opacity) and ``exgs_radius`` (FLOAT, ≈ the largest σ).
"""

from __future__ import annotations

import json

import bpy
import numpy as np

from . import conventions, plyio

SH_C0 = 0.28209479177387814
PREVIEW_ATTRS = ("exgs_color", "exgs_radius")
_INT_KINDS = "iu"


def is_splat(obj) -> bool:
    return obj is not None and obj.type == "MESH" and "exgs_layout" in obj.data


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


def preview_radius(v: np.ndarray) -> np.ndarray:
    s = np.maximum(np.maximum(np.asarray(v["scale_0"], np.float32), v["scale_1"]), v["scale_2"])
    r = np.exp(s.astype(np.float32))
    if len(r):
        r = np.minimum(r, np.percentile(r, 99.0))
    return r.astype(np.float32)


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
        if dt.kind in _INT_KINDS and dt.itemsize <= 4 and dt.str[1:] != "u4":
            attr = mesh.attributes.new(name, "INT", "POINT")
            attr.data.foreach_set("value", np.ascontiguousarray(v[name], np.int32))
        else:
            attr = mesh.attributes.new(name, "FLOAT", "POINT")
            attr.data.foreach_set("value", np.ascontiguousarray(v[name], np.float32))
    mesh["exgs_layout"] = json.dumps(layout)
    mesh["exgs_count"] = n
    mesh["exgs_sh_degree"] = plyio.sh_degree_of(v.dtype.names)
    if preview:
        col = mesh.attributes.new("exgs_color", "FLOAT_COLOR", "POINT")
        col.data.foreach_set("color", preview_colors(v).reshape(-1))
        rad = mesh.attributes.new("exgs_radius", "FLOAT", "POINT")
        rad.data.foreach_set("value", preview_radius(v))
        for prop in ("active_color_name", "default_color_name"):
            if hasattr(mesh.attributes, prop):
                setattr(mesh.attributes, prop, "exgs_color")
    mesh.update()


def read_struct(mesh) -> np.ndarray:
    """The mesh's Gaussians as a structured little-endian array in the original PLY layout."""
    layout = json.loads(mesh["exgs_layout"])
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
    me = obj.data
    n = len(me.vertices)
    layout = json.loads(me["exgs_layout"])
    raw = n * sum(np.dtype(dt).itemsize for _, dt in layout)
    src = int(me.get("exgs_source_bytes", 0) or 0)
    orig = int(me.get("exgs_original_bytes", 0) or 0)
    return {"count": n, "sh_degree": int(me.get("exgs_sh_degree", 0)), "ply_bytes": raw,
            "source_bytes": src, "original_bytes": orig,
            "ratio": (orig / src) if (orig and src) else None,
            "source": me.get("exgs_source", ""), "format": me.get("exgs_format", "")}


def create_object(context, name: str, v: np.ndarray, *, axis: str = "Y_DOWN",
                  preview: bool = True, collection=None):
    """A new splat object linked to ``collection`` (default: the active collection)."""
    from mathutils import Matrix

    mesh = bpy.data.meshes.new(name)
    fill_mesh(mesh, v, preview=preview)
    obj = bpy.data.objects.new(name, mesh)
    obj.matrix_world = Matrix(conventions.axis_matrix(axis).tolist())
    obj["exgs_axis"] = axis
    (collection or context.collection).objects.link(obj)
    if preview:
        from . import preview as pv
        pv.add_preview(obj)
    return obj
