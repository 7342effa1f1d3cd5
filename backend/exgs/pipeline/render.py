"""Rendering frames the way the CLI and the service deliver them: render, then (with a
restorer) restore with GaussPainter.

With a restorer the frames are rendered over black (what the painter was trained on: its
fill uses the alpha to find holes), restored, and only then composited over ``background``
(``rgb + (1 − alpha)·background``); without one they are rendered over ``background``
directly. Shapes as :class:`exgs.render.RenderResult` (rgb [H,W,3] display sRGB, alpha [H,W],
depth [H,W] camera z; row 0 at the top).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator

import numpy as np

#: the one progress callback type: ``progress(fraction in [0, 1] or None, message)``
Progress = Callable[[float | None, str], None]


def render_frames(scene, cameras: Iterable, *, device: str = "cpu",
                  sh_degree: int | None = None, background=(0.0, 0.0, 0.0),
                  restorer: Callable | None = None,
                  progress: Progress | None = None) -> Iterator:
    """Yield one :class:`~exgs.render.RenderResult` per camera (rendered one at a time, so
    a caller can stop between frames). ``device``: a resolved device (``cpu`` | ``cuda``).
    ``restorer(rgb, alpha) -> rgb`` (:func:`exgs.pipeline.restorer_for`) restores each
    frame; ``progress`` hears "restoring frame i/n" before each restore."""
    from ..render import render_many
    from .restore import restore_rgba

    cameras = list(cameras)
    n = len(cameras)
    bg = tuple(float(x) for x in background)
    frames = render_many(scene, cameras, sh_degree=sh_degree, device=device,
                         background=(0.0, 0.0, 0.0) if restorer is not None else bg)
    for i, res in enumerate(frames):
        if restorer is not None:
            if progress is not None:
                progress(None, f"restoring frame {i + 1}/{n}")
            rgb, alpha = restore_rgba(restorer, res.rgb, res.alpha)  # painted holes covered
            if any(bg):
                rgb = rgb + (1.0 - alpha[..., None]) * np.asarray(bg, np.float32)
            res = dataclasses.replace(res, rgb=rgb, alpha=alpha)
        yield res
