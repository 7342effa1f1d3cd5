"""The ExGS job service (FastAPI): ``create_app(config)`` builds the application; the
``exgs serve`` command (:mod:`exgs.commands.serve`) runs it with uvicorn. The routes live in
:mod:`exgs.service.routes` (scenes, jobs, frames); the work itself is :mod:`exgs.pipeline`.

Endpoints (all need ``Authorization: Bearer <token>``; see docs/service.md):

=======  ==============================  ==================================================
GET      /v1/health                      version, device, gsplat, painter, limits
GET      /v1/scenes                      scenes held
POST     /v1/scenes?filename=NAME        upload a scene file (raw body, streamed) → scene
POST     /v1/scenes/open                 {path} of a file under --allow-dir → scene
GET      /v1/scenes/{id}                 scene info (with its facts)
PUT      /v1/scenes/{id}/facts           {kept_fraction, refined, painter_delta} of the scene
DELETE   /v1/scenes/{id}                 forget a scene
GET      /v1/scenes/{id}/file            the scene file (.exgs for compressed scenes)
POST     /v1/scenes/{id}/compress        UGC job → result {scene_id, stats}
POST     /v1/scenes/{id}/render          render job → frames
GET      /v1/jobs                        jobs
GET      /v1/jobs/{id}?since=V&wait=S    job state (long poll until version > V)
POST     /v1/jobs/{id}/cancel            request cancellation
DELETE   /v1/jobs/{id}                   cancel and forget a job and its frames
GET      /v1/jobs/{id}/frames/{i}        frame i (binary float32 or PNG, see frames.py)
POST     /v1/viewport                    render a Blender 3D-view region now (routes/viewport.py)
POST     /v1/viewport/cancel             drop a viewport session's older requests
GET      /openapi.json                   the OpenAPI schema
=======  ==============================  ==================================================

Errors are always JSON ``{"error": "<one line>", "detail": ...}`` (:mod:`.errors`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .auth import check_bearer
from .config import ServiceConfig
from .engines import Engines, device_info, painter_status
from .errors import ApiError, install_handlers, responses
from .farm import load_info
from .jobs import JobManager
from .routes import AppState, frames, jobs, scenes, viewport
from .scenes import SceneStore

API_VERSION = 1


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application of ``config`` (its device is resolved here, once)."""
    from ..pipeline import resolve_device

    limits = config.limits
    device = resolve_device(config.device)
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    state = AppState(config=config, device=device, devices=device_info(),
                     store=SceneStore(config.data_dir, limits.max_gaussians,
                                      limits.max_scene_memory),
                     jobs=JobManager(config.data_dir, [device], limits.max_open_jobs,
                                     limits.max_finished_jobs, limits.frame_memory_bytes),
                     engines=Engines(config, device))
    bearer = HTTPBearer(auto_error=False, description="the token printed in --token-file")

    async def require_token(request: Request,
                            _cred: Optional[HTTPAuthorizationCredentials] = Security(bearer)):
        if not check_bearer(request.headers.get("authorization"), config.token):
            raise ApiError(401, "missing or wrong bearer token",
                           headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="ExGS service", version=__version__, openapi_url=None, docs_url=None,
                  redoc_url=None, dependencies=[Depends(require_token)],
                  description="Compress and render 3D Gaussian Splatting scenes (ExGS).")
    app.state.config, app.state.store, app.state.jobs = config, state.store, state.jobs
    app.state.exgs = state
    install_handlers(app)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi():
        return JSONResponse(app.openapi())

    @app.get("/v1/health", tags=["service"], summary="Version, device and capabilities",
             responses=responses())
    async def health():
        return health_info(state)

    for module in (scenes, jobs, frames, viewport):
        app.include_router(module.router(state))
    app.add_middleware(BodyLimitMiddleware, limit=limits.max_json_bytes,
                       timeout=limits.body_timeout_s)
    app.add_middleware(BearerAuthMiddleware, token=config.token)
    return app


def health_info(state: AppState) -> dict:
    config, limits = state.config, state.limits
    render_ok = importlib.util.find_spec("exgs.render") is not None
    ugc_ok = (importlib.util.find_spec("exgs.ugc") is not None
              and importlib.util.find_spec("exgs.io.exgs") is not None)
    return {
        "ok": True, "service": "exgs", "version": __version__, "api": API_VERSION,
        "device": state.device, "devices": state.devices,
        "gsplat": bool(state.devices.get("gsplat")),
        "renderer": {"available": render_ok},
        "compress": {"available": ugc_ok},
        "painter": painter_status(config),
        "allow_dir": config.allow_dir is not None,
        "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
        "jobs_open": state.jobs.open_count(), "scenes": len(state.store.list()),
        "pid": os.getpid(), "warm_up": warm_state(),
        "load": load_info(state.jobs, state.store.list()),
    }


def warm_state() -> dict:
    """Kernel warm-up state (exgs.render.viewport.warm_up, started by ``exgs serve``)."""
    from .engines import import_optional

    mod, _ = import_optional("exgs.render.viewport")
    return mod.warm_state() if mod is not None else {"done": False, "error": "unavailable"}


class BearerAuthMiddleware:
    """Rejects every HTTP request without the right bearer token (401 JSON) before routing,
    so unauthenticated clients learn nothing (not even which paths exist)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            auth = None
            for k, v in scope.get("headers", ()):
                if k == b"authorization":
                    auth = v.decode("latin-1")
                    break
            if not check_bearer(auth, self.token):
                resp = JSONResponse({"error": "missing or wrong bearer token", "detail": None},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with a JSON 413 *before* they are read
    or parsed (issue 19: a 44 MB render body used to block the event loop for seconds): a
    declared ``Content-Length`` is checked first, a chunked body is counted as it arrives.
    Scene uploads (``POST /v1/scenes``) stream to disk under their own limit. Every body
    (uploads too) must keep arriving: waiting more than ``timeout`` seconds for its next
    piece gives a 408."""

    def __init__(self, app, limit: int, timeout: float = 30.0):
        self.app, self.limit, self.timeout = app, int(limit), float(timeout)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receive = self._timed(receive)
        if scope["method"] == "POST" and scope["path"] == "/v1/scenes":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    n = -1
                if n > self.limit:
                    await self._refuse(scope, receive, send, n)
                    return
                break
        seen = 0
        limit = self.limit

        async def bounded_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:  # an HTTPException: FastAPI's body reader lets it through
                    raise StarletteHTTPException(
                        413, f"request body exceeds the limit of {limit} bytes")
            return msg

        await self.app(scope, bounded_receive, send)

    def _timed(self, receive):
        """``receive`` with a timeout while the body is incomplete (afterwards it only waits
        for the disconnect, which may take as long as the response does)."""
        import asyncio

        done = False
        timeout = self.timeout

        async def timed_receive():
            nonlocal done
            if done:
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                raise StarletteHTTPException(
                    408, f"the request body stalled for more than {timeout:g} s") from None
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                done = True
            return msg

        return timed_receive

    async def _refuse(self, scope, receive, send, n: int):
        resp = JSONResponse({"error": f"request body of {n} bytes exceeds the limit of "
                                      f"{self.limit} bytes", "detail": None}, status_code=413,
                            headers={"Connection": "close"})
        await resp(scope, receive, send)


__all__ = ["create_app", "ApiError", "BearerAuthMiddleware", "BodyLimitMiddleware"]
