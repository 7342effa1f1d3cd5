"""UGC compression with a per-scene painter delta stored in the file (the orchestration
around :func:`exgs.painter.adapt.adapt`, which trains the delta).

With a byte budget the *whole file* (scene + delta) fits in it:

1. the generic file is searched for the full budget (the baseline);
2. the candidate forms are those whose size reserve (:func:`exgs.painter.delta_forms.
   size_reserve`, an upper estimate) fits the budget: the given form, or with
   ``form="auto"`` every form of :data:`AUTO_FORMS` whose reserve is at most
   :data:`AUTO_MAX_SHARE` of the budget (the time budget is split between them,
   :data:`AUTO_TIME_SHARE`; a fresh detail head is as wide as fits
   :data:`DETAIL_MAX_SHARE`, :func:`detail_width`);
3. per candidate, room for the delta is reserved, the kept count is searched again for the
   rest (reusing the significance) and the delta is trained on that smaller scene;
4. rate–distortion at equal file size: the candidate with the best held-out PSNR is kept if
   it beats the *better* of the generic painter and no restoration on the baseline file by
   ``min_gain_db`` (:mod:`exgs.painter.adapt_judge`); otherwise the baseline file is
   written — with a ``"none"`` delta (a few dozen bytes, :func:`exgs.painter.delta.
   none_delta`) when no restoration was better than the generic painter, so no reader
   restores it. With ``tune`` (the default) the baseline file's own painter setting
   (:mod:`exgs.painter.tune`) is chosen before any training: when it beats the tables a
   delta must beat it by ``min_gain_db`` as well, and a switched-off file carries it (a
   ``"tune"`` section);
5. the kept count is searched once more with the chosen section's actual size when it
   exceeds its reserve or leaves more than ``REFILL_BYTES`` unused.

With a ``keep_target`` the kept count is fixed and the delta adds to the size (``auto``
means ``last`` there); it is kept if it beats the better of generic / none on the same
scene by ``min_gain_db``.

After refinement (``exgs compress --refine --adapt``, :func:`exgs.pipeline.compress.
compress_scene`) the baseline is the refined file: candidates make room by dropping its
least significant survivors (:func:`trimmer`), and the delta starts from the file as its
readers see it (its own setting, else a closed gate: :data:`CLOSED_GATE_BIAS`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..errors import UsageError
from ..ugc.compress import CompressResult

REFILL_BYTES = 256  #: re-search the kept count when the delta leaves more than this unused
AUTO_FORMS = ("last", "head", "detail")  #: the forms ``auto`` compares (all trained on
#: cached activations)
AUTO_TIME_SHARE = {"detail": 2.0}  #: relative share of the time budget (others 1): the
#: detail head has the most to learn
DETAIL_WIDTHS = (16, 12, 8)  #: widths ``auto`` tries for a fresh detail head, widest first
DETAIL_MAX_SHARE = 0.04  #: a fresh detail head is the widest whose reserve is ≤ this share
#: of the budget (measured on statue_st_peter at 300×, 110 kB: width 8 (2.7 kB) +0.49 dB
#: over the generic file, width 16 (7.1 kB) +0.20: its bytes cost more Gaussians than it adds)
AUTO_MAX_SHARE = 0.10  #: ``auto`` tries a form when its reserve is ≤ this share of the budget
MIN_ROOM = 2048  #: no delta when less than this is left for the scene
CLOSED_GATE_BIAS = -20.0  #: where a refined file's delta starts when no restoration is its
#: best (the gate ≈ 2e-9: the file as its readers see it); only a residual head can learn
#: from there, so such a file trains the ``detail`` form alone


def _emit(progress, frac, msg):
    if progress is not None:
        progress(float(min(max(frac, 0.0), 1.0)), msg)


def candidate_forms(net, cfg, budget: float | None) -> tuple[list[tuple[str, int]], str]:
    """[(form, reserve bytes)] to train for ``budget`` (None: the form itself, ``auto`` →
    ``last``) and, when the list is empty, why."""
    from ..painter.adapt import AUTO_FORM
    from ..painter.delta_forms import size_reserve

    auto = cfg.form == AUTO_FORM
    forms = (AUTO_FORMS if budget is not None else ("last",)) if auto else (cfg.form,)
    out = []
    for f in forms:
        r = size_reserve(net, f, cfg.rank, cfg.dtype, detail_width(net, cfg, budget, f))
        if budget is None or (budget - r >= MIN_ROOM and (not auto or f == forms[0]
                                                        or r <= AUTO_MAX_SHARE * budget)):
            out.append((f, r))
    why = "" if out else (f"switched off: no room for a {forms[0]} delta "
                          f"(~{size_reserve(net, forms[0], cfg.rank, cfg.dtype)} bytes) in "
                          f"the {budget:.0f}-byte budget")
    return out, why


def detail_width(net, cfg, budget: float | None, form: str = "detail") -> int:
    """Width of the fresh detail head a ``detail`` candidate trains (0 for other forms or
    when the painter has its own head, whose width is fixed): ``cfg.detail_width`` when set;
    with ``auto`` and a budget the widest of :data:`DETAIL_WIDTHS` whose size reserve is at
    most :data:`DETAIL_MAX_SHARE` of the budget (else the narrowest, a candidate when it fits
    :data:`AUTO_MAX_SHARE`); else the config's."""
    from ..painter.adapt import AUTO_FORM
    from ..painter.delta_forms import size_reserve

    if form != "detail" or net.detail is not None:
        return 0
    if cfg.detail_width:
        return int(cfg.detail_width)
    if cfg.form != AUTO_FORM or budget is None:
        return int(net.cfg.detail_width)
    for w in DETAIL_WIDTHS:
        if size_reserve(net, form, cfg.rank, cfg.dtype, w) <= DETAIL_MAX_SHARE * budget:
            return w
    return DETAIL_WIDTHS[-1]


