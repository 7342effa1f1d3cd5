"""Compression as the CLI, the service and the farms call it: :func:`compress_scene`.

Sizes are byte budgets. A requested ratio R becomes the budget ``source_bytes / R`` once,
here (:func:`byte_budget`); from then on the UGC search (:func:`exgs.ugc.compress`) and the
painter-delta orchestration (:mod:`.adapt`) only see bytes.

Steps: UGC (score → select → amplify → SH reduction → encode), optionally a per-scene
painter delta (``adapt``: :class:`AdaptOptions`) stored in the file, and — the hook left for
it — a refinement step on the survivors (``refine``), see :func:`compress_scene`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UsageError
from ..painter.adapt import AdaptConfig as AdaptOptions
from ..ugc.compress import CompressResult

__all__ = ["CompressOptions", "AdaptOptions", "CompressResult", "compress_scene",
           "byte_budget", "adapt_options", "MAX_SHOT_VIEWS"]
MAX_SHOT_VIEWS = 32  #: frames of a shot used (evenly spread): each is rendered of the full
#: scene for scoring, refinement and judging


@dataclass
class CompressOptions:
    """What to compress to and how (units: bytes, pixels).

    ``ratio`` (size(source) / size(file), ≥ 1) or ``keep_target`` (how much to keep: a
    fraction in (0, 1] or a count ≥ 1), not both; neither keeps 10 %. ``source_bytes``:
    the source's size (the CLI passes the input file's size; default: the scene as an INRIA
    PLY). ``cameras``: scoring views (else ``views`` orbits of ``view_size`` with ``up``).
    ``shot``: the cameras the file will be rendered from (an artist's camera path, any
    size; at most :data:`MAX_SHOT_VIEWS` of them, evenly spread, are used): scored as well,
    taught by refinement as well, and the painter's do-no-harm verdict, the file's own
    setting and a delta's switch-off are judged on its frames.
    ``ugc``: further keywords of :func:`exgs.ugc.compress` (``method``, ``zstd_level``,
    ``score``, ``amplify_strength``, ...)."""

    ratio: float | None = None
    keep_target: float | int | None = None
    source_bytes: int | None = None
    sh_degree: int = 0
    cameras: list | None = None
    shot: list | None = None
    views: int = 24
    view_size: tuple[int, int] = (320, 240)
    up: str = "-y"
    volume_beta: float | None = None
    voxel: bool = True
    voxel_size: float | None = None
    voxel_mass_share: float = 0.5
    amplify: bool = True
    distill: bool = True
    position_bits: int = 16
    device: str = "auto"
    #: judge the generic painter against no restoration on held-out views of a training-free
    #: file and mark the file "restore with nothing" when restoring loses (do-no-harm; files
    #: with a delta or refined are judged by their own steps)
    painter_verdict: bool = True
    #: with the verdict (or a refined file's): also try this file's own painter gate bias and
    #: detail scale on those views and store the one that restores it best (a ``"tune"``
    #: section, ≈ 180 B; :mod:`exgs.painter.tune`)
    painter_tune: bool = True
    ugc: dict = field(default_factory=dict)

    def shot_cameras(self) -> list | None:
        """The shot's cameras used: at most :data:`MAX_SHOT_VIEWS`, evenly spread."""
        if not self.shot:
            return None
        from ..cameras import even_pick

        return even_pick(self.shot, MAX_SHOT_VIEWS)

    def ugc_keywords(self) -> dict:
        """Keywords of :func:`exgs.ugc.compress` other than the size goal."""
        return dict(sh_degree=self.sh_degree, cameras=self.cameras, shot=self.shot_cameras(),
                    source_bytes=self.source_bytes, views=self.views,
                    view_size=tuple(self.view_size), up=self.up,
                    volume_beta=self.volume_beta, voxel=self.voxel,
                    voxel_size=self.voxel_size, voxel_mass_share=self.voxel_mass_share,
                    amplify=self.amplify, distill=self.distill,
                    position_bits=self.position_bits, device=self.device, **self.ugc)


