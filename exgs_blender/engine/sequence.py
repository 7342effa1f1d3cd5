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

    For the first W frames of a segment (``s ≤ f < s + W``) the result cross-fades from the
    previous segment's run (times ``s − K − W … t``) to this one's: weight
    ``(f − s + 1) / (W + 1)`` on the new run.

So inside a segment consecutive frames are stabilised as one run (flicker ≤ unrestored for
each pair); where one run hands over to the next (the W cross-fade frames) a restored pair
can change more than the unrestored one, by the two runs' difference / (W + 1) per frame
instead of all at once. The object's Gaussians
are those of frame f; camera and object transforms are those of each history frame.
Reading the history costs up to K + 2W − 1 depsgraph evaluations (``RenderEngine.frame_set``)
per frame and motion-blur sample; the backend keeps recent frames' restorations (its memo),
so in a sequential render each frame costs one render + restore (plus cheap stabiliser
steps), and the first frame of a farm chunk up to K + 2W − 1 more.
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


def plan(t: float, segment: int) -> tuple[list[float], int, float]:
    """(history times oldest first, frames of the new run counting ``t``, its blend weight)
    of time ``t``: see the module doc. Outside a cross-fade the new run is the only one
    (count 0, weight 0)."""
    k = max(1, int(segment))
    w = k // 4
    f = int(math.floor(t))
    s = k * (f // k)
    if w and f - s < w:  # cross-fade from the previous segment's run to this one's
        start, new = s - k - w, f - (s - w) + 1
        blend = (f - s + 1) / (w + 1)
    else:
        start, new, blend = s - w, 0, 0.0
    return [t - j for j in range(f - start, 0, -1)], new, blend


def history_times(t: float, segment: int) -> list[float]:
    """The history times of time ``t`` (oldest first) for segment length ``segment``."""
    return plan(t, segment)[0]


def history(engine, depsgraph, scene, t: float, segment: int, cam: dict):
    """:class:`render_core.History` of :func:`plan`'s times (oldest first), cut at the newest
    time whose camera object or output size differs from ``cam``'s (see the module doc).
    Moves the scene's time; the caller puts it back (``engine.frame_set``)."""
    times, new, blend = plan(t, segment)
    out = []
    size = render_core.output_size(scene)
    for tk in reversed(times):
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
    return render_core.History(out, new, blend)