def searcher(scene, kw: dict, progress=None) -> Callable:
    """``shrink(limit)`` for a training-free file: the kept count searched again for
    ``limit`` bytes (:func:`exgs.ugc.compress` with ``kw``, which carries the significance),
    None when nothing fits."""
    from ..ugc import compress

    def shrink(limit):
        try:
            return compress(scene, budget_bytes=limit, progress=progress, **kw)
        except UsageError:
            return None
    return shrink


def trimmer(result: CompressResult, cameras, device: str = "cpu") -> Callable:
    """``shrink(limit)`` for a refined file: its least significant Gaussians — by their own
    significance on ``cameras`` after refinement (:func:`exgs.ugc.refine_file.
    survivor_order`, computed once, on first use) — dropped until it fits
    (:func:`exgs.ugc.refine_file.trimmed`; the survivors keep their refined values, nothing
    is refined again), None when nothing fits."""
    from ..ugc.refine_file import survivor_order, trimmed

    order = []

    def shrink(limit):
        if len(result.data) > limit and not order:
            order.append(survivor_order(result.scene, cameras, device))
        return trimmed(result, int(limit), order[0] if order else None)
    return shrink


def _fit(budget, data_of, current, shrink):
    """(result, data) with ``data_of(result)`` ≤ ``budget``: ``current`` when it fits and
    leaves ≤ REFILL_BYTES unused, else ``shrink(budget − the section's real size)`` (the
    kept count searched again, or a refined file's least significant survivors dropped);
    None when nothing fits."""
    data = data_of(current)
    if budget is None or (len(data) <= budget and budget - len(data) <= REFILL_BYTES):
        return current, data
    extra = len(data) - len(current.data)
    again = shrink(budget - extra)
    if again is not None:
        d2 = data_of(again)
        if len(d2) <= budget and (len(data) > budget or len(again.scene) > len(current.scene)):
            return again, d2
    return (current, data) if len(data) <= budget else None


