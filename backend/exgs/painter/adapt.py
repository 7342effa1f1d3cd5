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

Training data: ``views`` cameras (the given training cameras resized to ``size`` on the long
side, else orbits around the robust bounds with distance 0.35–1.3, horizontal fov 20–70°,
elevation −10–60°, up −y, seeded) rendered at ``size``×``size``; ``holdout`` of them are not
trained on and decide whether the delta is kept. Crops of ``crop`` px (multiples of 8,
sampled where the degraded render differs most from the clean one), batch ``batch``,
loss ``|out − clean|₁ + w_ssim · (1 − SSIM)``, Adam with cosine decay over the budget.

Defaults (measured, docs/painter.md): form ``last``, 60 s, int8, margin 0.3 dB.

Switch-off rule: the delta is kept only if, on the held-out views, the adapted painter on
the file's scene beats the generic painter on the *baseline* scene (the scene the file would
hold without a delta — with ``--ratio`` the larger kept count that fills the delta's bytes
too) by at least ``min_gain_db`` (mean PSNR, dB). The delta evaluated is the quantized one,
applied exactly as a reader applies it.

Determinism: with ``steps`` set, training is deterministic for a given seed and thread count
(the time budget then only caps it); with a time budget alone, the number of steps depends
on the machine. Applying a delta is always deterministic.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..errors import UsageError
from .delta import base_fingerprint, encode_delta

FORMS = ("head", "last", "lora", "bias")
DEFAULT_FORM = "last"
DEFAULT_SECONDS = 60.0
MIN_TRAIN_VIEWS = 4  #: rendered even when that overruns a tiny budget
MIN_STEPS = 30  #: training steps done even when that overruns a tiny budget
REFILL_BYTES = 256  #: re-search the kept count when the delta leaves more than this unused


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
    seed: int = 0
    threads: int = 1
    up: str = "-y"

    def validate(self) -> "AdaptConfig":
        if self.form not in FORMS:
            raise UsageError(f"unknown painter delta form {self.form!r} (expected one of "
                             f"{', '.join(FORMS)})")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise UsageError(f"adaptation budget must be a positive number of seconds, got "
                             f"{self.seconds}")
        if self.dtype not in ("int8", "fp16"):
            raise UsageError(f"delta dtype must be int8 or fp16, got {self.dtype!r}")
        if self.holdout < 1 or self.views < self.holdout + 1:
            raise UsageError("need at least one held-out and one training view")
        if self.crop % 8 or self.crop < 32 or self.size < self.crop:
            raise UsageError("crop must be a multiple of 8, ≥ 32 and ≤ size")
        if not 1 <= self.rank <= 64:
            raise UsageError(f"lora rank must be in 1..64, got {self.rank}")
        return self


@dataclass
class AdaptResult:
    """``delta``: bytes to store (None when switched off); ``stats``: JSON-able figures."""

    delta: bytes | None
    stats: dict = field(default_factory=dict)


# ============================================================================ targets
def _decoder_layers(net):
    return list(net.vae.decoder.layers)


def _full_res_decoder_index(net) -> int:
    """Index of the first decoder layer after the last Upsample (full resolution)."""
    from torch import nn

    layers = _decoder_layers(net)
    last_up = max((i for i, m in enumerate(layers) if isinstance(m, nn.Upsample)), default=-1)
    return last_up + 1


