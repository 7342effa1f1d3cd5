"""Stable restored animations: which earlier frames a restored frame is stabilised over.

GaussPainter restores each frame on its own and its fill can change more from frame to frame
than the unrestored render does (flicker). The backend stabilises a restored frame over the
frames before it on the camera path (``exgs.pipeline.render_stable``: a fresh
``TemporalStabilizer`` run over the request's frames, whose output never changes more from
frame to frame than the unrestored input). For the result to be the same however the
animation is split (F12 of one frame, ``-a``, farm chunks of any size, re-renders, several
machines), a frame's history is a fixed function of its frame number, never of what this
process rendered before:

    With segment length K (*Stable segment*, default 32) and warm-up ``W = K // 4``, frame
    ``f`` (time ``t = f + δ``; δ = the motion-blur sample's offset, 0 without) is stabilised
    over the times ``s − W + δ, …, t − 1`` with ``s = K·⌊f / K⌋`` (segments start at
    frame 0, …, −K, 0, K, 2K, …, whatever the scene's frame range), going back only while
    the active camera object (timeline markers bound to cameras included) and the output
    size stay those of ``t``; each splat object over the part of those frames in which it
    is visible.

So inside a segment consecutive frames are stabilised as one run (flicker ≤ unrestored for
each pair); at a segment start the run restarts (after W warm-up frames), which is the only
place where a restored pair can change more than the unrestored one. The object's Gaussians
are those of frame f; camera and object transforms are those of each history frame.
Reading the history costs up to K + W − 1 depsgraph evaluations (``RenderEngine.frame_set``)
per frame and motion-blur sample; the backend keeps recent frames' restorations (its memo),
so in a sequential render each frame costs one render + restore (plus cheap stabiliser
steps), and the first frame of a farm chunk up to K + W − 1 more.
"""

from __future__ import annotations

import math

from .. import render_core
from . import film


def camera_at(scene, frame: float):
    """The camera object active at ``frame``: the camera bound to the last marker at or
    before it (Blender's camera switching), else the first bound marker's, else
    ``scene.camera``."""
    bound = sorted((m.frame, m.camera.name, m.camera) for m in scene.timeline_markers
                   if getattr(m, "camera", None) is not None)
    if not bound:
        return scene.camera
    before = [c for f, _n, c in bound if f <= frame]
    return before[-1] if before else bound[0][2]


def history_times(t: float, segment: int) -> list[float]:
    """The history times of time ``t`` (oldest first) for segment length ``segment``."""
    k = max(1, int(segment))
    f = int(math.floor(t))
    start = k * (f // k) - k // 4
    return [t - j for j in range(f - start, 0, -1)]


def history(engine, depsgraph, scene, t: float, segment: int, cam: dict) -> list:
    """[(camera dict, {item name: matrix_world})] for :func:`history_times` (oldest first),
    cut at the newest time whose camera object or output size differs from ``cam``'s (see
    the module doc). Moves the scene's time; the caller puts it back
    (``engine.frame_set``)."""
    out = []
    size = render_core.output_size(scene)
    for tk in reversed(history_times(t, segment)):
        cam_obj = camera_at(scene, tk)
        if cam_obj is None or cam_obj.name != cam.get("name"):
            break
        engine.frame_set(*film.split_time(tk))
        if render_core.output_size(scene) != size:
            break
        c = render_core.blender_camera(scene, cam_obj.evaluated_get(depsgraph))
        mats = {name: mat for _o, name, mat in render_core.splat_instances(depsgraph)}
        out.append((c, mats))
    out.reverse()
    return out
