"""GaussPainter: one-step latent restorer for renders of pruned Gaussian scenes.

``load_painter(path=None, device="cpu") -> Painter``; ``Painter.restore(rgb [H,W,3],
alpha [H,W]) -> rgb [H,W,3]`` and ``Painter.restore_batch``. See :mod:`exgs.painter.model`
for the network and the do-no-harm gate, :mod:`exgs.painter.infer` for tiling, and
``docs/painter.md``.
"""

from __future__ import annotations


def load_painter(path=None, device: str = "cpu"):
    """See :func:`exgs.painter.infer.load_painter` (imported lazily: torch/diffusers are heavy)."""
    from .infer import load_painter as _load

    return _load(path, device)


def __getattr__(name):
    if name in ("Painter", "DEFAULT_WEIGHTS"):
        from . import infer

        return getattr(infer, name)
    if name in ("PainterNet", "PainterConfig"):
        from . import model

        return getattr(model, name)
    raise AttributeError(name)


__all__ = ["load_painter"]
