"""One orchestration layer: compress, restore and render as the CLI (:mod:`exgs.commands`),
the job service (:mod:`exgs.service`) and farm scripts call them.

* :func:`resolve_device` — the one device resolver (``auto``/``cpu``/``cuda`` → ``cpu`` |
  ``cuda``; ``cuda`` only when gsplat can run).
* :func:`compress_scene` (:class:`CompressOptions`, :class:`AdaptOptions`, a refinement
  hook) → :class:`CompressResult`; sizes are byte budgets (:func:`byte_budget`).
* :func:`restorer_for` (:class:`RestoreOptions`, :class:`PainterCache`) — the one
  GaussPainter loader, driven by the scene's :class:`SceneFacts` (kept fraction, painter
  delta) read once by :func:`facts_of_file`.
* :func:`render_frames` — render (and restore) frames; ``Progress`` is the one progress
  callback type, ``progress(fraction | None, message)``.
* :func:`render_stable` (:class:`RestoreMemo`) — restored frames of an animation,
  stabilised over the warm-up frames the request carries (no state between requests).

Lower layers never import this package: ``io`` ← ``ugc``/``painter``/``render`` ←
``pipeline`` ← ``commands``/``service``.
"""

from __future__ import annotations

from .compress import (MAX_SHOT_VIEWS, AdaptOptions, CompressOptions, CompressResult,
                       adapt_options, byte_budget, compress_scene)
from .device import painter_device, resolve_device
from .facts import SceneFacts, check_kept_fraction, facts_of_bytes, facts_of_file
from .render import Progress, render_frames
from .restore import PainterCache, Restorer, RestoreOptions, restorer_for
from .sequence import RestoreMemo, render_stable

__all__ = ["resolve_device", "painter_device", "CompressOptions", "AdaptOptions",
           "CompressResult", "compress_scene", "byte_budget", "adapt_options",
           "MAX_SHOT_VIEWS", "SceneFacts",
           "facts_of_file", "facts_of_bytes", "check_kept_fraction", "Progress",
           "render_frames", "RestoreOptions", "Restorer", "PainterCache", "restorer_for",
           "RestoreMemo", "render_stable"]
