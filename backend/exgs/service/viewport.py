"""Viewport frames: ``POST /v1/viewport`` renders the resident scenes of a Blender 3D-view
region synchronously (no job, no polling) and answers with one frame
(:mod:`exgs.service.viewport_codec`); ``POST /v1/viewport/cancel`` drops a client's stale
requests.

Requests of one client carry its ``session`` and an increasing ``generation``. Viewport
renders run one at a time (two would only share the cores); a request that is older than
the newest one seen for its session, or cancelled, is answered ``409 superseded`` as soon as
it is noticed: before it starts, between objects, or before encoding.

The router is mounted by the app (``app.include_router(make_router(...))``); it inherits
the app's bearer-token dependency and error handlers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Annotated, Callable, Optional

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..errors import ExgsError, UsageError
from . import viewport_codec
from .models import Matrix4


class ViewportObject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene_id: Annotated[str, Field(min_length=1, max_length=128)]
    matrix_world: Matrix4 = Field(description="the splat object's matrix_world (Blender)")
    keep: Optional[float] = Field(None, gt=0, le=1, allow_inf_nan=False,
                                  validation_alias=AliasChoices("keep", "kept_fraction"),
                                  description="with restore: kept fraction (painter gate; "
                                              "also accepted as kept_fraction, the add-on's "
                                              "name); default: the scene's facts")
    refined: Optional[bool] = Field(None, description="with restore: the object's Gaussians "
                                    "were refined after pruning (the painter's refined gate "
                                    "table); default: the scene's facts")
    painter_delta: Optional[Annotated[str, Field(max_length=8 << 20)]] = Field(
        None, description="with restore: per-scene painter delta (base64); default: the "
                          "scene's facts")


class ViewportRequest(BaseModel):
    """A 3D-view region: ``RegionView3D.view_matrix`` / ``window_matrix`` and the region
    size in pixels; ``crop`` (x0, y0, x1, y1; y from the bottom) limits the render to a
    sub-rectangle (render border); ``scale`` renders at a fraction of that size
    (progressive refinement)."""

    model_config = ConfigDict(extra="forbid")
    objects: Annotated[list[ViewportObject], Field(max_length=256)]
    view_matrix: Matrix4
    window_matrix: Matrix4
    width: int = Field(ge=1, le=8192)
    height: int = Field(ge=1, le=8192)
    crop: Optional[Annotated[list[Annotated[int, Field(ge=0, le=8192)]],
                             Field(min_length=4, max_length=4)]] = None
    scale: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    sh_degree: Optional[int] = Field(None, ge=0, le=3)
    depth: bool = Field(False, description="also send the depth plane")
    background: Optional[Annotated[list[Annotated[float, Field(ge=0, le=1e4,
                                                               allow_inf_nan=False)]],
                                   Field(min_length=3, max_length=3)]] = Field(
        None, description="scene-linear RGB behind the splats (an opaque frame, as Blender's "
                          "non-transparent film); default: transparent")
    max_gaussians: Optional[int] = Field(
        None, ge=1000, le=2**31 - 1,
        description="coarse preview: render only this many of the most important Gaussians")
    restore: bool = Field(False, description="run GaussPainter on each object's layer")
    session: Annotated[str, Field(max_length=64)] = ""
    generation: int = Field(0, ge=0, le=2**32 - 1)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: Annotated[str, Field(min_length=1, max_length=64)]
    generation: int = Field(ge=0, le=2**32 - 1, description="cancel this and older requests")


class Superseded(Exception):
    pass


class Sessions:
    """Newest and cancelled-up-to generation per client session (the 256 most recent)."""

    def __init__(self, max_sessions: int = 256):
        self._lock = threading.Lock()
        self._s: OrderedDict = OrderedDict()  # session → [newest, cancelled_upto]
        self.max = max_sessions

    def _entry(self, session):
        e = self._s.get(session)
        if e is None:
            e = self._s[session] = [-1, -1]
            while len(self._s) > self.max:
                self._s.popitem(last=False)
        self._s.move_to_end(session)
        return e

    def arrive(self, session: str, gen: int) -> None:
        if session:
            with self._lock:
                e = self._entry(session)
                e[0] = max(e[0], gen)

    def cancel(self, session: str, gen: int) -> None:
        with self._lock:
            e = self._entry(session)
            e[1] = max(e[1], gen)

    def stale(self, session: str, gen: int) -> bool:
        if not session:
            return False
        with self._lock:
            e = self._s.get(session)
            return e is not None and (gen < e[0] or gen <= e[1])


class ViewportRenderer:
    """Renders :class:`ViewportRequest` s against a scene store (one at a time)."""

    def __init__(self, store, *, backend: str = "cpu", restorer: Callable | None = None,
                 check_restore: Callable | None = None):
        """``restorer(obj, entry) -> f(rgb, alpha) -> rgb`` builds GaussPainter for one
        object (its scene's facts, overridden by the request's ``keep``/``refined``/
        ``painter_delta``);
        ``check_restore()`` raises when restore is unavailable."""
        self.store, self.backend = store, backend
        self.restorer, self.check_restore = restorer, check_restore
        self.sessions = Sessions()
        self._lock = threading.Lock()
        self.last_timings: dict = {}

    def render(self, body: ViewportRequest) -> bytearray:
        """The encoded frame for ``body``; ``self.last_timings`` gets its stage times (ms)."""
        t0 = time.perf_counter()
        self.sessions.arrive(body.session, body.generation)
        entries = [self.store.get(o.scene_id) for o in body.objects]  # 404 before waiting
        if body.restore and self.check_restore is not None:
            self.check_restore()

        def check():
            if self.sessions.stale(body.session, body.generation):
                raise Superseded()

        post = None
        if body.restore and self.restorer is not None:
            fns = [self.restorer(o, e) for o, e in zip(body.objects, entries)]

            from ..pipeline.restore import restore_rgba

            def post(i, rgb, alpha):
                return restore_rgba(fns[i], rgb, alpha)

        from ..render.viewport import render_objects

        with self._lock:
            check()
            try:
                frame = render_objects(
                    [(self.store.load(e), np.asarray(o.matrix_world, np.float64))
                     for e, o in zip(entries, body.objects)],
                    body.view_matrix, body.window_matrix, body.width, body.height,
                    scale=body.scale, crop=body.crop, sh_degree=body.sh_degree,
                    backend=self.backend, check=check, post=post,
                    max_gaussians=body.max_gaussians, background=body.background)
            except UsageError:
                raise
            except ExgsError as e:  # e.g. a degenerate camera: the client's numbers
                raise UsageError(str(e)) from None
        data = viewport_codec.encode(frame.rgb, frame.alpha,
                                     frame.depth if body.depth else None,
                                     generation=body.generation, ortho=frame.ortho)
        total = 1e3 * (time.perf_counter() - t0)
        viewport_codec.set_ms(data, total)
        self.last_timings = dict(frame.timings, total_ms=total)
        return data


def make_router(renderer: ViewportRenderer) -> APIRouter:
    router = APIRouter(tags=["viewport"])

    @router.post("/v1/viewport", summary="Render a Blender 3D-view region (synchronous)",
                 response_class=Response,
                 responses={200: {"content": {viewport_codec.MEDIA_TYPE: {}}},
                            409: {"description": "superseded by a newer request"}})
    async def viewport(body: ViewportRequest):
        try:
            data = await run_in_threadpool(renderer.render, body)
        except Superseded:
            return JSONResponse({"error": "superseded by a newer viewport request",
                                 "detail": {"generation": body.generation}}, status_code=409)
        except UsageError as e:
            return JSONResponse({"error": " ".join(str(e).split()), "detail": None},
                                status_code=422)
        t = renderer.last_timings
        return Response(bytes(data), media_type=viewport_codec.MEDIA_TYPE, headers={
            "X-Exgs-Timings": ",".join(f"{k}={v:.1f}" for k, v in t.items())})

    @router.post("/v1/viewport/cancel", summary="Drop a session's requests up to a generation")
    async def viewport_cancel(body: CancelRequest):
        renderer.sessions.cancel(body.session, body.generation)
        return {"session": body.session, "cancelled_upto": body.generation}

    return router


__all__ = ["ViewportRequest", "ViewportObject", "CancelRequest", "ViewportRenderer",
           "Sessions", "Superseded", "make_router"]
