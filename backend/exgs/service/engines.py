"""The heavy parts of the service (renderer, compressor, painter), loaded lazily and shared
by the job workers; and what the service can do (``GET /v1/health``)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

from .config import ServiceConfig
from .errors import ApiError, unavailable

log = logging.getLogger("exgs.service")


def import_optional(module: str):
    """Import ``module`` or return the exception (the heavy parts land independently)."""
    try:
        return importlib.import_module(module), None
    except ImportError as e:
        return None, e
    except Exception as e:  # a half-written module must not take the service down
        log.exception("importing %s failed", module)
        return None, e


def painter_weights_dir(config: ServiceConfig) -> Path:
    if config.painter_weights:
        return Path(config.painter_weights)
    import exgs

    return Path(exgs.__file__).resolve().parent / "painter" / "weights"


def painter_status(config: ServiceConfig) -> dict:
    d = painter_weights_dir(config)
    need = [d / "painter.json", d / "vae" / "config.json", d / "unet" / "config.json"]
    present = all(p.is_file() for p in need)
    spec = importlib.util.find_spec("exgs.painter.infer") is not None
    reason = None
    if not spec:
        reason = "exgs.painter.infer is missing"
    elif not present:
        reason = f"no painter weights in {d}"
    return {"available": spec and present, "weights_present": present, "weights": str(d),
            "reason": reason}


def device_info() -> dict:
    mod, _ = import_optional("exgs.render")
    if mod is not None:
        try:
            return dict(mod.available_devices())
        except Exception:
            log.exception("available_devices() failed")
    gs = importlib.util.find_spec("gsplat") is not None
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    return {"cpu": True, "cuda": cuda, "gsplat": gs}


class Engines:
    """Lazily loaded heavy parts; ``painters`` is the shared
    :class:`exgs.pipeline.PainterCache` (generic painter + a few adapted ones);
    ``restore_memo`` the :class:`exgs.pipeline.RestoreMemo` of temporal render jobs."""

    def __init__(self, config: ServiceConfig, device: str):
        from ..pipeline import PainterCache, RestoreMemo, painter_device

        self.config = config
        self.painters = PainterCache(config.painter_weights, painter_device(device))
        #: unrestored + restored images of recent animation frames (temporal renders)
        self.restore_memo = RestoreMemo(config.limits.restore_memo_bytes)

    def render_module(self):
        mod, err = import_optional("exgs.render")
        if mod is None:
            raise unavailable("rendering", "exgs.render", err)
        return mod

    def compress_module(self):
        mod, err = import_optional("exgs.ugc")
        if mod is None or not hasattr(mod, "compress"):
            raise unavailable("compression", "exgs.ugc", err)
        fmt, err2 = import_optional("exgs.io.exgs")
        if fmt is None:
            raise unavailable("compression", "exgs.io.exgs", err2)
        return mod

    def check_painter(self) -> None:
        st = painter_status(self.config)
        if not st["available"]:
            raise ApiError(503, f"restore (GaussPainter) is not available in this build: "
                                f"{st['reason']}", st)
