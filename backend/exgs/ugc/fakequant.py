"""Quantization-aware refinement: the .exgs codec's value round trip, as numpy and as a
straight-through torch op.

:func:`codec_roundtrip` returns, per Gaussian and in the input order, exactly the values
:func:`exgs.io.exgs.decode_exgs` yields for a file written by
:func:`~exgs.io.exgs.encode_exgs` (same ranges — min/max of the centres and
log-scales, 0.1–99.9 % DC quantiles, 99.9 % |SH| quantiles per band — and the same
quantizers of :mod:`exgs.io.exgs.quantize`); only the order differs (the file reorders inside
chunks). :func:`fake_quant` applies it in the forward pass of a torch graph and passes
gradients straight through (``x + (q(x) − x).detach()``), so the optimiser sees the values
that will be written.
"""

from __future__ import annotations

import numpy as np
import torch

from ..io.exgs import SH_REST_BITS
from ..io.exgs import quantize as Q
from ..scene import logit


def codec_roundtrip(means, quats, log_scales, opacities, sh, position_bits: int = 16):
    """Activated-domain arrays (means [N,3], quats [N,4] any length, log_scales [N,3],
    opacities [N] in [0,1], sh [N,K,3]) → the decoded values (float32): means, unit quats,
    log_scales, opacities (as the decoder's logits turn them back: clipped to
    [1e-4, 1 − 1e-4]), sh."""
    n = len(means)
    m64 = np.asarray(means, np.float64)
    lo, hi = m64.min(0), m64.max(0)
    means_q = Q.dequantize_uniform(Q.quantize_uniform(m64, lo, hi, position_bits), lo, hi,
                                   position_bits)
    ls = np.asarray(log_scales, np.float32)
    ls_lo, ls_hi = float(ls.min()), float(ls.max())
    ls_q = Q.dequantize_uniform(Q.quantize_uniform(ls, ls_lo, ls_hi, 8), ls_lo, ls_hi, 8)
    quats_q = Q.unpack_smallest_three(Q.pack_smallest_three(quats))
    op_q = Q.dequantize_uniform(Q.quantize_uniform(np.asarray(opacities, np.float32), 0.0,
                                                   1.0, 8), 0.0, 1.0, 8)
    op_q = 1.0 / (1.0 + np.exp(-logit(op_q, eps=1e-4).astype(np.float64)))
    sh = np.asarray(sh, np.float32)
    k = sh.shape[1]
    sh_q = np.zeros_like(sh)
    if k == 1:
        sh_q[:, 0] = Q.decode_colour_deg0(Q.encode_colour_deg0(sh[:, 0]))
    else:
        dc = sh[:, 0].astype(np.float64)
        dlo, dhi = np.quantile(dc, 0.001, axis=0), np.quantile(dc, 0.999, axis=0)
        sh_q[:, 0] = Q.dequantize_uniform(Q.quantize_uniform(sh[:, 0], dlo, dhi, 8), dlo, dhi, 8)
        deg = int(round(np.sqrt(k))) - 1
        for band in range(1, deg + 1):
            sl = slice(band * band, (band + 1) ** 2)
            a = max(float(np.quantile(np.abs(sh[:, sl]), 0.999)) if n else 0.0, 1e-6)
            bits = SH_REST_BITS[band - 1]
            sh_q[:, sl] = Q.dequantize_uniform(Q.quantize_uniform(sh[:, sl], -a, a, bits),
                                               -a, a, bits)
    return means_q, quats_q, ls_q, op_q.astype(np.float32), sh_q


def fake_quant(means, quats, log_scales, opacities, sh, position_bits: int = 16):
    """Torch tensors (activated opacities, raw quats) → the same tensors carrying the codec's
    decoded values in the forward pass and identity gradients (straight-through)."""
    vals = codec_roundtrip(*(t.detach().cpu().numpy() for t in
                             (means, quats, log_scales, opacities, sh)),
                           position_bits=position_bits)
    out = []
    for t, v in zip((means, quats, log_scales, opacities, sh), vals):
        q = torch.from_numpy(np.ascontiguousarray(v)).to(t.device, t.dtype)
        if t is quats:  # compare in the unit-quaternion domain, same hemisphere as t
            tn = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            sign = torch.sign((tn.detach() * q).sum(-1, keepdim=True))
            sign = torch.where(sign == 0, torch.ones_like(sign), sign)
            out.append(tn + (q * sign - tn).detach())
        else:
            out.append(t + (q - t).detach())
    return tuple(out)
