"""The "ExGS" RenderEngine (BlendLuxCore-style split: final.py does F12 / animation)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, IntProperty, PointerProperty

from . import final, viewport


class ExgsRenderSettings(bpy.types.PropertyGroup):
    restore: BoolProperty(name="GaussPainter restore", default=False,
                          description="Restore holes of compressed scenes with GaussPainter "
                                      "(in the backend) before writing the passes")
    stable: BoolProperty(name="Stable animation", default=True,
                         description="With restore: stabilise each frame's restoration over "
                                     "the frames before it in its segment, so the animation "
                                     "flickers about as little as unrestored; a frame's result "
                                     "does not depend on how the range is split. Off: every "
                                     "frame restored on its own (faster, may flicker)")
    stable_segment: IntProperty(name="Stable segment", default=32, min=4, max=256,
                                description="Frames per stabilised run (runs start at multiples "
                                            "of this, after a quarter of it as warm-up): "
                                            "longer = fewer restarts, but the first frame of a "
                                            "render or farm chunk restores up to 1.5× this "
                                            "many more frames")
    motion_blur_samples: IntProperty(name="Motion blur samples", default=5, min=2, max=64,
                                     description="Sub-frame renders averaged over the shutter "
                                                 "when Motion Blur is on (render time × this)")
    viewport_restore: BoolProperty(name="Restore in viewport", default=False,
                                   description="Also restore viewport frames with GaussPainter "
                                               "(slower; the full-resolution step only)")


class ExgsRenderEngine(bpy.types.RenderEngine):
    bl_idname = "EXGS"
    bl_label = "ExGS"
    bl_use_preview = False
    bl_use_postprocess = True
    bl_use_eevee_viewport = True  # Material Preview shows the GN splat preview with Eevee
    bl_use_shading_nodes_custom = False

    def render(self, depsgraph):
        final.render(self, depsgraph)

    # Rendered viewport shading: real splats from the backend (engine/viewport.py)
    def view_update(self, context, depsgraph):
        viewport.view_update(self, context, depsgraph)

    def view_draw(self, context, depsgraph):
        viewport.view_draw(self, context, depsgraph)

    def __del__(self):
        try:  # never a traceback: at exit the module may be gone, the struct freed
            viewport.release(self)
        except Exception:
            pass

    def update_render_passes(self, scene=None, renderlayer=None):
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        if renderlayer.use_pass_z:
            self.register_pass(scene, renderlayer, "Depth", 1, "Z", "VALUE")
        # Alpha: the Combined pass's alpha (the Render Layers node's "Alpha" socket).
        # Registering a separate pass named "Alpha" collides with that socket (Blender 5.0
        # crashes when such a node is removed after an engine switch).


class EXGS_PT_render(bpy.types.Panel):
    bl_label = "ExGS"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    COMPAT_ENGINES = {"EXGS"}

    @classmethod
    def poll(cls, context):
        return context.engine in cls.COMPAT_ENGINES

    def draw(self, context):
        s = context.scene.exgs_render
        r = context.scene.render
        lay = self.layout
        lay.prop(s, "restore")
        row = lay.row(align=True)
        row.enabled = s.restore
        row.prop(s, "stable")
        sub = row.row(align=True)
        sub.enabled = s.restore and s.stable
        sub.prop(s, "stable_segment", text="Segment")
        lay.prop(s, "viewport_restore")
        lay.prop(r, "film_transparent", text="Transparent film (else the world colour)")
        lay.prop(r, "use_motion_blur")
        col = lay.column()
        col.enabled = r.use_motion_blur
        if hasattr(r, "motion_blur_position"):
            col.prop(r, "motion_blur_position")
        col.prop(r, "motion_blur_shutter")
        col.prop(s, "motion_blur_samples")
        lay.prop(context.view_layer, "use_pass_z", text="Depth pass")
        lay.label(text="Use the 'Standard' view transform to see the capture's own "
                               "colours", icon="INFO")


# Stock panels that make sense for this engine (output, dimensions are engine-agnostic).
_COMPAT_PANELS = ("RENDER_PT_color_management", "RENDER_PT_color_management_curves",
                  "RENDER_PT_format", "RENDER_PT_frame_range", "RENDER_PT_post_processing",
                  "VIEWLAYER_PT_layer", "DATA_PT_lens", "DATA_PT_camera", "DATA_PT_camera_display",
                  "RENDER_PT_color_management_display_settings")


def _panels():
    for name in _COMPAT_PANELS:
        p = getattr(bpy.types, name, None)
        if p is not None and hasattr(p, "COMPAT_ENGINES"):
            yield p


classes = (ExgsRenderSettings, ExgsRenderEngine, EXGS_PT_render)


def register():
    bpy.types.Scene.exgs_render = PointerProperty(type=ExgsRenderSettings)
    for p in _panels():
        p.COMPAT_ENGINES.add("EXGS")


def unregister():
    for p in _panels():
        p.COMPAT_ENGINES.discard("EXGS")
    del bpy.types.Scene.exgs_render
