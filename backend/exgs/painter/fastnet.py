"""PainterNet's float32 inference forward with fused convolutions and shared features.

:class:`FastForward` computes exactly what :meth:`PainterNet.forward` computes at inference
(``train_keep`` None), in the same order, to float32 rounding, but:

* the conv chains (TAESD encoder and decoder layers, gate head, detail head) run as fused
  oneDNN plans (:mod:`.fused`: conv + ReLU and conv + residual add + ReLU in one pass) on
  channels-last activations;
* the per-pixel features (fill, coverage, :func:`degradation_stats`) are computed once on
  contiguous NCHW tensors (fast for 1–3 channels) and shared by the gate and detail heads;
* the heads' feature stacks are written straight into channels-last buffers (the detail
  head's 2×2 ``pixel_unshuffle`` folded into that single copy), with no ``cat`` + layout
  conversion passes.

Shapes: rgb [B,3,H,W], alpha [B,1,H,W] float32 contiguous (H, W multiples of 8), display
sRGB in [0, 1]. A fused plan whose output does not match its module on a small random input
(e.g. a diffusers version whose TAESD blocks compute something else) is not used: the module
runs instead.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import degradation_stats, keep_channel, local_coverage
from .fused import Plan
from .model import pull_push_fill, soft_clamp

CL = torch.channels_last


def _matches(plan_fn, module_fn, shape, device, seed: int = 0) -> bool:
    """Whether ``plan_fn`` equals ``module_fn`` on a seeded random input (≤ 1e-4 relative
    to the largest output: unclamped TAESD activations can reach 1e6 on random input)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g).to(device).contiguous(memory_format=CL)
    try:
        with torch.inference_mode():
            a, b = plan_fn(x), module_fn(x)
        return a.shape == b.shape and bool((a - b).abs().max() <= 1e-4 * max(1.0, float(b.abs().max())))
    except RuntimeError:
        return False


def _stack_cl(parts: list[torch.Tensor]) -> torch.Tensor:
    """NCHW parts [B,c_i,H,W] → their channel concatenation as a channels-last tensor."""
    B, _, H, W = parts[0].shape
    buf = torch.empty((B, H, W, sum(p.shape[1] for p in parts)), dtype=parts[0].dtype,
                      device=parts[0].device)
    o = 0
    for p in parts:
        k = p.shape[1]
        buf[..., o:o + k] = p.permute(0, 2, 3, 1)
        o += k
    return buf.permute(0, 3, 1, 2)


