"""GaussPainter network: TAESD-architecture VAE + one-step latent UNet + gated image residual.

Shapes and conventions (all tensors NCHW, float32):

* ``rgb``   [B,3,H,W] display sRGB in [0, 1], the render of the *pruned* scene composited over
  its background (black background = premultiplied colour), row 0 = top.
* ``alpha`` [B,1,H,W] in [0, 1], 1 − final transmittance of that render.
* H and W must be multiples of 8 (the VAE downsamples by 8; :mod:`exgs.painter.infer` pads).

Pipeline (one network evaluation, no sampling loop)::

    z     = E(rgb)                                   [B,Cz,H/8,W/8]   VAE encoder (AutoencoderTiny)
    m     = avgpool8(1 − alpha), a = avgpool8(alpha) [B,1,H/8,W/8]    the mask (+ alpha)
    ẑ     = z + U([z, m, a], t = timestep)           one UNet2DModel step at a fixed timestep
    d, c  = D(ẑ)                                     decoded colour [B,3,H,W] + confidence logit
    g     = sigmoid(c) · clamp(gain · (1 − alpha), 0, 1)
    out   = rgb + g · (d − rgb)

The gate ``g`` is the do-no-harm mechanism: where the pruned render is opaque (alpha ≈ 1, mask ≈
0) the output equals the input exactly, whatever the VAE does; elsewhere a learned confidence
decides how much of the decoded restoration replaces the input (background that is truly empty
keeps a confidence ≈ 0, so it stays background). A latent VAE alone cannot reproduce an input
at 40 dB; the gate can.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .detail import DetailHead
from .features import DEFAULT_KEEP, degradation_stats, keep_channel, local_coverage  # noqa: F401

LATENT_SCALE = 8  #: spatial downsampling of the VAE (TAESD: 4 stages, 3 stride-2 convs)


@dataclass
class PainterConfig:
    """Hyper-parameters stored next to the weights as ``painter.json``."""

    vae_width: int = 16  #: AutoencoderTiny block width (uniform across stages, as TAESD)
    vae_encoder_blocks: tuple = (1, 2, 2, 2)
    vae_decoder_blocks: tuple = (2, 2, 2, 1)
    latent_channels: int = 8
    unet_channels: tuple = (32, 64, 64)
    unet_layers_per_block: int = 1
    timestep: int = 500  #: the fixed timestep of the single UNet step
    gate_gain: float = 2.0  #: gate ≤ max(clamp(gain·(1 − alpha), 0, 1), gate_floor)
    gate_floor: float = 0.0  #: > 0 lets the painter touch opaque pixels too (up to this much)
    gate_coverage_gain: float = 0.0  #: > 0: the floor only applies where the local coverage
    #: (alpha averaged over ~32 px, :func:`local_coverage`) is incomplete — floor ·
    #: clamp(gain · (1 − coverage), 0, 1) — so frames whose Gaussians cover everything
    #: (unbounded captures: alpha = 1 everywhere) are returned exactly. 0 = the floor everywhere
    gate_bias: float = 0.0  #: added to the confidence logit at inference (< 0: more conservative);
    #: used when the kept fraction of the scene is unknown
    gate_bias_by_keep: tuple = ()  #: ((keep, bias), ...) ascending keep: the bias for a scene
    #: that keeps this fraction of its Gaussians (piecewise linear in log keep, clamped at the
    #: ends); chosen by :mod:`exgs.painter.calibrate` or, with the do-no-harm rule, by
    #: :func:`exgs.painter.calibrate_refined.calibrate_free` (−∞ / null: the painter is off
    #: there, detail head included). Empty: always ``gate_bias``.
    use_mask: bool = True  #: False = ablation: no mask/alpha input to the UNet or the gate head,
    #: no alpha cap on the gate (the parameter-free fill still uses the render's alpha)
    fill: bool = True  #: decode a correction on top of a pull-push fill (False: absolute colour)
    fill_levels: int = 6  #: pyramid levels of the pull-push fill
    gate_head: bool = False  #: add a small full-resolution gate head on coverage features
    gate_stats: bool = False  #: the gate head also sees the render's own degradation
    #: statistics (:func:`degradation_stats`: local detail energy at 2 scales) and the scene's
    #: kept fraction — signals that work where alpha = 1 everywhere (issue 15)
    gate_covered_by_keep: tuple = ()  #: ((keep, cap), ...): the gate cap on pixels inside
    #: fully covered surroundings for a scene keeping that fraction (piecewise linear in log
    #: keep like ``gate_bias_by_keep``); empty / unknown keep → 0 (returned exactly)
    detail_head: bool = False  #: add the full-resolution detail head (:mod:`.detail`): a
    #: residual on every pixel, covered ones included
    detail_width: int = 16
    detail_dilations: tuple = (1, 2, 4)
    detail_stride: int = 1  #: 2: the head's convs run on 2×2 pixel blocks (:class:`.detail.DetailHead`)
    detail_scale_by_keep: tuple = ()  #: ((keep, scale), ...): the detail head's scale for a
    #: scene keeping that fraction (piecewise linear in log keep); empty / unknown keep /
    #: nothing pruned → 0 (the head is not applied)
    refined_gate_bias_by_keep: tuple = ()  #: like ``gate_bias_by_keep``, for files refined
    #: after pruning (issue 10; the .exgs header says so): calibrated on refined frames only
    #: (``exgs painter-train ... --calibrate-refined``). A bias of −∞ (``null`` in painter.json) switches
    #: the painter off for that kept fraction (input returned exactly, detail head too).
    #: Empty: refined files use the tables above (weights from before session 7)
    refined_detail_scale_by_keep: tuple = ()  #: like ``detail_scale_by_keep``, for refined
    #: files (used when ``refined_gate_bias_by_keep`` is given)
    tile: int = 256  #: inference tile size (pixels, multiple of 8)
    overlap: int = 32  #: inference tile overlap (pixels, multiple of 8)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "PainterConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        for key in ("gate_covered_by_keep", "detail_scale_by_keep",
                    "refined_detail_scale_by_keep"):
            if key in kw:
                kw[key] = tuple((float(k), float(b)) for k, b in kw[key])
        for key in BIAS_TABLES:  # null = −∞: the painter is off there
            if key in kw:
                kw[key] = tuple((float(k), float("-inf") if b is None else float(b))
                                for k, b in kw[key])
        return cls(**kw)

    def to_dict(self) -> dict:
        """JSON-able dict (painter.json): −∞ biases of the bias tables as ``null``."""
        d = dataclasses.asdict(self)
        for key in BIAS_TABLES:
            d[key] = bias_table_json(getattr(self, key))
        return d

    def _refined(self, refined: bool) -> bool:
        """Whether a refined file uses the refined tables (weights that have them)."""
        return bool(refined) and bool(self.refined_gate_bias_by_keep)

    def bias_for_kept_fraction(self, kept_fraction: float | None,
                               refined: bool = False) -> float:
        """Gate bias for a scene that kept ``kept_fraction`` ∈ (0, 1] of its Gaussians (None:
        unknown → ``gate_bias``). Piecewise linear in log(kept_fraction) through
        ``gate_bias_by_keep`` (the name stored in painter.json); −∞ (the input returned
        exactly) when kept_fraction ≥ 1 and a table is given. ``refined``: the file was
        refined after pruning — ``refined_gate_bias_by_keep`` when the weights have it (−∞
        in a bin where the painter is off; next to one, the value of the bin the kept
        fraction falls in: :func:`_interp_log_keep`)."""
        keep = kept_fraction
        table = self.gate_bias_by_keep
        if self._refined(refined) and keep is not None:
            table = self.refined_gate_bias_by_keep
        if keep is None or not table:
            return float(self.gate_bias)
        if keep >= 1.0:  # nothing was pruned: nothing to restore, the gate stays shut
            return float("-inf")
        return _interp_log_keep(table, keep)

    def covered_cap_for_kept_fraction(self, kept_fraction: float | None) -> float:
        """Gate cap inside fully covered surroundings (``gate_covered_by_keep``); 0 when the
        kept fraction is unknown, ≥ 1 or no table is given (covered pixels returned exactly)."""
        table = self.gate_covered_by_keep
        if kept_fraction is None or not table or kept_fraction >= 1.0:
            return 0.0
        return min(max(_interp_log_keep(table, kept_fraction), 0.0), 1.0)

    def detail_scale_for_kept_fraction(self, kept_fraction: float | None,
                                       refined: bool = False) -> float:
        """Scale of the detail head's residual (``detail_scale_by_keep``, for a refined file
        ``refined_detail_scale_by_keep`` when the weights have a refined table); 0 without the
        head, when the kept fraction is unknown or ≥ 1, no table is given, or the painter is
        off for this refined file (bias −∞)."""
        table = self.detail_scale_by_keep
        if kept_fraction is not None and 0 < kept_fraction < 1 and \
                self.bias_for_kept_fraction(kept_fraction, refined) == float("-inf"):
            return 0.0  # the painter is off for this kept fraction
        if self._refined(refined) and kept_fraction is not None:
            table = self.refined_detail_scale_by_keep
        if not self.detail_head or kept_fraction is None or not table or kept_fraction >= 1.0:
            return 0.0
        return max(_interp_log_keep(table, kept_fraction), 0.0)


#: painter.json tables of gate biases, whose −∞ entries (the painter off) are stored as null
BIAS_TABLES = ("gate_bias_by_keep", "refined_gate_bias_by_keep")


def bias_table_json(table) -> list:
    """((keep, bias), ...) → [[keep, bias | None], ...] as painter.json stores it (−∞ = null)."""
    return [[k, None if math.isinf(b) else b] for k, b in table]


def _interp_log_keep(table, keep: float) -> float:
    """Piecewise linear in log keep through ``table`` ((keep, value), ... ascending keep),
    clamped at the ends. Next to a −∞ value (a refined table's "off" bin) the nearest node
    in log keep is taken instead (no blend with −∞): calibration nodes sit at the bins'
    geometric centres, so that is the value of the bin the kept fraction falls in."""
    ks = np.log(np.array([k for k, _ in table], np.float64))
    bs = np.array([b for _, b in table], np.float64)
    x = np.log(min(max(float(keep), 1e-6), 1.0))
    if np.isinf(bs).any():
        i = int(np.searchsorted(ks, x))
        if i == 0 or i == len(ks) or x == ks[i]:
            return float(bs[min(i, len(ks) - 1)])
        if np.isinf(bs[i - 1]) or np.isinf(bs[i]):
            return float(bs[i - 1] if x - ks[i - 1] < ks[i] - x else bs[i])
    return float(np.interp(x, ks, bs))


def build_vae(cfg: PainterConfig):
    """AutoencoderTiny (TAESD architecture); 4 output channels = RGB + confidence logit."""
    from diffusers import AutoencoderTiny

    w = cfg.vae_width
    return AutoencoderTiny(
        in_channels=3, out_channels=4,
        encoder_block_out_channels=(w,) * len(cfg.vae_encoder_blocks),
        decoder_block_out_channels=(w,) * len(cfg.vae_decoder_blocks),
        num_encoder_blocks=tuple(cfg.vae_encoder_blocks),
        num_decoder_blocks=tuple(cfg.vae_decoder_blocks),
        latent_channels=cfg.latent_channels,
    )


def build_unet(cfg: PainterConfig):
    """Small UNet2DModel (no attention) on the latent: in = Cz + 2 (mask, alpha), out = Cz."""
    from diffusers import UNet2DModel

    n = len(cfg.unet_channels)
    return UNet2DModel(
        in_channels=cfg.latent_channels + 2, out_channels=cfg.latent_channels,
        block_out_channels=tuple(cfg.unet_channels),
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        layers_per_block=cfg.unet_layers_per_block, norm_num_groups=8, add_attention=False,
        mid_block_type="UNetMidBlock2D",
    )


def soft_clamp(z: torch.Tensor) -> torch.Tensor:
    """3·tanh(z/3): TAESD's latent range."""
    return torch.tanh(z / 3.0) * 3.0


def pull_push_fill(rgb: torch.Tensor, alpha: torch.Tensor, levels: int = 6,
                   return_coverage: bool = False):
    """Parameter-free hole fill of a premultiplied render: [B,3,H,W], [B,1,H,W] → [B,3,H,W].

    Pull: average-pool premultiplied colour c and alpha w ``levels`` times (×2 each). Push:
    the coarsest level is normalised (c / w), then each finer level is composited *over* the
    upsampled coarser fill: ``f_k = c_k + (1 − w_k) · up(f_{k+1})``. Where alpha = 1 the result
    is the input exactly; in holes it is the colour of the surrounding covered pixels.
    With ``return_coverage`` also returns the alpha pyramid levels 1–5 upsampled to H×W
    ([B,5,H,W]: local coverage at 2…32 px scales).
    """
    cs, ws = [rgb], [alpha]
    for _ in range(levels):
        c, w = cs[-1], ws[-1]
        ph, pw = c.shape[-2] % 2, c.shape[-1] % 2
        if ph or pw:
            c = F.pad(c, (0, pw, 0, ph), mode="replicate")
            w = F.pad(w, (0, pw, 0, ph), mode="replicate")
        cs.append(F.avg_pool2d(c, 2))
        ws.append(F.avg_pool2d(w, 2))
        if min(cs[-1].shape[-2:]) <= 1:
            break
    f = cs[-1] / ws[-1].clamp(min=1e-3)
    f = torch.where(ws[-1] > 1e-3, f, torch.zeros_like(f))
    for c, w in zip(reversed(cs[:-1]), reversed(ws[:-1])):
        up = F.interpolate(f, size=c.shape[-2:], mode="bilinear", align_corners=False)
        f = c + (1.0 - w).clamp(0, 1) * up
    if return_coverage:
        size = alpha.shape[-2:]
        cov = [F.interpolate(w, size=size, mode="bilinear", align_corners=False)
               for w in ws[1:6]]
        cov += [cov[-1]] * (5 - len(cov))
        return f.clamp(0.0, 1.0), torch.cat(cov, 1)
    return f.clamp(0.0, 1.0)


class GateHead(nn.Module):
    """Full-resolution confidence head: features [alpha, coverage at 2–32 px (5), fill (3),
    rgb (3), |fill − rgb| (1)] = 13 channels → a logit added to the decoder's confidence.
    Three 3×3 convs (16 channels, the middle one dilated ×2); the last starts at zero."""

    def __init__(self, width: int = 16, stats: bool = False):
        super().__init__()
        self.stats = stats  #: + degradation_stats (2) and the keep channel (1): 16 inputs
        self.net = nn.Sequential(nn.Conv2d(16 if stats else 13, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
                                 nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, rgb, alpha, fill, coverage, keep=None):
        """``keep``: the scene's kept fraction (float, [B] or None = :data:`DEFAULT_KEEP`),
        used only with ``stats``."""
        f = [alpha, coverage, fill, rgb, (fill - rgb).abs().mean(1, keepdim=True)]
        if self.stats:
            f += [degradation_stats(rgb), keep_channel(keep, alpha)]
        return self.net(torch.cat(f, 1))

    @torch.no_grad()
    def widen_from(self, old: "GateHead") -> None:
        """Copy a 13-input head's weights; the new input channels start at zero weight."""
        sd = old.state_dict()
        w0 = sd["net.0.weight"]
        w = torch.zeros_like(self.net[0].weight)
        w[:, :w0.shape[1]] = w0
        sd["net.0.weight"] = w
        self.load_state_dict(sd)


class PainterNet(nn.Module):
    """VAE encoder → one UNet step → VAE decoder → gated residual (see module docstring)."""

    def __init__(self, cfg: PainterConfig | None = None, vae=None, unet=None):
        super().__init__()
        self.cfg = cfg or PainterConfig()
        fresh = vae is None
        self.vae = vae if vae is not None else build_vae(self.cfg)
        self.unet = unet if unet is not None else build_unet(self.cfg)
        self.gate_head = GateHead(stats=self.cfg.gate_stats) if self.cfg.gate_head else None
        self.detail = None
        if self.cfg.detail_head:
            self.detail = DetailHead(self.cfg.detail_width, tuple(self.cfg.detail_dilations),
                                     self.cfg.detail_stride)
        if fresh:
            self._init_closed_gate()

    @torch.no_grad()
    def _init_closed_gate(self, bias: float = -2.5) -> None:
        """Start training with the gate mostly closed (σ(−2.5) ≈ 0.08): output ≈ input, so the
        network learns to open it only where restoring helps."""
        last = self.vae.decoder.layers[-1]
        last.weight[3:4].mul_(0.1)
        last.bias[3:4].fill_(bias)
        if self.cfg.fill:  # the colour correction starts near 0: decoded ≈ the fill
            last.weight[:3].mul_(0.1)
            last.bias[:3].zero_()

    # --------------------------------------------------------------------- pieces
    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0,1] → latent [B,Cz,H/8,W/8], bounded to (−3, 3) with the same soft
        clamp TAESD's decoder applies (3·tanh(z/3)), so latents cannot drift to huge values."""
        return soft_clamp(self.vae.encoder(rgb * 2.0 - 1.0))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent → (colour [B,3,H,W] in [0,1] (unclamped), confidence logit [B,1,H,W])."""
        d = (self.vae.decoder(z) + 1.0) * 0.5
        return d[:, :3], d[:, 3:4]

    def conditioning(self, alpha: torch.Tensor) -> torch.Tensor:
        """alpha [B,1,H,W] → [mask, alpha] at latent size [B,2,H/8,W/8] (zeros when ablated)."""
        a = F.avg_pool2d(alpha, LATENT_SCALE)
        cond = torch.cat([1.0 - a, a], 1)
        return cond if self.cfg.use_mask else torch.zeros_like(cond)

    def restore_latent(self, z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """One UNet step at the fixed timestep: ẑ = z + U([z, m, a], t)."""
        x = torch.cat([z, self.conditioning(alpha)], 1)
        h, w = x.shape[-2:]
        m = 2 ** (len(self.cfg.unet_channels) - 1)  # the UNet halves the size n − 1 times
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        t = torch.full((z.shape[0],), float(self.cfg.timestep), device=z.device)
        return z + self.unet(x, t).sample[..., :h, :w]

    def gate(self, conf_logit: torch.Tensor, alpha: torch.Tensor,
             bias: float | None = None, covered: float = 0.0) -> torch.Tensor:
        """σ(logit + bias) · coverage cap; ``bias`` None → ``cfg.gate_bias``; ``covered``:
        the least cap anywhere (``PainterConfig.covered_cap_for_kept_fraction``; 0 = opaque
        pixels in covered surroundings are returned exactly).

        cap = max(clamp(gain · (1 − α), 0, 1), floor') with floor' = ``gate_floor``, or with
        ``gate_coverage_gain`` k > 0: floor · clamp(k · (1 − local_coverage(α)), 0, 1) — opaque
        pixels inside fully covered surroundings are then never touched (do-no-harm on
        full-coverage frames, where alpha carries no information)."""
        g = torch.sigmoid(conf_logit + (self.cfg.gate_bias if bias is None else bias))
        if self.cfg.use_mask:
            cap = torch.clamp(self.cfg.gate_gain * (1.0 - alpha), 0.0, 1.0)
            if self.cfg.gate_floor > 0:
                k = self.cfg.gate_coverage_gain
                if k > 0:
                    floor = self.cfg.gate_floor * torch.clamp(
                        k * (1.0 - local_coverage(alpha)), 0.0, 1.0)
                    cap = torch.maximum(cap, floor)
                else:
                    cap = torch.clamp(cap, min=self.cfg.gate_floor)
            if covered > 0:
                cap = torch.clamp(cap, min=float(covered))
            g = g * cap
        return g

    def decoded_colour(self, dec: torch.Tensor, rgb: torch.Tensor, alpha: torch.Tensor):
        """Decoder colour output → restored colour: fill(rgb, alpha) + dec with ``cfg.fill``,
        else dec itself."""
        if self.cfg.fill:
            return pull_push_fill(rgb, alpha, self.cfg.fill_levels) + dec
        return dec

    def restored_and_conf(self, dec, conf, rgb, alpha, keep=None):
        """(restored colour d, confidence logit) from the decoder outputs and the input
        (``keep``: kept fraction for the gate head's keep channel, see :class:`GateHead`)."""
        if not self.cfg.fill:
            return dec, conf
        fill, cov = pull_push_fill(rgb, alpha, self.cfg.fill_levels, return_coverage=True)
        if self.gate_head is not None:
            if not self.cfg.use_mask:  # ablation: no alpha-derived features for the gate
                alpha, cov = torch.zeros_like(alpha), torch.zeros_like(cov)
            conf = conf + self.gate_head(rgb, alpha, fill, cov, keep)
        return fill + dec, conf

    def forward(self, rgb: torch.Tensor, alpha: torch.Tensor, *, return_all: bool = False,
                kept_fraction: float | None = None, train_keep: torch.Tensor | None = None,
                refined: bool = False):
        """rgb [B,3,H,W], alpha [B,1,H,W] (H, W multiples of 8) → restored rgb [B,3,H,W].

        ``kept_fraction``: the kept fraction of the rendered scene when known (sets the gate
        bias, :meth:`PainterConfig.bias_for_kept_fraction`, and the covered-pixel cap); None →
        ``cfg.gate_bias``, cap 0. ``refined``: the scene's file was refined after pruning
        (the refined gate and detail tables, :meth:`PainterConfig.bias_for_kept_fraction`).
        Training passes a [B] tensor (``train_keep``) instead: the
        keep channel per sample, with the training gate (bias ``cfg.gate_bias``, no cap).

        With ``return_all`` also returns a dict with the latent ẑ, decoded colour and gate.
        """
        z = self.encode(rgb)
        zh = self.restore_latent(z, alpha)
        dec, conf = self.decode(zh)
        keep = train_keep if train_keep is not None else kept_fraction
        dec, conf = self.restored_and_conf(dec, conf, rgb, alpha, keep)
        if train_keep is not None:
            g = self.gate(conf, alpha)
        else:
            g = self.gate(conf, alpha, self.cfg.bias_for_kept_fraction(kept_fraction, refined),
                          self.cfg.covered_cap_for_kept_fraction(kept_fraction))
        out = rgb + g * (dec.clamp(0.0, 1.0) - rgb)
        out = self.add_detail(out, rgb, alpha, keep,
                              1.0 if train_keep is not None else
                              self.cfg.detail_scale_for_kept_fraction(kept_fraction, refined))
        if return_all:
            return out, {"z_hat": zh, "decoded": dec, "gate": g, "conf_logit": conf}
        return out

    def add_detail(self, restored, rgb, alpha, keep, scale: float) -> torch.Tensor:
        """``restored`` + ``scale`` · the detail head's residual, clamped to [0, 1]; ``restored``
        unchanged without a head or at scale 0 (:mod:`.detail`)."""
        if self.detail is None or scale == 0.0:
            return restored
        return (restored + scale * self.detail(rgb, restored, alpha, keep)).clamp(0.0, 1.0)
