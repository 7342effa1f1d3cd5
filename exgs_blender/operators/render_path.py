"""Render camera path: the active camera's animation (scene frame range) rendered by the
backend without blocking the UI (modal operator + timer, Esc cancels), written as an image
sequence (OpenEXR: premultiplied scene-linear RGBA, and depth in a second sequence) and wired
into the compositor (Image node, sequence), optionally Z-combined with Blender's render of
the meshes."""

from __future__ import annotations

import os
import queue

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import backend, compositor, conventions, errors, gaussians, paths, render_core


def save_exr(path: str, flat_rgba, w: int, h: int, scene=None) -> None:
    """Write a flat float32 premultiplied scene-linear RGBA buffer (Blender row order) as a
    32-bit OpenEXR, atomically. Uses ``save_render`` with the scene's image settings swapped
    to EXR for the call (``Image.save`` would re-encode the float buffer)."""
    scene = scene or bpy.context.scene
    img = bpy.data.images.new("exgs_tmp_write", w, h, alpha=True, float_buffer=True)
    st = scene.render.image_settings
    saved = (st.file_format, st.color_mode, st.color_depth)
    try:
        compositor.set_linear(img)
        img.alpha_mode = "PREMUL"
        img.pixels.foreach_set(flat_rgba)
        st.file_format = "OPEN_EXR"
        st.color_mode, st.color_depth = "RGBA", "32"
        tmp = path + ".part.exr"
        img.save_render(tmp, scene=scene)
        os.replace(tmp, path)
    finally:
        st.file_format = saved[0]
        st.color_mode, st.color_depth = saved[1], saved[2]
        bpy.data.images.remove(img)


def frame_specs(scene, depsgraph_getter, frames):
    """[(frame, camera dict, [object matrix per splat object])] — main thread."""
    got = []
    cur = scene.frame_current
    try:
        for f in frames:
            scene.frame_set(f)
            dg = depsgraph_getter()
            cam = render_core.blender_camera(scene, scene.camera.evaluated_get(dg)
                                             if scene.camera else None)
            got.append((f, cam, {name: mat for _o, name, mat in
                                 render_core.splat_instances(dg)}))
    finally:
        scene.frame_set(cur)
    names = sorted(set().union(*(m for _f, _c, m in got)))
    return names, [(f, cam, [mats.get(n) for n in names]) for f, cam, mats in got]


def path_history(names, specs, frame, segment):
    """The history of ``frame`` (engine/sequence.py's rule) from the gathered ``specs`` of
    every frame it needs: [(camera dict, {item name: matrix})] oldest first, cut at the
    newest frame whose camera object or size differs."""
    from ..engine.sequence import plan

    by_frame = {f: (cam, mats) for f, cam, mats in specs}
    cam0 = by_frame[frame][0]
    out = []
    times, new, blend = plan(float(frame), segment)
    for t in reversed(times):
        cam, mats = by_frame[int(t)]
        if cam.get("name") != cam0.get("name") or \
                (cam["resolution_x"], cam["resolution_y"]) != \
                (cam0["resolution_x"], cam0["resolution_y"]):
            break
        out.append((cam, {n: m for n, m in zip(names, mats) if m is not None}))
    out.reverse()
    return render_core.History(out, new, blend)


def render_sequence(items, specs, out_dir, *, restore=False, progress=None, cancel=None,
                    on_frame=None, histories=None):
    """Worker body: one backend call per frame; ``on_frame(frame, Frame)`` per result.
    ``histories`` {frame: history} (with restore): stabilised restore (engine/sequence.py)."""
    n = len(specs)
    for k, (f, cam, mats) in enumerate(specs):
        if cancel is not None and cancel.is_set():
            raise errors.Cancelled("render cancelled")
        its = [render_core.SplatItem(it.name, m, it.ply_path, it.digest, it.count,
                                     it.painter_delta, it.kept_fraction, it.refined)
               for it, m in zip(items, mats) if m is not None]

        def sub(frac, msg="", k=k):
            if progress:
                progress((k + frac) / n, f"frame {f}")

        hist = histories.get(f) if histories is not None else None
        fr = render_core.render_cameras(its, [cam], restore=restore, history=hist,
                                        progress=sub, cancel=cancel)[0]
        on_frame(f, fr)
    return n


def frame_paths(out_dir: str, f: int) -> tuple[str, str]:
    return (os.path.join(out_dir, f"exgs_{f:04d}.exr"),
            os.path.join(out_dir, f"exgs_depth_{f:04d}.exr"))


