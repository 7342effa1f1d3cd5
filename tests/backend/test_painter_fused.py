"""GaussPainter's fused float32 inference (exgs.painter.fastnet / fused, batched tiles in
infer.Painter): the same output as the plain net run tile by tile, to float32 rounding
(≤ 1e-5), for kept fractions where the detail head runs, where it does not, where the gate is
shut, refined or not, one tile or many, batched or one at a time, odd sizes, several frames.
Tiny random networks: seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exgs.painter import fused
from exgs.painter.fastnet import FastForward, _unshuffle2_cl, unshuffle_order
from exgs.painter.infer import Painter
from exgs.painter.model import PainterConfig, PainterNet

TOL = 1e-5


class Plain(Painter):
    """Every tile through the plain net on its own (NCHW, no fusion), as before batching."""

    tile_batch_pixels = 1

    @torch.no_grad()
    def _run_tensor(self, x, a, kept_fraction=None, refined=False):
        out, parts = self.net(x, a, kept_fraction=kept_fraction, return_all=True,
                              refined=refined)
        return torch.cat([out.clamp(0.0, 1.0), a + parts["gate"] * (1.0 - a)], 1)


def tiny_net(seed=0, stride=2, **over) -> PainterNet:
    """A small PainterNet with both heads, gate / detail / refined tables and random
    (non-zero) last layers, so the heads change the output."""
    torch.manual_seed(seed)
    kw = dict(vae_width=8, vae_encoder_blocks=(1, 1, 1, 1), vae_decoder_blocks=(1, 1, 1, 1),
              latent_channels=4, unet_channels=(8, 16), tile=64, overlap=16,
              gate_head=True, gate_stats=True, gate_floor=1.0, gate_coverage_gain=16.0,
              gate_bias=0.5, gate_bias_by_keep=((0.01, 1.0), (0.1, 0.0), (0.5, -1.0)),
              gate_covered_by_keep=((0.01, 0.3), (0.5, 0.0)),
              detail_head=True, detail_width=8, detail_dilations=(1, 2), detail_stride=stride,
              detail_scale_by_keep=((0.01, 1.0), (0.05, 0.0)),
              refined_gate_bias_by_keep=((0.01, 0.5), (0.1, float("-inf")), (0.5, 1.0)),
              refined_detail_scale_by_keep=((0.01, 0.7), (0.5, 0.0)))
    kw.update(over)
    net = PainterNet(PainterConfig(**kw)).eval()
    with torch.no_grad():
        for head in (net.gate_head, net.detail):
            if head is not None:
                head.net[-1].weight.normal_(0.0, 0.05)
                head.net[-1].bias.normal_(0.0, 0.05)
    return net


def frames(B, H, W, seed=0, covered=False):
    """[B,H,W,3] rgb with structure, [B,H,W] alpha with holes (``covered``: alpha = 1 in
    the left half, so tiles there are gate-shut when the detail head is off)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    rgb = np.stack([0.5 + 0.4 * np.sin(7 * xx + k) * np.cos(5 * yy - k) for k in range(3)], -1)
    rgb = np.broadcast_to(rgb, (B, H, W, 3)) + rng.normal(0, 0.05, (B, H, W, 3))
    alpha = np.clip(rng.uniform(-0.3, 1.6, (B, H, W)), 0, 1)
    alpha[:, H // 4:H // 2, W // 3:W // 2] = 0.0
    if covered:
        alpha[:, :, :W // 2] = 1.0
    return np.clip(rgb, 0, 1).astype(np.float32), alpha.astype(np.float32)


def both(net, rgb, alpha, **kw):
    """(fast painter's (rgb, alpha), plain painter's (rgb, alpha)) of a batch of frames."""
    f = Painter(net).restore_batch(rgb, alpha, return_alpha=True, **kw)
    p = Plain(net).restore_batch(rgb, alpha, return_alpha=True, **kw)
    return f, p


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("keep", [None, 0.005, 0.02, 0.2, 1.0])
@pytest.mark.parametrize("refined", [False, True])
def test_fused_equals_plain_over_kept_fractions(keep, refined):
    net = tiny_net()
    rgb, alpha = frames(2, 150, 203, seed=1)  # odd size, 3 × 4 tiles of 64 (overlap 16)
    (fr, fa), (pr, pa) = both(net, rgb, alpha, kept_fraction=keep, refined=refined)
    assert max_diff((fr, fa), (pr, pa)) <= TOL
    changes = float(np.abs(pr - rgb).max())
    cfg = net.cfg
    if cfg.bias_for_kept_fraction(keep, refined) == float("-inf"):
        assert changes == 0.0  # painter off: the input exactly
    else:
        assert changes > 1e-3  # something was painted: the comparison means something


def test_detail_head_on_touches_covered_pixels_and_matches():
    net = tiny_net(1)
    rgb, alpha = frames(1, 96, 130, seed=2, covered=True)
    assert net.cfg.detail_scale_for_kept_fraction(0.005) > 0
    (fr, _), (pr, _) = both(net, rgb, alpha, kept_fraction=0.005)
    assert np.abs(fr - pr).max() <= TOL
    assert np.abs(pr[0, :, :40] - rgb[0, :, :40]).max() > 1e-4  # covered half changed too


def test_gate_shut_tiles_in_a_batch_are_skipped_and_match():
    net = tiny_net(2, gate_covered_by_keep=())
    rgb, alpha = frames(2, 64, 256, seed=3, covered=True)  # left tiles: alpha = 1 around
    keep = 0.2  # detail head off: covered tiles are shut
    calls = []
    orig = FastForward.encode

    def spy(self, x):
        calls.append(x.shape[0])
        return orig(self, x)

    FastForward.encode = spy
    try:
        (fr, fa), (pr, pa) = both(net, rgb, alpha, kept_fraction=keep)
    finally:
        FastForward.encode = orig
    assert max_diff((fr, fa), (pr, pa)) <= TOL
    assert 0 < sum(calls) < 2 * 5  # 2 frames × 5 tiles of 64: some skipped
    assert np.array_equal(fr[:, :, :40], rgb[:, :, :40])


@pytest.mark.parametrize("pixels", [1, 2 * 64 * 64, 10 ** 7])
def test_batched_tiles_equal_one_at_a_time(pixels):
    net = tiny_net(3)
    rgb, alpha = frames(3, 121, 177, seed=4)
    one = Painter(net)
    one.tile_batch_pixels = 1
    many = Painter(net)
    many.tile_batch_pixels = pixels
    a = one.restore_batch(rgb, alpha, kept_fraction=0.008, return_alpha=True)
    b = many.restore_batch(rgb, alpha, kept_fraction=0.008, return_alpha=True)
    assert max_diff(a, b) <= TOL
    # and frames restored one by one equal the batch
    for i in range(3):
        c = one.restore(rgb[i], alpha[i], kept_fraction=0.008, return_alpha=True)
        assert max_diff(c, (b[0][i], b[1][i])) <= TOL


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (72, 200)])
def test_single_tile_and_odd_sizes(size):
    net = tiny_net(4)
    rgb, alpha = frames(1, *size, seed=5)
    for keep in (0.005, 0.3):
        f, p = both(net, rgb, alpha, kept_fraction=keep, tile=256)
        assert max_diff(f, p) <= TOL


