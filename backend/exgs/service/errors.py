"""Errors of the service: every error is answered as JSON ``{"error": "<one line>",
"detail": ...}``; unexpected exceptions are logged and answered with a 500 that carries no
traceback."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ExgsError
from .jobs import JobLimitError
from .scenes import SceneError

log = logging.getLogger("exgs.service")


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, message: str, detail=None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.headers = status, message, detail, headers


def unavailable(what: str, module: str, exc: BaseException | None = None) -> ApiError:
    reason = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ApiError(503, f"{what} is not available in this build: {module} cannot be "
                         f"imported{reason}", {"module": module})


_DESCRIPTIONS = {
    400: "bad input: an unreadable scene, a painter delta that does not decode, a malformed "
         "body (one line)",
    401: "missing or wrong bearer token",
    403: "not allowed (opening paths without --allow-dir, or outside it)",
    404: "no such scene, job or frame",
    408: "the request body stalled (nothing arrived for --body-timeout seconds)",
    409: "not ready yet, or no single file",
    413: "body or upload larger than the limit",
    422: "invalid request (pydantic message, limits, singular camera, ...)",
    429: "too many open jobs",
    500: "internal server error (logged on the server, no traceback)",
    503: "a part missing from this build (renderer, compressor, painter)",
    507: "the server cannot store the upload (disk full, read-only)",
}


def responses(*codes: int) -> dict:
    """OpenAPI ``responses`` for error statuses (every one is JSON ``{"error", "detail"}``),
    plus 401 and 500, which any route can answer."""
    from .models import ErrorBody

    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS[c]}
            for c in sorted({401, 500, *codes})}


def error_response(status, message, detail=None, headers=None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()) or "error",
                         "detail": detail}, status_code=status, headers=headers)


def install_handlers(app) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.detail, exc.headers)

    @app.exception_handler(SceneError)
    async def _scene_error(request, exc: SceneError):
        return error_response(exc.status, str(exc))

    @app.exception_handler(JobLimitError)
    async def _job_limit(request, exc):
        return error_response(429, str(exc))

    @app.exception_handler(ExgsError)
    async def _exgs_error(request, exc):
        return error_response(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return error_response(exc.status_code, exc.detail, None, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        detail = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        return error_response(422, f"invalid request: {where + ': ' if where else ''}"
                                   f"{first['msg']}", detail)

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return error_response(500, "internal server error (logged on the server)")
