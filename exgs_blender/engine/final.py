"""Final (F12 / animation / ``blender -b -a``) rendering for the ExGS engine.

Per frame: gather splat objects + the scene camera (main thread), render them in the backend
from a worker thread while polling ``test_break()``, depth-composite the objects, then fill the
passes: Combined (scene-linear, premultiplied RGBA), Depth (camera z, scene units, 1e10 where
empty, when the view layer's Z pass is on) and Alpha. Rows are flipped (Blender buffers start
at the bottom) and written with ``rect.foreach_set`` of flat float32 arrays.
"""

from __future__ import annotations

import numpy as np

from .. import conventions, errors, render_core

#: Last error messages (for the headless command's exit code).
ERRORS: list = []


def _set_pass(layer, name, flat):
    p = layer.passes.find_by_name(name, "") if hasattr(layer.passes, "find_by_name") else None
    if p is None:
        p = layer.passes.get(name)
    if p is None:
        return False
    p.rect.foreach_set(flat)
    return True


def render(engine, depsgraph) -> None:
    scene = depsgraph.scene
    w, h = render_core.output_size(scene)
    try:
        from .. import backend
        backend.prime()  # read preferences here, not from the worker thread
        cam = render_core.blender_camera(scene, scene.camera.evaluated_get(depsgraph)
                                         if scene.camera else None)
        items = render_core.gather(depsgraph)
        restore = bool(getattr(scene, "exgs_render", None) and scene.exgs_render.restore)
        engine.update_stats("ExGS", f"{sum(i.count for i in items):,} Gaussians in "
                                    f"{len(items)} object(s)")
        if not items:  # nothing to splat: an empty (transparent, far) frame, not an error
            engine.report({"WARNING"}, "ExGS: no splat objects to render in this scene")
            frame = render_core.Frame(np.zeros((h, w, 3), np.float32),
                                      np.zeros((h, w), np.float32),
                                      np.full((h, w), conventions.DEPTH_EMPTY, np.float32))
        else:
            worker = render_core.Worker(lambda progress, cancel: render_core.render_cameras(
                items, [cam], restore=restore, progress=progress, cancel=cancel))

            def on_progress(frac, msg):
                engine.update_progress(min(max(frac, 0.0), 1.0))
                if msg:
                    engine.update_stats("ExGS", msg)

            frame = worker.wait(test_break=engine.test_break, on_progress=on_progress)[0]
    except Exception as e:  # every failure is one line in the report, no traceback
        from .. import backend

        if errors.is_cancel(e) or engine.test_break():
            return
        ERRORS.append(errors.describe(e))
        engine.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
        engine.error_set(f"ExGS: {errors.describe(e)}") if hasattr(engine, "error_set") else None
        return
    if frame.alpha.shape != (h, w):
        engine.report({"ERROR"}, f"ExGS: backend returned {frame.alpha.shape[1]}x"
                                 f"{frame.alpha.shape[0]}, expected {w}x{h}")
        return
    x0, y0, x1, y1 = _border(scene, w, h)
    # Blender rows start at the bottom: flip first, then cut the border region.
    rgba = conventions.to_blender_rect(frame.rgb, frame.alpha).reshape(h, w, 4)[y0:y1, x0:x1]
    depth = conventions.to_blender_plane(frame.depth).reshape(h, w)[y0:y1, x0:x1]
    alpha = conventions.to_blender_plane(frame.alpha).reshape(h, w)[y0:y1, x0:x1]
    result = engine.begin_result(x0, y0, x1 - x0, y1 - y0)
    try:
        layer = result.layers[0]
        _set_pass(layer, "Combined", np.ascontiguousarray(rgba).reshape(-1))
        _set_pass(layer, "Depth", np.ascontiguousarray(depth).reshape(-1))
        _set_pass(layer, "Alpha", np.ascontiguousarray(alpha).reshape(-1))  # if registered
    finally:
        engine.end_result(result)


def _border(scene, w, h):
    """Pixel box (x0, y0, x1, y1), bottom-up rows, of the render border (whole frame if off)."""
    r = scene.render
    if not r.use_border:
        return 0, 0, w, h
    x0, x1 = int(r.border_min_x * w), int(r.border_max_x * w)
    y0, y1 = int(r.border_min_y * h), int(r.border_max_y * h)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, w, h
    return x0, y0, x1, y1
