"""Fill a splat mesh straight from a binary INRIA PLY on disk, a few attributes at a time, so
that importing never holds the file's data *and* the mesh (issue 18: import without doubling
memory).

The PLY is read with plain block reads (:func:`plyio.scan_blocks`, one 8 MiB buffer, no
memory map: the file's pages never count in Blender's resident memory). Each *step* reads the
whole vertex block once and gathers a group of columns into contiguous arrays, hands them to
``foreach_set`` and frees them; a group holds at most :func:`group_budget` bytes of columns
(≥ 256 MiB, ≥ 1/8 of the mesh), so the peak is the mesh + that budget + the buffer. The result
equals :func:`gaussians.fill_mesh` of the same records (same layout, attributes, preview).

:func:`fill_steps` is a generator (one step per yield) so a timer can spread a big import over
several UI ticks (:mod:`.progressive`); :func:`fill_from_file` runs it to the end.
"""

from __future__ import annotations

import numpy as np

from . import gaussians, plyio
from .splat import SplatObject

#: the smallest column budget of one step (bytes)
MIN_GROUP_BYTES = 256 << 20


def group_budget(n: int, columns: int) -> int:
    """Bytes of column buffers one step may hold for ``n`` Gaussians with ``columns``
    attributes: max(256 MiB, 1/8 of the attributes' bytes)."""
    return max(MIN_GROUP_BYTES, n * columns * 4 // 8)


def plan_groups(columns: list, n: int, budget: int | None = None) -> list[list]:
    """``columns`` split into consecutive groups of at most ``budget`` bytes (4 B per value,
    at least one column per group)."""
    budget = group_budget(n, len(columns)) if budget is None else budget
    per = max(1, budget // max(4 * n, 1))
    return [list(columns[i:i + per]) for i in range(0, len(columns), per)]


def fill_steps(mesh, path: str, *, preview: bool = True, budget: int | None = None,
               block_bytes: int = plyio.BLOCK_BYTES):
    """Fill the EMPTY ``mesh`` with the Gaussians of the INRIA PLY ``path``; yields the
    fraction done (0, 1] after each step (positions, each column group, preview colour,
    preview radius). Raises :class:`plyio.PlyError` on a bad file (the caller removes the
    half-filled mesh)."""
    _off, dtype, n = plyio.vertex_layout(path)
    names = list(dtype.names)
    cols = [c for c in names if c not in ("x", "y", "z")]
    groups = plan_groups(cols, n, budget)
    total = 1 + len(groups) + (2 if preview else 0)
    done = 0

    mesh.vertices.add(n)
    xyz = np.empty((n, 3), np.float32)

    def pos(s, b):
        k = len(b)
        xyz[s:s + k, 0], xyz[s:s + k, 1], xyz[s:s + k, 2] = b["x"], b["y"], b["z"]
    plyio.scan_blocks(path, pos, block_bytes)
    mesh.vertices.foreach_set("co", xyz.reshape(-1))
    del xyz
    done += 1
    yield done / total

    for group in groups:
        bufs = {c: np.empty(n, np.int32 if gaussians.is_int_field(dtype[c]) else np.float32)
                for c in group}

        def cp(s, b, bufs=bufs):
            k = len(b)
            for c, a in bufs.items():
                a[s:s + k] = b[c]
        plyio.scan_blocks(path, cp, block_bytes)
        for c in group:
            kind = "INT" if gaussians.is_int_field(dtype[c]) else "FLOAT"
            mesh.attributes.new(c, kind, "POINT").data.foreach_set("value", bufs.pop(c))
        done += 1
        yield done / total

    layout = [[c, dtype[c].newbyteorder("<").str] for c in names]
    SplatObject(mesh).init(layout, plyio.sh_degree_of(names))
    if preview:
        col = np.empty((n, 4), np.float32)

        def colour(s, b):
            col[s:s + len(b)] = gaussians.preview_colors(b)
        plyio.scan_blocks(path, colour, block_bytes)
        mesh.attributes.new("exgs_color", "FLOAT_COLOR", "POINT").data.foreach_set(
            "color", col.reshape(-1))
        del col
        done += 1
        yield done / total
        rad = np.empty(n, np.float32)

        def radius(s, b):
            rad[s:s + len(b)] = gaussians.raw_radius(b)
        plyio.scan_blocks(path, radius, block_bytes)
        mesh.attributes.new("exgs_radius", "FLOAT", "POINT").data.foreach_set(
            "value", gaussians.clip_radius(rad))
        del rad
        gaussians.set_active_colour(mesh)
    mesh.update()
    yield 1.0


def fill_from_file(mesh, path: str, **kw) -> int:
    """Run :func:`fill_steps` to the end → number of Gaussians."""
    for _ in fill_steps(mesh, path, **kw):
        pass
    return len(mesh.vertices)


def new_mesh_from_file(name: str, path: str, **kw):
    """A new mesh datablock filled from ``path``; removed again if reading fails."""
    import bpy

    mesh = bpy.data.meshes.new(name)
    try:
        fill_from_file(mesh, path, **kw)
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh
