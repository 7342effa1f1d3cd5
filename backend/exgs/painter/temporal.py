"""Temporal stability of restored animations: flicker measurement and a stabiliser that
never lets the restored sequence change more from frame to frame than its input does.

GaussPainter is deterministic (one UNet step at a fixed timestep, no noise, eval mode), but
it restores each frame on its own: where a pruned render's holes change from frame to frame
(a few Gaussians popping in and out of a thin shell), its fill can change more than the
input does, and the animation flickers.

Flicker (:func:`flicker`) of a sequence = mean over consecutive frame pairs of the mean
absolute difference (0–255 scale). The benchmark (``bench/painter_flicker.py``) reports it
minus that of the full-scene render.

:class:`TemporalStabilizer` (stateful: one per camera path, frames in path order) blends
each restored frame ``y_t`` towards the previous *output* ``o_{t-1}`` per ``block``×``block``
tile: ``o_t = o_{t-1} + λ_b (y_t − o_{t-1})`` with the largest ``λ_b ∈ [0, 1]`` for which the
tile's mean |o_t − o_{t-1}| does not exceed its input's mean |x_t − x_{t-1}|. Summed over
tiles: flicker(output) ≤ flicker(input) for every frame pair, whatever the painter does.
Where the painter changes nothing (y = x on a tile whose previous output was its input),
λ = 1 and the output is the input exactly; a restoration that stays put passes unchanged;
only the frame-to-frame *change* of a restoration is rationed, so a steady fill converges
to the painter's within a few frames. Not for unrelated views (it assumes a smooth path).
"""

from __future__ import annotations

import numpy as np


def flicker(frames) -> float:
    """Mean |frame-to-frame difference| (0–255) of a sequence of [H,W,C] frames in [0, 1]."""
    frames = list(frames)
    if len(frames) < 2:
        return 0.0
    return float(np.mean([np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean()
                          for a, b in zip(frames[1:], frames[:-1])]) * 255.0)


def _block_mean(a: np.ndarray, block: int) -> np.ndarray:
    """[H,W,C] → [ceil(H/b), ceil(W/b)] mean over each b×b tile (edge tiles: their pixels)."""
    h, w = a.shape[:2]
    m = a.reshape(h, w, -1).mean(-1)
    ph, pw = (-h) % block, (-w) % block
    s = np.pad(m, ((0, ph), (0, pw))).reshape((h + ph) // block, block, (w + pw) // block,
                                              block).sum((1, 3))
    n = np.pad(np.ones((h, w)), ((0, ph), (0, pw))).reshape(s.shape[0], block, s.shape[1],
                                                            block).sum((1, 3))
    return s / n


def _expand(b: np.ndarray, h: int, w: int, block: int) -> np.ndarray:
    return np.repeat(np.repeat(b, block, 0), block, 1)[:h, :w]


class TemporalStabilizer:
    """Call with each frame of a smooth camera path in order: ``stab(x, y) -> o``, where
    ``x`` [H,W,3] is the unrestored input and ``y`` [H,W,3] the restored frame (float, [0, 1]);
    returns the stabilised frame [H,W,3] float32. :meth:`reset` starts a new path. The
    first frame (and any frame whose size differs from the previous) is returned as ``y``."""

    def __init__(self, block: int = 16):
        if block < 1:
            raise ValueError("block must be ≥ 1")
        self.block = int(block)
        self.reset()

    def reset(self) -> None:
        self._x = None
        self._o = None

    @property
    def state(self) -> tuple:
        """(previous input, previous output) — None, None before the first frame. The
        arrays are never modified in place, so a caller may keep them."""
        return self._x, self._o

    @state.setter
    def state(self, value: tuple) -> None:
        self._x, self._o = value

    def __call__(self, x, y) -> np.ndarray:
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32)
        if self._x is None or self._x.shape != x.shape or y.shape != x.shape:
            o = y.copy()
        else:
            h, w = x.shape[:2]
            allow = _block_mean(np.abs(x - self._x), self.block)
            step = y - self._o
            want = _block_mean(np.abs(step), self.block)
            # (1 − 1e-5): float32 rounding of the blend must not exceed the allowance
            lam = np.where(want > allow, allow / np.maximum(want, 1e-12) * (1 - 1e-5), 1.0)
            lam = np.clip(lam, 0.0, 1.0)
            lam_px = _expand(lam, h, w, self.block)[..., None].astype(np.float32)
            o = np.where(lam_px >= 1.0, y, self._o + lam_px * step).astype(np.float32)
        self._x, self._o = x, o
        return o