def byte_budget(options: CompressOptions, n_gaussians: int, sh_degree: int) -> float | None:
    """The file's byte budget for ``options.ratio`` (None with ``keep_target``):
    ``source_bytes / ratio``, with the INRIA-PLY estimate of ``n_gaussians`` at
    ``sh_degree`` when no source size is given. UsageError for a bad ratio."""
    from ..ugc.compress import inria_ply_bytes

    r = options.ratio
    if r is None:
        return None
    if options.keep_target is not None:
        raise UsageError("give ratio or keep, not both")
    if not (math.isfinite(r) and r >= 1.0):
        raise UsageError(f"ratio must be a number ≥ 1, got {r}")
    src = int(options.source_bytes) if options.source_bytes else \
        inria_ply_bytes(n_gaussians, sh_degree)
    return src / float(r)


def adapt_options(seconds: float, *, form: str | None = None,
                  min_gain_db: float | None = None, threads: int = 1) -> AdaptOptions:
    """The :class:`AdaptOptions` of the user-facing settings (CLI ``--adapt*``, the
    service's ``adapt*`` fields); validated (UsageError)."""
    cfg = AdaptOptions(seconds=float(seconds), threads=int(threads))
    if form:
        cfg.form = form
    if min_gain_db is not None:
        if not math.isfinite(min_gain_db):
            raise UsageError("--adapt-min-gain must be a finite number of dB")
        cfg.min_gain_db = float(min_gain_db)
    return cfg.validate()


def compress_scene(scene, options: CompressOptions, adapt: AdaptOptions | None = None,
                   refine=None, *, progress: Callable | None = None,
                   net=None) -> CompressResult:
    """Compress ``scene`` (:class:`~exgs.scene.GaussianScene`) into ``.exgs`` bytes →
    :class:`CompressResult` (``data``, the decoded ``scene``, JSON-able ``stats``,
    the significance ``score``).

    ``adapt``: also fine-tune a per-scene painter delta and store it in the file when it
    pays (with a ratio the whole file, delta included, meets the budget; :mod:`.adapt`).
    ``net``: the base PainterNet for ``adapt`` (default: the shipped painter).
    ``progress(fraction, message)``: the one progress callback type.

    ``refine``: an :class:`exgs.ugc.refine.RefineOptions` (its ``seconds`` budget, progress,
    cancel flag) — distil the survivors against the full scene's renders after selection,
    amplification and encoding (:func:`exgs.ugc.refine_file.refine_result`: once, on the
    chosen candidate, re-encoded within the same byte budget; the training-free file is kept
    when held-out views do not prefer the refined one). With ``adapt`` as well, the delta is
    trained *after* refinement, on the refined survivors (:func:`.adapt.compress_adapted`
    with ``refined=True``: room for the delta is made by dropping the refined file's least
    significant Gaussians, and the delta must beat the refined file unrestored, with the
    generic painter and with its own setting); when refinement was switched off, on the
    training-free file as without ``refine``.
    """
    from ..ugc import compress

    from .device import resolve_device

    budget = byte_budget(options, len(scene), scene.sh_degree)
    kw = options.ugc_keywords()
    kw["device"] = resolve_device(options.device)
    if refine is not None and adapt is not None:
        return _refine_then_adapt(scene, options, adapt, refine, budget, kw, progress, net)
    if adapt is None:
        res = compress(scene, budget_bytes=budget, keep_target=options.keep_target,
                       progress=progress, **kw)
    else:
        from .adapt import compress_adapted

        res = compress_adapted(scene, budget, options.keep_target, adapt, kw,
                               progress=progress, net=net, tune=options.painter_tune)
    res.stats["requested_ratio"] = options.ratio
    if refine is not None:
        from dataclasses import replace

        from ..ugc.refine_file import refine_result

        if refine.progress is None and progress is not None:
            refine = replace(refine, progress=progress)
        res = refine_result(scene, res, _refine_for(refine, options), options.cameras,
                            sections_for=lambda sc: painter_verdict(scene, sc, options, net))
    if adapt is None and options.painter_verdict and "painter_delta" not in res.stats:
        from .adapt import judge_training_free  # refinement off, or none asked for

        kept = {k: res.stats[k] for k in ("refine", "requested_ratio") if k in res.stats}
        res = judge_training_free(scene, res, budget, kw, options.up, net, progress,
                                  tune=options.painter_tune)
        for k, v in kept.items():  # (a re-searched file for the verdict's section has fresh
            res.stats.setdefault(k, v)  # stats: keep the switched-off refinement's report)
    return res


