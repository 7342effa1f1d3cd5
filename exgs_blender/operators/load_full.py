"""Load Full Resolution / Cancel for preview splat objects (progressive .exgs import)."""

from __future__ import annotations

import bpy

from .. import errors, gaussians, progressive
from ..splat import SplatObject


def _preview(context):
    obj = context.active_object
    return obj if gaussians.is_splat(obj) and SplatObject(obj).is_preview else None


class EXGS_OT_load_full(bpy.types.Operator):
    """Load every Gaussian of the preview object's .exgs file (in the background in the UI;
    renders already use the whole file)"""

    bl_idname = "exgs.load_full"
    bl_label = "Load Full Resolution"

    @classmethod
    def poll(cls, context):
        obj = _preview(context)
        ld = progressive.loader_for(obj)
        return obj is not None and (ld is None or not ld.active)

    def execute(self, context):
        obj = _preview(context)
        try:
            ld = progressive.load_full(obj)
        except Exception as e:
            self.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
            return {"CANCELLED"}
        if ld.state == "done":
            self.report({"INFO"}, f"ExGS: {obj.name}: {SplatObject(obj).count:,} Gaussians")
        return {"FINISHED"}


class EXGS_OT_cancel_load(bpy.types.Operator):
    """Stop loading the full resolution (the preview stays)"""

    bl_idname = "exgs.cancel_load"
    bl_label = "Cancel Loading"

    @classmethod
    def poll(cls, context):
        ld = progressive.loader_for(context.active_object)
        return ld is not None and ld.active

    def execute(self, context):
        progressive.loader_for(context.active_object).cancel()
        return {"FINISHED"}


classes = (EXGS_OT_load_full, EXGS_OT_cancel_load)