def compress_adapted(scene, budget: float | None, keep_target, cfg, ugc_kw: dict, *,
                     progress: Callable | None = None, net=None, tune: bool = True,
                     base: CompressResult | None = None, refined: bool = False,
                     shrink: Callable | None = None) -> CompressResult:
    """UGC compression (:func:`exgs.ugc.compress` with ``ugc_kw``) of ``scene`` into
    ``budget`` bytes (or to ``keep_target``) + a per-scene painter delta trained with
    ``cfg`` (:class:`exgs.painter.adapt.AdaptConfig`) on ``net`` (default: the shipped
    painter). ``stats["painter_delta"]`` describes the adaptation (``enabled``, ``choice``
    = delta | generic | none | tune, ``gain_db``, ``bytes``, ``candidates``...). ``tune``:
    first choose the file's own gate bias / detail scale on the held-out views
    (:func:`exgs.painter.adapt_judge.judge_scene`); when it beats the tables, a delta must
    beat it too, and a file whose delta is switched off carries the setting (``"tune"``).

    ``base``: the file without a delta when it is already made — a refined file
    (``refined=True``, :func:`exgs.ugc.refine_file.refine_result`): the delta is then trained
    *after* refinement, on the refined survivors; room for it is made by ``shrink(limit)``
    (required: :func:`trimmer`, the refined file's least significant Gaussians dropped)
    instead of searching the kept count again, and every judgement restores the refined
    file as its readers do (the painter's refined tables for "generic")."""
    from ..io.exgs import DELTA_SECTION, attach_sections
    from ..painter.adapt import AUTO_FORM, adapt
    from ..painter.adapt_judge import judge_scene
    from ..ugc import compress

    cfg = cfg.validate()
    if net is None:
        from ..painter.infer import load_net

        net = load_net()

    def sub(a, b):
        return None if progress is None else (lambda f, m="": progress(a + (b - a) * f, m))

    if base is None:
        base = compress(scene, budget_bytes=budget, keep_target=keep_target,
                        progress=sub(0.0, 0.15), **ugc_kw)
    kw = dict(ugc_kw, score=base.score)
    if refined and shrink is None:
        raise ValueError("a refined base needs its shrink (pipeline.adapt.trimmer): searching "
                         "the kept count again would drop the refinement")
    shrink_of = (lambda p: shrink) if shrink is not None else (lambda p: searcher(scene, kw, p))
    src = base.stats["source_bytes"]
    forms, why = candidate_forms(net, cfg, budget)
    # the file without a delta first: its own setting, when it beats the tables, is what a
    # delta must beat too (deltas train on the tables: measured better than training on the
    # setting, on massa+shell at 300x +0.40 vs -0.33 dB over the setting alone)
    verdict = None
    clean = {}  # full-scene renders: the same views for the verdict and every candidate
    if tune and forms:
        _emit(progress, 0.15, "judging the painter's own setting on held-out views")
        verdict = judge_scene(scene, base.scene, net, replace(cfg, form="last"),
                              ugc_kw.get("cameras"), refined=refined, tune=True,
                              clean_cache=clean, shot=ugc_kw.get("shot"))
    tuned_db = (verdict["heldout_tuned_db"] if verdict is not None
                and verdict.get("choice") == "tune" else None)
    schedule = None
    if refined:  # start from the refined file as its readers restore it
        if tuned_db is not None:
            schedule = (verdict["tune"]["gate_bias"], verdict["tune"]["detail_scale"])
        else:
            schedule = (CLOSED_GATE_BIAS, 0.0)
            if cfg.form == AUTO_FORM and forms:
                forms = [(f, r) for f, r in forms if f == "detail"]
                why = why or ("" if forms else "switched off: a refined file restored with "
                              "nothing trains only a detail delta, and none fits the budget")
    results = []  # (form, candidate CompressResult, AdaptResult)
    shares = [AUTO_TIME_SHARE.get(f, 1.0) for f, _ in forms]
    for i, (form, reserve) in enumerate(forms):
        a, b = 0.15 + 0.83 * i / len(forms), 0.15 + 0.83 * (i + 1) / len(forms)
        seconds = cfg.seconds * shares[i] / sum(shares)
        cand = base
        if budget is not None:
            cand = shrink_of(sub(a, a + 0.05 * (b - a)))(budget - reserve)
            if cand is None:
                why = why or (f"switched off: no file fits in the {budget - reserve:.0f} "
                              f"bytes left beside a {form} delta")
                continue
        fcfg = replace(cfg, form=form, seconds=seconds,
                       detail_width=detail_width(net, cfg, budget, form))
        res = adapt(scene, cand.scene, net=net, cameras=ugc_kw.get("cameras"),
                    baseline_scene=base.scene if cand is not base else None, config=fcfg,
                    progress=sub(a + 0.05 * (b - a), b), refined=refined, schedule=schedule,
                    clean_cache=clean, shot=ugc_kw.get("shot"))
        if tuned_db is not None:
            _against_setting(res, tuned_db, cfg.min_gain_db)
        results.append((form, cand, res))
    cands = {f: {k: r.stats.get(k) for k in ("heldout_adapted_db", "gain_db", "bytes",
                                             "bytes_if_kept", "steps", "train_views", "enabled")}
             for f, _, r in results}
    kept = [t for t in results if t[2].delta is not None]
    if kept:
        form, cand, res = max(kept, key=lambda t: t[2].stats["heldout_adapted_db"])
        fitted = _fit(budget, lambda r: attach_sections(r.data, {DELTA_SECTION: res.delta}),
                      cand, shrink_of(sub(0.98, 0.99)))
        if fitted is not None:
            again, data = fitted
            if again is not cand:
                res.stats["research"] = {"kept_before": len(cand.scene),
                                         "kept_after": len(again.scene)}
            res.stats["candidates"] = cands
            stats = dict(again.stats)
            stats.update(file_bytes=len(data), ratio=src / len(data), budget_bytes=budget,
                         bytes_per_gaussian=len(data) / max(len(again.scene), 1),
                         painter_delta=res.stats, scene_bytes=len(again.data))
            _emit(progress, 1.0, f"done: {len(again.scene):,} Gaussians + {len(res.delta):,}-"
                                 f"byte painter delta ({form}), {len(data):,} bytes")
            return CompressResult(scene=again.scene, data=data, stats=stats, score=again.score)
        results = [(form, cand, res)]
        res.stats.update(enabled=False, bytes=0, choice=res.stats.get("reference"),
                         reason="switched off: the delta does not fit in the budget")
    # no delta: the baseline file, marked "none" when no restoration beats the generic one
    if results:
        info = dict(max((t[2] for t in results),
                        key=lambda r: r.stats.get("heldout_adapted_db", -1e9)).stats)
        if verdict is not None:  # what the file carries instead: its own setting, or not
            info.update({k: verdict[k] for k in ("tune", "heldout_tuned_db") if k in verdict})
            if tuned_db is not None:
                info["choice"] = "tune"
    else:
        if verdict is None:  # (already judged above when there were forms to train)
            verdict = judge_scene(scene, base.scene, net, replace(cfg, form="last"),
                                  ugc_kw.get("cameras"), refined=refined, tune=tune,
                                  shot=ugc_kw.get("shot"))
        info = {"enabled": False, "bytes": 0, "form": cfg.form, "reason": why, **verdict}
    info["candidates"] = cands
    return mark_verdict(base, budget, info, shrink_of(sub(0.98, 0.99)), progress)


