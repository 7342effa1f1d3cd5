"""Refinement: distil UGC's survivors against renders of the full scene, within a wall-clock
budget, at zero extra bytes.

:func:`refine` optimises the survivors' means, rotations, log-scales, opacity logits and SH
(all coefficients of their degree) with Adam (one learning rate per attribute, decayed
exponentially to ``lr_final``×) on ``(1 − λ)·L1 + λ·(1 − SSIM)`` between the survivors'
render (:func:`exgs.render.autograd.rasterize`, black background, clipped to [0,1]) and the
full scene's render of the same teacher view. Teacher views are the training cameras when
given (every 8th is held out for the decision), otherwise orbits at several distances and
elevations (:mod:`exgs.ugc.refine_views`).

Quantization-aware end: during the last ``qat_fraction`` of the run the attributes pass
through the .exgs codec's round trip (:func:`exgs.ugc.fakequant.fake_quant`, straight-through
gradients), so the optimiser sees the values that will be written.

Switch-off rule: the training-free survivors, the codec round trip of the parameters at the
start of the quantization-aware phase and at the end (and, after a cancel, the current ones)
are rendered from held-out decision views; the best mean PSNR against the full scene wins,
so the result is never worse there than the training-free one. The returned scene holds the
decoded values of the winner, in the survivors' order (the file's significance order is
kept). Deterministic for a fixed ``steps`` (the budget is then only a cap).

Budget: ``seconds`` covers everything here (teacher renders, steps, decision); training
stops early enough to leave room for the decision (measured on the training-free
evaluation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from ..cameras import fit_cameras
from ..errors import UsageError
from ..scene import GaussianScene, logit
from .fakequant import codec_roundtrip, fake_quant
from .refine_views import (decision_views, mean_psnr, ssim_target_stats, ssim_torch,
                           teacher_views)

__all__ = ["RefineOptions", "refine", "check_budget"]


@dataclass
class RefineOptions:
    """Settings of :func:`refine`. Learning rates are Adam step sizes per attribute
    (``lr_means`` is multiplied by the scene's robust half-diagonal)."""

    seconds: float | None = 60.0
    steps: int | None = None
    resolution: int = 256
    views: int = 48
    decision_views: int = 8
    decision_resolution: int = 512
    up: Any = "-y"
    elevation: tuple | None = None
    ssim_weight: float = 0.2
    lr_means: float = 1e-3
    lr_quats: float = 2e-3
    lr_scales: float = 1e-2
    lr_opacity: float = 5e-2
    lr_sh0: float = 1e-2
    lr_shn: float = 1e-3
    lr_final: float = 0.1
    qat_fraction: float = 0.25
    coarse_fraction: float = 0.0
    reserve_seconds: float = 0.0
    position_bits: int = 16
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    #: the cameras the file will be rendered from (an artist's camera path): extra teacher
    #: views, at ``resolution``, beside the orbits or training cameras
    shot: tuple = field(default=(), repr=False)
    progress: Callable[[float, str], None] | None = field(default=None, repr=False)
    cancel: Any = field(default=None, repr=False)


def check_budget(seconds) -> float:
    """A refinement budget in seconds: a finite number > 0, else UsageError."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        raise UsageError(f"refine budget must be a number of seconds, got {seconds!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise UsageError(f"refine budget must be a finite number of seconds > 0, got {seconds}")
    return s


def _check_scene(scene: GaussianScene, what: str) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        if not np.isfinite(getattr(scene, name)).all():
            raise UsageError(f"the {what} scene has non-finite values (NaN or inf) in {name}")


def _cancelled(flag) -> bool:
    if flag is None:
        return False
    if hasattr(flag, "is_set"):
        return bool(flag.is_set())
    return bool(flag())


class _Params:
    """Raw survivor parameters as torch leaves (float32) and their Adam optimiser.

    Adam is written out here (β = 0.9/0.999, ε = 1e-15, bias-corrected, per-element learning
    rates: the SH DC term and the higher bands have their own): ``torch.optim`` imports
    torch._dynamo on first use, ≈ 4 s on an idle core and 30+ s on this loaded machine,
    which a short budget cannot afford."""

    NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh")

    def __init__(self, scene: GaussianScene, opt: RefineOptions, extent: float):
        self.t = {n: torch.tensor(np.array(getattr(scene, n), np.float32), requires_grad=True)
                  for n in self.NAMES}
        sh_lr = torch.full((1, self.t["sh"].shape[1], 1), float(opt.lr_shn))
        sh_lr[:, 0] = float(opt.lr_sh0)
        self.lr0 = {"means": opt.lr_means * extent, "quats": opt.lr_quats,
                    "log_scales": opt.lr_scales, "opacity_logits": opt.lr_opacity,
                    "sh": sh_lr}
        self.scale = 1.0
        self.m = {n: torch.zeros_like(t) for n, t in self.t.items()}
        self.v = {n: torch.zeros_like(t) for n, t in self.t.items()}
        self.k = 0

    def set_progress(self, frac: float, lr_final: float) -> None:
        self.scale = lr_final ** min(max(frac, 0.0), 1.0)

    @torch.no_grad()
    def step(self) -> None:
        self.k += 1
        c1 = 1.0 - 0.9 ** self.k
        c2 = 1.0 - 0.999 ** self.k
        for n, p in self.t.items():
            g = p.grad
            if g is None:
                continue
            m, v = self.m[n], self.v[n]
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            denom = (v / c2).sqrt_().add_(1e-15)
            p.sub_((self.lr0[n] * (self.scale / c1)) * m / denom)
            p.grad = None

    def activated(self, quantize: bool, bits: int):
        t = self.t
        means, quats, ls = t["means"], t["quats"], t["log_scales"]
        op, sh = torch.sigmoid(t["opacity_logits"]), t["sh"]
        if quantize:
            means, quats, ls, op, sh = fake_quant(means, quats, ls, op, sh, bits)
        else:
            quats = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        return means, quats, torch.exp(ls), op, sh

    def snapshot(self) -> tuple:
        return tuple(t.detach().numpy().copy() for t in self.t.values())


def _half(cam, target):
    """The view at half resolution: camera, 2×2-averaged target, its SSIM statistics."""
    import torch.nn.functional as F

    t = F.avg_pool2d(target.permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0).contiguous()
    c = cam.resized(t.shape[1], t.shape[0])
    return c, t, ssim_target_stats(t)


def _scene_from(snap, bits: int) -> GaussianScene:
    """Codec round trip of raw parameters → the GaussianScene a file would decode to."""
    means, quats, ls, op_logit, sh = snap
    op = 1.0 / (1.0 + np.exp(-op_logit.astype(np.float64)))
    m, q, l, o, s = codec_roundtrip(means, quats, ls, op, sh, position_bits=bits)
    return GaussianScene(m, q, l, logit(o, eps=1e-4), s)


def plan_views(full: GaussianScene, teacher_cameras, opt: RefineOptions):
    """(teacher cameras, decision cameras, kind). With training cameras: every 8th one is a
    decision view (when there are ≥ 8), the others teach; long sides reduced to
    ``resolution`` (teachers) and ``decision_resolution`` (decision). Otherwise orbits
    (:func:`~exgs.ugc.refine_views.teacher_views`, :func:`~.decision_views`). The shot's
    cameras (``opt.shot``) teach as well."""
    shot = fit_cameras(opt.shot or (), opt.resolution)
    if teacher_cameras:
        all_cams = list(teacher_cameras)
        if len(all_cams) >= 8:
            dec = fit_cameras(all_cams[::8], opt.decision_resolution)
            all_cams = [c for i, c in enumerate(all_cams) if i % 8]
        else:
            dec = decision_views(full, opt.decision_views, opt.decision_resolution, opt.up,
                                 opt.elevation)
        return fit_cameras(all_cams, opt.resolution) + shot, dec, "training cameras"
    return (teacher_views(full, opt.views, opt.resolution, opt.up, opt.elevation) + shot,
            decision_views(full, opt.decision_views, opt.decision_resolution, opt.up,
                           opt.elevation), "orbits")


def refine(full_scene: GaussianScene, survivors: GaussianScene, teacher_cameras=None,
           options: RefineOptions | None = None) -> tuple[GaussianScene, dict]:
    """Refine ``survivors`` (the training-free UGC result, decoded) against ``full_scene``.
    Returns (scene, report); see the module doc. ``options.cancel`` may be a
    ``threading.Event`` or a callable returning True to stop (the best so far is kept)."""
    import numba as nb

    from ..render import render_many

    opt = options or RefineOptions()
    t_start = time.perf_counter()
    budget = None if opt.seconds is None else check_budget(opt.seconds)
    if opt.steps is None and budget is None:
        raise UsageError("refine needs a time budget (seconds) or a step count")
    if opt.steps is not None and int(opt.steps) < 1:
        raise UsageError(f"refine steps must be ≥ 1, got {opt.steps}")
    if len(survivors) == 0 or len(full_scene) == 0:
        raise UsageError("refine needs a non-empty full scene and survivors")
    _check_scene(full_scene, "input")
    _check_scene(survivors, "compressed")
    prog = opt.progress or (lambda f, m: None)
    bits = int(opt.position_bits)
    old_threads = nb.get_num_threads()
    threads = opt.threads or (1 if len(survivors) < 50_000 else old_threads)
    nb.set_num_threads(max(1, min(int(threads), nb.config.NUMBA_NUM_THREADS)))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, nb.get_num_threads()))
    try:
        return _refine(full_scene, survivors, teacher_cameras, opt, budget, t_start, prog,
                       bits, render_many)
    finally:
        nb.set_num_threads(old_threads)
        torch.set_num_threads(torch_threads)


def _refine(full, surv, teacher_cameras, opt, budget, t_start, prog, bits, render_many):
    deterministic = opt.steps is not None
    cams, dec, view_kind = plan_views(full, teacher_cameras, opt)
    prog(0.0, f"rendering {len(cams)} teacher views of the full scene")
    targets, stats, cams_used = [], [], []
    for i, r in enumerate(render_many(full, cams, device=opt.device)):
        targets.append(torch.from_numpy(np.ascontiguousarray(r.rgb)))
        stats.append(ssim_target_stats(targets[-1]))
        cams_used.append(cams[i])
        # under a tight budget, teacher renders may use at most 25 % of it (keep ≥ 4 views)
        if (not deterministic and budget is not None and len(targets) >= 4
                and time.perf_counter() - t_start > 0.25 * budget):
            break
    cams = cams_used
    coarse = [_half(c, t) for c, t in zip(cams, targets)] if opt.coarse_fraction > 0 else []
    dec_targets = [r.rgb for r in render_many(full, dec, device=opt.device)]
    t_teacher = time.perf_counter() - t_start
    t0 = time.perf_counter()
    base_psnr = mean_psnr(surv, dec, dec_targets, opt.device)
    t_eval = time.perf_counter() - t0
    lo, hi = full.robust_bounds()
    extent = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)
    params = _Params(surv, opt, extent)
    t0 = time.perf_counter()
    _scene_from(params.snapshot(), bits)
    t_codec = time.perf_counter() - t0
    # the decision evaluates up to 3 candidates (incl. the codec round trip); 5 % margin;
    # reserve_seconds: what the caller still does after refine() (re-encoding the file)
    reserve = 3.0 * (t_eval + t_codec) + (0.05 * budget if budget else 0.0) \
        + max(float(opt.reserve_seconds), 0.0)
    train_end = None if budget is None else t_start + budget - reserve
    train_start = time.perf_counter()
    train_time = None if train_end is None else max(train_end - train_start, 0.0)

    rng = np.random.default_rng(opt.seed)
    perm, pi = rng.permutation(len(cams)), 0
    lam = float(opt.ssim_weight)
    candidates = [("training-free", base_psnr, None)]
    step, qat, cancelled, losses = 0, False, False, []
    float_snap = None
    t_steps = 0.0
    last_msg = 0.0

    def frac_done():
        if deterministic:
            f = step / opt.steps
            if train_time is not None and train_time > 0:
                f = max(f, (time.perf_counter() - train_start) / train_time)
            return f
        return (time.perf_counter() - train_start) / max(train_time, 1e-9)

    while True:
        f = frac_done()
        if (deterministic and step >= opt.steps) or (train_end is not None
                                                      and time.perf_counter() >= train_end):
            break
        if _cancelled(opt.cancel):
            cancelled = True
            break
        if not qat and f >= 1.0 - opt.qat_fraction:
            float_snap = params.snapshot()
            qat = True
        params.set_progress(f, opt.lr_final)
        ts = time.perf_counter()
        if pi >= len(perm):
            perm, pi = rng.permutation(len(cams)), 0
        v = int(perm[pi])
        pi += 1
        means, quats, scales, op, sh = params.activated(qat, bits)
        from ..render.autograd import RasterizeCPU, _rasterize_gsplat

        cam, tgt, st = cams[v], targets[v], stats[v]
        if f < opt.coarse_fraction:
            cam, tgt, st = coarse[v]
        deg = surv.sh_degree
        if opt.device == "gsplat":
            rgb, _ = _rasterize_gsplat(means, quats, scales, op, sh, cam, deg, (0, 0, 0))
        else:
            rgb, _ = RasterizeCPU.apply(means, quats, scales, op, sh, cam, deg,
                                        (0.0, 0.0, 0.0))
        pred = rgb.clamp(0.0, 1.0).float()
        loss = (1 - lam) * (pred - tgt).abs().mean()
        if lam > 0:
            loss = loss + lam * (1 - ssim_torch(pred, tgt, st))
        loss.backward()
        params.step()
        losses.append(float(loss.detach()))
        step += 1
        t_steps += time.perf_counter() - ts
        now = time.perf_counter()
        if now - last_msg > 0.5:
            last_msg = now
            prog(min(f, 1.0), f"refining: step {step}, loss {np.mean(losses[-20:]):.4f}"
                 + (" (quantization-aware)" if qat else ""))

    prog(1.0, "refining: choosing on held-out views")
    snaps = []
    if float_snap is not None:
        snaps.append(("refined (before quantization-aware phase)", float_snap))
    if step > 0:
        snaps.append(("refined" + (" (quantization-aware)" if qat else ""), params.snapshot()))
    scenes = {}
    for name, snap in snaps:
        sc = _scene_from(snap, bits)
        scenes[name] = sc
        candidates.append((name, mean_psnr(sc, dec, dec_targets, opt.device), None))
    best = max(candidates, key=lambda c: c[1])
    chosen = surv if best[0] == "training-free" else scenes[best[0]]
    t_total = time.perf_counter() - t_start
    report = {
        "steps": step, "seconds": t_total, "budget_seconds": budget,
        "teacher_views": len(cams), "teacher_kind": view_kind, "decision_views": len(dec),
        "resolution": opt.resolution, "seconds_teacher": t_teacher,
        "seconds_per_step": t_steps / step if step else None,
        "qat_started": qat, "cancelled": cancelled,
        "decision_psnr": {name: p for name, p, _ in candidates},
        "chosen": best[0], "switched_off": best[0] == "training-free",
        "gain_db": best[1] - base_psnr, "loss_first": losses[0] if losses else None,
        "loss_last": float(np.mean(losses[-20:])) if losses else None,
        "survivors": len(surv), "sh_degree": surv.sh_degree,
        "options": {k: v for k, v in vars(replace(opt, progress=None, cancel=None)).items()
                    if k not in ("progress", "cancel")},
    }
    return chosen, report
