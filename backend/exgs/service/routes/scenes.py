"""Scene routes: list, upload (streamed), open a server-side file, info, facts, download,
delete."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from . import json_off_loop_route
from ..errors import ApiError, responses
from ..models import FactsRequest, OpenRequest


def decode_delta_b64(text: str, field: str = "painter_delta") -> bytes:
    """base64 text → validated painter-delta bytes (422 bad base64, 400 a bad delta)."""
    import base64
    import binascii

    from ...painter.delta import decode_delta

    try:
        delta = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{field} is not valid base64") from None
    decode_delta(delta)  # DeltaError (an ExgsError) → 400 with its one line
    return delta


def router(state) -> APIRouter:
    r = APIRouter(tags=["scenes"], route_class=json_off_loop_route())
    store, limits, config = state.store, state.limits, state.config

    @r.get("/v1/scenes", summary="Scenes held by the service", responses=responses())
    async def list_scenes():
        return {"scenes": [e.info() for e in store.list()]}

    @r.post("/v1/scenes", status_code=201,
            summary="Upload a scene file (PLY, SPZ, SOG zip, compressed PLY, .exgs)",
            responses={200: {"description": "already held (deduplicated)"},
                       **responses(400, 408, 413, 422, 503, 507)},
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
        except OSError as e:  # e.g. the server's disk is full
            raise ApiError(507, f"{filename}: the server cannot store the upload "
                                f"({e.strerror or e})") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        info = entry.info()
        info["deduplicated"] = dedup
        return JSONResponse(info, status_code=200 if dedup else 201)

    @r.post("/v1/scenes/open",
            summary="Open a scene file on the server's disk (only under --allow-dir)",
            responses=responses(400, 403, 404, 413, 422, 503, 507))
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
        if os.path.isfile(real) and os.path.basename(real) in ("meta.json", "lod-meta.json"):
            real = os.path.dirname(real)  # a (LOD) SOG scene is its folder: hashed whole
        if os.path.isdir(real) and not any(os.path.isfile(os.path.join(real, m))
                                           for m in ("meta.json", "lod-meta.json")):
            raise ApiError(400, f"{body.path}: is a folder without meta.json or lod-meta.json "
                                "(not a SOG or LOD SOG scene)")
        entry, dedup = await run_in_threadpool(store.add_path, real)
        info = entry.info()
        info["deduplicated"] = dedup
        return info

    @r.get("/v1/scenes/{scene_id}", summary="Scene info (with its facts)",
           responses=responses(404))
    async def scene_info(scene_id: str):
        return store.get(scene_id).info()

    @r.put("/v1/scenes/{scene_id}/facts",
           summary="Set the facts of a scene kept in another form (kept fraction, refined, "
                   "painter delta); renders use them",
           responses=responses(400, 404, 413, 422))
    async def set_facts(scene_id: str, body: FactsRequest):
        from ...pipeline import SceneFacts

        store.get(scene_id)  # 404 first
        delta = None
        if body.painter_delta is not None:
            delta = await run_in_threadpool(decode_delta_b64, body.painter_delta)
        return store.set_facts(scene_id, SceneFacts(kept_fraction=body.kept_fraction,
                                                    painter_delta=delta,
                                                    refined=body.refined)).info()

    @r.delete("/v1/scenes/{scene_id}", summary="Forget a scene", responses=responses(404))
    async def delete_scene(scene_id: str):
        e = store.delete(scene_id)
        return {"deleted": e.id}

    @r.get("/v1/scenes/{scene_id}/file",
           summary="Download the scene file (.exgs for compressed scenes)",
           response_class=Response,
           responses={200: {"content": {"application/octet-stream": {}}},
                      **responses(404, 409)})
    async def scene_file(scene_id: str):
        e = store.get(scene_id)
        if not os.path.isfile(e.path):
            raise ApiError(409, f"scene {scene_id} is a folder (SOG) and has no single file")
        return FileResponse(e.path, media_type="application/octet-stream",
                            filename=os.path.basename(e.path))

    return r
