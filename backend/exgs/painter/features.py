"""Per-pixel features GaussPainter's heads read (no parameters): the keep channel, the
render's local detail energy and its local coverage. Shapes NCHW float32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: kept fraction assumed by the gate head's keep channel when the caller does not know it
DEFAULT_KEEP = 0.1


def keep_channel(keep, like: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] constant channel log(keep)/log(0.005) (0 = nothing pruned, 1 = 0.5 % kept);
    ``keep`` a float, None (:data:`DEFAULT_KEEP`) or a [B] tensor/array."""
    if keep is None:
        keep = DEFAULT_KEEP
    k = torch.as_tensor(keep, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)
    v = torch.log(k.clamp(1e-4, 1.0)) / float(np.log(0.005))
    return v.expand(like.shape[0], 1, *like.shape[-2:])


def degradation_stats(rgb: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] render → [B,2,H,W] local detail energy: log(0.003 + mean |rgb − box3(rgb)|)
    averaged over 8×8 and 32×32 px (bilinear upsampled). Renders of heavily pruned scenes are
    made of few large, smooth blobs: low energy where the full render has detail. Works where
    alpha carries no information (full coverage)."""
    hf = (rgb - F.avg_pool2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), 3, 1)).abs().mean(1, True)
    out = []
    for s in (8, 32):
        h, w = hf.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        x = F.pad(hf, (0, pw, 0, ph), mode="replicate") if (ph or pw) else hf
        x = F.avg_pool2d(x, s)
        out.append(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False))
    return torch.log(0.003 + torch.cat(out, 1)) / 3.0 + 1.5


def local_coverage(alpha: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """[B,1,H,W] alpha → [B,1,H,W] its average over ~2^levels px (alpha average-pooled
    ``levels`` times, edge-padded on odd sizes, bilinearly upsampled): ≈ 1 deep inside
    covered areas, < 1 near holes, silhouettes and empty background."""
    w = alpha
    for _ in range(levels):
        ph, pw = w.shape[-2] % 2, w.shape[-1] % 2
        if ph or pw:
            w = F.pad(w, (0, pw, 0, ph), mode="replicate")
        if min(w.shape[-2:]) < 2:
            break
        w = F.avg_pool2d(w, 2)
    return F.interpolate(w, size=alpha.shape[-2:], mode="bilinear", align_corners=False)
