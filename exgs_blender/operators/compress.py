"""Compress the active splat object in the backend (UGC) as a modal operator: progress in the
status bar, Esc cancels. The result keeps the shot intact (see :mod:`..shot`): by default a
new object "<name> (ExGS)" that mirrors the original (parent, animation, constraints,
materials, collections, custom properties, visibility, modifiers; the original is hidden),
or, with *Replace mesh data*, the same object with the compressed mesh (the old mesh kept).

Undo: the operator has ``UNDO``; one undo step is pushed when it finishes, and undoing it
removes the compressed object / swaps the mesh back. The backend work (the .exgs file in the
render cache, the service's scenes) is not undone, and cancelling with Esc changes nothing
in the .blend. ``exgs.restore_original`` undoes a compression later, outside the history."""

from __future__ import annotations

import hashlib
import json
import os

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty

from .. import backend, errors, gaussians, meshfill, paths, render_core, shot
from ..errors import RenderError
from ..splat import SplatObject

FIT_SHOT_HELP = ("Also score, refine and judge GaussPainter on the scene camera's frames "
                 "(frame range, up to 16 frames): what the shot sees keeps more detail at "
                 "the same size; other views may lose a little. Off, or no scene camera: "
                 "orbits only")
RESULT_ITEMS = [("MIRROR", "New object", "A new object that mirrors the original (parent, "
                 "animation, materials, collections, properties); the original is hidden"),
                ("REPLACE", "Replace mesh data", "Give the same object the compressed mesh: every "
                 "reference from other objects and drivers keeps working; the old mesh is kept")]


def _compress_job(ply, digest, ratio, keep, sh_degree, out_exgs, adapt=None, refine=None,
                  shot=None):
    def run(progress, cancel):
        data, stats, _sid = backend.compress(ply, digest, ratio=ratio, keep=keep,
                                             sh_degree=sh_degree, adapt=adapt, refine=refine,
                                             shot=shot, progress=progress, cancel=cancel)
        if cancel.is_set():
            raise errors.Cancelled("compression cancelled")
        tmp = out_exgs + ".part"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out_exgs)
        progress(0.98, "converting for Blender")
        return stats, backend.convert_to_ply(out_exgs)
    return run


