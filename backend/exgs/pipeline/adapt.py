"""UGC compression with a per-scene painter delta stored in the file (the orchestration
around :func:`exgs.painter.adapt.adapt`, which trains the delta).

With a byte budget the *whole file* (scene + delta) fits in it:

1. the generic file is searched for the full budget (the baseline);
2. room for the delta is reserved (:func:`exgs.painter.delta_forms.size_reserve`, an upper
   estimate) and the kept count is searched again for the rest, reusing the significance;
3. the delta is trained on that smaller scene and kept only if, on held-out views, it beats
   the generic painter on the baseline file by ``min_gain_db``; otherwise the baseline file
   is returned unchanged;
4. the kept count is searched once more with the delta's actual size when it exceeds its
   reserve or leaves more than ``REFILL_BYTES`` unused (the delta is kept: a few Gaussians
   more or less do not change what it learnt).

With a ``keep_target`` the kept count is fixed and the delta adds to the size; it is kept if
it beats the generic painter on the same scene by ``min_gain_db``.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UsageError
from ..ugc.compress import CompressResult

REFILL_BYTES = 256  #: re-search the kept count when the delta leaves more than this unused


def _emit(progress, frac, msg):
    if progress is not None:
        progress(float(min(max(frac, 0.0), 1.0)), msg)


def compress_adapted(scene, budget: float | None, keep_target, cfg, ugc_kw: dict, *,
                     progress: Callable | None = None, net=None) -> CompressResult:
    """UGC compression (:func:`exgs.ugc.compress` with ``ugc_kw``) of ``scene`` into
    ``budget`` bytes (or to ``keep_target``) + a per-scene painter delta trained with
    ``cfg`` (:class:`exgs.painter.adapt.AdaptConfig`) on ``net`` (default: the shipped
    painter). ``stats["painter_delta"]`` describes the adaptation (``enabled``,
    ``gain_db``, ``bytes``...)."""
    from ..io.exgs import DELTA_SECTION, attach_sections
    from ..painter.adapt import adapt
    from ..painter.delta_forms import size_reserve
    from ..ugc import compress

    cfg = cfg.validate()
    if net is None:
        from ..painter.infer import load_net

        net = load_net()

    def sub(a, b):
        return None if progress is None else (lambda f, m="": progress(a + (b - a) * f, m))

    base = compress(scene, budget_bytes=budget, keep_target=keep_target,
                    progress=sub(0.0, 0.15), **ugc_kw)
    kw = dict(ugc_kw, score=base.score)
    src = base.stats["source_bytes"]
    cand = base
    if budget is not None:
        reserve = size_reserve(net, cfg.form, cfg.rank, cfg.dtype)
        room = budget - reserve
        off = None
        if room < 2048:
            off = (f"switched off: no room for a {cfg.form} delta (~{reserve} bytes) in the "
                   f"{budget:.0f}-byte budget")
        else:
            try:
                cand = compress(scene, budget_bytes=room, progress=sub(0.15, 0.2), **kw)
            except UsageError as e:
                off = f"switched off: {e}"
        if off is not None:
            base.stats["painter_delta"] = {"enabled": False, "reason": off, "bytes": 0,
                                           "form": cfg.form}
            return base
    res = adapt(scene, cand.scene, net=net, cameras=ugc_kw.get("cameras"),
                baseline_scene=base.scene if cand is not base else None, config=cfg,
                progress=sub(0.2, 0.98))
    if res.delta is None:
        base.stats["painter_delta"] = res.stats
        return base
    data = attach_sections(cand.data, {DELTA_SECTION: res.delta})
    if budget is not None and (len(data) > budget or budget - len(data) > REFILL_BYTES):
        # the reserve was an estimate: search the count again with the delta's real size
        # (fills the budget, or fits it when the delta came out larger than reserved)
        extra = len(data) - len(cand.data)
        try:
            again = compress(scene, budget_bytes=budget - extra, progress=sub(0.98, 0.99),
                             **kw)
        except UsageError:
            again = None
        if again is not None:
            d2 = attach_sections(again.data, {DELTA_SECTION: res.delta})
            if len(d2) <= budget and (len(data) > budget or len(again.scene) > len(cand.scene)):
                res.stats["research"] = {"kept_before": len(cand.scene),
                                         "kept_after": len(again.scene)}
                cand, data = again, d2
        if len(data) > budget:  # could not make room: the file must meet the budget
            res.stats.update(enabled=False, bytes=0, reason="switched off: the delta does "
                             "not fit in the budget")
            base.stats["painter_delta"] = res.stats
            return base
    stats = dict(cand.stats)
    stats.update(file_bytes=len(data), ratio=src / len(data), budget_bytes=budget,
                 bytes_per_gaussian=len(data) / max(len(cand.scene), 1),
                 painter_delta=res.stats, scene_bytes=len(cand.data))
    _emit(progress, 1.0, f"done: {len(cand.scene):,} Gaussians + {len(res.delta):,}-byte "
                         f"painter delta, {len(data):,} bytes")
    return CompressResult(scene=cand.scene, data=data, stats=stats, score=cand.score)