def _against_setting(res, tuned_db: float, min_gain_db: float) -> None:
    """Switch ``res`` (an :class:`exgs.painter.adapt.AdaptResult`) off when its held-out
    PSNR does not beat the baseline file restored with its own setting (``tuned_db``, the
    same held-out views) by ``min_gain_db``; records ``heldout_tuned_db`` either way."""
    st = res.stats
    st["heldout_tuned_db"] = tuned_db
    if res.delta is None or st["heldout_adapted_db"] >= tuned_db + min_gain_db:
        return
    st.update(enabled=False, bytes=0, bytes_if_kept=len(res.delta), choice="tune",
              reason=f"switched off: held-out {st['heldout_adapted_db']:.2f} dB does not beat "
                     f"the file's own painter setting ({tuned_db:.2f} dB) by {min_gain_db} dB")
    res.delta = None


def verdict_delta(info: dict) -> bytes | None:
    """The painter section a verdict ``info`` asks for: the ``"none"`` marker (choice "none"),
    the file's own gate bias / detail scale (choice "tune": :func:`exgs.painter.delta.
    tune_delta` of ``info["tune"]``), or None (restore with the generic tables)."""
    from ..painter.delta import none_delta, tune_delta

    stats = {k: info[k] for k in ("heldout_none_db", "heldout_generic_db", "heldout_tuned_db")
             if k in info}
    if info.get("choice") == "none":
        return none_delta(stats)
    if info.get("choice") == "tune":
        t = info["tune"]
        return tune_delta(t["gate_bias"], t["detail_scale"], t["base"], stats)
    return None


