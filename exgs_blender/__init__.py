"""ExGS for Blender: import 3D Gaussian Splatting scenes, compress them (UGC) and render them
(with GaussPainter restoration) through the ExGS backend service.

The add-on uses only bpy, the standard library and Blender's bundled numpy; all Gaussian
math (camera conversion, rendering, compression) happens in the backend (`exgs serve`),
started locally or reached over the network.
"""

from __future__ import annotations

import importlib

_MODULES = ("preferences", "io_import", "engine", "operators", "ui", "cli")


def _mods():
    return [importlib.import_module(f"{__package__}.{m}") for m in _MODULES]


def register():
    import bpy

    for mod in _mods():
        for cls in getattr(mod, "classes", ()):
            bpy.utils.register_class(cls)
        if hasattr(mod, "register"):
            mod.register()


def unregister():
    import bpy

    for mod in reversed(_mods()):
        if hasattr(mod, "unregister"):
            try:
                mod.unregister()
            except Exception as e:  # keep unregistering the rest
                print(f"exgs: unregister {mod.__name__}: {e}")
        for cls in reversed(getattr(mod, "classes", ())):
            try:
                bpy.utils.unregister_class(cls)
            except RuntimeError:
                pass
