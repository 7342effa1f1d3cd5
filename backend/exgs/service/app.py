"""The ExGS job service (FastAPI). ``create_app(config)`` builds the application; the
``exgs serve`` command (:mod:`exgs.commands.serve`) runs it with uvicorn.

Endpoints (all need ``Authorization: Bearer <token>``; see docs/service.md):

=======  ==============================  ==================================================
GET      /v1/health                      version, device, gsplat, painter, limits
GET      /v1/scenes                      scenes held
POST     /v1/scenes?filename=NAME        upload a scene file (raw body, streamed) → scene
POST     /v1/scenes/open                 {path} of a file under --allow-dir → scene
GET      /v1/scenes/{id}                 scene info
DELETE   /v1/scenes/{id}                 forget a scene
GET      /v1/scenes/{id}/file            the scene file (.exgs for compressed scenes)
POST     /v1/scenes/{id}/compress        UGC job → result {scene_id, stats}
POST     /v1/scenes/{id}/render          render job → frames
GET      /v1/jobs                        jobs
GET      /v1/jobs/{id}?since=V&wait=S    job state (long poll until version > V)
POST     /v1/jobs/{id}/cancel            request cancellation
DELETE   /v1/jobs/{id}                   cancel and forget a job and its frames
GET      /v1/jobs/{id}/frames/{i}        frame i (binary float32 or PNG, see frames.py)
GET      /openapi.json                   the OpenAPI schema
=======  ==============================  ==================================================

Errors are always JSON ``{"error": "<one line>", "detail": ...}``; unexpected exceptions are
logged here and answered with a 500 that carries no traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ExgsError, UsageError
from . import frames as frame_codec
from .auth import check_bearer
from .config import ServiceConfig
from .jobs import FINISHED, JobLimitError, JobManager, LazyFrame
from .models import BlenderCameraSpec, CompressRequest, OpenRequest, RenderRequest
from .scenes import SceneError, SceneStore

log = logging.getLogger("exgs.service")

API_VERSION = 1


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, message: str, detail=None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.headers = status, message, detail, headers


def unavailable(what: str, module: str, exc: BaseException | None = None) -> ApiError:
    reason = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ApiError(503, f"{what} is not available in this build: {module} cannot be "
                         f"imported{reason}", {"module": module})


# --------------------------------------------------------------------------- optional parts
def _import(module: str):
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


class Engines:
    """Lazily loaded heavy parts (renderer, compressor, painter), shared by the workers."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self._lock = threading.Lock()
        self._painter = None

    def render_module(self):
        mod, err = _import("exgs.render")
        if mod is None:
            raise unavailable("rendering", "exgs.render", err)
        return mod

    def compress_module(self):
        mod, err = _import("exgs.ugc")
        if mod is None or not hasattr(mod, "compress"):
            raise unavailable("compression", "exgs.ugc", err)
        fmt, err2 = _import("exgs.io.exgs_format")
        if fmt is None:
            raise unavailable("compression", "exgs.io.exgs_format", err2)
        return mod

    def check_painter(self) -> None:
        st = painter_status(self.config)
        if not st["available"]:
            raise ApiError(503, f"restore (GaussPainter) is not available in this build: "
                                f"{st['reason']}", st)

    def painter(self, device: str):
        with self._lock:
            if self._painter is None:
                from ..painter import load_painter

                path = self.config.painter_weights
                self._painter = load_painter(path, device="cuda" if device == "cuda" else "cpu")
            return self._painter

    def adapted_painter(self, device: str, delta: bytes):
        """(painter, note): the generic painter with ``delta`` applied (a few recent ones
        are cached by content); a delta made for other weights gives the generic painter and
        a note saying so. (Deltas are validated before the job is queued.)"""
        from ..painter.delta import DeltaMismatch, apply_delta
        from ..painter.infer import Painter

        generic = self.painter(device)
        key = hashlib.sha256(delta).hexdigest()
        with self._lock:
            cache = self.__dict__.setdefault("_adapted", {})
            if key in cache:
                cache[key] = cache.pop(key)  # most recent last
                return cache[key], "applied"
        try:
            p = Painter(apply_delta(generic.net, delta), generic.device)
        except DeltaMismatch as e:
            log.warning("painter delta skipped: %s", e)
            return generic, f"skipped: {e}"
        with self._lock:
            cache[key] = p
            while len(cache) > 4:
                cache.pop(next(iter(cache)))
        return p, "applied"