def targets(net, form: str) -> list[tuple[str, str]]:
    """[(parameter name, "diff" | "lora")] trained by ``form`` on ``net`` (state-dict names)."""
    from torch import nn

    names = dict(net.named_parameters())
    out: list[tuple[str, str]] = []
    nlayers = len(_decoder_layers(net))
    if form == "head":
        if net.gate_head is not None:
            out += [(n, "diff") for n in names if n.startswith("gate_head.")]
        out += [(f"vae.decoder.layers.{nlayers - 1}.{p}", "diff") for p in ("weight", "bias")]
    elif form == "last":
        if net.gate_head is not None:
            last = _last_conv(net.gate_head)
            gh = {id(m): n for n, m in net.gate_head.named_modules()}
            out += [(f"gate_head.{gh[id(last)]}.{p}", "diff") for p in ("weight", "bias")]
        out += [(f"vae.decoder.layers.{nlayers - 1}.{p}", "diff") for p in ("weight", "bias")]
    elif form == "bias":
        for n, p in names.items():
            if n.startswith(("unet.", "vae.decoder.", "gate_head.")) and (
                    n.endswith(".bias") or (".norm" in n or "norm_out" in n)):
                out.append((n, "diff"))
    elif form == "lora":
        convs = [(f"unet.{n}", m) for n, m in net.unet.named_modules()
                 if isinstance(m, nn.Conv2d) and (n.startswith(f"up_blocks.{len(net.unet.up_blocks) - 1}.")
                                                  or n == "conv_out")]
        first = _full_res_decoder_index(net)
        convs += [(f"vae.decoder.{n}", m) for n, m in net.vae.decoder.named_modules()
                  if isinstance(m, nn.Conv2d) and n.startswith("layers.")
                  and int(n.split(".")[1]) >= first]
        for n, m in convs:
            out.append((f"{n}.weight", "lora"))
            if m.bias is not None:
                out.append((f"{n}.bias", "diff"))
    else:
        raise UsageError(f"unknown painter delta form {form!r}")
    missing = [n for n, _ in out if n not in names]
    if missing:
        raise UsageError(f"painter has no parameter {missing[0]!r} for form {form!r}")
    return out


def delta_param_count(net, form: str, rank: int = 4) -> int:
    """Number of stored values of a ``form`` delta on ``net``."""
    names = dict(net.named_parameters())
    total = 0
    for n, kind in targets(net, form):
        p = names[n]
        if kind == "diff":
            total += p.numel()
        else:
            fan_in = p[0].numel()
            r = min(rank, p.shape[0], fan_in)
            total += r * (fan_in + p.shape[0])
    return total


def size_reserve(net, form: str, rank: int = 4, dtype: str = "int8") -> int:
    """Upper estimate of the bytes a ``form`` delta adds to a .exgs file: a delta of random
    (incompressible) values of the right shapes, plus 160 bytes for the header's section
    entry. Used to reserve room in the ``--ratio`` search."""
    rng = np.random.default_rng(0)
    names = dict(net.named_parameters())
    ts = []
    for n, kind in targets(net, form):
        p = names[n]
        if kind == "diff":
            ts.append((n, "diff", rng.normal(0, 1, tuple(p.shape)).astype(np.float32)))
        else:
            fan_in = p[0].numel()
            r = min(rank, p.shape[0], fan_in)
            ts.append((n, "lora_a", rng.normal(0, 1, (r, fan_in)).astype(np.float32)))
            ts.append((n, "lora_b", rng.normal(0, 1, (p.shape[0], r)).astype(np.float32)))
    stats = {"steps": 10 ** 6, "seconds": 1e4, "gain_db": -10.123456, "heldout_generic_db":
             10.123456, "heldout_adapted_db": 10.123456, "views": 999, "train_views": 999}
    blob = encode_delta(form, ts, base="0" * 16, dtype=dtype, rank=rank, stats=stats)
    return len(blob) + 160


