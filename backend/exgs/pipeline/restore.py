"""The one restorer loader: GaussPainter set up for one scene.

:func:`restorer_for` takes a scene file (its facts are read from it) or the
:class:`~exgs.pipeline.facts.SceneFacts` a caller already holds, and returns a
:class:`Restorer`: ``restorer(rgb, alpha) -> rgb`` with the scene's painter delta applied
(unless ``use_delta`` is off) and the gate set by the scene's kept fraction and whether its
file was refined after pruning (the painter's refined tables). The CLI
(``render``, ``eval``) and the service (render jobs) call it; the service passes a
:class:`PainterCache` so the generic painter is loaded once and a few adapted ones are kept.

A ``"none"`` delta (:func:`exgs.painter.delta.none_delta`: the compressor measured that
the unrestored render is better) gives a restorer that returns its input exactly.
Deltas made for other painter weights are skipped with ``warn(message)`` (the generic
painter restores); a corrupt delta raises SceneFormatError (one line naming the file).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import SceneFormatError, UsageError
from .facts import SceneFacts, facts_of_file


@dataclass
class RestoreOptions:
    """``painter_dir``: weights folder (None = shipped). ``device``: the resolved device
    (``cpu`` | ``cuda``, :func:`exgs.pipeline.resolve_device`); the painter runs there.
    ``use_delta``: apply the scene's painter delta. ``kept_fraction``: overrides the
    scene's own (e.g. ``exgs eval`` uses candidate / reference counts). ``refined``:
    overrides the scene's own refinement state (None = the scene's facts). ``warn``: called
    with one line when a delta is skipped."""

    painter_dir: str | os.PathLike | None = None
    device: str = "cpu"
    use_delta: bool = True
    kept_fraction: float | None = None
    refined: bool | None = None
    warn: Callable[[str], None] | None = None
    temporal: bool = False  #: frames come in the order of a smooth camera path: stabilise
    #: them (:class:`exgs.painter.temporal.TemporalStabilizer`, flicker ≤ the input's)


@dataclass
class Restorer:
    """``restorer(rgb [H,W,3], alpha [H,W]) -> rgb [H,W,3] float32``. ``delta``:
    ``{"applied": bool, "form", "bytes", "reason"}`` about the scene's painter delta.
    ``refined``: the scene's file was refined after pruning (the painter's refined tables)."""

    painter: object
    kept_fraction: float | None = None
    delta: dict = field(default_factory=dict)
    stabilizer: object = None  #: a TemporalStabilizer (stateful: one camera path, in order)
    refined: bool = False

    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return self.restore_rgba(rgb, alpha)[0]

    def restore_rgba(self, rgb: np.ndarray, alpha: np.ndarray):
        """``(rgb [H,W,3], alpha [H,W])``: the restored frame and its alpha ``alpha + g·(1 −
        alpha)`` (g the painter's gate: colour painted into a hole covers it;
        :meth:`exgs.painter.infer.Painter.restore_batch`)."""
        out, a = self.painter.restore(rgb, alpha, kept_fraction=self.kept_fraction,
                                      refined=self.refined, return_alpha=True)
        if self.stabilizer is not None:
            out = self.stabilizer(np.clip(np.nan_to_num(np.asarray(rgb, np.float32)), 0, 1),
                                  out)
        return out, a


def restore_rgba(restorer, rgb: np.ndarray, alpha: np.ndarray):
    """``(rgb, alpha)`` of a restored frame: ``restorer.restore_rgba`` when it has one (a
    :class:`Restorer`), else ``(restorer(rgb, alpha), alpha)`` (any callable: it does not say
    what it covers)."""
    if hasattr(restorer, "restore_rgba"):
        return restorer.restore_rgba(rgb, alpha)
    return np.asarray(restorer(rgb, alpha), np.float32), np.asarray(alpha, np.float32)



class PainterCache:
    """The generic painter (loaded once) and the last few adapted ones (keyed by the
    delta's SHA-256), shared by the threads of a long-running process."""

    def __init__(self, painter_dir=None, device: str = "cpu", size: int = 4):
        self.painter_dir, self.device, self.size = painter_dir, device, size
        self._lock = threading.Lock()
        self._generic = None
        self._adapted: dict[str, object] = {}

    def generic(self):
        with self._lock:
            if self._generic is None:
                self._generic = _load_painter(self.painter_dir, self.device)
            return self._generic

    def adapted(self, delta: bytes):
        """The generic painter with ``delta`` applied (raises DeltaMismatch / DeltaError)."""
        from ..painter.delta import apply_delta
        from ..painter.infer import Painter

        generic = self.generic()
        key = hashlib.sha256(delta).hexdigest()
        with self._lock:
            if key in self._adapted:
                self._adapted[key] = self._adapted.pop(key)  # most recent last
                return self._adapted[key]
        p = Painter(apply_delta(generic.net, delta), generic.device, generic.path)
        with self._lock:
            self._adapted[key] = p
            while len(self._adapted) > self.size:
                self._adapted.pop(next(iter(self._adapted)))
        return p


def _load_painter(painter_dir, device: str):
    """GaussPainter, or UsageError when its network (torch, diffusers) cannot be imported."""
    try:
        from ..painter import load_painter

        return load_painter(painter_dir, device=device)
    except ImportError as e:
        raise UsageError(f"GaussPainter is not available in this build ({e})") from None


def restorer_for(source, options: RestoreOptions | None = None, *,
                 cache: PainterCache | None = None) -> Restorer:
    """See :func:`_restorer_for`; with ``options.temporal`` the restorer stabilises its
    frames over time (one restorer per camera path)."""
    r = _restorer_for(source, options, cache=cache)
    if options is not None and options.temporal:
        from ..painter.temporal import TemporalStabilizer

        r.stabilizer = TemporalStabilizer()
    return r


def _restorer_for(source, options: RestoreOptions | None = None, *,
                  cache: PainterCache | None = None) -> Restorer:
    """GaussPainter for the scene ``source``: a scene file path (its facts are read from it,
    :func:`~exgs.pipeline.facts.facts_of_file`), a :class:`SceneFacts`, or None (no facts:
    generic painter, default gate). See the module docstring."""
    opts = options or RestoreOptions()
    path = None
    if source is None:
        facts = SceneFacts()
    elif isinstance(source, SceneFacts):
        facts = source
    else:
        path = source
        facts = facts_of_file(path)
    delta = facts.painter_delta if opts.use_delta else None
    if opts.use_delta and facts.delta_error:
        raise _file_error(path, facts.delta_error)
    kept = opts.kept_fraction if opts.kept_fraction is not None else facts.kept_fraction
    refined = bool(opts.refined if opts.refined is not None else facts.refined)
    generic = cache.generic() if cache is not None else _load_painter(opts.painter_dir,
                                                                      opts.device)
    info = {"applied": False, "form": None, "bytes": 0,
            "reason": "delta disabled" if not opts.use_delta else "no painter delta"}
    if delta is None:
        return Restorer(generic, kept, info, refined=refined)
    from ..painter.delta import (NONE_FORM, DeltaError, DeltaMismatch, apply_delta,
                                 describe_delta)
    from ..painter.infer import Painter

    try:
        painter = cache.adapted(delta) if cache is not None else \
            Painter(apply_delta(generic.net, delta), generic.device, generic.path)
    except DeltaMismatch as e:
        info["reason"] = f"skipped: {e}"
        if opts.warn is not None:
            opts.warn(f"{path or 'the scene'}: {e}; restoring with the generic painter")
        return Restorer(generic, kept, info, refined=refined)
    except DeltaError as e:
        raise _file_error(path, str(e)) from None
    d = describe_delta(delta)
    reason = "applied"
    if d["form"] == NONE_FORM:  # the compressor found that no restoration renders it best
        reason = "the scene's facts say: no restoration (it lowered held-out PSNR)"
    return Restorer(painter, kept, {"applied": True, "form": d["form"], "bytes": len(delta),
                                    "reason": reason}, refined=refined)


def _file_error(path, message: str) -> SceneFormatError:
    """SceneFormatError naming ``path`` once (``message`` may already start with it)."""
    prefix = f"{path}: "
    if path is not None and message.startswith(prefix):
        message = message[len(prefix):]
    return SceneFormatError(path, message)