def _unshuffle2_cl(parts: list[torch.Tensor]) -> torch.Tensor:
    """``pixel_unshuffle(cat(parts), 2)`` with its channels in (i, j, c) order, as a
    channels-last tensor [B,4C,H/2,W/2] (H, W even): channel 2C·i + C·j + c holds channel c
    at pixel (2y + i, 2x + j). (pixel_unshuffle's own order is 4c + 2i + j: the first conv's
    input channels are permuted to match, :func:`unshuffle_order`.) Two copies with
    contiguous runs of 2C floats instead of one scattered one."""
    B, _, H, W = parts[0].shape
    C = sum(p.shape[1] for p in parts)
    nhwc = _stack_cl(parts).permute(0, 2, 3, 1)  # [B,H,W,C] contiguous
    v = nhwc.reshape(B, H // 2, 2, W // 2, 2 * C).permute(0, 1, 3, 2, 4)
    return v.reshape(B, H // 2, W // 2, 4 * C).permute(0, 3, 1, 2)


def unshuffle_order(C: int) -> torch.Tensor:
    """[4C] index: channel k of :func:`_unshuffle2_cl`'s output is pixel_unshuffle's channel
    ``unshuffle_order(C)[k]``."""
    k = torch.arange(4 * C)
    i, j, c = k // (2 * C), (k // C) % 2, k % C
    return c * 4 + i * 2 + j


def _shuffle2(r: torch.Tensor) -> torch.Tensor:
    """``pixel_shuffle(r, 2)`` of a channels-last [B,4C,h,w] → contiguous [B,C,2h,2w]."""
    B, C4, h, w = r.shape
    C = C4 // 4
    v = r.permute(0, 2, 3, 1).reshape(B, h, w, C, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return v.reshape(B, C, 2 * h, 2 * w)


class FastForward:
    """The fused inference forward of a PainterNet (module docstring). Build once per set of
    weights (the plans hold channels-last copies of them); reads ``net.cfg`` at call time."""

    def __init__(self, net: nn.Module):
        self.net = net
        vae = net.vae
        self.enc = self.dec = self.gate_plan = self.detail_plan = None
        enc, dec = getattr(vae, "encoder", None), getattr(vae, "decoder", None)
        dev = next(net.parameters()).device
        if type(enc).__name__ == "EncoderTiny" and isinstance(getattr(enc, "layers", None), nn.Sequential):
            p = Plan(enc.layers)
            if _matches(lambda x: p(x.add(1).div(2)), enc, (1, enc.layers[0].in_channels, 32, 32),
                        dev):
                self.enc = p
        if type(dec).__name__ == "DecoderTiny" and isinstance(getattr(dec, "layers", None), nn.Sequential):
            p = Plan(dec.layers)
            if _matches(lambda z: p((torch.tanh(z / 3) * 3).contiguous(memory_format=CL))
                        .mul(2).sub(1), dec, (1, dec.layers[0].in_channels, 4, 4), dev):
                self.dec = p
        if net.gate_head is not None:
            self.gate_plan = Plan(net.gate_head.net)
        if net.detail is not None:
            self.detail_plan = Plan(net.detail.net)
            kind, first = self.detail_plan.steps[0]
            if net.detail.stride == 2 and kind == "conv":
                order = unshuffle_order(first.weight.shape[1] // 4)  # (i, j, c) input order
                first.weight = first.weight[:, order].contiguous(memory_format=CL)
            elif net.detail.stride != 1:
                self.detail_plan = None

    # ------------------------------------------------------------------ pieces
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """rgb [B,3,H,W] (contiguous) → latent (PainterNet.encode)."""
        h = x * 2.0 - 1.0
        if self.enc is None:
            return soft_clamp(self.net.vae.encoder(h.contiguous(memory_format=CL)))
        return soft_clamp(self.enc(h.add(1).div(2).contiguous(memory_format=CL)))

    def decode(self, zh: torch.Tensor) -> torch.Tensor:
        """latent → contiguous [B,4,H,W]: decoded colour (3) + confidence logit (1)."""
        if self.dec is None:
            d = self.net.vae.decoder(zh.contiguous(memory_format=CL))
        else:
            d = self.dec((torch.tanh(zh / 3) * 3).contiguous(memory_format=CL)).mul(2).sub(1)
        return ((d + 1.0) * 0.5).contiguous()

    def gate_logit(self, x, a, fill, cov, keep, stats):
        """The gate head's logit [B,1,H,W] (:class:`GateHead`), ``stats`` its degradation
        statistics of x (or None when the head does not use them)."""
        head = self.net.gate_head
        if not self.net.cfg.use_mask:
            a, cov = torch.zeros_like(a), torch.zeros_like(cov)
        f = [a, cov, fill, x, (fill - x).abs().mean(1, keepdim=True)]
        if head.stats:
            f += [stats, keep_channel(keep, a)]
        return self.gate_plan(_stack_cl(f)).contiguous()

    def detail_residual(self, x, restored, a, keep, stats) -> torch.Tensor:
        """The detail head's residual [B,3,H,W] (:class:`.detail.DetailHead`)."""
        head = self.net.detail
        H, W = x.shape[-2:]
        f = [x, restored, a, local_coverage(a), stats, keep_channel(keep, a)]
        if self.detail_plan is None or (head.stride == 2 and (H % 2 or W % 2)):
            return head(x, restored, a, keep).contiguous()  # the module itself
        if head.stride == 1:
            return self.detail_plan(_stack_cl(f)).contiguous()
        return _shuffle2(self.detail_plan(_unshuffle2_cl(f)))

    # ------------------------------------------------------------------ forward
    def __call__(self, x: torch.Tensor, a: torch.Tensor, kept_fraction: float | None = None,
                 refined: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """rgb [B,3,H,W], alpha [B,1,H,W] → (restored rgb [B,3,H,W] (unclamped, as
        ``PainterNet.forward``), gate [B,1,H,W])."""
        net, cfg = self.net, self.net.cfg
        x, a = x.contiguous(), a.contiguous()
        zh = net.restore_latent(self.encode(x), a)
        d = self.decode(zh)
        dec, conf = d[:, :3], d[:, 3:4]
        keep = kept_fraction
        stats = None
        need_stats = ((net.gate_head is not None and net.gate_head.stats)
                      or net.detail is not None)
        if cfg.fill:
            fill, cov = pull_push_fill(x, a, cfg.fill_levels, return_coverage=True)
            if net.gate_head is not None:
                if need_stats:
                    stats = degradation_stats(x)
                conf = conf + self.gate_logit(x, a, fill, cov, keep, stats)
            dec = fill + dec
        g = net.gate(conf, a, cfg.bias_for_kept_fraction(kept_fraction, refined),
                     cfg.covered_cap_for_kept_fraction(kept_fraction))
        out = x + g * (dec.clamp(0.0, 1.0) - x)
        scale = cfg.detail_scale_for_kept_fraction(kept_fraction, refined)
        if net.detail is not None and scale != 0.0:
            if stats is None:
                stats = degradation_stats(x)
            out = (out + scale * self.detail_residual(x, out, a, keep, stats)).clamp(0.0, 1.0)
        return out, g
