"""Stabilised restoration of one frame of an animation, with no state between requests.

A client that renders an animation one frame at a time (Blender asks for frame ``f``, then
``f + 1`` …, possibly from several machines) cannot rely on a stabiliser that remembers the
previous request: the result would depend on which frames that process happened to render
before (chunking, scrubbing, retries, two clients at once). Instead a request carries its own
history: the cameras of the ``warmup`` frames before the wanted ones, in path order.
:func:`render_stable` restores them all, feeds them through a fresh
:class:`exgs.painter.temporal.TemporalStabilizer` and yields only the frames after the
warm-up. The output is a pure function of the request (scene, facts, cameras, options):
the same on every call, whatever was rendered before or at the same time.

What makes it affordable is :class:`RestoreMemo`, a byte-capped LRU holding the unrestored
and restored images (float32, exact) per (scene/options scope, camera), and the stabiliser's
state after each request's camera list (keyed by a hash chain over the list). The request for
frame ``f + 1`` usually repeats frame ``f``'s list plus one camera, so it resumes from the
stored state and costs one render + one restore + one stabiliser step; a request whose
prefix state is gone but whose frames are memoised costs a stabiliser step per frame
(tile means: cheap); a cold request (the first frame of a farm chunk, an evicted memo)
renders and restores its whole list. Memo hits are exactly the arrays a fresh run computes
(the renderer and the painter are deterministic on one machine), so the memo never changes
a pixel — only the time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Iterable, Iterator

import numpy as np

#: default byte cap of a :class:`RestoreMemo` (unrestored + restored float32 images)
DEFAULT_MEMO_BYTES = 512 << 20


def camera_key(cam) -> str:
    """Content key of an :class:`exgs.cameras.Camera` (size, intrinsics, pose, clip)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray([cam.width, cam.height], np.int64).tobytes())
    h.update(np.asarray([cam.fx, cam.fy, cam.cx, cam.cy, cam.near, cam.far],
                        np.float64).tobytes())
    h.update(np.ascontiguousarray(cam.world_to_camera, np.float64).tobytes())
    return h.hexdigest()


class RestoreMemo:
    """Thread-safe LRU ``key → tuple of float32 arrays`` of at most ``max_bytes`` (an entry
    larger than the cap is not kept). :func:`render_stable` keeps two kinds: per camera
    ``(x, y, alpha)`` (x [H,W,3]: the unrestored render over black clipped to [0, 1]; y:
    GaussPainter's restoration; alpha [H,W]), and per camera-list prefix the stabiliser's state after it.
    Stored arrays are read-only copies; hits share them."""

    def __init__(self, max_bytes: int = DEFAULT_MEMO_BYTES):
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._d: OrderedDict[str, tuple] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str):
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return v

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._d

    def put(self, key: str, *arrays) -> None:
        vals = []
        for a in arrays:
            a = np.array(a, np.float32)
            a.flags.writeable = False
            vals.append(a)
        size = sum(a.nbytes for a in vals)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.bytes -= sum(a.nbytes for a in old)
            self._d[key] = tuple(vals)
            self.bytes += size
            while self.bytes > self.max_bytes and self._d:
                _, ev = self._d.popitem(last=False)
                self.bytes -= sum(a.nbytes for a in ev)

    def __len__(self) -> int:
        return len(self._d)


