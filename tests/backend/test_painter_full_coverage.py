"""GaussPainter do-no-harm on full-coverage scenes (issue 15): background Gaussians cover the
whole frame (alpha = 1 everywhere), so the alpha mask says nothing; the shipped painter must
not make such frames worse (restored PSNR ≥ unrestored − 0.05 dB), with the kept fraction
known (the calibrated covered-pixel cap may open the gate there) or unknown (covered pixels
are returned exactly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exgs.metrics import psnr
from exgs.painter.data import frame_views, prune_many
from exgs.painter.infer import load_painter
from exgs.painter.model import PainterConfig, PainterNet, local_coverage
from exgs.painter.procedural import random_procedural_scene, with_background_shell
from exgs.render import render


@pytest.fixture(scope="module")
def shell_scene():
    obj = random_procedural_scene(7, n_target=5000)
    lo, hi = obj.robust_bounds()
    frame = {"center": (lo + hi) / 2, "half_diag": float(np.linalg.norm(hi - lo)) / 2, "up": "-y"}
    scene = with_background_shell(obj, seed=3, n=1500, center=frame["center"],
                                  half_diag=frame["half_diag"])
    return scene, frame


def test_shell_covers_every_view(shell_scene):
    scene, frame = shell_scene
    for cam in frame_views(frame, 3, 64, seed=1):
        r = render(scene, cam, device="cpu")
        assert float(r.alpha.min()) >= 0.99  # the whole frame is covered


def test_local_coverage_is_one_inside_covered_areas():
    a = torch.ones(1, 1, 70, 90)
    assert torch.allclose(local_coverage(a), a)
    a[..., :, :30] = 0.0
    c = local_coverage(a)
    assert float(c[..., 35, 85]) > 0.99 and float(c[..., 35, 2]) < 0.1
    assert 0.05 < float(c[..., 35, 32]) < 0.95  # next to the empty part: incomplete


def test_coverage_gate_returns_fully_covered_frames_exactly():
    torch.manual_seed(0)
    cfg = PainterConfig(vae_width=8, vae_encoder_blocks=(1, 1, 1, 1),
                        vae_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
                        unet_channels=(8, 16), gate_floor=1.0, gate_bias=3.0)
    net = PainterNet(cfg).eval()
    x = torch.rand(1, 3, 64, 64)
    a = torch.ones(1, 1, 64, 64)
    with torch.no_grad():
        legacy = net(x, a)
        net.cfg.gate_coverage_gain = 4.0
        gated = net(x, a)
    assert not torch.equal(legacy, x)  # floor 1: the legacy gate touches opaque pixels
    assert torch.equal(gated, x)  # full coverage: returned bit-exactly


def test_shipped_painter_does_not_hurt_full_coverage_frames(shell_scene):
    scene, frame = shell_scene
    painter = load_painter()
    cams = frame_views(frame, 2, 80, seed=11)
    sig_cams = frame_views(frame, 4, 48, seed=0, distance=(0.8, 0.8))
    keeps = (0.01, 0.03, 0.1)
    for keep, pruned in zip(keeps, prune_many(scene, keeps, "ugc", cameras=sig_cams)):
        for cam in cams:
            full = render(scene, cam, device="cpu")
            d = render(pruned, cam, device="cpu")
            for kf in (len(pruned) / len(scene), None):  # known and unknown kept fraction
                out = painter.restore(d.rgb, d.alpha, kept_fraction=kf)
                assert psnr(out, full.rgb) >= psnr(d.rgb, full.rgb) - 0.05, (keep, kf)
                if painter.config.covered_cap_for_kept_fraction(kf) > 0 or \
                        painter.config.detail_scale_for_kept_fraction(kf) > 0:
                    continue  # the calibrated cap / the detail head touch covered pixels
                covered = local_coverage(torch.from_numpy(d.alpha)[None, None])[0, 0].numpy()
                inside = (covered >= 0.999) & (d.alpha >= 0.999)
                # there the gate is ≤ gate_gain·(1 − alpha) (≤ 0.002; 0 where alpha = 1), so
                # a pixel moves by at most that much towards the decoded colour
                bound = painter.config.gate_gain * (1.0 - d.alpha[inside])[:, None] + 1e-6
                assert np.all(np.abs(out[inside] - d.rgb[inside]) <= bound)
                exact = inside & (d.alpha >= 1.0)
                np.testing.assert_array_equal(out[exact], d.rgb[exact])
