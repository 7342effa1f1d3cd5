"""Job routes: compress and render jobs (thin callers of :mod:`exgs.pipeline`), job state
(long poll), cancel, delete."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from fastapi import APIRouter, Query, Request

from .. import frames as frame_codec
from ..convert import cameras as request_cameras
from ..convert import jsonable
from . import json_off_loop_route
from ..errors import ApiError, responses
from ..farm import client_of
from ..jobs import FINISHED, LazyFrame
from ..monitor import wait_for_change
from ..models import CompressRequest, RenderRequest
from .scenes import decode_delta_b64


def delta_result(res) -> dict:
    """The compress job's ``painter_delta`` result: the adaptation's figures and, when a
    delta was stored, its bytes in base64 (``data_b64``) so a client that keeps the scene in
    another form (the Blender add-on keeps a PLY) can set it as the scene's facts."""
    import base64

    from ...io.exgs import DELTA_SECTION, exgs_section_from_bytes

    pd = jsonable(dict(res.stats.get("painter_delta") or {}))
    pd.pop("loss_history", None)
    blob = exgs_section_from_bytes(res.data, DELTA_SECTION)
    if blob is not None:
        pd["data_b64"] = base64.b64encode(blob).decode("ascii")
    return pd


def job_or_404(jobs, jid: str):
    job = jobs.get(jid)
    if job is None:
        raise ApiError(404, f"no job with id {jid!r}")
    return job


def request_client(request: Request) -> str:
    """The fair queue's client of a request: ``X-Exgs-Client``, else the peer address."""
    peer = request.client.host if request.client is not None else None
    return client_of(request.headers.get("x-exgs-client"), peer)


