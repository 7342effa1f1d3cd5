"""Operators: backend control, compress, export, render camera path, progressive loading."""

from . import backend_ops, compress, export, load_full, render_path

_MODS = (backend_ops, compress, export, load_full, render_path)
classes = tuple(c for m in _MODS for c in m.classes)


def register():
    for m in _MODS:
        if hasattr(m, "register"):
            m.register()


def unregister():
    for m in reversed(_MODS):
        if hasattr(m, "unregister"):
            m.unregister()