def resolve_device(requested: str) -> str:
    """"auto" | "cpu" | "cuda" → the worker's device label "cpu" or "cuda"."""
    d = (requested or "auto").lower()
    if d not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device {requested!r} (expected auto, cpu or cuda)")
    if d == "cpu":
        return "cpu"
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    if d == "cuda" and not cuda:
        raise UsageError("--device cuda was requested but no CUDA device is available")
    return "cuda" if cuda else "cpu"


def device_info() -> dict:
    mod, _ = _import("exgs.render")
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


# --------------------------------------------------------------------------- cameras
def to_camera(spec, index: int, size=None):
    """A request camera (either form) → ``exgs.cameras.Camera``; 422 when degenerate."""
    from ..cameras import Camera, camera_from_blender

    try:
        with np.errstate(all="ignore"):
            if isinstance(spec, BlenderCameraSpec):
                cam = camera_from_blender(**spec.model_dump())
            else:
                cam = Camera.from_dict(spec.model_dump())
            if size is not None:
                cam = cam.resized(int(size[0]), int(size[1]))
    except (ExgsError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as e:
        raise ApiError(422, f"camera {index}: {e}") from None
    m = cam.world_to_camera
    vals = np.array([cam.fx, cam.fy, cam.cx, cam.cy], np.float64)
    if not (np.isfinite(m).all() and np.isfinite(vals).all()):
        raise ApiError(422, f"camera {index}: the camera numbers give a non-finite view")
    det = abs(float(np.linalg.det(m[:3, :3])))
    if not (det > 1e-18) or not np.isfinite(det):
        raise ApiError(422, f"camera {index}: the view transform is singular")
    return cam


def check_size(cam, index: int, limits) -> None:
    if max(cam.width, cam.height) > limits.max_image_side or \
            cam.width * cam.height > limits.max_pixels:
        raise ApiError(422, f"camera {index}: {cam.width}x{cam.height} exceeds the limit "
                            f"({limits.max_image_side} px per side, {limits.max_pixels} pixels)")


def _jsonable(x):
    """Stats from the compressor → JSON-safe (numpy scalars/arrays, non-finite floats)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _progress_adapter(ctx):
    """A progress callback accepting (fraction), (fraction, message), (done, total) or
    keywords; it raises Cancelled inside the compressor when a cancel was requested."""

    def cb(*args, **kw):
        frac = kw.get("fraction", kw.get("progress"))
        msg = kw.get("message", kw.get("msg"))
        nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        strs = [a for a in args if isinstance(a, str)]
        if frac is None and nums:
            frac = nums[0] / nums[1] if len(nums) >= 2 and nums[1] else nums[0]
        if msg is None and strs:
            msg = strs[0]
        ctx.progress(frac, msg)

    return cb


def _delta_result(res) -> dict:
    """The compress job's ``painter_delta`` result: the adaptation's figures and, when a
    delta was stored, its bytes in base64 (``data_b64``) so a client that keeps the scene in
    another form (the Blender add-on keeps a PLY) can send it back with render requests."""
    import base64

    from ..io.exgs_format import exgs_delta_from_bytes

    pd = _jsonable(dict(res.stats.get("painter_delta") or {}))
    pd.pop("loss_history", None)
    blob = exgs_delta_from_bytes(res.data)
    if blob is not None:
        pd["data_b64"] = base64.b64encode(blob).decode("ascii")
    return pd


# --------------------------------------------------------------------------- the app
def create_app(config: ServiceConfig) -> FastAPI:
    limits = config.limits
    device = resolve_device(config.device)
    devices = device_info()
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    store = SceneStore(config.data_dir)
    jobs = JobManager(config.data_dir, [device], limits.max_open_jobs, limits.max_finished_jobs,
                      limits.frame_memory_bytes)
    engines = Engines(config)
    bearer = HTTPBearer(auto_error=False, description="the token printed in --token-file")

    async def require_token(request: Request,
                            _cred: Optional[HTTPAuthorizationCredentials] = Security(bearer)):
        if not check_bearer(request.headers.get("authorization"), config.token):
            raise ApiError(401, "missing or wrong bearer token",
                           headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="ExGS service", version=__version__, openapi_url=None, docs_url=None,
                  redoc_url=None, dependencies=[Depends(require_token)],
                  description="Compress and render 3D Gaussian Splatting scenes (ExGS).")
    app.state.config, app.state.store, app.state.jobs = config, store, jobs

    # ------------------------------------------------------------------ errors
    def err(status, message, detail=None, headers=None):
        return JSONResponse({"error": " ".join(str(message).split()) or "error",
                             "detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return err(exc.status, exc.message, exc.detail, exc.headers)

    @app.exception_handler(SceneError)
    async def _scene_error(request, exc: SceneError):
        return err(exc.status, str(exc))

    @app.exception_handler(JobLimitError)
    async def _job_limit(request, exc):
        return err(429, str(exc))

    @app.exception_handler(ExgsError)
    async def _exgs_error(request, exc):
        return err(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return err(exc.status_code, exc.detail, None, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        detail = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        return err(422, f"invalid request: {where + ': ' if where else ''}{first['msg']}", detail)

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return err(500, "internal server error (logged on the server)")

    # ------------------------------------------------------------------ helpers
    def scene_or_404(sid: str):
        return store.get(sid)

    async def wait_for_change(job, done, timeout: float) -> None:
        """Wait (without busy looping) until ``done()`` is true or ``timeout`` seconds."""
        if done():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        changed = asyncio.Event()

        def wake():
            loop.call_soon_threadsafe(changed.set)

        jobs.add_waiter(job, wake)
        try:
            while not done():
                left = deadline - loop.time()
                if left <= 0:
                    break
                changed.clear()
                if done():
                    break
                try:
                    await asyncio.wait_for(changed.wait(), timeout=left)
                except asyncio.TimeoutError:
                    break
        finally:
            jobs.remove_waiter(job, wake)

    def job_or_404(jid: str):
        job = jobs.get(jid)
        if job is None:
            raise ApiError(404, f"no job with id {jid!r}")
        return job

    # ------------------------------------------------------------------ routes
    @app.get("/openapi.json", include_in_schema=False)
    async def openapi():
        return JSONResponse(app.openapi())

    @app.get("/v1/health", tags=["service"], summary="Version, device and capabilities")
    async def health():
        render_ok = importlib.util.find_spec("exgs.render") is not None
        ugc_ok = (importlib.util.find_spec("exgs.ugc") is not None
                  and importlib.util.find_spec("exgs.io.exgs_format") is not None)
        return {
            "ok": True, "service": "exgs", "version": __version__, "api": API_VERSION,
            "device": device, "devices": devices, "gsplat": bool(devices.get("gsplat")),
            "renderer": {"available": render_ok},
            "compress": {"available": ugc_ok},
            "painter": painter_status(config),
            "allow_dir": config.allow_dir is not None,
            "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
            "jobs_open": jobs.open_count(), "scenes": len(store.list()), "pid": os.getpid(),
        }

    @app.get("/v1/scenes", tags=["scenes"], summary="Scenes held by the service")
    async def list_scenes():
        return {"scenes": [e.info() for e in store.list()]}

    @app.post("/v1/scenes", tags=["scenes"], status_code=201,
              summary="Upload a scene file (PLY, SPZ, SOG zip, compressed PLY, .exgs)",
              responses={200: {"description": "already held (deduplicated)"},
                         413: {"description": "larger than the upload limit"}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string",
                                                          "format": "binary"}}}}})
    async def upload(request: Request,
                     filename: str = Query("scene", max_length=255,
                                           description="original file name (for messages "
                                                       "and the suffix)")):
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise ApiError(400, "bad Content-Length header") from None
            if n > limits.max_upload_bytes:
                raise ApiError(413, f"upload of {n} bytes exceeds the limit of "
                                    f"{limits.max_upload_bytes} bytes")
        tmp = store.dir / f".incoming-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_upload_bytes:
                        raise ApiError(413, f"upload exceeds the limit of "
                                            f"{limits.max_upload_bytes} bytes")
                    h.update(chunk)
                    f.write(chunk)
            if size == 0:
                raise ApiError(400, f"{filename}: empty upload")
            entry, dedup = await run_in_threadpool(store.add_uploaded, str(tmp), h.hexdigest(),
                                                   size, filename)
        finally:
            if tmp.exists():
                tmp.unlink()
        info = entry.info()
        info["deduplicated"] = dedup
        return JSONResponse(info, status_code=200 if dedup else 201)

    @app.post("/v1/scenes/open", tags=["scenes"],
              summary="Open a scene file on the server's disk (only under --allow-dir)",
              responses={403: {"description": "no --allow-dir, or the path is outside it"}})
    async def open_path(body: OpenRequest):
        if config.allow_dir is None:
            raise ApiError(403, "opening files by path is disabled (server started without "
                                "--allow-dir)")
        if "\0" in body.path:
            raise ApiError(400, "path contains a NUL byte")
        raw = os.path.expanduser(body.path)
        if not os.path.isabs(raw):
            raw = os.path.join(config.allow_dir, raw)
        real = os.path.realpath(raw)
        root = config.allow_dir
        try:
            inside = os.path.commonpath([real, root]) == root
        except ValueError:  # e.g. another drive on Windows
            inside = False
        if not inside:
            raise ApiError(403, f"{body.path}: outside the allowed folder")
        if not os.path.exists(real):
            raise ApiError(404, f"{body.path}: no such file")
        if os.path.isdir(real) and not os.path.isfile(os.path.join(real, "meta.json")):
            raise ApiError(400, f"{body.path}: is a folder (not a SOG scene)")
        entry, dedup = await run_in_threadpool(store.add_path, real)
        info = entry.info()
        info["deduplicated"] = dedup
        return info

    @app.get("/v1/scenes/{scene_id}", tags=["scenes"], summary="Scene info")
    async def scene_info(scene_id: str):
        return scene_or_404(scene_id).info()

    @app.delete("/v1/scenes/{scene_id}", tags=["scenes"], summary="Forget a scene")
    async def delete_scene(scene_id: str):
        e = store.delete(scene_id)
        return {"deleted": e.id}

    @app.get("/v1/scenes/{scene_id}/file", tags=["scenes"],
             summary="Download the scene file (.exgs for compressed scenes)",
             response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}}})
    async def scene_file(scene_id: str):
        e = scene_or_404(scene_id)
        if not os.path.isfile(e.path):
            raise ApiError(409, f"scene {scene_id} is a folder (SOG) and has no single file")
        return FileResponse(e.path, media_type="application/octet-stream",
                            filename=os.path.basename(e.path))

    @app.post("/v1/scenes/{scene_id}/compress", tags=["jobs"], status_code=202,
              summary="Compress with UGC (job); the result holds the new scene id and stats")
    async def compress(scene_id: str, body: CompressRequest):
        e = scene_or_404(scene_id)
        mod = engines.compress_module()
        if body.ratio is not None and body.keep is not None:
            raise ApiError(422, "give ratio or keep, not both")
        if body.sh_degree > e.summary.get("sh_degree", 0):
            raise ApiError(422, f"sh_degree {body.sh_degree} exceeds the scene's SH degree "
                                f"{e.summary.get('sh_degree', 0)}")
        if isinstance(body.keep, int) and body.keep > e.summary.get("gaussians", 0):
            raise ApiError(422, f"keep={body.keep} exceeds the scene's "
                                f"{e.summary.get('gaussians', 0)} Gaussians")
        cams = None
        if body.cameras:
            cams = [to_camera(c, i) for i, c in enumerate(body.cameras)]
            for i, c in enumerate(cams):
                check_size(c, i, limits)
        if body.adapt is not None:
            engines.check_painter()
        if body.refine is not None and body.adapt is not None:
            raise ApiError(422, "refine and adapt together are not supported yet")
        scene, stem = e.scene, Path(e.name).stem or "scene"

        def run(ctx):
            ctx.progress(0.0, "compressing")
            kw = dict(ratio=body.ratio, keep=body.keep, sh_degree=body.sh_degree,
                      cameras=cams, source_bytes=e.file_bytes,
                      progress=_progress_adapter(ctx), device=device)
            if body.adapt is not None:
                from ..painter.adapt import AdaptConfig, compress_adapted

                ctx.progress(0.0, "loading GaussPainter")
                net = engines.painter(device).net
                cfg = AdaptConfig(seconds=float(body.adapt), threads=1)
                if body.adapt_form:
                    cfg.form = body.adapt_form
                if body.adapt_min_gain is not None:
                    cfg.min_gain_db = float(body.adapt_min_gain)
                res = compress_adapted(scene, adapt_config=cfg, net=net, **kw)
            else:
                res = mod.compress(scene, **kw)
            if body.refine is not None:
                from ..ugc.refine import RefineOptions
                from ..ugc.refine_file import refine_result

                ctx.check()
                opt = RefineOptions(seconds=float(body.refine), progress=_progress_adapter(ctx),
                                    cancel=ctx.job.cancel_flag)
                res = refine_result(scene, res, opt, cams)
            ctx.check()
            stats = _jsonable(dict(getattr(res, "stats", {}) or {}))
            new, _ = store.add_bytes(bytes(res.data), f"{stem}.exgs", "compress",
                                     extra={"parent": e.id, "stats": stats})
            ctx.job.result = {"scene_id": new.id, "stats": stats,
                              "file_bytes": new.file_bytes, "gaussians": new.summary.get(
                                  "gaussians"), "source_bytes": e.file_bytes}
            if body.adapt is not None:
                ctx.job.result["painter_delta"] = _delta_result(res)

        return jobs.submit("compress", device, run).info()

    @app.post("/v1/scenes/{scene_id}/render", tags=["jobs"], status_code=202,
              summary="Render cameras (job); fetch frames with GET /v1/jobs/{id}/frames/{i}")
    async def render(scene_id: str, body: RenderRequest):
        e = scene_or_404(scene_id)
        mod = engines.render_module()
        if len(body.cameras) > limits.max_frames:
            raise ApiError(422, f"{len(body.cameras)} cameras exceed the limit of "
                                f"{limits.max_frames} frames per request")
        if body.restore:
            engines.check_painter()
        if len(set(body.passes)) != len(body.passes):
            raise ApiError(422, "passes must not repeat")
        if body.format == "png" and "depth" in body.passes:
            raise ApiError(422, "PNG frames carry rgb and alpha only; use format f32 for depth")
        if body.format == "png" and "rgb" not in body.passes:
            raise ApiError(422, "PNG frames need the rgb pass")
        deg = e.summary.get("sh_degree", 0)
        if body.sh_degree is not None and body.sh_degree > deg:
            raise ApiError(422, f"sh_degree {body.sh_degree} exceeds the scene's SH degree {deg}")
        cams = [to_camera(c, i, body.size) for i, c in enumerate(body.cameras)]
        for i, c in enumerate(cams):
            check_size(c, i, limits)
        scene = e.scene
        bg = tuple(float(x) for x in body.background)
        passes, fmt, restore = list(body.passes), body.format, body.restore
        n = len(cams)
        delta = None
        if restore and body.painter_delta is not None:
            import base64
            import binascii

            try:
                delta = base64.b64decode(body.painter_delta, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(422, "painter_delta is not valid base64") from None
            from ..painter.delta import decode_delta

            decode_delta(delta)  # DeltaError (an ExgsError) → 400 with its one line
        elif restore and body.use_delta and e.format == "exgs":
            from ..io.exgs_format import read_exgs_delta

            try:
                delta = read_exgs_delta(e.path)
            except ExgsError as err:
                raise ApiError(400, str(err).replace(str(e.path), e.name)) from None

        def run(ctx):
            if restore:
                ctx.progress(0.0, "loading GaussPainter")
            painter = engines.painter(device) if restore else None
            kept = None  # the painter's gate follows how much of the scene was kept
            if restore:
                from ..painter.infer import kept_fraction

                kept = body.keep if body.keep is not None else kept_fraction(e.path, len(scene))
            note = "none"
            if restore and delta is not None:
                painter, note = engines.adapted_painter(device, delta)
            ctx.progress(0.0, f"rendering {n} frame(s)")
            it = mod.render_many(scene, cams, sh_degree=body.sh_degree,
                                 background=(0.0, 0.0, 0.0) if restore else bg,
                                 device=device)
            for i in range(n):
                ctx.check()
                res = next(it)
                ctx.check()
                rgb = res.rgb
                if painter is not None:
                    ctx.progress(None, f"restoring frame {i + 1}/{n}")
                    rgb = np.asarray(painter.restore(rgb, res.alpha, keep=kept), np.float32)
                    if any(bg):
                        rgb = rgb + (1.0 - res.alpha[..., None]) * np.asarray(bg, np.float32)
                # no encoding here: f32 frames are streamed from the arrays, PNGs are
                # encoded when fetched (HTTP thread pool), so the next frame starts now
                h_, w_ = res.alpha.shape
                if fmt == "png":
                    a_ = res.alpha if "alpha" in passes else None
                    data = LazyFrame(lambda rgb=rgb, a_=a_: frame_codec.encode_png(rgb, a_, bg),
                                     h_ * w_ * 4)
                    media = "image/png"
                else:
                    src = {"rgb": rgb, "alpha": res.alpha, "depth": res.depth}
                    data = frame_codec.ArrayFrame({p: src[p] for p in passes})
                    media = frame_codec.F32_MEDIA_TYPE
                ctx.add_frame(data, media, (i + 1) / n, f"frame {i + 1}/{n}")
            ctx.job.result = {"frames": n, "format": fmt, "passes": passes,
                              "width": cams[0].width, "height": cams[0].height}
            if restore:
                ctx.job.result["painter_delta"] = note

        return jobs.submit("render", device, run, total_frames=n).info()

    @app.get("/v1/jobs", tags=["jobs"], summary="Jobs")
    async def list_jobs():
        return {"jobs": [j.info() for j in jobs.list()]}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"],
             summary="Job state; with wait>0, returns once its version exceeds `since`")
    async def job_info(job_id: str,
                       since: int = Query(-1, ge=-1, le=2**62,
                                          description="version already seen"),
                       wait: float = Query(0.0, ge=0.0, le=limits.max_long_poll_s,
                                           description="seconds to wait for a change")):
        job = job_or_404(job_id)
        if wait > 0:
            await wait_for_change(job, lambda: job.version > since or job.state in FINISHED,
                                  wait)
        return job.info()

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"], summary="Request cancellation")
    async def cancel_job(job_id: str):
        job = job_or_404(job_id)
        jobs.cancel(job)
        return job.info()

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], summary="Cancel and forget a job")
    async def delete_job(job_id: str):
        job = job_or_404(job_id)
        jobs.delete(job)
        return {"deleted": job.id}

    @app.get("/v1/jobs/{job_id}/frames/{index}", tags=["jobs"],
             summary="Frame `index` of a render job (binary float32 or PNG); with wait>0, "
                     "waits up to that long for it to be rendered",
             response_class=Response,
             responses={200: {"content": {frame_codec.F32_MEDIA_TYPE: {}, "image/png": {}}},
                        409: {"description": "not rendered yet (detail: job progress)"}})
    async def get_frame(job_id: str, index: int,
                        wait: float = Query(0.0, ge=0.0, le=limits.max_long_poll_s,
                                            description="seconds to wait for the frame")):
        job = job_or_404(job_id)
        if job.kind != "render":
            raise ApiError(404, f"job {job_id} is a {job.kind} job and has no frames")
        if index < 0 or index >= max(job.total_frames, len(job.frames)):
            raise ApiError(404, f"job {job_id} has no frame {index} "
                                f"(frames 0..{job.total_frames - 1})")
        if wait > 0:
            await wait_for_change(job, lambda: index < len(job.frames)
                                  or job.state in FINISHED, wait)
        frames = job.frames  # a snapshot: releasing a job swaps in a new list
        if index >= len(frames):
            if job.state in FINISHED:
                raise ApiError(404, f"frame {index} was not rendered (job {job.state})",
                               {"state": job.state, "error": job.error})
            raise ApiError(409, f"frame {index} is not rendered yet",
                           {"frames_ready": len(frames), "state": job.state,
                            "progress": job.progress, "message": job.message})
        item, media = frames[index]
        if isinstance(item, (frame_codec.ArrayFrame, LazyFrame)):
            item = await run_in_threadpool(item.tobytes)
        elif isinstance(item, str):
            try:
                item = await run_in_threadpool(Path(item).read_bytes)
            except FileNotFoundError:
                raise ApiError(404, f"frame {index} of job {job_id} was deleted") from None
        return Response(item, media_type=media)

    app.add_middleware(BearerAuthMiddleware, token=config.token)
    return app


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


__all__ = ["create_app", "ApiError", "BearerAuthMiddleware"]