def _refine_then_adapt(scene, options, adapt, refine, budget, kw, progress, net):
    """``compress_scene`` with both: the training-free file, refined (no painter section
    yet), then a painter delta trained on the refined survivors and judged against the
    refined file (:func:`.adapt.compress_adapted`). Progress: 0–20 % selection, 20–60 %
    refinement, 60–100 % the delta."""
    from dataclasses import replace

    from ..ugc import compress
    from ..ugc.refine import plan_views
    from ..ugc.refine_file import refine_result
    from .adapt import compress_adapted, trimmer

    def sub(a, b):
        return None if progress is None else (lambda f, m="": progress(a + (b - a) * f, m))

    res = compress(scene, budget_bytes=budget, keep_target=options.keep_target,
                   progress=sub(0.0, 0.2), **kw)
    res.stats["requested_ratio"] = options.ratio
    refine = _refine_for(refine, options)
    if refine.progress is None and progress is not None:
        refine = replace(refine, progress=sub(0.2, 0.6))
    res = refine_result(scene, res, refine, options.cameras)
    refined = not res.stats["refine"]["switched_off"]
    shrink = None
    if refined:
        if budget is not None:
            budget = max(budget, len(res.data))  # (refine_result's own budget: never below)
        # room for the delta: drop what matters least after refinement, on its teacher views
        shrink = trimmer(res, plan_views(scene, options.cameras, refine)[0], refine.device)
    out = compress_adapted(scene, budget, options.keep_target, adapt, kw,
                           progress=sub(0.6, 1.0), net=net, tune=options.painter_tune,
                           base=res, refined=refined, shrink=shrink)
    out.stats.setdefault("refine", res.stats["refine"])
    out.stats["requested_ratio"] = options.ratio
    return out


def _refine_for(refine, options: CompressOptions):
    """``refine`` with the compression's up axis and shot."""
    from dataclasses import replace

    return replace(refine, up=options.up, shot=tuple(options.shot_cameras() or ()))


def painter_verdict(full_scene, refined, options: CompressOptions, net=None):
    """(sections, stats) for a refined file: the generic painter (``net``, default the
    shipped one) against no restoration on held-out views of ``refined`` (the views a
    painter delta would hold out), restored as a reader restores a refined file (the
    painter's refined gate table, ``refined=True``), and against the file's own gate bias /
    detail scale (:mod:`exgs.painter.tune`). When unrestored wins, the file carries the
    ``"none"`` painter marker, so ``--restore`` and every other restore path return its
    frames unchanged (do-no-harm: refined renders are close to the full scene, and the
    generic painter was measured to cost them up to 0.5 dB on held-out real captures); when
    its own setting wins, a ``"tune"`` section (:func:`.adapt.verdict_delta`)."""
    from ..io.exgs import DELTA_SECTION
    from .adapt import judge_generic, verdict_delta

    verdict = judge_generic(full_scene, refined, net, options.up, options.cameras, refined=True,
                            tune=options.painter_tune, shot=options.shot_cameras())
    info = {"enabled": False, "bytes": 0, **verdict,
            "reason": "refined file: generic painter vs no restoration vs its own setting "
                      "on held-out views"}
    blob = verdict_delta(info)
    if blob is None:
        return {}, {"painter_delta": info}
    info.update(form=info["choice"], bytes=len(blob), restore=info["choice"])
    return {DELTA_SECTION: blob}, {"painter_delta": info}