# ============================================================================ views
def adaptation_cameras(scene, cfg: AdaptConfig, cameras=None) -> list:
    """``cfg.views`` cameras: the given ones (resized to ``cfg.size`` long side, evenly
    chosen, shuffled with the seed) or seeded orbits of varied radius and focal length."""
    from ..cameras import orbit_for_scene

    rng = np.random.default_rng([cfg.seed, 8])
    out = []
    if cameras:
        cams = list(cameras)
        idx = np.unique(np.linspace(0, len(cams) - 1, min(cfg.views, len(cams)))
                        .round().astype(int))
        for i in idx:
            c = cams[int(i)]
            s = cfg.size / max(c.width, c.height)
            out.append(c.resized(max(8, round(c.width * s)), max(8, round(c.height * s))))
        order = rng.permutation(len(out))
        out = [out[i] for i in order]
        if len(out) >= cfg.views:
            return out
    # orbits (all of them without cameras; the rest when too few cameras were given)
    cams = out
    for i in range(cfg.views - len(out)):
        el = rng.uniform(-10, 60)
        cams += orbit_for_scene(scene, 1, cfg.size, cfg.size, up=cfg.up,
                                distance=rng.uniform(0.35, 1.3), fov_x_deg=rng.uniform(20, 70),
                                seed=int(rng.integers(1 << 30)), elevation_deg=(el, el),
                                azimuth_offset_deg=rng.uniform(0, 360))
    return cams


def render_pairs(full_scene, pruned_scene, cameras, baseline_scene=None, progress=None,
                 frac=(0.0, 1.0)) -> list[dict]:
    """Per camera: clean (full scene) and degraded (pruned scene) renders over black, and the
    baseline scene's render when given. Arrays: rgb [H,W,3] float32, alpha [H,W]."""
    from ..render import render

    out = []
    for i, cam in enumerate(cameras):
        c = render(full_scene, cam, device="cpu")
        d = render(pruned_scene, cam, device="cpu")
        item = {"clean": c.rgb.astype(np.float32), "clean_alpha": c.alpha.astype(np.float32),
                "rgb": d.rgb.astype(np.float32), "alpha": d.alpha.astype(np.float32)}
        if baseline_scene is not None:
            b = render(baseline_scene, cam, device="cpu")
            item["base_rgb"] = b.rgb.astype(np.float32)
            item["base_alpha"] = b.alpha.astype(np.float32)
        out.append(item)
        if progress is not None:
            progress(frac[0] + (frac[1] - frac[0]) * (i + 1) / len(cameras),
                     f"adapt: rendering view {i + 1}/{len(cameras)}")
    return out


# ============================================================================ training
class _Tail:
    """The trainable part of the net for one form, run from cached frozen activations.

    Per view (full frame, padded to a multiple of 8) it caches: rgb, alpha, clean [1,C,H,W],
    fill [1,3,H,W], coverage [1,5,H,W], and the frozen input of the trainable part: the
    decoder's last-conv input (head) or the encoder latent z (lora, bias).
    """

    def __init__(self, net, form: str, gate_bias: float | None = None):
        self.net, self.form, self.gate_bias = net, form, gate_bias

    def cache_view(self, rgb, alpha, clean) -> dict:
        import torch

        from .model import pull_push_fill

        net = self.net
        with torch.no_grad():
            fill, cov = pull_push_fill(rgb, alpha, net.cfg.fill_levels, return_coverage=True)
            c = {"rgb": rgb, "alpha": alpha, "clean": clean, "fill": fill, "cov": cov}
            z = net.encode(rgb)
            if self.form in ("head", "last"):
                zh = net.restore_latent(z, alpha)
                x = torch.tanh(zh / 3) * 3
                for layer in list(net.vae.decoder.layers)[:-1]:
                    x = layer(x)
                c["feat"] = x
            if self.form == "last" and net.gate_head is not None and net.cfg.fill:
                # the gate head's frozen part: capture its last conv's input
                last = _last_conv(net.gate_head)
                got = {}
                h = last.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0]))
                try:
                    net.gate_head(rgb, alpha, fill, cov)
                finally:
                    h.remove()
                c["gfeat"] = got["x"]
            else:
                c["z"] = z
        return c

    def forward(self, c: dict):
        """Output [B,3,h,w] of the (parametrized) net on a cached crop dict."""
        import torch

        net = self.net
        if "feat" in c:
            d4 = net.vae.decoder.layers[-1](c["feat"])
        else:
            zh = net.restore_latent(c["z"], c["alpha"])
            d4 = net.vae.decoder.layers(torch.tanh(zh / 3) * 3)
        dec, conf = d4[:, :3], d4[:, 3:4]
        if net.cfg.fill:
            if "gfeat" in c:
                conf = conf + _last_conv(net.gate_head)(c["gfeat"])
            elif net.gate_head is not None:
                conf = conf + net.gate_head(c["rgb"], c["alpha"], c["fill"], c["cov"])
            dec = c["fill"] + dec
        if self.gate_bias is None:
            g = net.gate(conf, c["alpha"])
        else:
            g = net.gate(conf, c["alpha"], self.gate_bias)
        return c["rgb"] + g * (dec.clamp(0.0, 1.0) - c["rgb"])