@pytest.mark.parametrize("over", [dict(stride=1), dict(use_mask=False), dict(fill=False),
                                  dict(gate_head=False), dict(gate_stats=False),
                                  dict(detail_head=False)])
def test_other_configurations_match(over):
    stride = over.pop("stride", 2)
    net = tiny_net(5, stride=stride, **over)
    rgb, alpha = frames(2, 80, 112, seed=6)
    for keep, refined in ((0.005, False), (0.02, True), (None, False)):
        f, p = both(net, rgb, alpha, kept_fraction=keep, refined=refined)
        assert max_diff(f, p) <= TOL


def test_forward_equals_net_forward_directly():
    net = tiny_net(6)
    rgb, alpha = frames(3, 64, 96, seed=7)
    x = torch.from_numpy(rgb.transpose(0, 3, 1, 2).copy())
    a = torch.from_numpy(alpha[:, None].copy())
    ff = FastForward(net)
    assert ff.enc is not None and ff.dec is not None  # the fused plans pass their check
    with torch.inference_mode():
        y, g = ff(x, a, 0.005, False)
        ref, parts = net(x, a, kept_fraction=0.005, return_all=True)
    assert float((y - ref).abs().max()) <= TOL
    assert float((g - parts["gate"]).abs().max()) <= TOL


