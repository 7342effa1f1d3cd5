"""GaussPainter's detail head: a full-resolution residual on *every* pixel, covered ones
included (issue 15).

Why: on real captures with an empty background, most of a heavily pruned render's error sits
in pixels the kept Gaussians still cover (alpha ≈ 1): measured on held-out statue_st_peter at
1 % kept, 72 % of the squared error (oracle: replacing the covered pixels by the full render
gains +5.6 dB, replacing the holes +1.5 dB). The gated latent restoration never touches those
pixels (its gate is capped by 1 − alpha), so it cannot gain there. The detail head can.

Shapes (NCHW, float32, display sRGB in [0, 1], row 0 = top)::

    features = [rgb (3), restored (3), alpha (1), local coverage (1),
                degradation_stats (2), keep channel (1)]          [B,11,H,W]
    r        = DetailHead(features)                               [B,3,H,W]
    out      = clamp(restored + s · r, 0, 1)

``restored`` is the gated latent restoration (:class:`~exgs.painter.model.PainterNet`'s output
without the head); ``s`` the detail scale for the scene's kept fraction
(:meth:`~exgs.painter.model.PainterConfig.detail_scale_for_kept_fraction`): 0 when nothing was
pruned or the kept fraction is unknown, so those frames are returned exactly as before. The
head's last conv starts at zero: a fresh head changes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .features import degradation_stats, keep_channel, local_coverage

#: input channels of :class:`DetailHead` (see the module docstring)
DETAIL_INPUTS = 11


class DetailHead(nn.Module):
    """Residual CNN: ``len(dilations) + 1`` 3×3 convs of ``width`` channels (dilated as given,
    ReLU between), 11 features → 3 colour residuals (0–1 scale). The last conv starts at zero.

    ``stride`` 1: every conv at full resolution. ``stride`` 2: the features are folded into
    2×2 blocks (``pixel_unshuffle``: 44 channels at H/2 × W/2), the convs run at half
    resolution and the last one emits 12 channels that unfold into the 2×2 block's 3 colour
    residuals (``pixel_shuffle``): half the multiply-adds of stride 1 at the same width, twice
    the receptive field (H, W odd are edge-padded and cropped back)."""

    def __init__(self, width: int = 16, dilations: tuple = (1, 2, 4), stride: int = 1):
        super().__init__()
        self.stride = int(stride)
        s2 = self.stride * self.stride
        layers: list[nn.Module] = []
        c = DETAIL_INPUTS * s2
        for d in dilations:
            layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.ReLU()]
            c = width
        layers.append(nn.Conv2d(c, 3 * s2, 3, padding=1))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, rgb: torch.Tensor, restored: torch.Tensor, alpha: torch.Tensor,
                keep=None) -> torch.Tensor:
        """rgb, restored [B,3,H,W]; alpha [B,1,H,W]; ``keep`` float, [B] or None (the default
        kept fraction of the keep channel) → residual [B,3,H,W]."""
        f = torch.cat([rgb, restored, alpha, local_coverage(alpha), degradation_stats(rgb),
                       keep_channel(keep, alpha)], 1)
        s = self.stride
        if s == 1:
            return self.net(f)
        H, W = f.shape[-2:]
        ph, pw = (-H) % s, (-W) % s
        if ph or pw:
            f = F.pad(f, (0, pw, 0, ph), mode="replicate")
        r = F.pixel_shuffle(self.net(F.pixel_unshuffle(f, s)), s)
        return r[..., :H, :W]


def with_detail_head(net, width: int, dilations, *, zero: bool = True, seed: int = 0):
    """A copy of ``net`` (which has no detail head) with a fresh :class:`.detail.DetailHead`
    of ``width`` channels and ``dilations`` (``cfg.detail_head`` on). ``zero``: every
    parameter 0 (the base a fresh-head delta is added to); else the head's own seeded
    initialisation (last conv 0). The detail scale table is left empty (scale 0): the caller
    sets it (:func:`set_detail_scale`)."""
    import copy
    import dataclasses

    import torch

    out = copy.deepcopy(net)
    out.cfg = dataclasses.replace(out.cfg, detail_head=True, detail_width=int(width),
                                  detail_dilations=tuple(int(d) for d in dilations))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        head = DetailHead(int(width), tuple(int(d) for d in dilations))
    if zero:
        with torch.no_grad():
            for p in head.parameters():
                p.zero_()
    p0 = next(net.parameters(), None)
    out.detail = head.to(p0.device if p0 is not None else "cpu")
    return out


def set_detail_scale(net, scale: float) -> None:
    """Run ``net``'s detail head at ``scale`` for every kept fraction < 1 (in place on the
    net's own config copy; unknown / ≥ 1 kept fraction: 0, :meth:`PainterConfig.
    detail_scale_for_kept_fraction`)."""
    import dataclasses

    net.cfg = dataclasses.replace(net.cfg, detail_head=True,
                                  detail_scale_by_keep=((0.5, float(scale)),))
