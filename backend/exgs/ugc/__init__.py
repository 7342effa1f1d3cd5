"""UGC — Universal Gaussian Compression (ExGS stage 1), re-optimization-free.

Pipeline (:func:`compress`): global significance score over M views
(:mod:`.significance`) → voxel-based sampling (:mod:`.voxel`) → adaptive amplification of
survivors (:mod:`.amplify`) → SH reduction/distillation (:mod:`.sh`) → quantized, Morton-ordered,
zstd-coded progressive .exgs file (:mod:`exgs.io.exgs`). Sizes are byte budgets; the CLI and
the service go through :func:`exgs.pipeline.compress_scene`, which turns a ratio into one.

    >>> from exgs.ugc import compress, write_exgs
    >>> res = compress(scene, budget_bytes=os.path.getsize("in.ply") / 100,
    ...                source_bytes=os.path.getsize("in.ply"))
    >>> write_exgs(res, "out.exgs"); res.stats["bytes_per_gaussian"]
"""

from __future__ import annotations

import os

from .compress import PRUNE_METHODS, CompressResult, compress, inria_ply_bytes, select

__all__ = ["compress", "write_exgs", "CompressResult", "select", "inria_ply_bytes",
           "PRUNE_METHODS"]


def write_exgs(result: CompressResult, path: str | os.PathLike) -> None:
    """Write ``result.data`` to ``path`` atomically (nothing is left behind on failure)."""
    from ..io.exgs import write_exgs_bytes

    write_exgs_bytes(result.data, path)
