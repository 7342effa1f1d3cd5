"""Viewport request scheduling for the ExGS engine (stdlib only, no bpy: tested headless).

The engine's ``view_update``/``view_draw`` run on Blender's main thread and must never wait
for the backend. They call :meth:`Scheduler.update` with a hashable *view key* (everything
that changes the image: matrices, region size, objects and their transforms, settings) and
draw :meth:`Scheduler.frame`. One worker thread sends requests to the backend:

* **supersede** — at most one request waits (the newest view); an older waiting view is
  dropped without ever being sent;
* **cancel** — a request in flight for a view that is no longer current has its cancel event
  set and ``cancel(request)`` is called (the client tells the backend, which stops between
  stages); its frame, if it still arrives, is kept in the cache but is never the one
  refined;
* **progressive resolution** — :class:`ResolutionPolicy` steps (¼, ½, full by default): a view
  that changed within ``settle_s`` is rendered at the coarsest step; once the view rests,
  every finished step triggers the next one until full resolution;
* **frame cache** — :class:`FrameCache` keeps the best frame per view (LRU, byte budget), so
  returning to a view, or redrawing it, costs no request.

``on_frame()`` is called (worker thread) whenever a frame arrives; the engine uses it to
flag a redraw that a main-thread timer turns into ``tag_redraw()``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field


class Cancelled(Exception):
    """Raised by a render function when its request was cancelled."""


@dataclass(frozen=True)
class Request:
    """One backend request: the view ``key``, the resolution ``scale`` (1.0 = the region's
    size) and a ``generation`` that increases with every request of a scheduler."""

    key: object
    scale: float
    generation: int
    cancel: threading.Event = field(default_factory=threading.Event, compare=False,
                                    repr=False)


class ResolutionPolicy:
    """Resolution steps of the progressive refinement.

    ``steps`` — increasing scales ending at 1.0; ``settle_s`` — a view is "moving" for this
    long after it last changed (it is rendered at ``steps[0]`` then). :meth:`next_scale`
    gives the scale to request for a view that already has a frame at ``have`` (None = no
    frame yet), or None when nothing more is needed. ``coarse_gaussians`` — the first step
    renders at most this many Gaussians (the most important ones; a frame's cost follows the
    Gaussian count more than the pixel count), None = all (:meth:`budget`).
    """

    def __init__(self, steps=(0.25, 0.5, 1.0), settle_s: float = 0.2, min_side: int = 16,
                 coarse_gaussians: int | None = 131072):
        steps = tuple(float(s) for s in steps)
        if not steps or steps[-1] != 1.0 or any(b <= a for a, b in zip(steps, steps[1:])) \
                or steps[0] <= 0:
            raise ValueError(f"resolution steps must increase and end at 1.0, got {steps}")
        self.steps, self.settle_s, self.min_side = steps, float(settle_s), int(min_side)
        self.coarse_gaussians = coarse_gaussians

    def budget(self, scale: float) -> int | None:
        """Gaussian budget of a step: ``coarse_gaussians`` for the coarsest (if < 1.0)."""
        return self.coarse_gaussians if scale == self.steps[0] and scale < 1.0 else None

    def moving(self, since_change_s: float) -> bool:
        return since_change_s < self.settle_s

    def next_scale(self, have: float | None, since_change_s: float,
                   heavy: bool = False) -> float | None:
        """``heavy``: the view holds more Gaussians than the coarse budget, so an
        intermediate step would cost about as much as the full one — skip straight to 1.0."""
        if have is None:
            return self.steps[0] if self.moving(since_change_s) else self._first_rest()
        if have >= 1.0 or self.moving(since_change_s):
            return None
        if heavy:
            return 1.0
        for s in self.steps:
            if s > have:
                return s
        return None

    def _first_rest(self) -> float:
        # a view that is already at rest still starts coarse: a frame shows up quickly
        return self.steps[0]

    def size(self, width: int, height: int, scale: float) -> tuple[int, int]:
        """Pixel size of a step: ``round(side·scale)``, at least ``min_side`` (or the side)."""
        def one(n):
            return max(min(int(n), self.min_side), int(round(int(n) * float(scale))))

        return one(width), one(height)


class FrameCache:
    """Best frame per view key (highest scale wins), least recently used evicted first once
    the frames' total ``nbytes`` exceeds ``budget_bytes`` (the newest frame always stays)."""

    def __init__(self, budget_bytes: int = 64 << 20):
        self.budget = int(budget_bytes)
        self._items: OrderedDict = OrderedDict()  # key → (scale, frame, nbytes)
        self._lock = threading.Lock()
        self.nbytes = 0

    def put(self, key, scale: float, frame, nbytes: int) -> bool:
        """Store ``frame`` unless a frame of at least this scale is held. True if stored."""
        with self._lock:
            old = self._items.get(key)
            if old is not None and old[0] >= scale:
                self._items.move_to_end(key)
                return False
            if old is not None:
                self.nbytes -= old[2]
            self._items[key] = (float(scale), frame, int(nbytes))
            self._items.move_to_end(key)
            self.nbytes += int(nbytes)
            while self.nbytes > self.budget and len(self._items) > 1:
                _, (_, _, nb) = self._items.popitem(last=False)
                self.nbytes -= nb
            return True

    def best(self, key):
        """(scale, frame) held for ``key`` (marks it recently used), or None."""
        with self._lock:
            it = self._items.get(key)
            if it is None:
                return None
            self._items.move_to_end(key)
            return it[0], it[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)


