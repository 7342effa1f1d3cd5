"""The one device resolver of the CLI, the service and the farms.

``resolve_device("auto" | "cpu" | "cuda" | "gsplat") -> "cpu" | "cuda"``. ``"cuda"`` means
the gsplat rasterizer runs on a CUDA device, which needs *both* a CUDA device that torch
sees *and* an importable gsplat (the renderer's own rule, :func:`exgs.render.select_device`).
With CUDA present but gsplat missing, ``"auto"`` gives ``"cpu"`` and ``"cuda"`` is refused
with one line — before this resolver existed the service answered ``"cuda"`` there and every
render then failed.

The painter runs on the same device (:func:`painter_device`).
"""

from __future__ import annotations

from ..errors import UsageError

DEVICES = ("auto", "cpu", "cuda", "gsplat")


def resolve_device(requested: str | None = "auto") -> str:
    """``requested`` (``auto``, ``cpu``, ``cuda`` or ``gsplat``; case-insensitive, None =
    auto) → ``"cpu"`` or ``"cuda"``. Raises UsageError for an unknown name, and for
    ``cuda``/``gsplat`` when no CUDA device with gsplat is available (the message says
    which of the two is missing)."""
    d = (requested or "auto").strip().lower()
    if d not in DEVICES:
        raise UsageError(f"unknown device {requested!r} (expected auto, cpu or cuda)")
    if d == "cpu":
        return "cpu"
    from ..render import select_device

    try:
        backend = select_device(d)
    except UsageError:
        if _torch_cuda():  # CUDA is there: the renderer refused because gsplat is missing
            raise UsageError(f"--device {d} was requested and CUDA is available, but gsplat "
                             f"is not installed (use --device cpu or auto)") from None
        raise
    return "cuda" if backend == "gsplat" else "cpu"


def painter_device(device: str) -> str:
    """The torch device GaussPainter runs on for a resolved render ``device``."""
    return "cuda" if device in ("cuda", "gsplat") else "cpu"


def _torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - depends on the install
        return False
