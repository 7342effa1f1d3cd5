"""Progressive loading of big .exgs files (issue 18): a preview object holds the file's most
significant prefix (``SplatObject.full_count`` = the file's count); a :class:`Loader` brings
in the full resolution without freezing the UI:

1. ``exgs convert FILE.exgs <cache>/convert-….ply`` runs as a child process (polled);
2. a new mesh is filled from that PLY one attribute group per step (:mod:`.meshfill`);
3. every user of the preview mesh is remapped to the full mesh (materials, facts and the
   object's modifiers, transform, parent… stay), the preview mesh is removed.

In the UI a timer (``bpy.app.timers``) advances every loader by one step per tick; in
background Blender (no event loop) :func:`load_full` runs the steps synchronously. Loaders
find their object and meshes by name at every step, so an undo or a deleted object during
loading cancels the load instead of touching freed data. Renders never depend on it: a
preview object is rendered from its source file (``render_core.gather``).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import bpy

from . import backend, errors, meshfill, paths, plyio
from .splat import SplatObject

#: default of the import option: .exgs files with more Gaussians are imported as a preview
PREVIEW_DEFAULT = 1_000_000
#: seconds between timer ticks while a loader runs
TICK = 0.05

LOADERS: dict = {}  # object name → Loader


class Loader:
    """Load the full resolution of preview object ``obj_name`` (see the module doc).
    ``step()`` advances one stage (never blocks on the child process); ``state`` is
    "convert", "fill", "done", "failed" or "cancelled"; ``progress`` in [0, 1]."""

    def __init__(self, obj_name: str):
        self.obj_name = obj_name
        self.state, self.progress, self.error = "convert", 0.0, ""
        obj = bpy.data.objects.get(obj_name)
        so = SplatObject(obj) if obj is not None else None
        if so is None or not so.is_preview:
            raise errors.ImportFailed(f"{obj_name}: not a preview splat object")
        self.mesh_name, self.source, self.full = obj.data.name, so.source, so.full_count
        if not os.path.isfile(self.source):
            raise errors.ImportFailed(f"{self.source}: no such file (cannot load full "
                                      f"resolution of {obj_name})")
        self.cmd, self.ply, env = backend.convert_plan(self.source)
        self._err = None
        self.proc = None
        if os.path.exists(self.ply):
            paths.touch(self.ply)
        else:
            self._err = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self._err,
                                         stdin=subprocess.DEVNULL, env=env)
        self.new_name = ""
        self._steps = None

    # ------------------------------------------------------------------ stages
    @property
    def active(self) -> bool:
        return self.state in ("convert", "fill")

    def _preview_mesh(self):
        obj = bpy.data.objects.get(self.obj_name)
        if obj is None or obj.data is None or obj.data.name != self.mesh_name:
            raise errors.Cancelled(f"{self.obj_name}: the object or its preview mesh is gone")
        return obj, obj.data

    def step(self) -> bool:
        """Advance one stage; True while there is more to do. Errors end the load
        (``state`` "failed", ``error`` one line) and leave no half-built mesh."""
        if not self.active:
            return False
        try:
            self._preview_mesh()
            if self.state == "convert":
                self._poll_convert()
            elif self.state == "fill":
                self._fill_step()
        except errors.Cancelled as e:
            self._abort("cancelled", str(e))
        except Exception as e:
            self._abort("failed", errors.describe(e))
        return self.active

    def _poll_convert(self):
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is None:
                return
            self._err.seek(0)
            text = self._err.read().decode("utf-8", "replace")
            self._err.close()
            self.proc = None
            if rc != 0 or not os.path.exists(self.ply):
                raise backend.convert_error(rc, text)
            paths.evict_converted(keep=(self.ply,))
        n = plyio.vertex_layout(self.ply)[2]
        if n != self.full:
            raise errors.ImportFailed(f"{self.source}: holds {n:,} Gaussians, the preview was "
                                      f"made from {self.full:,} (the file changed since)")
        mesh = bpy.data.meshes.new(f"{self.mesh_name}.full")
        self.new_name = mesh.name
        self._steps = meshfill.fill_steps(mesh, self.ply, preview="exgs_color"
                                          in self._preview_mesh()[1].attributes)
        self.state, self.progress = "fill", 0.05

    def _fill_step(self):
        mesh = bpy.data.meshes.get(self.new_name)
        if mesh is None:
            raise errors.Cancelled(f"{self.obj_name}: the mesh being loaded is gone")
        try:
            frac = next(self._steps)
            self.progress = 0.05 + 0.95 * frac
            return
        except StopIteration:
            pass
        _obj, old = self._preview_mesh()
        new = SplatObject(mesh)
        new.copy_facts_from(SplatObject(old))
        new.full_count = 0
        for m in old.materials:
            mesh.materials.append(m)
        name = old.name
        old.user_remap(mesh)
        bpy.data.meshes.remove(old)
        mesh.name = name
        self.new_name = mesh.name
        self.state, self.progress = "done", 1.0
        if not bpy.app.background:  # Ctrl+Z of a later action must not bring the preview back
            try:
                bpy.ops.ed.undo_push(message=f"Load full resolution of {self.obj_name}")
            except RuntimeError:
                pass

    def _abort(self, state: str, msg: str):
        self.state, self.error = state, msg
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if self._err is not None and not self._err.closed:
            self._err.close()
        self._steps = None
        mesh = bpy.data.meshes.get(self.new_name) if self.new_name else None
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)

    def cancel(self):
        if self.active:
            self._abort("cancelled", f"{self.obj_name}: loading cancelled")

    def run(self) -> None:
        """Every step until done (blocking; background Blender, tests, farms)."""
        import time
        while self.step():
            if self.state == "convert" and self.proc is not None:
                time.sleep(0.02)
        if self.state != "done":
            raise errors.ImportFailed(self.error or f"{self.obj_name}: {self.state}")


# ---------------------------------------------------------------------- entry points
def load_full(obj, *, background: bool | None = None) -> Loader:
    """Load the full resolution of the preview ``obj``: synchronously in background Blender
    (or with ``background=True``), else by a timer (returns the running Loader)."""
    bg = bpy.app.background if background is None else background
    old = LOADERS.get(obj.name)
    if old is not None and old.active:
        return old
    ld = Loader(obj.name)
    if bg:
        ld.run()
        return ld
    LOADERS[obj.name] = ld
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TICK)
    return ld


def loader_for(obj):
    """The Loader of ``obj`` (running or ended) or None."""
    return LOADERS.get(obj.name) if obj is not None else None


def _tick():
    for name, ld in list(LOADERS.items()):
        ld.step()
        if not ld.active and ld.state == "done":
            LOADERS.pop(name, None)
    _redraw()
    return TICK if any(ld.active for ld in LOADERS.values()) else None


def _redraw():
    wm = getattr(bpy.context, "window_manager", None)
    for win in getattr(wm, "windows", ()):
        for area in win.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def cancel_all(*_args) -> None:
    """Stop every loader (their child processes too); also the ``load_pre`` handler: a
    loader never outlives the file its object belongs to."""
    for ld in LOADERS.values():
        ld.cancel()
    LOADERS.clear()


def register():
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    cancel_all()
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    cancel_all()