def mark_verdict(base, budget, info: dict, shrink: Callable,
                 progress=None) -> CompressResult:
    """``base`` with ``stats["painter_delta"] = info``; when ``info["choice"]`` is "none"
    (unrestored beat the generic painter on held-out views) or "tune" (a setting of its own
    restores it best), the file carries that painter section (:func:`verdict_delta`,
    ≈ 120–180 B, the kept count searched again so the file still meets ``budget``), so
    every restore path returns its frames unchanged, or restores them with that setting.
    ``shrink(limit)`` makes the smaller file when the section does not fit (:func:`searcher`,
    :func:`trimmer`)."""
    from ..io.exgs import DELTA_SECTION, attach_sections

    base.stats["painter_delta"] = info
    blob = verdict_delta(info)
    if blob is None:
        return base
    choice = info["choice"]
    fitted = _fit(budget, lambda r: attach_sections(r.data, {DELTA_SECTION: blob}), base,
                  shrink)
    if fitted is None:
        info["reason"] = info.get("reason", "") + f"; the {choice!r} marker does not fit in " \
                                                  "the budget"
        if choice == "tune":  # restore with the tables then, unless they lose to none
            info["choice"] = "none" if info.get("reference") == "none" else "generic"
            return mark_verdict(base, budget, info, shrink, progress)
        return base
    again, data = fitted
    info.update(form=choice, bytes=len(blob), restore=choice)
    stats = dict(again.stats)
    src = base.stats["source_bytes"]
    stats.update(file_bytes=len(data), ratio=src / len(data), budget_bytes=budget,
                 bytes_per_gaussian=len(data) / max(len(again.scene), 1),
                 painter_delta=info, scene_bytes=len(again.data))
    how = ("restore with nothing (unrestored beat the painter on held-out views)"
           if choice == "none" else
           f"restore with its own painter setting (gate bias {info['tune']['gate_bias']:+g}, "
           f"detail scale {info['tune']['detail_scale']:g})")
    _emit(progress, 1.0, f"done: {len(again.scene):,} Gaussians, {how}, {len(data):,} bytes")
    return CompressResult(scene=again.scene, data=data, stats=stats, score=again.score)


def judge_generic(full_scene, scene, net=None, up: str = "-y", cameras=None,
                  refined: bool = False, tune: bool = True, shot=None) -> dict:
    """:func:`exgs.painter.adapt_judge.judge_scene` of the generic painter (``net``, default
    the shipped one) on ``scene`` against ``full_scene``, with the adapt path's held-out views
    for ``up`` / ``cameras``, or frames of the ``shot`` (``--profile`` stage
    ``painter_verdict``)."""
    from ..painter.adapt import AdaptConfig
    from ..painter.adapt_judge import judge_scene
    from ..profiling import stage

    if net is None:
        from ..painter.infer import load_net

        net = load_net()
    with stage("painter_verdict"):
        return judge_scene(full_scene, scene, net, AdaptConfig(up=up).validate(), cameras,
                           refined=refined, tune=tune, shot=shot)


def judge_training_free(scene, base, budget, ugc_kw: dict, up: str = "-y", net=None,
                        progress=None, tune: bool = True) -> CompressResult:
    """The do-no-harm verdict for a training-free file (no delta, not refined): the generic
    painter against no restoration and against the file's own gate bias / detail scale on
    the held-out views a delta would hold out (:func:`exgs.painter.adapt_judge.judge_scene`);
    marked "none" when unrestored wins, "tune" when its own setting does
    (:func:`mark_verdict`). ``net``: the painter readers restore with (default: the
    shipped one)."""
    _emit(progress, 0.97, "judging the painter on held-out views")
    verdict = judge_generic(scene, base.scene, net, up, ugc_kw.get("cameras"), tune=tune,
                            shot=ugc_kw.get("shot"))
    info = {"enabled": False, "bytes": 0, **verdict,
            "reason": "training-free file: generic painter vs no restoration vs its own "
                      "setting on held-out views"}
    kw = dict(ugc_kw, score=base.score)
    return mark_verdict(base, budget, info, searcher(scene, kw), progress)
