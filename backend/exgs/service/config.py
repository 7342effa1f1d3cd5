"""Service settings (one immutable object shared by the app, the jobs and the CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    """Request limits; exceeding one gives a 4xx JSON error (413 for uploads, 422 for sizes
    and counts, 429 for too many open jobs)."""

    max_upload_bytes: int = 4 << 30         # per uploaded scene file
    max_image_side: int = 8192              # width and height of a rendered frame, pixels
    max_pixels: int = 8192 * 8192           # width × height of a rendered frame
    max_frames: int = 10_000                # cameras per render request
    max_open_jobs: int = 32                 # queued + running jobs
    max_finished_jobs: int = 256            # finished jobs kept for polling (oldest dropped)
    max_long_poll_s: float = 30.0           # upper bound of GET /v1/jobs/{id}?wait=
    frame_memory_bytes: int = 1 << 30       # finished frames kept in RAM; beyond: on disk
    max_json_bytes: int = 16 << 20          # any request body but an upload, before parsing
    max_gaussians: int = 50_000_000         # per scene, checked from its header first
    max_scene_memory: int = 1 << 62         # decoded scenes held at once (LRU eviction)
    restore_memo_bytes: int = 512 << 20     # recent frames' renders + restorations (temporal)
    header_timeout_s: float = 10.0          # request line + headers must arrive within this
    body_timeout_s: float = 30.0            # longest wait for the next piece of a body


@dataclass(frozen=True)
class ServiceConfig:
    token: str
    token_file: str | None = None
    allow_dir: str | None = None            # real path; None disables POST /v1/scenes/open
    device: str = "auto"                    # auto | cpu | cuda (render/painter device choice)
    data_dir: str = ""                      # uploads, .exgs outputs, frames
    painter_weights: str | None = None      # None → the painter's shipped default
    limits: Limits = field(default_factory=Limits)

    @staticmethod
    def painter_weights_from_env() -> str | None:
        return os.environ.get("EXGS_PAINTER_WEIGHTS") or None