def _last_conv(module):
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1]


def _to_t(x):
    import torch

    if x.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def _pad8(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8
    if not (ph or pw):
        return a
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode="edge")


def _crop(c: dict, y: int, x: int, s: int) -> dict:
    """Crop a cached view at pixel (y, x) of size s (y, x, s multiples of 8)."""
    out = {}
    for k, v in c.items():
        if k == "z":
            out[k] = v[..., y // 8:(y + s) // 8, x // 8:(x + s) // 8]
        else:
            out[k] = v[..., y:y + s, x:x + s]
    return out


def _cat(crops: list[dict]) -> dict:
    import torch

    return {k: torch.cat([c[k] for c in crops], 0) for k in crops[0]}


class _LoRA:
    """Parametrization W → W + B @ A (reshaped), A [r, fan_in] small random, B [out, r] = 0."""

    @staticmethod
    def make(shape, rank, gen):
        import torch
        from torch import nn

        class LoRA(nn.Module):
            def __init__(self):
                super().__init__()
                fan_in = int(np.prod(shape[1:]))
                r = min(rank, shape[0], fan_in)
                self.a = nn.Parameter(torch.randn(r, fan_in, generator=gen) / math.sqrt(fan_in))
                self.b = nn.Parameter(torch.zeros(shape[0], r))

            def forward(self, w):
                return w + (self.b @ self.a).view(w.shape)

        return LoRA()


class _Diff:
    @staticmethod
    def make(shape):
        import torch
        from torch import nn

        class Diff(nn.Module):
            def __init__(self):
                super().__init__()
                self.d = nn.Parameter(torch.zeros(shape))

            def forward(self, w):
                return w + self.d

        return Diff()


def _parametrize(net, form: str, rank: int, seed: int):
    """Register the form's trainable parametrizations on ``net`` (a private copy) →
    [(name, kind, module)] with module.d (diff) or module.a/.b (lora)."""
    import torch
    from torch.nn.utils import parametrize

    gen = torch.Generator().manual_seed(int(seed))
    mods = dict(net.named_modules())
    out = []
    for name, kind in targets(net, form):
        mod_name, pname = name.rsplit(".", 1)
        mod = mods[mod_name]
        shape = tuple(getattr(mod, pname).shape)
        pm = _Diff.make(shape) if kind == "diff" else _LoRA.make(shape, rank, gen)
        parametrize.register_parametrization(mod, pname, pm, unsafe=True)
        out.append((name, kind, pm))
    return out


def _export(params, form, dtype, rank, base, stats) -> bytes:
    ts = []
    for name, kind, pm in params:
        if kind == "diff":
            ts.append((name, "diff", pm.d.detach().numpy().copy()))
        else:
            ts.append((name, "lora_a", pm.a.detach().numpy().copy()))
            ts.append((name, "lora_b", pm.b.detach().numpy().copy()))
    return encode_delta(form, ts, base=base, dtype=dtype, rank=rank if form == "lora" else 0,
                        stats=stats)


def gate_bias_for(net, keep: float | None):
    """The gate bias the painter uses for a scene keeping ``keep`` of its Gaussians, when
    the painter has a keep-dependent gate (``PainterConfig.bias_for_keep``); else None."""
    f = getattr(net.cfg, "bias_for_keep", None)
    return None if f is None or keep is None else float(f(keep))


def restore_with_keep(painter, rgb, alpha, keep: float | None):
    """``painter.restore(rgb, alpha, keep=keep)`` when the painter takes the kept fraction
    (keep-dependent gate), else ``painter.restore(rgb, alpha)``."""
    import inspect

    try:
        takes = "keep" in inspect.signature(painter.restore_batch).parameters
    except (TypeError, ValueError, AttributeError):
        takes = False
    if takes and keep is not None:
        return painter.restore(rgb, alpha, keep=keep)
    return painter.restore(rgb, alpha)


def _restore_views(net, views, key_rgb="rgb", key_alpha="alpha", keep=None) -> list:
    from .infer import Painter

    p = Painter(net)
    return [restore_with_keep(p, v[key_rgb], v[key_alpha], keep) for v in views]


def _mean_psnr(outs, views) -> float:
    from ..metrics import psnr

    vals = [min(psnr(v["clean"], o), 99.0) for o, v in zip(outs, views)]
    return float(np.mean(vals))


def adapt(full_scene, pruned_scene, *, net=None, cameras=None, baseline_scene=None,
          config: AdaptConfig | None = None, progress: Callable | None = None,
          pairs: list[dict] | None = None) -> AdaptResult:
    """Fine-tune a ``config.form`` delta of ``net`` (default: the shipped painter) for
    restoring renders of ``pruned_scene`` towards renders of ``full_scene``.

    ``cameras``: training cameras (else orbits, see module doc). ``baseline_scene``: what
    the file would hold without a delta (default: ``pruned_scene``); the delta is kept only
    if adapted-on-``pruned_scene`` beats generic-on-``baseline_scene`` by ``min_gain_db`` on
    the held-out views. ``pairs``: pre-rendered views (as :func:`render_pairs` returns;
    the last ``holdout`` are held out). ``progress(fraction, message)``.
    Returns :class:`AdaptResult` (``delta`` None when switched off; ``stats`` always).
    """
    import torch

    cfg = (config or AdaptConfig()).validate()
    t_start = time.perf_counter()
    deadline = t_start + cfg.seconds
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    try:
        return _adapt(full_scene, pruned_scene, net, cameras, baseline_scene, cfg, progress,
                      pairs, t_start, deadline)
    finally:
        torch.set_num_threads(old_threads)


def _emit(progress, frac, msg):
    if progress is not None:
        progress(float(min(max(frac, 0.0), 1.0)), msg)


def _adapt(full_scene, pruned_scene, net, cameras, baseline_scene, cfg, progress, pairs,
           t_start, deadline) -> AdaptResult:
    import copy

    import torch

    from .delta import apply_delta
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
        cams = adaptation_cameras(full_scene, cfg, cameras)
        hold_c, train_c = cams[-cfg.holdout:], cams[:-cfg.holdout]
        pairs_h = render_pairs(full_scene, pruned_scene, hold_c, baseline_scene)
        pairs = []
        for i, cam in enumerate(train_c):
            if i >= MIN_TRAIN_VIEWS and time.perf_counter() > t_start + 0.3 * cfg.seconds:
                break
            pairs += render_pairs(full_scene, pruned_scene, [cam])
            _emit(progress, 0.15 * (i + 1) / len(train_c),
                  f"adapt: rendering view {i + 1}/{len(train_c)}")
        pairs += pairs_h
    t_render = time.perf_counter() - t_start
    hold, train_views = pairs[-cfg.holdout:], pairs[:-cfg.holdout]

    # ---- cache the frozen part on the training views
    work = copy.deepcopy(net)
    for p in work.parameters():
        p.requires_grad_(False)
    n_full = max(len(full_scene), 1)
    keep = min(1.0, len(pruned_scene) / n_full)
    keep_base = keep if baseline_scene is None else min(1.0, len(baseline_scene) / n_full)
    tail = _Tail(work, cfg.form, gate_bias_for(net, keep))
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
    # held-out evaluation ≈ two restores per held-out view; keep that much time
    eval_reserve = 2.5 * per_view * len(hold) + 1.0
    params = _parametrize(work, cfg.form, cfg.rank, cfg.seed)
    trainable = [p for _, _, pm in params for p in pm.parameters()]
    batch = cfg.batch or (8 if cfg.form in ("head", "last") else 4)
    lr = cfg.lr or {"head": 2e-3, "last": 1e-2, "bias": 1e-3, "lora": 1e-3}[cfg.form]
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
        out = tail.forward(b)
        loss = (out - b["clean"]).abs().mean() + cfg.w_ssim * (1 - ssim_torch(out, b["clean"]))
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
            "train_views": len(train_views), "heldout_views": len(hold)}
    blob = _export(params, cfg.form, cfg.dtype, cfg.rank, base_fp, info)
    adapted = apply_delta(net, blob)
    out_ad = _restore_views(adapted, hold, keep=keep)
    base_key = "base_rgb" if "base_rgb" in hold[0] else "rgb"
    base_a = "base_alpha" if base_key == "base_rgb" else "alpha"
    out_gen = _restore_views(net, hold, base_key, base_a, keep=keep_base)
    from ..metrics import psnr

    ps_pruned = float(np.mean([min(psnr(v["clean"], v["rgb"]), 99.0) for v in hold]))
    ps_ad = _mean_psnr(out_ad, hold)
    ps_gen = _mean_psnr(out_gen, hold)
    out_gen_same = out_gen if base_key == "rgb" else _restore_views(net, hold, keep=keep)
    ps_gen_same = _mean_psnr(out_gen_same, hold)
    gain = ps_ad - ps_gen
    enabled = bool(gain >= cfg.min_gain_db)
    stats = dict(info, heldout_pruned_db=round(ps_pruned, 3),
                 heldout_generic_same_scene_db=round(ps_gen_same, 3),
                 heldout_generic_db=round(ps_gen, 3), heldout_adapted_db=round(ps_ad, 3),
                 gain_db=round(gain, 3), min_gain_db=cfg.min_gain_db, enabled=enabled,
                 params=delta_param_count(net, cfg.form, cfg.rank), base=base_fp,
                 loss_history=history[-40:], seconds=round(time.perf_counter() - t_start, 2))
    if enabled:
        # re-encode with the final stats inside (informative only; weights identical)
        keep_stats = {k: stats[k] for k in ("form", "rank", "dtype", "steps", "train_seconds",
                                            "views", "heldout_views", "gain_db",
                                            "heldout_generic_db", "heldout_adapted_db")}
        blob = _export(params, cfg.form, cfg.dtype, cfg.rank, base_fp, keep_stats)
        stats["bytes"] = len(blob)
        stats["reason"] = f"held-out gain {gain:+.2f} dB ≥ {cfg.min_gain_db} dB"
    else:
        stats["bytes"] = 0
        stats["bytes_if_kept"] = len(blob)
        stats["reason"] = (f"switched off: held-out gain {gain:+.2f} dB < "
                           f"{cfg.min_gain_db} dB")
    _emit(progress, 1.0, f"adapt: {stats['reason']}")
    return AdaptResult(blob if enabled else None, stats)