def test_unshuffle_layout_and_fused_conv_fallback(monkeypatch):
    parts = [torch.rand(2, 3, 8, 12), torch.rand(2, 1, 8, 12)]
    u = _unshuffle2_cl(parts)
    ref = torch.nn.functional.pixel_unshuffle(torch.cat(parts, 1), 2)
    assert torch.equal(u, ref[:, unshuffle_order(4)])
    assert u.is_contiguous(memory_format=torch.channels_last)
    # without torch's fused oneDNN op: plain conv + ReLU / add, same result
    conv = torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2)
    x = torch.rand(2, 4, 10, 10).contiguous(memory_format=torch.channels_last)
    r = torch.rand(2, 4, 10, 10).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        a, b = fused.FusedConv(conv, True)(x), fused.FusedConv(conv, False)(x, r)
        monkeypatch.setattr(fused, "_OP", None)
        c, d = fused.FusedConv(conv, True)(x), fused.FusedConv(conv, False)(x, r)
        ref_a = conv(x).relu()
        ref_b = (conv(x) + r).relu()
    for got, want in ((a, ref_a), (b, ref_b), (c, ref_a), (d, ref_b)):
        assert float((got - want).abs().max()) <= 1e-6


def test_weights_edited_after_use_rebuild_the_fused_plans():
    net = tiny_net(7)
    rgb, alpha = frames(1, 64, 64, seed=8)
    p = Painter(net)
    before = p.restore(rgb[0], alpha[0], kept_fraction=0.005)
    with torch.no_grad():
        net.detail.net[-1].bias.add_(0.2)
    after = p.restore(rgb[0], alpha[0], kept_fraction=0.005)
    ref = Plain(net).restore(rgb[0], alpha[0], kept_fraction=0.005)
    assert not np.array_equal(before, after)
    assert np.abs(after - ref).max() <= TOL


def test_config_replaced_on_the_net_after_use_applies():
    from exgs.painter.detail import set_detail_scale

    net = tiny_net(8)
    rgb, alpha = frames(1, 64, 64, seed=9)
    p = Painter(net)
    p.restore(rgb[0], alpha[0], kept_fraction=0.005)
    set_detail_scale(net, 0.3)  # replaces net.cfg
    got = p.restore(rgb[0], alpha[0], kept_fraction=0.005)
    ref = Plain(net).restore(rgb[0], alpha[0], kept_fraction=0.005)
    assert np.abs(got - ref).max() <= TOL


def test_bf16_uses_the_kept_fraction_like_float32():
    """The bf16 path feeds the gate head's keep channel and the covered cap from the kept
    fraction too (it used the default keep: a different gate, not just rounding)."""
    from exgs.metrics import psnr

    net = tiny_net(9)
    with torch.no_grad():
        net.gate_head.net[0].weight[:, 15].mul_(40)  # the keep channel matters
    rgb, alpha = frames(1, 64, 64, seed=10)
    for keep in (0.005, 0.2):
        a = Painter(net).restore(rgb[0], alpha[0], kept_fraction=keep)
        b = Painter(net, precision="bf16").restore(rgb[0], alpha[0], kept_fraction=keep)
        assert psnr(a, b) >= 60.0  # 80 / 91 dB measured; 43 / 64 dB with the default keep
