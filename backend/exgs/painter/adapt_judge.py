"""The switch-off rule of the scene-adaptive painter delta (:mod:`.adapt`): held-out scores
of the three ways a file can be rendered, and the choice between them.

For held-out views (clean = the full scene) it scores, as mean PSNR (dB, capped at 99):

* ``none``    — the *baseline* file's render, unrestored (the baseline: what the file holds
  without a delta; with a byte budget the larger kept count that also fills the delta's
  bytes);
* ``generic`` — the baseline render restored by the generic painter;
* ``adapted`` — the delta's file render (fewer Gaussians) restored by the generic painter
  with the delta applied, exactly as a reader does (the quantized delta).

The delta is kept only when ``adapted ≥ max(generic, none) + min_gain_db``. Otherwise the
file is restored the better of the two other ways: ``none`` wins when the unrestored render
beats the generic painter; the file then carries a ``"none"`` delta
(:func:`exgs.painter.delta.none_delta`) so every reader leaves it unrestored.
"""

from __future__ import annotations

import numpy as np


def restore_views(net, views, key_rgb="rgb", key_alpha="alpha", kept_fraction=None,
                  refined: bool = False) -> list:
    """Restored rgb [H,W,3] of each view dict's ``key_rgb`` / ``key_alpha`` renders
    (``refined``: the scene was refined after pruning, the painter's refined tables)."""
    from .infer import Painter

    p = Painter(net)
    return [p.restore(v[key_rgb], v[key_alpha], kept_fraction=kept_fraction, refined=refined)
            for v in views]


def mean_psnr(outs, views) -> float:
    """Mean PSNR (dB, each capped at 99) of ``outs`` against the views' clean renders."""
    from ..metrics import psnr

    return float(np.mean([min(psnr(v["clean"], o), 99.0) for o, v in zip(outs, views)]))


def baseline_keys(hold) -> tuple[str, str]:
    """The render keys of the baseline scene in held-out view dicts (``base_*`` when the
    views were rendered with a distinct baseline, else the file's own)."""
    return ("base_rgb", "base_alpha") if "base_rgb" in hold[0] else ("rgb", "alpha")


def score_without_delta(net, hold, kept_base, refined: bool = False) -> dict:
    """{"none", "generic"}: mean held-out PSNR of the baseline render unrestored and restored
    by the generic painter ``net`` (gate set by ``kept_base`` and ``refined``)."""
    kr, ka = baseline_keys(hold)
    ps_none = mean_psnr([v[kr] for v in hold], hold)
    ps_gen = mean_psnr(restore_views(net, hold, kr, ka, kept_fraction=kept_base,
                                     refined=refined), hold)
    return {"none": ps_none, "generic": ps_gen}


def choose(adapted_db: float | None, none_db: float, generic_db: float,
           min_gain_db: float) -> dict:
    """The switch-off rule: {"choice": "delta" | "generic" | "none", "reference": the better
    of generic/none, "reference_db", "gain_db": adapted − reference (None without a
    delta)}."""
    ref = "none" if none_db > generic_db else "generic"
    ref_db = max(none_db, generic_db)
    gain = None if adapted_db is None else adapted_db - ref_db
    choice = "delta" if gain is not None and gain >= min_gain_db else ref
    return {"choice": choice, "reference": ref, "reference_db": ref_db, "gain_db": gain}


def judge_scene(full_scene, scene, net, cfg, cameras=None, kept_fraction=None,
                refined: bool = False, tune: bool = True,
                clean_cache: dict | None = None, shot=None) -> dict:
    """Without training anything: render ``cfg.holdout`` held-out views (the same cameras
    :func:`.adapt.adapt` would hold out) of ``full_scene`` and ``scene`` and score the
    unrestored vs generic restoration of ``scene``. Returns :func:`choose` (no delta) plus
    ``heldout_none_db`` / ``heldout_generic_db``. ``refined``: ``scene`` was refined after
    pruning (the generic painter restores it as a reader of the refined file does).

    ``tune``: also choose this file's own gate bias and detail scale on those views
    (:mod:`.tune`; ``out["tune"]`` reports the pick). The choice becomes "tune" when the
    picked setting, applied exactly as a reader applies the file's ``"tune"`` delta, beats
    both the unrestored and the generic restoration by :data:`exgs.painter.tune.MARGIN_DB`
    (``heldout_tuned_db``; otherwise ``out["tune"]["choice"]`` reads "unconfirmed"; the
    sweep scores whole frames, readers restore in tiles); "none" when no
    setting, the tables included, passes the do-no-harm rule; otherwise as without it.
    ``clean_cache``: full-scene renders shared with the delta candidates
    (:func:`.adapt_views.render_pairs`). ``shot``: judge on frames of the cameras the file
    will be rendered from instead (:func:`.adapt_views.held_out_views`)."""
    from .adapt_views import held_out_views, render_pairs

    cams, _ = held_out_views(full_scene, cfg, cameras, shot)
    hold = render_pairs(full_scene, scene, cams, clean_cache=clean_cache)
    if kept_fraction is None:
        kept_fraction = min(1.0, len(scene) / max(len(full_scene), 1))
    s = score_without_delta(net, hold, kept_fraction, refined)
    out = choose(None, s["none"], s["generic"], 0.0)
    out.update(heldout_none_db=round(s["none"], 3), heldout_generic_db=round(s["generic"], 3))
    if tune and kept_fraction < 1.0:
        out.update(tune_scene(net, hold, kept_fraction, refined, s))
    return out


def tune_scene(net, hold, kept_fraction: float, refined: bool, scores: dict) -> dict:
    """The per-file setting (:func:`exgs.painter.tune.choose_setting` on the held-out view
    dicts ``hold``) and what it changes in :func:`judge_scene`'s verdict (``scores``: its
    {"none", "generic"} mean PSNRs)."""
    from .delta import apply_delta, base_fingerprint, tune_delta
    from .tune import MARGIN_DB, choose_setting, settings_sweep

    sweep = settings_sweep(net, [(v["rgb"], v["alpha"], v["clean"]) for v in hold],
                           kept_fraction, refined)
    pick = choose_setting(sweep)
    out: dict = {"tune": pick}
    if pick["choice"] == "none":
        out["choice"] = "none"
    elif pick["choice"] == "tune":
        pick["base"] = base_fingerprint(net)
        tuned = apply_delta(net, tune_delta(pick["gate_bias"], pick["detail_scale"],
                                            pick["base"]))
        db = mean_psnr(restore_views(tuned, hold, kept_fraction=kept_fraction,
                                     refined=refined), hold)
        out["heldout_tuned_db"] = round(db, 3)
        if db >= max(scores["none"], scores["generic"]) + MARGIN_DB:
            out["choice"] = "tune"
        else:  # the sweep's estimate did not hold through the reader's path
            pick["choice"] = "unconfirmed"
    return out
