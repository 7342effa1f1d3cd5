"""Final (F12 / animation / ``blender -b -a``) rendering for the ExGS engine.

Per frame: gather splat objects + the scene camera (main thread) — once, or once per
motion-blur sample (sub-frames over the shutter, see :mod:`.film`) —, render them in the
backend from a worker thread while polling ``test_break()``, depth-composite the objects,
average the motion-blur samples, put the world colour behind them unless the film is
transparent, then fill the passes: Combined (scene-linear, premultiplied RGBA), Depth (camera
z, scene units, 1e10 where empty, when the view layer's Z pass is on) and Alpha. Rows are
flipped (Blender buffers start at the bottom) and written with ``rect.foreach_set``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .. import conventions, errors, render_core
from . import film, sequence

#: Last error messages (for the headless command's exit code).
ERRORS: list = []


def _set_pass(layer, name, flat):
    passes = getattr(layer, "passes", None)
    if passes is None:
        return False
    p = passes.find_by_name(name, "") if hasattr(passes, "find_by_name") else None
    if p is None:
        p = passes.get(name)
    if p is None:
        return False
    p.rect.foreach_set(flat)
    return True


def stable_segment(scene) -> int | None:
    """Segment length of a stabilised restore (:mod:`.sequence`), None when off (no
    restore, or *Stable animation* unchecked)."""
    s = getattr(scene, "exgs_render", None)
    if s is None or not s.restore or not getattr(s, "stable", False):
        return None
    return int(s.stable_segment)


def _samples(engine, depsgraph, scene):
    """[(camera dict, [SplatItem], history or None)] — one per motion-blur sample (main
    thread); history: see :func:`.sequence.history`."""
    frame = scene.frame_current
    n = int(getattr(getattr(scene, "exgs_render", None), "motion_blur_samples", 5))
    times = film.shutter_times(scene, frame, n)
    segment = stable_segment(scene)
    if (len(times) > 1 or segment) and not hasattr(engine, "frame_set"):
        engine.report({"WARNING"}, "ExGS: motion blur / stable restore are not available in "
                                   "this Blender; rendered without them")
        times, segment = [float(frame)], None
    moved = len(times) > 1 or bool(segment)
    out = []
    try:
        for t in times:
            if len(times) > 1:
                engine.frame_set(*film.split_time(t))
            cam = render_core.blender_camera(scene, scene.camera.evaluated_get(depsgraph)
                                             if scene.camera else None)
            items = render_core.gather(depsgraph)
            hist = sequence.history(engine, depsgraph, scene, t, segment, cam) \
                if segment and items else None
            out.append((cam, items, hist))
    finally:
        if moved:
            engine.frame_set(frame, 0.0)
    return out


def _render_samples(samples, restore, progress, cancel):
    """Worker body: every sample rendered, then averaged (premultiplied colour and alpha;
    depth of the middle sample) → :class:`render_core.Frame`."""
    frames = []
    n = len(samples)
    for i, (cam, items, hist) in enumerate(samples):
        def sub(frac, msg="", i=i):
            progress((i + frac) / n, msg)
        frames.append(render_core.render_cameras(items, [cam], restore=restore, history=hist,
                                                 progress=sub, cancel=cancel)[0])
    if n == 1:
        return frames[0]
    return render_core.Frame(np.mean([f.rgb for f in frames], 0, dtype=np.float32),
                             np.mean([f.alpha for f in frames], 0, dtype=np.float32),
                             frames[n // 2].depth)


def _empty(w, h):
    return render_core.Frame(np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32),
                             np.full((h, w), conventions.DEPTH_EMPTY, np.float32))


def render(engine, depsgraph) -> None:
    scene = depsgraph.scene
    w, h = render_core.output_size(scene)
    try:
        from .. import backend
        backend.prime()  # read preferences here, not from the worker thread
        samples = _samples(engine, depsgraph, scene)
        items = samples[0][1]
        restore = bool(getattr(scene, "exgs_render", None) and scene.exgs_render.restore)
        engine.update_stats("ExGS", f"{sum(i.count for i in items):,} Gaussians in "
                                    f"{len(items)} object(s)"
                                    + (f", {len(samples)} motion-blur samples"
                                       if len(samples) > 1 else ""))
        hint = film.view_transform_hint(scene)
        if hint:
            engine.report({"INFO"}, hint)
        if not items:  # nothing to splat: an empty (transparent, far) frame, not an error
            engine.report({"WARNING"}, "ExGS: no splat objects to render in this scene")
            frame = _empty(w, h)
        else:
            worker = render_core.Worker(lambda progress, cancel: _render_samples(
                samples, restore, progress, cancel))

            def on_progress(frac, msg):
                engine.update_progress(min(max(frac, 0.0), 1.0))
                if msg:
                    engine.update_stats("ExGS", msg)

            frame = worker.wait(test_break=engine.test_break, on_progress=on_progress)
    except Exception as e:  # every failure is one line in the report, no traceback
        if errors.is_cancel(e) or engine.test_break():
            return
        _fail(engine, errors.describe(e))
        return
    if any(getattr(frame, k, None) is None for k in ("rgb", "alpha", "depth")) \
            or getattr(frame.alpha, "shape", None) != (h, w):
        shape = getattr(getattr(frame, "alpha", None), "shape", None)
        _fail(engine, f"the backend returned a frame of {shape[1]}x{shape[0]}, expected {w}x{h}"
              if shape and len(shape) == 2 else "the backend returned a frame without passes")
        return
    rgb, alpha = frame.rgb, frame.alpha
    bg, warn = film.world_background(scene)
    if warn:
        engine.report({"WARNING"}, warn)
    if bg is not None:
        rgb, alpha = film.over_background(rgb, alpha, bg)
    _write(engine, scene, w, h, rgb, alpha, frame.depth)


def _fail(engine, msg: str) -> None:
    ERRORS.append(msg)
    engine.report({"ERROR"}, f"ExGS: {msg}")
    if hasattr(engine, "error_set"):
        engine.error_set(f"ExGS: {msg}")
    exit_on_error(msg)


def exit_on_error(msg: str) -> None:
    """Farm mode (``EXGS_EXIT_ON_ERROR=1``, background Blender only): print the one-line
    error to stderr and end the process with exit code 1 *before* Blender writes the failed
    frame, so a farm task fails instead of leaving a blank frame (see docs/farm.md)."""
    import bpy

    if os.environ.get("EXGS_EXIT_ON_ERROR") != "1" or not bpy.app.background:
        return
    print(f"exgs: error: {msg}", file=sys.stderr, flush=True)
    try:
        from .. import backend
        backend.stop_local()
    finally:
        sys.stdout.flush()
        os._exit(1)


def _write(engine, scene, w, h, rgb, alpha, depth) -> None:
    x0, y0, x1, y1 = _border(scene, w, h)
    # Blender rows start at the bottom: flip first, then cut the border region.
    rgba = conventions.to_blender_rect(rgb, alpha).reshape(h, w, 4)[y0:y1, x0:x1]
    dep = conventions.to_blender_plane(depth).reshape(h, w)[y0:y1, x0:x1]
    alp = conventions.to_blender_plane(alpha).reshape(h, w)[y0:y1, x0:x1]
    result = engine.begin_result(x0, y0, x1 - x0, y1 - y0)
    try:
        layers = getattr(result, "layers", None)
        if not layers:
            return
        layer = layers[0]
        _set_pass(layer, "Combined", np.ascontiguousarray(rgba).reshape(-1))
        _set_pass(layer, "Depth", np.ascontiguousarray(dep).reshape(-1))
        _set_pass(layer, "Alpha", np.ascontiguousarray(alp).reshape(-1))  # if registered
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
