"""Conv chains of GaussPainter's inference copy run with fused oneDNN post-ops.

A plan is compiled once per ``nn.Sequential`` (the TAESD encoder / decoder layers, the gate
and detail heads) and run on channels-last float32 tensors [B,C,H,W]:

* ``Conv2d`` followed by ``ReLU`` → one convolution with a fused ReLU post-op (no extra pass
  over the activation);
* ``AutoencoderTinyBlock`` (``relu(conv(relu(conv(relu(conv(x))))) + x)``, identity skip) →
  two conv+ReLU and one conv with a fused residual add + ReLU;
* anything else (upsampling, blocks with a 1×1 skip, unknown layers) → the layer itself.

Same weights, same operations in the same order: outputs equal the module's to float32
rounding (the convolutions may accumulate in another order). Without torch's fused oneDNN
ops (``torch.ops.mkldnn._convolution_pointwise``, CPU builds with oneDNN) plain
``conv2d`` + in-place ReLU / add is used instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pointwise_op():
    """torch's fused conv + post-op (None when this build has no oneDNN)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


_OP = _pointwise_op()


class FusedConv:
    """One ``nn.Conv2d`` (groups 1, zero padding) with an optional fused ReLU.

    ``__call__(x)``: conv(x) [→ ReLU]; ``__call__(x, residual)``: ReLU(conv(x) + residual)
    (``residual`` of the output's shape). ``x`` channels-last float32 [B,Cin,H,W] →
    channels-last [B,Cout,H',W']."""

    def __init__(self, conv: nn.Conv2d, relu: bool):
        self.weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().contiguous()
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.relu = relu
        self.use_op = _OP is not None and self.weight.device.type == "cpu"

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.use_op:
            if residual is not None:
                return _OP(x, residual, self.weight, self.bias, self.padding, self.stride,
                           self.dilation, 1, "add", 1.0, "relu", [], "")
            return _OP(x, self.weight, self.bias, self.padding, self.stride, self.dilation, 1,
                       "relu" if self.relu else "none", [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if residual is not None:
            return y.add_(residual).relu_()
        return y.relu_() if self.relu else y


def _plain_conv(m) -> bool:
    return (isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple))


def _tiny_block(m) -> bool:
    """An AutoencoderTinyBlock with an identity skip and ReLU activations."""
    conv, skip, fuse = (getattr(m, k, None) for k in ("conv", "skip", "fuse"))
    if not (isinstance(conv, nn.Sequential) and isinstance(skip, nn.Identity)
            and isinstance(fuse, nn.ReLU) and len(conv) == 5):
        return False
    kinds = [type(layer) for layer in conv]
    return (kinds == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d]
            and all(_plain_conv(conv[i]) for i in (0, 2, 4))
            and type(m).forward.__qualname__.endswith("AutoencoderTinyBlock.forward"))


class Plan:
    """A compiled ``nn.Sequential``: a list of steps (see the module docstring)."""

    def __init__(self, seq: nn.Sequential):
        self.steps: list[tuple] = []
        layers = list(seq)
        i = 0
        while i < len(layers):
            m = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if _plain_conv(m) and isinstance(nxt, nn.ReLU):
                self.steps.append(("conv", FusedConv(m, True)))
                i += 2
                continue
            if _plain_conv(m):
                self.steps.append(("conv", FusedConv(m, False)))
            elif _tiny_block(m):
                c = m.conv
                self.steps.append(("block", (FusedConv(c[0], True), FusedConv(c[2], True),
                                             FusedConv(c[4], False))))
            else:
                self.steps.append(("module", m))
            i += 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """channels-last [B,C,H,W] → the sequential's output (channels-last)."""
        for kind, s in self.steps:
            if kind == "conv":
                x = s(x)
            elif kind == "block":
                a, b, c = s
                x = c(b(a(x)), x)
            else:
                x = s(x).contiguous(memory_format=torch.channels_last)
        return x


def plan(seq: nn.Sequential) -> Plan:
    return Plan(seq)
