"""Compress the active splat object in the backend (UGC) as a modal operator: progress in the
status bar, Esc cancels. Produces a new object "<name> (ExGS)" from the compressed scene; the
original is kept (hidden in viewport and render)."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty

from .. import backend, errors, gaussians, paths, plyio, render_core
from ..splat import SplatObject


def _compress_job(ply, digest, ratio, keep, sh_degree, out_exgs, adapt=None):
    def run(progress, cancel):
        data, stats, _sid = backend.compress(ply, digest, ratio=ratio, keep=keep,
                                             sh_degree=sh_degree, adapt=adapt,
                                             progress=progress, cancel=cancel)
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
    bl_options = {"REGISTER"}

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

    _timer = None
    _worker = None

    @classmethod
    def poll(cls, context):
        return gaussians.is_splat(context.active_object)

    def invoke(self, context, event):
        s = context.scene.exgs_tools
        self.mode, self.ratio, self.keep, self.sh_degree = s.mode, s.ratio, s.keep, s.sh_degree
        self.adapt, self.adapt_seconds = s.adapt, s.adapt_seconds
        return self.execute(context)

    def execute(self, context):
        obj = context.active_object
        self._src_name = obj.name
        ply, digest, _n = render_core.export_mesh_ply(obj.data)
        backend.prime()
        ratio = self.ratio if self.mode == "RATIO" else None
        keep = self.keep / 100.0 if self.mode == "KEEP" else None
        adapt = float(self.adapt_seconds) if self.adapt else None
        tag = f"-adapt{adapt:g}" if adapt else ""
        self._exgs = os.path.join(paths.cache_dir(), f"{digest}-{self.mode}-"
                                  f"{ratio or keep:g}-sh{self.sh_degree}{tag}.exgs")
        self._worker = render_core.Worker(_compress_job(ply, digest, ratio, keep,
                                                        self.sh_degree, self._exgs, adapt))
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
        v = plyio.read_vertices(ply)
        new = gaussians.create_object(context, f"{self._src_name} (ExGS)", v,
                                      axis=SplatObject(src).axis if src else "Y_DOWN")
        if src is not None:
            new.matrix_world = src.matrix_world.copy()
            orig_bytes = SplatObject(src).original_bytes or gaussians.object_stats(src)["ply_bytes"]
            src.hide_set(True)
            src.hide_render = True
        else:
            orig_bytes = 0
        so = SplatObject(new)
        so.source, so.format = self._exgs, "exgs"
        so.source_bytes = os.path.getsize(self._exgs)
        so.original_bytes = orig_bytes
        so.compressed_from = self._src_name
        stats = dict(stats or {})
        pd = stats.pop("painter_delta", None) or {}
        so.set_stats(stats)
        extra = ""
        if pd.get("data_b64"):
            # kept in the .blend (like the Gaussians): render nodes need no other file
            so.set_painter_delta_b64(pd["data_b64"])
            extra = (f", painter delta {pd.get('form', '')} {pd.get('bytes', 0):,} bytes "
                     f"({pd.get('gain_db', 0):+.1f} dB)")
        elif pd:
            extra = ", no painter delta (did not pay)"
        context.view_layer.objects.active = new
        ratio = orig_bytes / max(1, so.source_bytes) if orig_bytes else 0
        self.report({"INFO"}, f"ExGS: {so.count:,} Gaussians kept, "
                              f"{so.source_bytes:,} bytes ({ratio:.0f}×){extra}")
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


classes = (ExgsToolSettings, EXGS_OT_compress)


def register():
    bpy.types.Scene.exgs_tools = bpy.props.PointerProperty(type=ExgsToolSettings)


def unregister():
    del bpy.types.Scene.exgs_tools
