"""Frame route: ``GET /v1/jobs/{id}/frames/{i}`` (binary float32 or PNG, see
:mod:`exgs.service.frames`), optionally waiting for the frame to be rendered."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import frames as frame_codec
from ..errors import ApiError, responses
from ..jobs import FINISHED, LazyFrame
from ..monitor import wait_for_change
from .jobs import job_or_404


def router(state) -> APIRouter:
    r = APIRouter(tags=["jobs"])
    jobs, limits = state.jobs, state.limits

    @r.get("/v1/jobs/{job_id}/frames/{index}",
           summary="Frame `index` of a render job (binary float32 or PNG); with wait>0, "
                   "waits up to that long for it to be rendered",
           response_class=Response,
           responses={200: {"content": {frame_codec.F32_MEDIA_TYPE: {}, "image/png": {}}},
                      **responses(404, 409, 422)})
    async def get_frame(job_id: str, index: int,
                        wait: float = Query(0.0, ge=0.0, le=limits.max_long_poll_s,
                                            description="seconds to wait for the frame")):
        job = job_or_404(jobs, job_id)
        if job.kind != "render":
            raise ApiError(404, f"job {job_id} is a {job.kind} job and has no frames")
        if index < 0 or index >= max(job.total_frames, len(job.frames)):
            raise ApiError(404, f"job {job_id} has no frame {index} "
                                f"(frames 0..{job.total_frames - 1})")
        if wait > 0:
            await wait_for_change(jobs, job, lambda: index < len(job.frames)
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

    return r