def config_dict(cfg: AdaptConfig) -> dict:
    return asdict(cfg)


# ============================================================================ compression
def compress_adapted(scene, *, ratio: float | None = None, keep=None,
                     adapt_config: AdaptConfig | None = None, cameras=None,
                     source_bytes: int | None = None, progress: Callable | None = None,
                     net=None, **compress_kw):
    """UGC compression (:func:`exgs.ugc.compress`) + a per-scene painter delta stored in the
    file's ``painter_delta`` section → :class:`exgs.ugc.CompressResult` whose
    ``stats["painter_delta"]`` describes the adaptation (``enabled``, ``gain_db``, bytes...).

    With ``ratio`` the *whole file* (scene + delta) meets ``source_bytes / ratio``:

    1. the generic file is searched for the full budget (the baseline);
    2. room for the delta is reserved (:func:`size_reserve`, an upper estimate) and the
       kept count is searched again for the rest, reusing the significance;
    3. the delta is trained on that smaller scene and kept only if, on held-out views, it
       beats the generic painter on the baseline file by ``min_gain_db``; otherwise the
       baseline file is returned unchanged;
    4. the kept count is searched once more with the delta's actual size when it exceeds its
       reserve or leaves more than ``REFILL_BYTES`` unused (the delta is kept: a few
       Gaussians more or less do not change what it learnt).

    With ``keep`` the kept count is fixed and the delta adds to the size; it is kept if it
    beats the generic painter on the same scene by ``min_gain_db``.
    """
    from ..io.exgs_format import DELTA_SECTION, attach_sections
    from ..ugc import CompressResult, compress

    cfg = (adapt_config or AdaptConfig()).validate()
    if net is None:
        from .infer import load_net

        net = load_net()

    def sub(a, b):
        return None if progress is None else (lambda f, m="": progress(a + (b - a) * f, m))

    base = compress(scene, ratio=ratio, keep=keep, cameras=cameras, source_bytes=source_bytes,
                    progress=sub(0.0, 0.15), **compress_kw)
    kw = dict(compress_kw, cameras=cameras, source_bytes=source_bytes, score=base.score)
    src = base.stats["source_bytes"]
    cand, target = base, None
    if ratio is not None:
        target = src / float(ratio)
        reserve = size_reserve(net, cfg.form, cfg.rank, cfg.dtype)
        room = target - reserve
        off = None
        if room < 2048:
            off = (f"switched off: no room for a {cfg.form} delta (~{reserve} bytes) in the "
                   f"{target:.0f}-byte budget")
        else:
            try:
                cand = compress(scene, ratio=src / room, progress=sub(0.15, 0.2), **kw)
            except UsageError as e:
                off = f"switched off: {e}"
        if off is not None:
            base.stats["painter_delta"] = {"enabled": False, "reason": off, "bytes": 0,
                                           "form": cfg.form}
            return base
    res = adapt(scene, cand.scene, net=net, cameras=cameras,
                baseline_scene=base.scene if cand is not base else None, config=cfg,
                progress=sub(0.2, 0.98))
    if res.delta is None:
        base.stats["painter_delta"] = res.stats
        return base
    data = attach_sections(cand.data, {DELTA_SECTION: res.delta})
    if target is not None and (len(data) > target or target - len(data) > REFILL_BYTES):
        # the reserve was an estimate: search the count again with the delta's real size
        # (fills the budget, or fits it when the delta came out larger than reserved); the
        # delta is kept — a few Gaussians more or less do not change what it learnt
        extra = len(data) - len(cand.data)
        try:
            again = compress(scene, ratio=src / (target - extra), progress=sub(0.98, 0.99),
                             **kw)
        except UsageError:
            again = None
        if again is not None:
            d2 = attach_sections(again.data, {DELTA_SECTION: res.delta})
            if len(d2) <= target and (len(data) > target or len(again.scene) > len(cand.scene)):
                res.stats["research"] = {"kept_before": len(cand.scene),
                                         "kept_after": len(again.scene)}
                cand, data = again, d2
        if len(data) > target:  # could not make room: the file must meet the ratio
            res.stats.update(enabled=False, bytes=0, reason="switched off: the delta does "
                             "not fit in the budget")
            base.stats["painter_delta"] = res.stats
            return base
    stats = dict(cand.stats)
    stats.update(file_bytes=len(data), ratio=src / len(data), requested_ratio=ratio,
                 bytes_per_gaussian=len(data) / max(len(cand.scene), 1),
                 painter_delta=res.stats,
                 scene_bytes=len(cand.data))
    _emit(progress, 1.0, f"done: {len(cand.scene):,} Gaussians + {len(res.delta):,}-byte "
                         f"painter delta, {len(data):,} bytes")
    return CompressResult(scene=cand.scene, data=data, stats=stats, score=cand.score)
