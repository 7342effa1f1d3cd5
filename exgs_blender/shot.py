"""Put a compressed splat mesh into the shot without breaking it (bpy, main thread).

Two ways, both keep the original recoverable:

* :func:`mirror_object` — a new object "<name> (ExGS)" that is a copy of the original
  object (``Object.copy()``: parent and parent inverse, transform, animation data — action,
  drivers, NLA —, constraints, modifiers, custom properties, visibility flags, object-level
  material slots) with the new mesh; the mesh's materials are copied from the original
  mesh; it is linked to every collection of the original; the ExGS preview modifier is added
  anew. The original is hidden (viewport and render) and stays where it was. Objects that
  reference the original (children, constraint/driver targets) keep referencing it.
* :func:`replace_mesh` — the original object gets the new mesh (so every reference to the
  object — children, constraints, drivers, instancing — keeps working); the old mesh is kept
  with a fake user under "<mesh> (original)" and can be swapped back (:func:`restore_original`).
"""

from __future__ import annotations

import bpy

from . import preview
from .splat import SplatObject


def _copy_materials(src_mesh, dst_mesh) -> None:
    dst_mesh.materials.clear()
    for m in src_mesh.materials:
        dst_mesh.materials.append(m)


def _refresh_preview(obj) -> None:
    """Drop every copied ExGS preview modifier and add a fresh one (same point scale)."""
    scale = None
    for m in [m for m in obj.modifiers if m.type == "NODES" and m.name.startswith(preview.MODIFIER)]:
        scale = preview.point_scale(m) if scale is None else scale
        obj.modifiers.remove(m)
    preview.add_preview(obj, 1.0 if scale is None else scale)


def mirror_object(context, src, mesh, name: str):
    """A copy of ``src`` (everything but its mesh) carrying ``mesh``; ``src`` is hidden."""
    _copy_materials(src.data, mesh)
    new = src.copy()  # object only: parent, anim data, constraints, modifiers, props, flags
    new.name = name
    new.data = mesh
    for col in src.users_collection:
        col.objects.link(new)
    if not src.users_collection:  # an object in no collection: put it where the user works
        context.collection.objects.link(new)
    _refresh_preview(new)
    try:
        new.hide_set(src.hide_get())
        src.hide_set(True)
    except RuntimeError:  # not in the current view layer
        pass
    src.hide_render = True
    return new


def replace_mesh(src, mesh):
    """Give ``src`` the new ``mesh``; the old one is kept (fake user) and returned."""
    old = src.data
    _copy_materials(old, mesh)
    old.use_fake_user = True
    old_name = old.name
    old.name = f"{old_name} (original)"
    mesh.name = old_name
    SplatObject(mesh).original_mesh = old.name
    src.data = mesh
    _refresh_preview(src)
    return old


def restore_original(context, obj) -> str:
    """Undo a compression outside the undo history: swap the original mesh back (replace
    mode) or show the original object again and hide ``obj`` (mirror mode). Returns what was
    done (one line)."""
    so = SplatObject(obj)
    old = bpy.data.meshes.get(so.original_mesh) if so.original_mesh else None
    if old is not None:
        obj.data = old
        old.use_fake_user = False
        return f"{obj.name}: original mesh {old.name!r} restored"
    src = bpy.data.objects.get(so.compressed_from) if so.compressed_from else None
    if src is None:
        raise LookupError(f"{obj.name}: the original is gone (not compressed in this file?)")
    src.hide_render = False
    try:
        src.hide_set(False)
        obj.hide_set(True)
    except RuntimeError:
        pass
    obj.hide_render = True
    return f"{src.name} shown again, {obj.name} hidden"
