"""Sidebar panel: backend status, scene stats, Compress, export, render camera path."""

from __future__ import annotations

import bpy

from .. import backend, gaussians
from ..splat import SplatObject


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return str(n)


def _progressive_rows(box, obj, st) -> None:
    """Loaded / total of a preview object, the loader's progress or error, its buttons."""
    from .. import progressive
    box.label(text=f"preview: {st['count']:,} of {st['full_count']:,} loaded "
                   f"({100.0 * st['count'] / st['full_count']:.0f} %); renders use all",
              icon="TIME")
    ld = progressive.loader_for(obj)
    if ld is not None and ld.active:
        row = box.row(align=True)
        row.label(text=f"loading full resolution: {100 * ld.progress:.0f} %")
        row.operator("exgs.cancel_load", text="", icon="CANCEL")
        return
    if ld is not None and ld.state == "failed":
        box.label(text=ld.error, icon="ERROR")
    box.operator("exgs.load_full", icon="IMPORT")


class EXGS_PT_sidebar(bpy.types.Panel):
    bl_label = "ExGS"
    bl_idname = "EXGS_PT_sidebar"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ExGS"

    def draw(self, context):
        from ..operators.backend_ops import STATUS
        lay = self.layout
        box = lay.box()
        box.label(text="Backend", icon="NETWORK_DRIVE")
        srv = backend.local_server()
        running = srv is not None and srv.alive
        box.label(text=STATUS["text"] if not running else f"local: {srv.url}",
                  icon="CHECKMARK" if STATUS["ok"] else "QUESTION")
        row = box.row(align=True)
        row.operator("exgs.backend_start", text="Connect", icon="PLAY")
        row.operator("exgs.backend_stop", text="Stop", icon="PAUSE")

        obj = context.active_object
        lay.operator("exgs.import_splats", icon="IMPORT")
        if gaussians.is_splat(obj):
            st = gaussians.object_stats(obj)
            box = lay.box()
            box.label(text=obj.name, icon="POINTCLOUD_DATA")
            box.label(text=f"{st['count']:,} Gaussians, SH degree {st['sh_degree']}")
            if st["full_count"]:
                _progressive_rows(box, obj, st)
            if st["source_bytes"]:
                box.label(text=f"on disk: {_human(st['source_bytes'])} ({st['format']})")
            if st["ratio"]:
                box.label(text=f"ratio: {st['ratio']:.1f}×")
            tools = context.scene.exgs_tools
            box = lay.box()
            box.label(text="Compress (UGC)", icon="MOD_DECIM")
            box.prop(tools, "mode", expand=True)
            box.prop(tools, "ratio" if tools.mode == "RATIO" else "keep", slider=True)
            box.prop(tools, "sh_degree")
            row = box.row(align=True)
            row.prop(tools, "refine")
            sub = row.row(align=True)
            sub.enabled = tools.refine
            sub.prop(tools, "refine_seconds", text="")
            row = box.row(align=True)
            row.prop(tools, "adapt")
            sub = row.row(align=True)
            sub.enabled = tools.adapt
            sub.prop(tools, "adapt_seconds", text="")
            row = box.row()
            row.enabled = context.scene.camera is not None
            row.prop(tools, "fit_shot")
            box.prop(tools, "result", text="")
            box.operator("exgs.compress", icon="PLAY")
            if SplatObject(obj).compressed_from:
                box.operator("exgs.restore_original", icon="LOOP_BACK")
            lay.operator("exgs.export_splats", icon="EXPORT")
        total = sum(SplatObject(o).count for o in context.scene.objects
                    if gaussians.is_splat(o) and not o.hide_render)
        lay.label(text=f"Scene: {total:,} Gaussians to render")
        lay.operator("exgs.render_camera_path", icon="RENDER_ANIMATION")


classes = (EXGS_PT_sidebar,)