def premult_srgb_to_linear(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """[H,W,3] premultiplied display sRGB + [H,W] alpha → [H,W,3] premultiplied scene-linear,
    exactly as the Blender add-on converts frames (``exgs_blender.conventions``): straight
    colour clipped to [0, 1], IEC 61966-2-1 decode, × alpha (0 where alpha ≤ 1e-6)."""
    a = np.asarray(alpha, np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(a > 1e-6, np.asarray(rgb, np.float32) / np.maximum(a, 1e-6), 0.0)
    c = np.maximum(np.clip(straight, 0.0, 1.0).astype(np.float32), 0.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    return (lin * a).astype(np.float32)


def _chain(scope: str, cameras: list) -> list[str]:
    """Key of each prefix ``cameras[:i + 1]`` (a hash chain over the camera keys)."""
    keys, h = [], hashlib.blake2b(scope.encode(), digest_size=16).hexdigest()
    for c in cameras:
        h = hashlib.blake2b(f"{h}|{camera_key(c)}".encode(), digest_size=16).hexdigest()
        keys.append(h)
    return keys


def render_stable(scene, cameras: Iterable, *, warmup: int, restorer: Callable,
                  device: str = "cpu", sh_degree: int | None = None,
                  background=(0.0, 0.0, 0.0), memo: RestoreMemo | None = None,
                  scope: str = "", linear: bool = False, progress=None,
                  check=None, restart: int = 0, blend: float = 0.0) -> Iterator:
    """Yield a :class:`~exgs.render.RenderResult` for each camera after the first ``warmup``
    ones (a smooth path in order), its rgb restored by ``restorer(rgb, alpha)`` (a
    :class:`~exgs.pipeline.Restorer` *without* its own stabiliser) and stabilised over the
    whole list by a fresh :class:`~exgs.painter.temporal.TemporalStabilizer` (so flicker of
    the yielded frames, the warm-up's last included, ≤ that of the unrestored ones), then
    composited over ``background``. ``memo`` + ``scope`` (a string naming the scene, its
    facts and the restore options: everything but the camera that changes x or y) skip the
    render and restore of warm-up frames seen before, and the restore of wanted ones.
    ``progress(None, message)`` before each restore. ``linear``: stabilise — and return —
    premultiplied scene-linear rgb (:func:`premult_srgb_to_linear` of the unrestored and
    restored frames; what Blender's Combined pass holds), so the bound holds in the values
    the client writes; ``background`` must then be black. ``check()`` is called before each
    frame (a cancelled job raises there, also during the warm-up). ``restart`` > 0: a second
    fresh stabiliser runs over ``cameras[restart:]`` and the yielded rgb is
    ``(1 − blend)·first + blend·second`` (a client's cross-fade from one run to the next)."""
    from ..painter.temporal import TemporalStabilizer
    from ..render import render
    from .restore import restore_rgba

    cameras = list(cameras)
    warmup = int(warmup)
    if not 0 <= warmup < len(cameras):
        raise ValueError(f"warmup={warmup} must leave at least one of {len(cameras)} frames")
    restart = int(restart)
    if restart and not 0 < restart <= warmup:
        raise ValueError(f"restart={restart} must be in 1..warmup={warmup}")
    stab, stab2 = TemporalStabilizer(), TemporalStabilizer()
    bg = np.asarray([float(v) for v in background], np.float32)
    n = len(cameras)
    if linear and bg.any():
        raise ValueError("linear frames are returned over black")
    prefix = f"{scope}|linear={bool(linear)}"
    chain = _chain(prefix, cameras)
    chain2 = ([None] * restart + _chain(prefix, cameras[restart:])) if restart else []

    def resume(st, keys, lo):
        """Index after the longest memoised warm-up prefix (its state loaded), else lo."""
        if memo is not None:
            for i in range(warmup - 1, lo - 1, -1):
                saved = memo.get(f"state|{keys[i]}")
                if saved is not None:
                    st.state = saved
                    return i + 1
        return lo

    first1 = resume(stab, chain, 0)
    first2 = resume(stab2, chain2, restart) if restart else n
    first = min(first1, first2)
    for i in range(first, n):
        if check is not None:
            check()
        cam = cameras[i]
        key = f"xy|{scope}|{camera_key(cam)}"
        hit = memo.get(key) if memo is not None else None
        wanted = i >= warmup
        res = None
        if hit is None or wanted:  # a wanted frame needs its alpha and depth
            res = render(scene, cam, sh_degree=sh_degree, device=device,
                         background=(0.0, 0.0, 0.0))
        if hit is not None:
            x, y, a, ay = hit
        else:
            if progress is not None:
                progress(None, f"restoring frame {i + 1}/{n}"
                         + (" (warm-up)" if not wanted else ""))
            x = np.clip(np.nan_to_num(np.asarray(res.rgb, np.float32)), 0.0, 1.0)
            y, ay = restore_rgba(restorer, res.rgb, res.alpha)  # ay: painted holes covered
            a = np.asarray(res.alpha, np.float32)
            if memo is not None:
                memo.put(key, x, y, a, ay)
                x, y, a, ay = memo.get(key) or (x, y, a, ay)  # stored copies (same values)
        if linear:
            x, y = premult_srgb_to_linear(x, a), premult_srgb_to_linear(y, ay)
        o = stab(x, y) if i >= first1 else None
        if restart and i >= first2:
            o2 = stab2(x, y)
            if memo is not None and i == n - 1:
                memo.put(f"state|{chain2[i]}", *stab2.state)
            if wanted:
                o = ((1.0 - float(blend)) * o + float(blend) * o2).astype(np.float32)
        if memo is not None and i == n - 1:
            memo.put(f"state|{chain[i]}", *stab.state)
        if wanted:
            alpha = ay  # the restorer's alpha: painted holes are covered
            if bg.any():
                o = o + (1.0 - alpha[..., None]) * bg
            yield dataclasses.replace(res, rgb=np.asarray(o, np.float32), alpha=alpha)
