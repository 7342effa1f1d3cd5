"""GaussPainter's inference fast path (used by :class:`exgs.painter.infer.Painter`).

* :func:`inference_copy`: a private copy of a PainterNet for inference only — parameters in
  channels-last memory format (oneDNN's fast layout for these narrow 16-channel convs),
  ReLUs in place (no extra full-resolution tensor per activation), no gradients. Same layers,
  same weights: outputs equal the plain net's to float32 rounding (≈ 1e-7, measured in
  ``bench/painter_speed.py``). The copy shares the net's :class:`PainterConfig` object, so gate
  settings changed on the net later still apply; weights changed later are detected by
  :func:`weights_version` and the copy is rebuilt.
* the copy carries a :class:`.fastnet.FastForward` (``fused_forward``): the float32 forward
  :func:`run` uses — fused oneDNN conv + ReLU / residual-add plans, the heads' features
  computed once (:mod:`.fastnet`, :mod:`.fused`); same maths, float32 rounding (≤ 1.2e-6 on
  the benchmark frames).
* :func:`gate_shut`: which frames of a tile the gate closes *everywhere* (coverage cap 0, or a
  gate bias of −∞: nothing pruned). The output there is the input exactly, whatever the
  network computes, so the network is not run at all (unless the detail head applies at this
  kept fraction: it touches covered pixels too).
* ``precision="bf16"``: oneDNN bfloat16 autocast on CPUs that have it (AVX512-BF16 / AMX).
  Not the default: restored frames differ from the float32 path (measured PSNR in
  ``bench/painter_speed.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")


def weights_version(net: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``net`` is modified in place or replaced
    (torch's per-tensor version counters + identities)."""
    return tuple((id(t), t._version) for t in list(net.parameters()) + list(net.buffers()))


def inference_copy(net: nn.Module) -> nn.Module:
    """A channels-last, in-place-ReLU, gradient-free eval copy of ``net`` sharing its cfg."""
    with torch.inference_mode(False):  # ordinary tensors even when called under inference
        fast = copy.deepcopy(net)
        fast.to(memory_format=torch.channels_last)
    if hasattr(net, "cfg"):
        fast.cfg = net.cfg  # gate settings edited on the net apply to the copy too
    fast.eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    for m in fast.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    if hasattr(fast, "vae") and hasattr(fast, "restore_latent"):  # a PainterNet
        from .fastnet import FastForward

        fast.fused_forward = FastForward(fast)  # the float32 forward :func:`run` uses
    return fast


def gate_shut(net, alpha: torch.Tensor, bias: float) -> torch.Tensor:
    """[B] bool: the gate of ``net`` (:meth:`PainterNet.gate`) is exactly 0 at every pixel
    of frame b of ``alpha`` [B,1,h,w] with this gate ``bias`` (−∞, or a coverage cap of 0
    everywhere: alpha = 1 and fully covered surroundings). Such frames come back unchanged."""
    B = alpha.shape[0]
    if bias == float("-inf"):
        return torch.ones(B, dtype=torch.bool)
    g = net.gate(torch.zeros_like(alpha), alpha, 0.0)  # σ(0) · cap = cap / 2
    return (g.reshape(B, -1) == 0).all(1).cpu()


def run(net, rgb: torch.Tensor, alpha: torch.Tensor, kept_fraction: float | None = None,
        precision: str = "fp32", refined: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The net's output [B,3,h,w] (clamped to [0, 1]) for rgb [B,3,h,w] in [0, 1], alpha
    [B,1,h,w] (``kept_fraction`` and ``refined`` set the gate bias and detail scale, as in
    :meth:`PainterNet.forward`);
    frames whose gate is shut everywhere are returned as the input without running the
    network. Returns (output, gate [B,1,h,w]: 0 where the input is kept)."""
    bias = net.cfg.bias_for_kept_fraction(kept_fraction, refined)
    detail = net.cfg.detail_scale_for_kept_fraction(kept_fraction, refined)
    if detail > 0:  # the detail head touches covered pixels too (:mod:`.detail`); only a
        # switched-off painter (a "none" delta) shuts them
        shut = torch.full((rgb.shape[0],), bias == float("-inf"), dtype=torch.bool)
    else:
        shut = gate_shut(net, alpha, bias)
    todo = (~shut).nonzero().flatten()
    every = len(todo) == rgb.shape[0]
    fused = getattr(net, "fused_forward", None)
    if every and precision != "bf16" and fused is not None:  # no copies, no scatter
        y, g = fused(rgb, alpha, kept_fraction, refined)
        return y.clamp_(0.0, 1.0), g
    out = rgb.clamp(0.0, 1.0)  # a new tensor
    gate = torch.zeros_like(alpha)
    if len(todo) == 0:
        return out, gate
    if precision != "bf16" and fused is not None:
        y, g = fused(rgb[todo], alpha[todo], kept_fraction, refined)
        out[todo] = y.clamp(0.0, 1.0)
        gate[todo] = g.to(gate.dtype)
        return out, gate
    x = rgb[todo].contiguous(memory_format=torch.channels_last)
    a = alpha[todo].contiguous(memory_format=torch.channels_last)
    if precision == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = net.encode(x)
            zh = net.restore_latent(z, a)
            dec, conf = net.decode(zh)
        dec, conf = net.restored_and_conf(dec.float(), conf.float(), x, a, kept_fraction)
        g = net.gate(conf, a, bias, net.cfg.covered_cap_for_kept_fraction(kept_fraction))
        y = x + g * (dec.clamp(0.0, 1.0) - x)
        y = net.add_detail(y, x, a, kept_fraction, detail)
    else:
        y, parts = net(x, a, kept_fraction=kept_fraction, return_all=True, refined=refined)
        g = parts["gate"]
    out[todo] = y.clamp(0.0, 1.0).contiguous()
    gate[todo] = g.to(gate.dtype)
    return out, gate
