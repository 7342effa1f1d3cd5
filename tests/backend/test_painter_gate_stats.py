"""Issue 15 degradation signal: the gate head's render statistics + kept-fraction channel,
the covered-pixel cap per kept fraction, and its calibration rule (exgs.painter.model /
exgs.painter.calibrate)."""

import numpy as np
import torch

from exgs.painter.calibrate import gate_tables
from exgs.painter.model import (GateHead, PainterConfig, PainterNet, degradation_stats,
                                keep_channel)


def _tiny(**kw):
    return PainterConfig(vae_width=8, vae_encoder_blocks=(1, 1, 1, 1),
                         vae_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
                         unet_channels=(8, 16), gate_head=True, **kw)


def test_degradation_stats_lower_for_smooth_renders():
    g = torch.Generator().manual_seed(0)
    detailed = torch.rand(1, 3, 64, 64, generator=g)
    smooth = torch.nn.functional.avg_pool2d(detailed, 9, 1, 4, count_include_pad=False)
    a, b = degradation_stats(detailed), degradation_stats(smooth)
    assert a.shape == (1, 2, 64, 64)
    assert float(a.mean()) > float(b.mean()) + 0.2


def test_keep_channel_values():
    like = torch.zeros(2, 1, 4, 4)
    v = keep_channel(torch.tensor([1.0, 0.005]), like)
    assert v.shape == (2, 1, 4, 4)
    assert abs(float(v[0].max())) < 1e-6 and abs(float(v[1].min()) - 1.0) < 1e-5
    assert torch.allclose(keep_channel(None, like), keep_channel(0.1, like))


def test_widened_head_matches_old_head():
    torch.manual_seed(0)
    old = GateHead()
    torch.nn.init.normal_(old.net[-1].weight)  # not the zero init: outputs differ from 0
    new = GateHead(stats=True)
    new.widen_from(old)
    rgb, alpha = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    fill, cov = torch.rand(1, 3, 32, 32), torch.rand(1, 5, 32, 32)
    with torch.no_grad():
        ref = old(rgb, alpha, fill, cov)
        for keep in (0.01, 0.3, None):
            assert torch.allclose(new(rgb, alpha, fill, cov, keep), ref, atol=1e-6)


def test_covered_cap_only_with_known_kept_fraction():
    torch.manual_seed(0)
    cfg = _tiny(gate_stats=True, gate_floor=1.0, gate_coverage_gain=16.0, gate_bias=3.0,
                gate_covered_by_keep=((0.01, 0.5), (0.1, 0.0)))
    assert cfg.covered_cap_for_kept_fraction(0.005) == 0.5
    assert cfg.covered_cap_for_kept_fraction(0.2) == 0.0
    assert cfg.covered_cap_for_kept_fraction(None) == 0.0
    assert cfg.covered_cap_for_kept_fraction(1.0) == 0.0
    assert 0.0 < cfg.covered_cap_for_kept_fraction(0.03) < 0.5
    net = PainterNet(cfg).eval()
    x, a = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64)  # full coverage
    with torch.no_grad():
        assert torch.equal(net(x, a), x)  # unknown kept fraction: returned exactly
        assert torch.equal(net(x, a, kept_fraction=0.2), x)  # cap 0 there
        opened = net(x, a, kept_fraction=0.005)
    assert not torch.equal(opened, x)
    # the cap bounds the change: |out − in| ≤ cap · |d − in| ≤ 0.5 (colours in [0, 1])
    assert float((opened - x).abs().max()) <= 0.5 + 1e-6


def test_gate_tables_reject_caps_that_hurt_some_frames():
    # candidates: (bias, covered) = (0, 0), (0, 0.5), (0, 1.0); 20 frames at 1 % kept.
    # cap 1.0 has the best mean but loses 0.3 dB on 4 frames (20 %): rejected; cap 0.5 gains
    # on every frame: chosen.
    rows = [{"bias": 0.0, "floor": 1.0, "covered": c} for c in (0.0, 0.5, 1.0)]
    keeps = np.full(20, 0.01)
    s0 = np.full(20, 0.1)
    s1 = np.full(20, 0.3)
    s2 = np.where(np.arange(20) < 4, -0.3, 1.0)
    bt, ct = gate_tables(rows, {"keeps": keeps, "scores": np.stack([s0, s1, s2])}, floor=1.0)
    assert ct == [(float(np.sqrt(0.01 * 0.02)), 0.5)]
    assert bt == [(float(np.sqrt(0.01 * 0.02)), 0.0)]
