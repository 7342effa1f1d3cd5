"""GaussPainter's inference fast path (exgs.painter.fast): same output as the plain net,
gate-shut tiles skip the network exactly, weight edits are picked up, bf16 is close."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exgs.errors import ExgsError
from exgs.metrics import psnr
from exgs.painter.fastnet import FastForward
from exgs.painter.infer import Painter
from exgs.painter.model import PainterConfig, PainterNet


def net_with_gate(seed=0) -> PainterNet:
    torch.manual_seed(seed)
    cfg = PainterConfig(vae_width=8, vae_encoder_blocks=(1, 1, 1, 1),
                        vae_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
                        unet_channels=(8, 16), tile=64, overlap=16, gate_head=True,
                        gate_floor=1.0, gate_coverage_gain=16.0, gate_bias=0.5)
    return PainterNet(cfg).eval()


def frame(h, w, seed=0, hole=True):
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
    alpha = np.ones((h, w), np.float32)
    if hole:
        alpha[h // 3:h // 2, w // 4:w // 2] = 0.2
    return rgb, alpha


def plain(net, rgb, alpha, kept_fraction=None):
    """The network on the whole (multiple-of-8) frame, as before the fast path."""
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    a = torch.from_numpy(alpha[None, None].copy())
    with torch.no_grad():
        y = net(x, a, kept_fraction=kept_fraction).clamp(0, 1)
    return y[0].permute(1, 2, 0).numpy()


def test_fast_path_equals_the_plain_net_to_float_rounding():
    net = net_with_gate()
    p = Painter(net)
    rgb, alpha = frame(64, 64)
    out = p.restore(rgb, alpha, tile=256)
    ref = plain(net, rgb, alpha)
    assert np.abs(out - ref).max() < 1e-5
    assert not np.array_equal(out, rgb)  # the hole is painted
    # the net the caller holds is untouched (still NCHW-contiguous, no in-place ReLUs)
    assert all(not getattr(m, "inplace", False) for m in net.modules()
               if isinstance(m, torch.nn.ReLU))


def test_gate_shut_tiles_skip_the_network_and_return_the_input(monkeypatch):
    net = net_with_gate(1)
    p = Painter(net)
    rgb, alpha = frame(64, 192, hole=False)
    alpha[:, 150:] = 0.3  # only the right-hand tiles have anything to restore
    calls = []  # tiles encoded per network call (tiles are batched)
    orig = FastForward.encode
    monkeypatch.setattr(FastForward, "encode", lambda self, x: calls.append(x.shape[0]) or
                        orig(self, x))
    out = p.restore(rgb, alpha, tile=64, overlap=16)
    n_tiles = 4  # 192 px → 4 tiles of 64 (overlap 16)
    assert 0 < sum(calls) < n_tiles
    # columns only the first (skipped) tile covers: exactly the input (where skipped tiles
    # overlap others, the weighted blend of identical values rounds as it always did)
    assert np.array_equal(out[:, :48], rgb[:, :48])
    calls.clear()
    net.cfg.gate_bias_by_keep = ((0.01, 1.0), (0.5, -2.0))  # a keep table: 1.0 → bias −∞
    full = p.restore(rgb, alpha, kept_fraction=1.0)  # nothing pruned: no network
    assert calls == [] and np.abs(full - rgb).max() < 1e-6  # tile blend rounding only


def test_weights_edited_after_first_use_are_picked_up():
    net = net_with_gate(2)
    p = Painter(net)
    rgb, alpha = frame(64, 64, seed=3)
    before = p.restore(rgb, alpha)
    with torch.no_grad():
        net.vae.decoder.layers[-1].bias[:3].add_(0.3)
    after = p.restore(rgb, alpha)
    assert not np.array_equal(before, after)
    assert np.abs(after - plain(net, rgb, alpha)).max() < 1e-5


def test_bf16_is_close_and_bad_precision_is_refused():
    net = net_with_gate(4)
    rgb, alpha = frame(64, 64, seed=5)
    a = Painter(net).restore(rgb, alpha)
    b = Painter(net, precision="bf16").restore(rgb, alpha)
    assert psnr(a, b) >= 40.0
    with pytest.raises(ExgsError, match="precision"):
        Painter(net, precision="int3")
