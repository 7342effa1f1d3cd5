"""The detail head (issue 15): a fresh head changes nothing; its scale table is honoured; the
fast path runs the net on fully covered frames only when the head applies; weights round-trip."""

import dataclasses

import numpy as np
import torch

from exgs.painter import load_painter
from exgs.painter.infer import Painter, load_net
from exgs.painter.model import PainterConfig, PainterNet
from exgs.painter.train import export_diffusers as save_weights


def _net(**kw):
    torch.manual_seed(0)
    cfg = PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8), gate_head=True,
                        gate_stats=True, detail_head=True, **kw)
    return PainterNet(cfg).eval()


def _frame(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(1, 3, size, size, generator=g)
    alpha = torch.ones(1, 1, size, size)
    return rgb, alpha


def test_detail_scale_table_defaults_to_off():
    cfg = PainterConfig(detail_head=True, detail_scale_by_keep=((0.01, 1.0), (0.1, 0.5)))
    assert cfg.detail_scale_for_kept_fraction(None) == 0.0
    assert cfg.detail_scale_for_kept_fraction(1.0) == 0.0
    assert cfg.detail_scale_for_kept_fraction(0.01) == 1.0
    assert abs(cfg.detail_scale_for_kept_fraction(0.1) - 0.5) < 1e-12
    assert 0.5 < cfg.detail_scale_for_kept_fraction(0.03) < 1.0
    assert dataclasses.replace(cfg, detail_head=False).detail_scale_for_kept_fraction(0.01) == 0.0


def test_fresh_detail_head_changes_nothing_and_trained_one_touches_covered_pixels():
    net = _net(detail_scale_by_keep=((0.01, 1.0), (1.0, 1.0)))
    rgb, alpha = _frame()
    with torch.no_grad():
        base = net(rgb, alpha, kept_fraction=0.01)
        assert torch.equal(base, rgb)  # alpha = 1, covered: the gated restoration is shut
        torch.nn.init.normal_(net.detail.net[-1].weight, std=0.05)
        out = net(rgb, alpha, kept_fraction=0.01)
        assert (out - rgb).abs().max() > 1e-3  # the head reaches covered pixels
        assert torch.equal(net(rgb, alpha, kept_fraction=None), rgb)  # unknown keep: off
        assert torch.equal(net(rgb, alpha, kept_fraction=1.0), rgb)  # nothing pruned: off


def test_fast_path_runs_the_head_on_covered_frames_and_matches_the_net(tmp_path):
    net = _net(detail_scale_by_keep=((0.01, 1.0), (0.5, 0.5)))
    with torch.no_grad():
        torch.nn.init.normal_(net.detail.net[-1].weight, std=0.05)
    save_weights(net, tmp_path / "w")
    p = Painter(load_net(tmp_path / "w"))
    rgb, alpha = _frame(1, size=64)  # no padding in the painter (MIN_SIZE)
    x = rgb[0].permute(1, 2, 0).numpy()
    a = alpha[0, 0].numpy()
    out = p.restore(x, a, kept_fraction=0.02)
    with torch.no_grad():
        ref = net(rgb, alpha, kept_fraction=0.02)[0].permute(1, 2, 0).numpy()
    assert np.abs(out - ref).max() < 1e-5
    assert np.abs(out - x).max() > 1e-3
    assert np.array_equal(p.restore(x, a, kept_fraction=None), x)


def test_shipped_weights_have_no_detail_head_unless_configured():
    p = load_painter()
    assert (p.net.detail is None) == (not p.net.cfg.detail_head)
