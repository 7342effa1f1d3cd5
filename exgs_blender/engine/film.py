"""What Blender's film settings ask of a final frame, as plain functions of the scene
(no rendering here): the background (world colour unless the film is transparent), the
motion-blur sub-frame times, and the one-time view-transform hint."""

from __future__ import annotations

import math

import numpy as np

_HINTED: set = set()

VIEW_HINT = ("ExGS: the view transform is {vt!r}: it tone-maps the splats' captured colours "
             "(they look duller); use 'Standard' (Render ▸ Color Management) to see the "
             "capture as it was shot")


def view_transform_hint(scene) -> str | None:
    """An info line the first time (per session) a scene renders with a view transform
    other than Standard; None otherwise."""
    vt = getattr(getattr(scene, "view_settings", None), "view_transform", "Standard")
    if vt == "Standard" or "view" in _HINTED:
        return None
    _HINTED.add("view")
    return VIEW_HINT.format(vt=vt)


def world_background(scene) -> tuple[tuple[float, float, float] | None, str | None]:
    """(scene-linear RGB behind the splats, or None for a transparent film; a warning when
    the world cannot be reduced to one colour). The colour is the world's Background node
    (Color × Strength) when its colour is not driven by other nodes, else ``world.color``."""
    if scene.render.film_transparent:
        return None, None
    w = scene.world
    if w is None:
        return (0.0, 0.0, 0.0), None
    nt = w.node_tree if getattr(w, "use_nodes", False) else None
    if nt is not None:
        out = next((n for n in nt.nodes if n.bl_idname == "ShaderNodeOutputWorld"
                    and getattr(n, "is_active_output", True)), None)
        link = out.inputs["Surface"].links[0] if out and out.inputs["Surface"].links else None
        bg = link.from_node if link else None
        if bg is not None and bg.bl_idname == "ShaderNodeBackground":
            col, strength = bg.inputs["Color"], bg.inputs["Strength"]
            if not col.is_linked and not strength.is_linked:
                s = float(strength.default_value)
                return tuple(float(c) * s for c in col.default_value[:3]), None
        if bg is None:
            return (0.0, 0.0, 0.0), None
        return (tuple(float(c) for c in w.color[:3]),
                f"ExGS: world '{w.name}' is not a plain colour; its viewport colour is used "
                "behind the splats (enable Film ▸ Transparent to composite instead)")
    return tuple(float(c) for c in w.color[:3]), None


def over_background(rgb: np.ndarray, alpha: np.ndarray, bg) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied [H,W,3] + [H,W] over an opaque colour → (rgb, alpha = 1)."""
    a = np.asarray(alpha, np.float32)
    out = rgb + (1.0 - a)[..., None] * np.asarray(bg, np.float32)[None, None, :]
    return out.astype(np.float32), np.ones_like(a)


def shutter_times(scene, frame: int, samples: int) -> list[float]:
    """Scene times (frames, fractional) of ``samples`` stratified motion-blur samples over
    the shutter (``render.motion_blur_shutter`` frames, opening at the frame for START,
    centred on it for CENTER, closing at it for END); ``[frame]`` without motion blur."""
    r = scene.render
    if not r.use_motion_blur or samples < 2 or r.motion_blur_shutter <= 0:
        return [float(frame)]
    s = float(r.motion_blur_shutter)
    pos = getattr(r, "motion_blur_position", "CENTER")
    t0 = frame - (s / 2 if pos == "CENTER" else s if pos == "END" else 0.0)
    return [t0 + s * (i + 0.5) / samples for i in range(samples)]


def split_time(t: float) -> tuple[int, float]:
    """Fractional scene time → (frame, subframe in [0, 1))."""
    f = math.floor(t)
    return int(f), float(t - f)