def router(state) -> APIRouter:
    r = APIRouter(tags=["jobs"], route_class=json_off_loop_route())
    store, jobs, engines, limits = state.store, state.jobs, state.engines, state.limits
    device = state.device

    @r.post("/v1/scenes/{scene_id}/compress", status_code=202,
            summary="Compress with UGC (job); the result holds the new scene id and stats",
            responses=responses(400, 404, 413, 422, 429, 503))
    async def compress(scene_id: str, body: CompressRequest, request: Request):
        from ...pipeline import CompressOptions, adapt_options, compress_scene

        e = store.get(scene_id)
        engines.compress_module()
        if body.ratio is not None and body.keep is not None:
            raise ApiError(422, "give ratio or keep, not both")
        if body.sh_degree > e.summary.get("sh_degree", 0):
            raise ApiError(422, f"sh_degree {body.sh_degree} exceeds the scene's SH degree "
                                f"{e.summary.get('sh_degree', 0)}")
        if isinstance(body.keep, int) and body.keep > e.summary.get("gaussians", 0):
            raise ApiError(422, f"keep={body.keep} exceeds the scene's "
                                f"{e.summary.get('gaussians', 0)} Gaussians")
        cams = request_cameras(body.cameras, limits) if body.cameras else None
        shot = request_cameras(body.shot, limits) if body.shot else None
        adapt = None
        if body.adapt is not None:
            engines.check_painter()
            adapt = adapt_options(body.adapt, form=body.adapt_form,
                                  min_gain_db=body.adapt_min_gain)
        options = CompressOptions(ratio=body.ratio, keep_target=body.keep,
                                  sh_degree=body.sh_degree, cameras=cams, shot=shot,
                                  source_bytes=e.file_bytes, device=device)
        stem = Path(e.name).stem or "scene"

        def run(ctx):
            ctx.progress(0.0, "compressing")
            scene = store.load(e)  # read again if it was evicted from memory
            net = None
            if adapt is not None:
                ctx.progress(0.0, "loading GaussPainter")
                net = engines.painters.generic().net
            refine = None
            if body.refine is not None:
                from ...ugc.refine import RefineOptions

                refine = RefineOptions(seconds=float(body.refine), cancel=ctx.job.cancel_flag)
            res = compress_scene(scene, options, adapt, refine, progress=ctx.progress, net=net)
            ctx.check()
            stats = jsonable(dict(res.stats))
            new, _ = store.add_bytes(bytes(res.data), f"{stem}.exgs", "compress",
                                     extra={"parent": e.id, "stats": stats})
            ctx.job.result = {"scene_id": new.id, "stats": stats,
                              "file_bytes": new.file_bytes,
                              "gaussians": new.summary.get("gaussians"),
                              "source_bytes": e.file_bytes}
            if adapt is not None:
                ctx.job.result["painter_delta"] = delta_result(res)

        return jobs.submit("compress", device, run, client=request_client(request)).info()

    @r.post("/v1/scenes/{scene_id}/render", status_code=202,
            summary="Render cameras (job); fetch frames with GET /v1/jobs/{id}/frames/{i}",
            responses=responses(400, 404, 413, 422, 429, 503))
    async def render(scene_id: str, body: RenderRequest, request: Request):
        from ...pipeline import (RestoreOptions, SceneFacts, render_frames, render_stable,
                                 restorer_for)
        from ...pipeline.sequence import premult_srgb_to_linear

        e = store.get(scene_id)
        engines.render_module()
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
        if body.warmup and not (body.restore and body.temporal):
            raise ApiError(422, "warmup needs restore and temporal")
        if body.warmup >= len(body.cameras):
            raise ApiError(422, f"warmup={body.warmup} leaves none of the "
                                f"{len(body.cameras)} cameras to return")
        if body.restart and body.restart > body.warmup:
            raise ApiError(422, f"restart={body.restart} must not exceed warmup={body.warmup}")
        if body.linear and any(body.background):
            raise ApiError(422, "linear frames are returned over a black background")
        if body.linear and body.format == "png":
            raise ApiError(422, "linear frames need format f32")
        cams = request_cameras(body.cameras, limits, body.size)
        bg = tuple(float(x) for x in body.background)
        passes, fmt, restore = list(body.passes), body.format, body.restore
        stable = restore and body.temporal
        warmup = body.warmup
        n = len(cams) - warmup  # frames returned
        facts = e.facts or SceneFacts()
        use_delta = body.use_delta
        if restore and body.painter_delta is not None:  # deprecated per-request override
            facts = dataclasses.replace(facts, painter_delta=decode_delta_b64(body.painter_delta),
                                        delta_error=None)
            use_delta = True
        if restore and use_delta and facts.delta_error:
            raise ApiError(400, facts.delta_error)
        # temporal: render_stable stabilises (its own stabiliser, per request)
        options = RestoreOptions(device=engines.painters.device, use_delta=use_delta,
                                 kept_fraction=body.keep)  # body.keep: deprecated override
        delta_key = (hashlib.sha256(facts.painter_delta).hexdigest()
                     if use_delta and facts.painter_delta else None)
        scope = "|".join(map(str, (e.id, facts.kept_fraction, facts.refined, body.keep,
                                   delta_key, body.sh_degree)))  # what besides the camera sets x and y

        def run(ctx):
            scene = store.load(e)  # read again if it was evicted from memory
            restorer = None
            if restore:
                ctx.progress(0.0, "loading GaussPainter")
                restorer = restorer_for(facts, options, cache=engines.painters)
            ctx.progress(0.0, f"rendering {n} frame(s)"
                         + (f" after {warmup} warm-up frame(s)" if warmup else ""))
            if stable:
                frames = render_stable(scene, cams, warmup=warmup, restorer=restorer,
                                       device=device, sh_degree=body.sh_degree, background=bg,
                                       memo=engines.restore_memo, scope=scope,
                                       linear=body.linear, progress=ctx.progress,
                                       check=ctx.check, restart=body.restart,
                                       blend=body.blend)
            else:
                frames = render_frames(scene, cams, device=device, sh_degree=body.sh_degree,
                                       background=bg, restorer=restorer,
                                       progress=ctx.progress)
            for i in range(n):
                ctx.check()
                res = next(frames)
                if body.linear and not stable:
                    res = dataclasses.replace(res, rgb=premult_srgb_to_linear(res.rgb,
                                                                              res.alpha))
                # no encoding here: f32 frames are streamed from the arrays, PNGs are
                # encoded when fetched (HTTP thread pool), so the next frame starts now
                h_, w_ = res.alpha.shape
                if fmt == "png":
                    a_ = res.alpha if "alpha" in passes else None
                    data = LazyFrame(lambda rgb=res.rgb, a_=a_:
                                     frame_codec.encode_png(rgb, a_, bg), h_ * w_ * 4)
                    media = "image/png"
                else:
                    src = {"rgb": res.rgb, "alpha": res.alpha, "depth": res.depth}
                    data = frame_codec.ArrayFrame({p: src[p] for p in passes})
                    media = frame_codec.F32_MEDIA_TYPE
                ctx.add_frame(data, media, (i + 1) / n, f"frame {i + 1}/{n}")
                if i + 1 < n:
                    yield  # end of this job's turn: another client's job may go next
            ctx.job.result = {"frames": n, "format": fmt, "passes": passes,
                              "width": cams[-1].width, "height": cams[-1].height}
            if stable:
                ctx.job.result["warmup"] = warmup
            if restorer is not None:
                d = restorer.delta
                ctx.job.result["painter_delta"] = "applied" if d["applied"] else (
                    d["reason"] if d["reason"].startswith("skipped") else "none")

        return jobs.submit("render", device, run, total_frames=n,
                           client=request_client(request)).info()

    @r.get("/v1/jobs", summary="Jobs", responses=responses())
    async def list_jobs():
        return {"jobs": [j.info() for j in jobs.list()]}

    @r.get("/v1/jobs/{job_id}",
           summary="Job state; with wait>0, returns once its version exceeds `since`",
           responses=responses(404, 422))
    async def job_info(job_id: str,
                       since: int = Query(-1, ge=-1, le=2**62,
                                          description="version already seen"),
                       wait: float = Query(0.0, ge=0.0, le=limits.max_long_poll_s,
                                           description="seconds to wait for a change")):
        job = job_or_404(jobs, job_id)
        if wait > 0:
            await wait_for_change(jobs, job, lambda: job.version > since
                                  or job.state in FINISHED, wait)
        return job.info()

    @r.post("/v1/jobs/{job_id}/cancel", summary="Request cancellation",
            responses=responses(404))
    async def cancel_job(job_id: str):
        job = job_or_404(jobs, job_id)
        jobs.cancel(job)
        return job.info()

    @r.delete("/v1/jobs/{job_id}", summary="Cancel and forget a job",
              responses=responses(404))
    async def delete_job(job_id: str):
        job = job_or_404(jobs, job_id)
        jobs.delete(job)
        return {"deleted": job.id}

    return r
