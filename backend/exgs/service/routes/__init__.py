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


def offloop_json(body: bytes):
    """``json.loads`` of a request body (run in the thread pool by :class:`JsonOffLoopRoute`)."""
    import json

    return json.loads(body)


def json_off_loop_route():
    """An :class:`fastapi.routing.APIRoute` whose request bodies are JSON-decoded off the
    event loop (issue 19: a big render body decoded on the loop stalled every other request;
    bodies are also bounded before they are read, :class:`exgs.service.app.BodyLimitMiddleware`).
    Pydantic validation of the decoded value still runs on the loop."""
    from fastapi import Request
    from fastapi.routing import APIRoute
    from starlette.concurrency import run_in_threadpool

    class OffLoopRequest(Request):
        async def json(self):
            if not hasattr(self, "_json"):
                self._json = await run_in_threadpool(offloop_json, await self.body())
            return self._json

    class JsonOffLoopRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def off_loop(request):
                return await handler(OffLoopRequest(request.scope, request.receive))

            return off_loop

    return JsonOffLoopRoute
