"""Refine a UGC :class:`~exgs.ugc.compress.CompressResult` and re-encode it at no more bytes.

:func:`refine_result` is what ``compress(..., refine=...)`` callers use: it refines the
decoded survivors (:func:`exgs.ugc.refine.refine`), writes them with the file's own header
(source, settings + ``refine`` options, stats) and makes sure the new file is not larger than
the byte budget — the ratio's target ``source_bytes / ratio`` when a ratio was asked, else
the training-free file's size. Refined attributes can compress a little worse under zstd; then
the least significant Gaussians are dropped until it fits — least significant *after*
refinement (:func:`survivor_order`: the refined survivors' own significance on the teacher
views; the file's order is not that: dropping its last 3.5 % cost 0.9 dB on a 300× real
statue, dropping the least significant 3.5 % 0.02 dB) — and the held-out decision is taken
again on the decoded file, so the written file is what was evaluated and never worse there
than the training-free one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from .compress import CompressResult
from .refine import RefineOptions, plan_views, refine
from .refine_views import mean_psnr


def byte_budget(result: CompressResult) -> int:
    """Bytes the refined file may use (see module doc)."""
    st = result.stats
    if st.get("budget_bytes"):
        return max(len(result.data), int(st["budget_bytes"]))
    if st.get("requested_ratio"):
        return max(len(result.data), int(st["source_bytes"] / st["requested_ratio"]))
    return len(result.data)


def _header(data: bytes) -> dict:
    from ..io.exgs import decode_header

    return decode_header(data)


def survivor_order(scene, cameras, device: str = "cpu") -> np.ndarray:
    """[N] indices of ``scene``'s Gaussians, most significant first: their own significance
    (:func:`exgs.ugc.significance.significance`, α·T over every pixel) on ``cameras``."""
    from .significance import significance

    return np.argsort(-significance(scene, cameras, device=device), kind="stable")


def header_encoder(h: dict, settings: dict, stats: dict | None = None,
                   sections: dict | None = None, position_bits: int = 16) -> Callable:
    """``encode(scene)`` → .exgs bytes written with header ``h``'s source and stats (plus
    ``stats`` and the scene's ``kept`` count), ``settings`` and the extra ``sections``;
    position bits and zstd level as ``settings`` record them (else ``position_bits``, 19)."""
    from ..io.exgs import attach_sections, encode_exgs

    bits = int(settings.get("position_bits", position_bits))
    level = int(settings.get("zstd_level", 19))

    def encode(sc):
        st = dict(h.get("stats", {}), kept=len(sc))
        st.update(stats or {})
        data = encode_exgs(sc, position_bits=bits, zstd_level=level, source=h.get("source"),
                           settings=settings, stats=st)
        return attach_sections(data, sections) if sections else data
    return encode


def fit_tail(scene, encode: Callable, limit: int, tries: int = 6,
             order: np.ndarray | None = None, data: bytes | None = None):
    """(scene, data): ``scene`` with its least significant Gaussians dropped until
    ``encode(scene)`` → bytes fits in ``limit`` (at most ``tries`` re-encodings; the last
    try's bytes are returned even when they still do not fit). ``order``: indices, most
    significant first (:func:`survivor_order`); None: the scene's own order. ``data``:
    ``encode(scene)`` when the caller already has it."""
    full = scene
    order = np.arange(len(full)) if order is None else np.asarray(order)
    data = encode(scene) if data is None else data
    for _ in range(tries):
        if len(data) <= limit:
            break
        n = len(scene)
        keep = max(1, min(n - 1, int(n * (limit - 1500) / max(len(data) - 1500, 1) * 0.999)))
        scene = full.subset(np.sort(order[:keep]))
        data = encode(scene)
    return scene, data


def trimmed(result: CompressResult, limit: int,
            order: np.ndarray | None = None) -> CompressResult | None:
    """``result`` (e.g. a refined file) re-encoded with its own header after dropping its
    least significant Gaussians (``order``: indices into ``result.scene``, most significant
    first, :func:`survivor_order`; None: the file's own order) until it is at most
    ``limit`` bytes — how a refined file makes room for a painter section without refining
    again; ``result`` itself when it already fits; None when nothing fits."""
    from ..io.exgs import decode_exgs

    if len(result.data) <= limit:
        return result
    h = _header(result.data)
    encode = header_encoder(h, h.get("settings", {}))
    scene, data = fit_tail(result.scene, encode, limit, order=order, data=result.data)
    if len(data) > limit:
        return None
    decoded = decode_exgs(data)
    stats = dict(result.stats)
    stats.update(kept=len(decoded), kept_fraction=len(decoded) / stats["source_gaussians"],
                 file_bytes=len(data), bytes_per_gaussian=len(data) / max(len(decoded), 1),
                 ratio=stats["source_bytes"] / len(data))
    return CompressResult(scene=decoded, data=data, stats=stats, score=result.score)


def refine_result(full_scene, result: CompressResult, options: RefineOptions | None = None,
                  cameras=None, sections_for: Callable | None = None) -> CompressResult:
    """Refined copy of ``result`` (or ``result`` itself with ``stats["refine"]`` when the
    switch-off rule keeps the training-free survivors). ``sections_for(refined_scene)`` →
    (extra .exgs sections, stats) stored with the refined file, inside its byte budget
    (the pipeline's painter verdict); None: no extra sections."""
    from ..io.exgs import decode_exgs

    opt = options or RefineOptions()
    # keep time for re-encoding (zstd 19: ≈ 10 µs per Gaussian here) up to 3 times
    opt = replace(opt, reserve_seconds=opt.reserve_seconds + 3e-5 * len(result.scene))
    scene, report = refine(full_scene, result.scene, cameras, opt)
    stats = dict(result.stats)
    if report["switched_off"]:
        stats["refine"] = report
        return CompressResult(scene=result.scene, data=result.data, stats=stats,
                              score=result.score)
    h = _header(result.data)
    limit = byte_budget(result)
    settings = dict(h.get("settings", {}))
    settings["refine"] = {"seconds": opt.seconds, "steps": report["steps"],
                          "resolution": opt.resolution, "chosen": report["chosen"]}
    extra, extra_stats = sections_for(scene) if sections_for else ({}, {})
    encode = header_encoder(h, settings, {"refined": True}, extra, opt.position_bits)

    n0 = len(scene)
    data = encode(scene)
    if len(data) > limit:  # drop the least significant after refinement (module doc)
        teach, dec, _ = plan_views(full_scene, cameras, opt)
        scene, data = fit_tail(scene, encode, limit, data=data,
                               order=survivor_order(scene, teach, opt.device))
    dropped = n0 - len(scene)
    decoded = decode_exgs(data)
    if len(data) > limit or dropped:
        # re-decide on the decoded file (survivors were dropped, or it still does not fit)
        from ..render import render_many

        targets = [r.rgb for r in render_many(full_scene, dec, device=opt.device)]
        p_ref = mean_psnr(decoded, dec, targets, opt.device)
        p_base = mean_psnr(result.scene, dec, targets, opt.device)
        report["after_fit"] = {"dropped": dropped, "psnr": p_ref, "training_free": p_base}
        if len(data) > limit or p_ref <= p_base:
            report["switched_off"] = True
            report["chosen"] = "training-free (refined file did not fit or lost after fitting)"
            stats["refine"] = report
            return CompressResult(scene=result.scene, data=result.data, stats=stats,
                                  score=result.score)
    size = len(data)
    stats.update({"kept": len(decoded), "kept_fraction": len(decoded) / stats["source_gaussians"],
                  "file_bytes": size, "bytes_per_gaussian": size / max(len(decoded), 1),
                  "ratio": stats["source_bytes"] / size, "refine": report, **extra_stats})
    report["dropped_to_fit"] = dropped
    return CompressResult(scene=decoded, data=data, stats=stats, score=result.score)