class EXGS_OT_render_camera_path(bpy.types.Operator):
    """Render the scene camera's animation through the ExGS backend into an image sequence
    and wire it into the compositor (Esc cancels)"""

    bl_idname = "exgs.render_camera_path"
    bl_label = "Render Camera Path"

    directory: StringProperty(name="Output folder", subtype="DIR_PATH", default="//exgs_frames/")
    z_combine: BoolProperty(name="Z-combine with meshes", default=False,
                            description="Composite the splats with Blender's render of the "
                                        "meshes by depth")
    restore: BoolProperty(name="GaussPainter restore", default=False,
                          description="Restore with GaussPainter; with the scene's Stable "
                                      "animation (Render ▸ ExGS) each frame is stabilised "
                                      "as in F12 / -a renders")

    _timer = None

    def execute(self, context):
        scene = context.scene
        out_dir = bpy.path.abspath(self.directory)
        if out_dir.startswith("//") or not out_dir:
            out_dir = os.path.join(paths.cache_dir(), "frames")
        os.makedirs(out_dir, exist_ok=True)
        self._out = out_dir
        self._w, self._h = render_core.output_size(scene)
        frames = list(range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step)))
        st = getattr(scene, "exgs_render", None)
        segment = int(st.stable_segment) if self.restore and st is not None and st.stable \
            else None
        from ..engine.sequence import history_times
        need = sorted(set(frames) | {int(t) for f in frames
                                     for t in history_times(float(f), segment)}) \
            if segment else frames
        try:
            items = render_core.gather(context.evaluated_depsgraph_get())
            names, specs = frame_specs(scene, context.evaluated_depsgraph_get, need)
            histories = {f: path_history(names, specs, f, segment) for f in frames} \
                if segment else None
            specs = [sp for sp in specs if sp[0] in set(frames)]
        except Exception as e:
            self.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
            return {"CANCELLED"}
        by_name = {it.name: it for it in items}
        items = [by_name[n] for n in names if n in by_name]
        if not items:
            self.report({"ERROR"}, "ExGS: no splat objects to render")
            return {"CANCELLED"}
        backend.prime()
        self._q = queue.Queue()
        self._frames = frames
        self._written = []
        self._worker = render_core.Worker(lambda progress, cancel: render_sequence(
            items, specs, out_dir, restore=self.restore, progress=progress, cancel=cancel,
            on_frame=lambda f, fr: self._q.put((f, fr)), histories=histories))
        if bpy.app.background or context.window is None:  # background: run to completion
            try:
                while not self._worker.done or not self._q.empty():
                    self._drain()
                    self._worker._t.join(0.05)
                self._drain()
                self._worker.wait()
            except Exception as e:
                self.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
                return {"CANCELLED"}
            return self._finish(context)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def _drain(self):
        while True:
            try:
                f, fr = self._q.get_nowait()
            except queue.Empty:
                return
            rgba_path, depth_path = frame_paths(self._out, f)
            save_exr(rgba_path, conventions.to_blender_rect(fr.rgb, fr.alpha), self._w, self._h)
            d = conventions.to_blender_plane(fr.depth)
            import numpy as np
            dep = np.repeat(d[:, None], 4, 1)
            dep[:, 3] = 1.0
            save_exr(depth_path, dep.reshape(-1), self._w, self._h)
            self._written.append(f)

    def _stop_ui(self, context):
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
            self._stop_ui(context)
            self.report({"WARNING"}, f"ExGS: cancelled after {len(self._written)} frame(s)")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._drain()
        context.window_manager.progress_update(int(w.progress * 100))
        if context.workspace:
            context.workspace.status_text_set(f"ExGS camera path: {len(self._written)}/"
                                              f"{len(self._frames)} frames (Esc to cancel)")
        if not w.done:
            return {"RUNNING_MODAL"}
        self._drain()
        self._stop_ui(context)
        if w.error is not None:
            self.report({"ERROR"}, f"ExGS: {errors.describe(w.error)}")
            return {"CANCELLED"}
        return self._finish(context)

    def _finish(self, context):
        scene = context.scene
        if not self._written:
            self.report({"WARNING"}, "ExGS: no frames rendered (check the frame range)")
            return {"CANCELLED"}
        first = min(self._written)
        rgba, depth = frame_paths(self._out, first)
        compositor.wire(scene, rgba, depth, first, len(self._written), z_combine=self.z_combine)
        if self.z_combine:  # Blender's own render should show the meshes only
            for ob in scene.objects:
                if gaussians.is_splat(ob):
                    for m in ob.modifiers:
                        if m.type == "NODES":
                            m.show_render = False
        self.report({"INFO"}, f"ExGS: {len(self._written)} frames in {self._out}")
        return {"FINISHED"}


classes = (EXGS_OT_render_camera_path,)