class EXGS_OT_compress(bpy.types.Operator):
    """Compress the active Gaussian splat object with UGC in the backend (Esc cancels)"""

    bl_idname = "exgs.compress"
    bl_label = "Compress"
    # UNDO without REGISTER: one undo step when it finishes, no redo panel (a redo would
    # start the backend job again from the redo panel)
    bl_options = {"UNDO"}

    mode: EnumProperty(name="Target", items=[("RATIO", "Ratio", "Target compression ratio"),
                                             ("KEEP", "Kept %", "Percentage of Gaussians kept")],
                       default="RATIO")
    ratio: FloatProperty(name="Ratio", default=100.0, min=10.0, max=1000.0,
                         description="Target size ratio original / compressed")
    keep: FloatProperty(name="Kept %", default=10.0, min=0.1, max=100.0, subtype="PERCENTAGE")
    sh_degree: IntProperty(name="SH degree", default=0, min=0, max=3)
    adapt: BoolProperty(name="Adapt to scene", default=False,
                        description="Fine-tune a small per-scene GaussPainter delta and store "
                                    "it in the file (counted in the ratio; left out when it "
                                    "does not pay)")
    adapt_seconds: FloatProperty(name="Time budget (s)", default=60.0, min=5.0, max=3600.0,
                                 description="Seconds spent adapting the painter")
    refine: BoolProperty(name="Refine", default=False,
                         description="Distil the kept Gaussians against renders of the full "
                                     "scene (sharper at the same file size; costs time, never "
                                     "bytes; kept only when held-out views improve)")
    refine_seconds: FloatProperty(name="Refine time (s)", default=60.0, min=1.0, max=3600.0,
                                  description="Wall-clock seconds spent refining")
    fit_shot: BoolProperty(name="Fit to shot", default=True, description=FIT_SHOT_HELP)
    result: EnumProperty(name="Result", items=RESULT_ITEMS, default="MIRROR")

    _timer = None
    _worker = None

    @classmethod
    def poll(cls, context):
        return gaussians.is_splat(context.active_object)

    def invoke(self, context, event):
        s = context.scene.exgs_tools
        self.mode, self.ratio, self.keep, self.sh_degree = s.mode, s.ratio, s.keep, s.sh_degree
        self.adapt, self.adapt_seconds = s.adapt, s.adapt_seconds
        self.refine, self.refine_seconds = s.refine, s.refine_seconds
        self.fit_shot = s.fit_shot
        self.result = s.result
        return self.execute(context)

    def execute(self, context):
        obj = context.active_object
        self._src_name = obj.name
        if SplatObject(obj).is_preview:
            self.report({"ERROR"}, f"ExGS: {SplatObject(obj).preview_note()}: load its full "
                                   "resolution first (ExGS sidebar)")
            return {"CANCELLED"}
        ply, digest, _n = render_core.export_mesh_ply(obj.data)
        backend.prime()
        ratio = self.ratio if self.mode == "RATIO" else None
        keep = self.keep / 100.0 if self.mode == "KEEP" else None
        adapt = float(self.adapt_seconds) if self.adapt else None
        refine = float(self.refine_seconds) if self.refine else None
        shot = self._shot(context, obj)
        tag = (f"-adapt{adapt:g}" if adapt else "") + (f"-refine{refine:g}" if refine else "")
        if shot:
            tag += "-shot" + hashlib.sha256(json.dumps(shot).encode()).hexdigest()[:10]
        self._exgs = os.path.join(paths.cache_dir(), f"{digest}-{self.mode}-"
                                  f"{ratio or keep:g}-sh{self.sh_degree}{tag}.exgs")
        self._worker = render_core.Worker(_compress_job(ply, digest, ratio, keep,
                                                        self.sh_degree, self._exgs, adapt,
                                                        refine, shot))
        wm = context.window_manager
        if bpy.app.background or context.window is None:  # background: run to completion
            try:
                self._worker.wait()
            except Exception as e:
                self.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
                return {"CANCELLED"}
            return self._make_object(context)
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def _shot(self, context, obj):
        """The scene camera's frames as request cameras (:func:`render_core.shot_cameras`),
        or None: *Fit to shot* off, or no usable scene camera (then a warning)."""
        if not self.fit_shot:
            return None
        if context.scene.camera is None:
            return None
        try:
            return render_core.shot_cameras(context.scene, obj)
        except RenderError as e:
            self.report({"WARNING"}, f"ExGS: not fitted to the shot: {e}")
            return None

    def _cleanup(self, context):
        wm = context.window_manager
        if self._timer:
            wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace:
            context.workspace.status_text_set(None)

    def modal(self, context, event):
        w = self._worker
        if event.type == "ESC":
            w.cancel.set()
            self._cleanup(context)
            self.report({"WARNING"}, "ExGS: compression cancelled")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        context.window_manager.progress_update(int(w.progress * 100))
        if context.workspace:
            context.workspace.status_text_set(f"ExGS compress {w.progress * 100:.0f}% "
                                              f"{w.message}  (Esc to cancel)")
        if not w.done:
            return {"RUNNING_MODAL"}
        self._cleanup(context)
        if w.error is not None:
            self.report({"ERROR"}, f"ExGS: {errors.describe(w.error)}")
            return {"CANCELLED"}
        return self._make_object(context)

    def _make_object(self, context):
        stats, ply = self._worker.result
        src = bpy.data.objects.get(self._src_name)
        mesh = meshfill.new_mesh_from_file(f"{self._src_name} (ExGS)", ply)
        if src is not None:
            orig_bytes = SplatObject(src).original_bytes or SplatObject(src).raw_bytes()
            if self.result == "REPLACE":
                shot.replace_mesh(src, mesh)
                new = src
            else:
                new = shot.mirror_object(context, src, mesh, f"{self._src_name} (ExGS)")
        else:  # the original was deleted while the backend worked
            orig_bytes = 0
            new = gaussians.create_object(context, f"{self._src_name} (ExGS)", None, mesh=mesh)
        extra = self._store_facts(SplatObject(mesh), stats, orig_bytes)
        for o in context.selected_objects:
            o.select_set(False)
        try:
            new.select_set(True)
        except RuntimeError:
            pass
        context.view_layer.objects.active = new
        so = SplatObject(mesh)
        ratio = orig_bytes / max(1, so.source_bytes) if orig_bytes else 0
        fitted = (stats or {}).get("shot_views")
        shot_note = f", fitted to the shot ({fitted} frames)" if fitted else ""
        self.report({"INFO"}, f"ExGS: {so.count:,} Gaussians kept, "
                              f"{so.source_bytes:,} bytes ({ratio:.0f}×){shot_note}{extra}")
        return {"FINISHED"}

    def _store_facts(self, so: SplatObject, stats, orig_bytes: int) -> str:
        so.source, so.format = self._exgs, "exgs"
        so.source_bytes = os.path.getsize(self._exgs)
        so.original_bytes = orig_bytes
        so.compressed_from = self._src_name
        stats = dict(stats or {})
        pd = stats.pop("painter_delta", None) or {}
        so.set_stats(stats)
        if pd.get("data_b64"):
            # kept in the .blend (like the Gaussians): render nodes need no other file
            so.set_painter_delta_b64(pd["data_b64"])
            if pd.get("restore") == "none":  # restoring lowered quality: renders skip it
                return ", marked: no restoration (GaussPainter lowered its quality)"
            if pd.get("restore") == "tune":  # its own gate bias / detail scale
                t = pd.get("tune") or {}
                return (f", GaussPainter setting of its own (gate bias "
                        f"{t.get('gate_bias', 0):+g}, detail {t.get('detail_scale', 0):g})")
            return (f", painter delta {pd.get('form', '')} {pd.get('bytes', 0):,} bytes "
                    f"({pd.get('gain_db', 0):+.1f} dB)")
        return ", no painter delta (did not pay)" if pd else ""