class Scheduler:
    """Asynchronous, superseding, progressive viewport requests (see module doc).

    ``render(request) -> (frame, nbytes)`` runs in the worker thread (raise
    :class:`Cancelled` when ``request.cancel`` is set); ``cancel(request)`` is called when a
    request in flight becomes stale; ``on_frame()`` after each stored frame; ``heavy(key)``
    says a view exceeds the coarse Gaussian budget (its intermediate steps are skipped). With
    ``start_thread=False`` nothing runs by itself: call :meth:`step` (tests).
    """

    def __init__(self, render, *, policy: ResolutionPolicy | None = None,
                 cache: FrameCache | None = None, cancel=None, on_frame=None, heavy=None,
                 clock=time.monotonic, start_thread: bool = True):
        self._render, self._cancel_cb, self._on_frame = render, cancel, on_frame
        self._heavy = heavy or (lambda key: False)
        self.policy = policy or ResolutionPolicy()
        self.cache = cache or FrameCache()
        self._clock = clock
        self._cv = threading.Condition()
        self._key = None
        self._changed = clock()
        self._gen = 0
        self._pending: Request | None = None
        self._inflight: Request | None = None
        self._latest = None  # (key, scale, frame) of the newest frame received
        self._stop = False
        self.stats = {"sent": 0, "superseded": 0, "cancelled": 0, "frames": 0, "errors": 0}
        self.last_error: BaseException | None = None
        self._thread = None
        if start_thread:
            self._thread = threading.Thread(target=self._loop, name="exgs-viewport",
                                            daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ main thread
    def update(self, key) -> None:
        """The view shown now is ``key`` (cheap; never waits for the backend)."""
        stale = None
        with self._cv:
            if key != self._key:
                self._key = key
                self._changed = self._clock()
                self.last_error = None
                if self._inflight is not None and self._inflight.key != key \
                        and not self._inflight.cancel.is_set():
                    self._inflight.cancel.set()
                    self.stats["cancelled"] += 1
                    stale = self._inflight
            self._plan()
            self._cv.notify_all()
        if stale is not None and self._cancel_cb is not None:
            try:
                self._cancel_cb(stale)
            except Exception:  # a failed cancel only costs time
                pass

    def frame(self):
        """(key, scale, frame) to draw: the best frame of the current view, else the newest
        frame of any view (shown until the current one arrives), else None."""
        with self._cv:
            key, latest = self._key, self._latest
        hit = self.cache.best(key) if key is not None else None
        if hit is not None:
            return key, hit[0], hit[1]
        return latest

    def busy(self) -> bool:
        with self._cv:
            return self._pending is not None or self._inflight is not None

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            if self._inflight is not None:
                self._inflight.cancel.set()
            self._pending = None
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    # ------------------------------------------------------------------ planning
    def _plan(self) -> None:
        """(lock held) Queue the next request for the current view, superseding a waiting
        one. Nothing is queued while a request for the current view is in flight."""
        key = self._key
        if key is None or self._stop or self.last_error is not None:
            return
        if self._inflight is not None and self._inflight.key == key \
                and not self._inflight.cancel.is_set():
            return
        hit = self.cache.best(key)
        scale = self.policy.next_scale(hit[0] if hit else None,
                                       self._clock() - self._changed, self._heavy(key))
        if scale is None:
            if self._pending is not None:
                self.stats["superseded"] += 1
                self._pending = None
            return
        if self._pending is not None:
            if self._pending.key == key and self._pending.scale == scale:
                return
            self.stats["superseded"] += 1
        self._gen += 1
        self._pending = Request(key, scale, self._gen)

    def _wait_s(self) -> float | None:
        """(lock held) Seconds until the current view settles (then a finer step is due)."""
        hit = self.cache.best(self._key) if self._key is not None else None
        if hit is None or hit[0] >= 1.0 or self.last_error is not None:
            return None
        left = self.policy.settle_s - (self._clock() - self._changed)
        return max(left, 0.0) + 1e-3

    # ------------------------------------------------------------------ worker
    def step(self) -> bool:
        """Send the waiting request (if any) and store its frame. True if one was sent."""
        with self._cv:
            self._plan()
            req = self._pending
            if req is None:
                return False
            self._pending, self._inflight = None, req
            self.stats["sent"] += 1
        frame = err = None
        try:
            frame, nbytes = self._render(req)
        except Cancelled as e:
            if not req.cancel.is_set():  # cancelled by someone else: never retry in a loop
                err = e
        except Exception as e:  # shown by the engine; the next view change retries
            err = e
        with self._cv:
            self._inflight = None
            if err is not None:
                self.stats["errors"] += 1
                if req.key == self._key:
                    self.last_error = err
            elif frame is not None:
                self.cache.put(req.key, req.scale, frame, nbytes)
                self._latest = (req.key, req.scale, frame)
                self.stats["frames"] += 1
            self._plan()
            self._cv.notify_all()
        if frame is not None and self._on_frame is not None:
            self._on_frame()
        return True

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop:
                    self._plan()
                    if self._pending is not None:
                        break
                    self._cv.wait(self._wait_s())
                if self._stop:
                    return
            self.step()


__all__ = ["Cancelled", "Request", "ResolutionPolicy", "FrameCache", "Scheduler"]
