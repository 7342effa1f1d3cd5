"""Scene-adaptive GaussPainter: fine-tune a compact delta on the frozen generic painter at
compression time, from the scene's own renders, and keep it only when it pays.

The compressor has the full scene, so it can render (clean = full scene, degraded = exactly
the pruned scene that goes into the .exgs) pairs from many views and fine-tune a few
parameters of the shipped painter on them. The result is a *delta* (:mod:`.delta`) stored in
the file's ``painter_delta`` section and applied by every ``--restore``.

Forms (``AdaptConfig.form``):

* ``last``  — (default) the decoder's last conv (colour correction + confidence logit) and
  the gate head's last conv, int8 differences (725 parameters, ≈ 1 kB with the shipped net).
  Trained on cached features (the frozen net and the gate head's first convs run once per
  view); chosen by bench/adapt.py: as much gain as ``head`` at a quarter of the bytes.
* ``head``  — the gate head (all of it) and the VAE decoder's last conv, stored as int8
  differences (≈ 4.9k parameters with the shipped net). Trained on cached features: the
  frozen encoder/UNet/decoder run once per view, each step only runs the last conv + gate
  head, so a step costs milliseconds.
* ``lora``  — rank-``r`` adapters (A [r, fan_in], B [out, r], B starts at 0) on the UNet's
  last up block, its ``conv_out`` and the decoder's full-resolution convs (after the last
  upsample). Trained through the UNet's last block + decoder (encoder cached).
* ``bias``  — every bias and GroupNorm scale/shift of the UNet and decoder plus the gate
  head's biases, stored as int8 differences. Trained through UNet + decoder.
* ``detail`` — the full-resolution detail head (:mod:`.detail`): a residual on every pixel,
  covered ones included (where most of a heavily pruned real render's error is). Starts
  from the generic head (rescaled to run at scale 1) when the weights have one, else from a
  fresh seeded head of ``detail_width`` channels that the delta carries whole. Trained on
  cached inputs: the generic restoration (without detail) and the head's input features
  run once per view; a step only runs the head on crops.

Training data: ``views`` cameras (the given training cameras resized to ``size`` on the long
side, else orbits around the robust bounds with distance 0.35–1.3, horizontal fov 20–70°,
elevation −10–60°, up −y, seeded) rendered at ``size``×``size``; ``holdout`` of them are not
trained on and decide whether the delta is kept. Crops of ``crop`` px (multiples of 8,
sampled where the degraded render differs most from the clean one), batch ``batch``,
loss ``|out − clean|₁ + w_ssim · (1 − SSIM)``, Adam with cosine decay over the budget.

Defaults (measured, docs/painter.md): form ``auto`` (``last`` here; the pipeline chooses
by rate–distortion), 60 s, int8, margin 0.3 dB.

Switch-off rule (:mod:`.adapt_judge`): the delta is kept only if, on the held-out views,
the adapted painter on the file's scene beats the *better* of the generic painter and no
restoration on the *baseline* scene (what the file would hold without a delta — with
``--ratio`` the larger kept count that fills the delta's bytes too) by ``min_gain_db``
(mean PSNR, dB); ``stats["choice"]`` is then "generic" or "none" (the compressor stores a
``"none"`` delta for the latter). The delta evaluated is the quantized one, applied exactly
as a reader applies it. ``form="auto"`` (:mod:`exgs.pipeline.adapt`) trains the forms that
fit the byte budget and keeps the best at equal file size.

Determinism: with ``steps`` set, training is deterministic for a given seed and thread layout
(the time budget then only caps it); with a time budget alone, the number of steps depends
on the machine. The delta's informative stats hold wall-clock seconds, so its bytes differ
run to run even when its weights do not. Applying a delta is always deterministic.

Modules: the forms (which parameters, parametrizations, export) are
:mod:`.delta_forms`, the views :mod:`.adapt_views`, the training loop is here, and the
compression around it (byte budget, reserve, switch-off) is :mod:`exgs.pipeline.adapt`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..errors import UsageError
from .adapt_judge import baseline_keys, choose, mean_psnr, restore_views, score_without_delta
from .adapt_views import adaptation_cameras, held_out_views, render_pairs
from .delta import base_fingerprint
from .adapt_tails import _cat, _crop, _detail_setup, _DetailTail, _pad8, _Tail, _to_t  # noqa: F401
from .delta_forms import (DETAIL_FORM, FORMS, delta_param_count, detail_spec, export,
                          parametrize, size_reserve, targets)

__all__ = ["AdaptConfig", "AdaptResult", "adapt", "gate_bias_for", "FORMS", "targets",
           "size_reserve", "delta_param_count", "adaptation_cameras", "render_pairs",
           "config_dict"]
AUTO_FORM = "auto"  #: choose the form by rate–distortion at the file's budget (pipeline)
DEFAULT_FORM = AUTO_FORM
DEFAULT_SECONDS = 60.0
MIN_TRAIN_VIEWS = 4  #: rendered even when that overruns a tiny budget
MIN_STEPS = 30  #: training steps done even when that overruns a tiny budget


@dataclass
class AdaptConfig:
    """Options of :func:`adapt`; sizes in pixels, times in seconds."""

    form: str = DEFAULT_FORM
    seconds: float = DEFAULT_SECONDS  #: wall-time budget of the whole adaptation
    steps: int | None = None  #: fixed step count (deterministic); None = until the budget
    rank: int = 2  #: lora rank
    dtype: str = "int8"  #: "int8" or "fp16"
    views: int = 40  #: rendered views (training + held out)
    holdout: int = 8  #: views held out for the switch-off decision
    size: int = 256  #: render size (long side)
    crop: int = 96
    batch: int = 0  #: 0 = form default (8 for head, 4 otherwise)
    lr: float = 0.0  #: 0 = form default
    w_ssim: float = 0.5
    min_gain_db: float = 0.3  #: keep the delta only if it gains at least this much (dB)
    detail_width: int = 0  #: width of a fresh detail head (0 = the painter config's)
    detail_dilations: tuple = ()  #: dilations of a fresh detail head (() = the config's)
    judge_size: int = 0  #: long side of the held-out (decision) views; 0 = 1.5 × ``size``
    #: (384 px for the default 256: the size frames are restored at matters, measured)
    judge_pick: str = "isolated"  #: which given cameras decide: "isolated" (the views least
    #: like the training views, :func:`.adapt_views.isolated_last`) or "random" (a seeded
    #: share; overstated the gain, docs/painter.md)
    seed: int = 0
    threads: int = 1
    up: str = "-y"

    def validate(self) -> "AdaptConfig":
        if self.form not in FORMS + (AUTO_FORM,):
            raise UsageError(f"unknown painter delta form {self.form!r} (expected one of "
                             f"{', '.join(FORMS + (AUTO_FORM,))})")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise UsageError(f"adaptation budget must be a positive number of seconds, got "
                             f"{self.seconds}")
        if self.dtype not in ("int8", "fp16"):
            raise UsageError(f"delta dtype must be int8 or fp16, got {self.dtype!r}")
        if self.holdout < 1 or self.views < self.holdout + 1:
            raise UsageError("need at least one held-out and one training view")
        if self.crop % 8 or self.crop < 32 or self.size < self.crop:
            raise UsageError("crop must be a multiple of 8, ≥ 32 and ≤ size")
        if self.judge_pick not in ("random", "isolated"):
            raise UsageError(f"judge_pick must be random or isolated, got {self.judge_pick!r}")
        if self.judge_size < 0:
            raise UsageError(f"judge_size must be ≥ 0, got {self.judge_size}")
        if not 1 <= self.rank <= 64:
            raise UsageError(f"lora rank must be in 1..64, got {self.rank}")
        return self


@dataclass
class AdaptResult:
    """``delta``: bytes to store (None when switched off); ``stats``: JSON-able figures."""

    delta: bytes | None
    stats: dict = field(default_factory=dict)


def gate_bias_for(net, kept_fraction: float | None):
    """The gate bias the painter uses for a scene with ``kept_fraction`` of its Gaussians
    kept, when the painter's gate depends on it (``PainterConfig.bias_for_kept_fraction``);
    else None."""
    f = getattr(net.cfg, "bias_for_kept_fraction", None)
    return None if f is None or kept_fraction is None else float(f(kept_fraction))


def adapt(full_scene, pruned_scene, *, net=None, cameras=None, baseline_scene=None,
          config: AdaptConfig | None = None, progress: Callable | None = None,
          pairs: list[dict] | None = None, refined: bool = False,
          schedule: tuple[float, float] | None = None,
          clean_cache: dict | None = None, shot=None) -> AdaptResult:
    """Fine-tune a ``config.form`` delta of ``net`` (default: the shipped painter) for
    restoring renders of ``pruned_scene`` towards renders of ``full_scene``.

    ``cameras``: training cameras (else orbits, see module doc). ``baseline_scene``: what
    the file would hold without a delta (default: ``pruned_scene``); the delta is kept only
    if adapted-on-``pruned_scene`` beats generic-on-``baseline_scene`` by ``min_gain_db`` on
    the held-out views. ``pairs``: pre-rendered views (as :func:`render_pairs` returns;
    the last ``holdout`` are held out). ``progress(fraction, message)``. ``refined``: the
    scenes were refined after pruning — the baseline's "generic" is then restored as a
    reader of a refined file restores it (the painter's refined tables); the delta itself
    is trained and applied with the training-free gate schedule unless ``schedule`` =
    (gate bias, detail scale) is given: then it is trained at that fixed setting and the
    delta carries it (its ``schedule`` entry, applied by :func:`exgs.painter.delta.
    apply_delta`) — how a refined file's delta starts from the file as its readers see it.
    ``clean_cache``: full-scene renders shared between calls
    (:func:`.adapt_views.render_pairs`). ``shot``: the cameras the file will be rendered
    from; its frames are the held-out views then (:func:`.adapt_views.held_out_views`).
    Returns :class:`AdaptResult` (``delta`` None when switched off; ``stats`` always).
    """
    import torch

    cfg = (config or AdaptConfig()).validate()
    if cfg.form == AUTO_FORM:  # no byte budget to choose by here: the smallest form
        from dataclasses import replace

        cfg = replace(cfg, form="last")
    t_start = time.perf_counter()
    deadline = t_start + cfg.seconds
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    try:
        return _adapt(full_scene, pruned_scene, net, cameras, baseline_scene, cfg, progress,
                      pairs, t_start, deadline, refined, schedule, clean_cache, shot)
    finally:
        torch.set_num_threads(old_threads)


def _emit(progress, frac, msg):
    if progress is not None:
        progress(float(min(max(frac, 0.0), 1.0)), msg)


def _adapt(full_scene, pruned_scene, net, cameras, baseline_scene, cfg, progress, pairs,
           t_start, deadline, refined=False, schedule=None, clean_cache=None,
           shot=None) -> AdaptResult:
    import copy

    import torch

    from .delta import _tuned_copy, apply_delta
    from .train import ssim_torch

    if net is None:
        from .infer import load_net

        net = load_net()
    if any(p.device.type != "cpu" for p in net.parameters()):
        net = copy.deepcopy(net).cpu()  # never move the caller's (shared) net
    net.eval()
    base_fp = base_fingerprint(net)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])

    # ---- views
    if pairs is None:
        # held-out views first; training views until 30 % of the budget is spent (≥ 4)
        hold_c, train_c = held_out_views(full_scene, cfg, cameras, shot)
        pairs_h = render_pairs(full_scene, pruned_scene, hold_c, baseline_scene,
                               clean_cache=clean_cache)
        pairs = []
        for i, cam in enumerate(train_c):
            if i >= MIN_TRAIN_VIEWS and time.perf_counter() > t_start + 0.3 * cfg.seconds:
                break
            pairs += render_pairs(full_scene, pruned_scene, [cam], clean_cache=clean_cache)
            _emit(progress, 0.15 * (i + 1) / len(train_c),
                  f"adapt: rendering view {i + 1}/{len(train_c)}")
        pairs += pairs_h
    t_render = time.perf_counter() - t_start
    hold, train_views = pairs[-cfg.holdout:], pairs[:-cfg.holdout]

    # ---- cache the frozen part on the training views
    n_full = max(len(full_scene), 1)
    kept = min(1.0, len(pruned_scene) / n_full)
    kept_base = kept if baseline_scene is None else min(1.0, len(baseline_scene) / n_full)
    init, fresh = None, False
    start = net if schedule is None else _tuned_copy(net, *schedule)  # same parameters
    if cfg.form == DETAIL_FORM:
        work, init, fresh, base_painter = _detail_setup(start, cfg, kept)
    else:
        work = copy.deepcopy(start)
    for p in work.parameters():
        p.requires_grad_(False)
    tail = (_DetailTail(work, base_painter, kept) if cfg.form == DETAIL_FORM
            else _Tail(work, cfg.form, gate_bias_for(start, kept), kept))
    caches, weights = [], []
    t0 = time.perf_counter()
    for i, v in enumerate(train_views):
        rgb, alpha, clean = (_pad8(v[k]) for k in ("rgb", "alpha", "clean"))
        caches.append(tail.cache_view(_to_t(rgb), _to_t(alpha), _to_t(clean)))
        err = np.abs(clean - rgb).mean(-1)
        weights.append(err)
        _emit(progress, 0.15 + 0.05 * (i + 1) / len(train_views),
              f"adapt: preparing view {i + 1}/{len(train_views)}")
    per_view = (time.perf_counter() - t0) / max(1, len(train_views))
    # held-out evaluation ≈ two restores per held-out view (bigger views: more); keep that
    hpx = sum(v["clean"].size for v in hold) / max(1, len(hold))
    tpx = sum(v["clean"].size for v in train_views) / max(1, len(train_views))
    eval_reserve = 2.5 * per_view * len(hold) * hpx / max(tpx, 1) + 1.0
    params = parametrize(work, cfg.form, cfg.rank, cfg.seed, init)
    trainable = [p for _, _, pm in params for p in pm.parameters()]
    batch = cfg.batch or (8 if cfg.form in ("head", "last", DETAIL_FORM) else 4)
    lr = cfg.lr or {"head": 2e-3, "last": 1e-2, "bias": 1e-3, "lora": 1e-3,
                    DETAIL_FORM: 2e-3}[cfg.form]
    opt = torch.optim.Adam(trainable, lr=lr)

    # crop sampler: crop origins on the 8-px grid, weighted by the local error
    s = cfg.crop
    samplers = []
    for c, err in zip(caches, weights):
        H, W = c["rgb"].shape[-2:]
        hs, ws = max(1, (H - s) // 8 + 1), max(1, (W - s) // 8 + 1)
        e = _pad8(err)
        cs = np.cumsum(np.cumsum(np.pad(e, ((1, 0), (1, 0))), 0), 1)
        ys, xs = np.arange(hs) * 8, np.arange(ws) * 8
        ye, xe = np.minimum(ys + s, e.shape[0]), np.minimum(xs + s, e.shape[1])
        tot = cs[ye][:, xe] - cs[ys][:, xe] - cs[ye][:, xs] + cs[ys][:, xs]
        w = tot.ravel() + 1e-3 * (tot.mean() + 1e-6)
        samplers.append((ys, xs, w / w.sum()))
    vw = np.array([float(e.mean()) + 1e-4 for e in weights])
    vw = vw / vw.sum()

    # ---- train
    work.train()
    step, t_train0 = 0, time.perf_counter()
    train_end = deadline - eval_reserve
    max_steps = cfg.steps if cfg.steps is not None else 10 ** 9
    history = []
    run_loss = None
    while step < max_steps:
        now = time.perf_counter()
        if now >= train_end and step >= min(MIN_STEPS, max_steps):
            break
        if cfg.steps is not None:
            prog = step / max(cfg.steps, 1)
        else:
            prog = (now - t_train0) / max(train_end - t_train0, 1e-6)
        cur_lr = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, prog))))
        if step < 10:
            cur_lr *= (step + 1) / 10
        for g in opt.param_groups:
            g["lr"] = cur_lr
        crops = []
        for _ in range(batch):
            vi = int(rng.choice(len(caches), p=vw))
            ys, xs, w = samplers[vi]
            k = int(rng.choice(len(w), p=w))
            crops.append(_crop(caches[vi], int(ys[k // len(xs)]), int(xs[k % len(xs)]), s))
        b = _cat(crops)
        if rng.random() < 0.5:  # horizontal flip (the painter is trained with flips)
            b = {k: v.flip(-1) for k, v in b.items()}
        out, tgt = tail.forward(b), b["clean"]
        m = getattr(tail, "margin", 0)
        if m:
            out, tgt = out[..., m:-m, m:-m], tgt[..., m:-m, m:-m]
        loss = (out - tgt).abs().mean() + cfg.w_ssim * (1 - ssim_torch(out, tgt))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        step += 1
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
        if step % 25 == 0:
            history.append(round(run_loss, 5))
            span = (cfg.steps if cfg.steps is not None else None)
            f = step / span if span else (time.perf_counter() - t_train0) / max(
                train_end - t_train0, 1e-6)
            _emit(progress, 0.2 + 0.7 * min(1.0, f),
                  f"adapt ({cfg.form}): step {step}, loss {run_loss:.4f}")
    t_train = time.perf_counter() - t_train0
    work.eval()

    # ---- export (quantized) and evaluate exactly as a reader would
    _emit(progress, 0.9, "adapt: evaluating on held-out views")
    info = {"form": cfg.form, "rank": cfg.rank if cfg.form == "lora" else 0,
            "dtype": cfg.dtype, "steps": step, "train_seconds": round(t_train, 2),
            "render_seconds": round(t_render, 2), "views": len(pairs),
            "train_views": len(train_views), "heldout_views": len(hold), "refined": refined}
    extra = ({"detail": detail_spec(work, fresh=fresh, scale=1.0)}
             if cfg.form == DETAIL_FORM else {})
    if schedule is not None:
        extra["schedule"] = {"gate_bias": float(schedule[0]),
                             "detail_scale": float(schedule[1])}
        info["schedule"] = extra["schedule"]
    extra = extra or None
    if cfg.form == DETAIL_FORM:
        info["detail_fresh"] = fresh
    blob = export(params, cfg.form, cfg.dtype, cfg.rank, base_fp, info, extra)
    adapted = apply_delta(net, blob)
    ps_ad = mean_psnr(restore_views(adapted, hold, kept_fraction=kept, refined=refined), hold)
    ref = score_without_delta(net, hold, kept_base, refined)  # baseline: unrestored, generic
    ps_pruned = mean_psnr([v["rgb"] for v in hold], hold)
    ps_gen_same = (ref["generic"] if baseline_keys(hold)[0] == "rgb" else
                   mean_psnr(restore_views(net, hold, kept_fraction=kept, refined=refined),
                             hold))
    verdict = choose(ps_ad, ref["none"], ref["generic"], cfg.min_gain_db)
    gain = verdict["gain_db"]
    enabled = verdict["choice"] == "delta"
    stats = dict(info, heldout_pruned_db=round(ps_pruned, 3),
                 heldout_none_db=round(ref["none"], 3),
                 heldout_generic_same_scene_db=round(ps_gen_same, 3),
                 heldout_generic_db=round(ref["generic"], 3), heldout_adapted_db=round(ps_ad, 3),
                 gain_db=round(gain, 3), gain_vs_generic_db=round(ps_ad - ref["generic"], 3),
                 reference=verdict["reference"], choice=verdict["choice"],
                 min_gain_db=cfg.min_gain_db, enabled=enabled,
                 params=delta_param_count(net, cfg.form, cfg.rank, cfg.detail_width),
                 base=base_fp,
                 loss_history=history[-40:], seconds=round(time.perf_counter() - t_start, 2))
    vs = f"{verdict['reference']} ({verdict['reference_db']:.2f} dB)"
    if enabled:
        # re-encode with the final stats inside (informative only; weights identical)
        keep_stats = {k: stats[k] for k in ("form", "rank", "dtype", "steps", "train_seconds",
                                            "views", "heldout_views", "gain_db",
                                            "heldout_generic_db", "heldout_adapted_db",
                                            "heldout_none_db", "reference")}
        blob = export(params, cfg.form, cfg.dtype, cfg.rank, base_fp, keep_stats, extra)
        stats["bytes"] = len(blob)
        stats["reason"] = f"held-out gain {gain:+.2f} dB over {vs} ≥ {cfg.min_gain_db} dB"
    else:
        stats["bytes"] = 0
        stats["bytes_if_kept"] = len(blob)
        stats["reason"] = (f"switched off: held-out gain {gain:+.2f} dB over {vs} < "
                           f"{cfg.min_gain_db} dB; restore with: {verdict['choice']}")
    _emit(progress, 1.0, f"adapt: {stats['reason']}")
    return AdaptResult(blob if enabled else None, stats)


def config_dict(cfg: AdaptConfig) -> dict:
    return asdict(cfg)