class EXGS_OT_restore_original(bpy.types.Operator):
    """Bring back the uncompressed original of the active compressed object (swap the mesh
    back, or show the original object and hide this one)"""

    bl_idname = "exgs.restore_original"
    bl_label = "Restore Original"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        ob = context.active_object
        return gaussians.is_splat(ob) and bool(SplatObject(ob).compressed_from)

    def execute(self, context):
        try:
            msg = shot.restore_original(context, context.active_object)
        except LookupError as e:
            self.report({"ERROR"}, f"ExGS: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"ExGS: {msg}")
        return {"FINISHED"}


class ExgsToolSettings(bpy.types.PropertyGroup):
    mode: EnumProperty(name="Target", items=[("RATIO", "Ratio", ""), ("KEEP", "Kept %", "")],
                       default="RATIO")
    ratio: FloatProperty(name="Ratio", default=100.0, min=10.0, max=1000.0)
    keep: FloatProperty(name="Kept %", default=10.0, min=0.1, max=100.0, subtype="PERCENTAGE")
    sh_degree: IntProperty(name="SH degree", default=0, min=0, max=3)
    adapt: BoolProperty(name="Adapt to scene", default=False,
                        description="Fine-tune a small per-scene GaussPainter delta and store "
                                    "it in the file (counted in the ratio)")
    adapt_seconds: FloatProperty(name="Time budget (s)", default=60.0, min=5.0, max=3600.0,
                                 description="Seconds spent adapting the painter")
    refine: BoolProperty(name="Refine", default=True,
                         description="Distil the kept Gaussians against renders of the full "
                                     "scene (sharper at the same file size; costs time, never "
                                     "bytes; kept only when held-out views improve)")
    refine_seconds: FloatProperty(name="Refine time (s)", default=60.0, min=1.0, max=3600.0,
                                  description="Wall-clock seconds spent refining")
    fit_shot: BoolProperty(name="Fit to shot", default=True, description=FIT_SHOT_HELP)
    result: EnumProperty(name="Result", items=RESULT_ITEMS, default="MIRROR")


classes = (ExgsToolSettings, EXGS_OT_compress, EXGS_OT_restore_original)


def register():
    bpy.types.Scene.exgs_tools = bpy.props.PointerProperty(type=ExgsToolSettings)


def unregister():
    del bpy.types.Scene.exgs_tools
