"""The service's routes, one module per resource: :mod:`.scenes` (upload, open, facts,
files), :mod:`.jobs` (compress and render jobs, job state), :mod:`.frames` (rendered
frames). Each module's ``router(state)`` builds its :class:`fastapi.APIRouter` for one
:class:`AppState` (the app factory, :func:`exgs.service.app.create_app`, includes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AppState:
    """What the routes share: settings, the resolved device, the scene store, the job
    manager and the lazily loaded engines."""

    config: object      # ServiceConfig
    device: str         # "cpu" | "cuda" (exgs.pipeline.resolve_device)
    devices: dict       # capabilities for /v1/health
    store: object       # SceneStore
    jobs: object        # JobManager
    engines: object     # Engines

    @property
    def limits(self):
        return self.config.limits
