"""Restored frames carry the alpha of what GaussPainter painted: ``alpha + g·(1 − alpha)``
(g = its gate; the restoration blends the input with an opaque restored layer). Every path
that returns restored frames passes it on: otherwise un-premultiplying (Blender passes, PNG
alpha) clips colour painted into holes away, and a background is added on top of it."""

from __future__ import annotations

import numpy as np
import torch

from exgs.cameras import orbit_cameras
from exgs.painter.infer import Painter
from exgs.painter.model import PainterConfig, PainterNet
from exgs.pipeline import Restorer, render_frames, render_stable
from exgs.pipeline.sequence import premult_srgb_to_linear
from exgs.render import render
from exgs.synth import demo_scene


class PaintHoles:
    """A stand-in restorer that paints opaque mid grey into empty pixels (gate 1 there)."""

    def __call__(self, rgb, alpha):
        return self.restore_rgba(rgb, alpha)[0]

    def restore_rgba(self, rgb, alpha):
        hole = (alpha < 0.05)[..., None]
        return (np.where(hole, np.float32(0.5), rgb).astype(np.float32),
                np.where(hole[..., 0], np.float32(1.0), alpha).astype(np.float32))


def _setup():
    scene = demo_scene(n=400, seed=3)
    cams = orbit_cameras(scene.means.mean(0), 4.0, 3, 40, 32, seed=None)
    return scene, cams


def _tiny_painter():
    torch.manual_seed(0)
    cfg = PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8), gate_gain=2.0,
                        gate_bias_by_keep=((0.01, 3.0), (0.5, 3.0)))
    return Painter(PainterNet(cfg).eval())


def test_painter_returns_alpha_plus_gate_times_the_rest():
    scene, cams = _setup()
    r = render(scene, cams[0])
    p = _tiny_painter()
    rgb, a = p.restore(r.rgb, r.alpha, kept_fraction=0.05, return_alpha=True)
    assert np.array_equal(rgb, p.restore(r.rgb, r.alpha, kept_fraction=0.05))
    x = torch.from_numpy(np.pad(r.rgb, ((0, 32), (0, 24), (0, 0)), mode="edge")).permute(2, 0, 1)[None]
    al = torch.from_numpy(np.pad(r.alpha, ((0, 32), (0, 24)), mode="edge"))[None, None]
    with torch.no_grad():
        _, parts = p.net(x, al, kept_fraction=0.05, return_all=True)
    g = parts["gate"][0, 0, :32, :40].numpy()
    assert np.allclose(a, r.alpha + g * (1 - r.alpha), atol=1e-5)
    assert (a >= r.alpha - 1e-7).all() and (a > r.alpha + 0.05).any()
    # nothing pruned: the gate is shut, the alpha comes back exactly
    rgb1, a1 = p.restore(r.rgb, r.alpha, kept_fraction=1.0, return_alpha=True)
    assert np.array_equal(a1, r.alpha) and np.array_equal(rgb1, np.clip(r.rgb, 0, 1))


def test_render_frames_passes_the_restored_alpha_on():
    scene, cams = _setup()
    out = list(render_frames(scene, cams, restorer=PaintHoles()))
    for res, cam in zip(out, cams):
        r = render(scene, cam)
        hole = r.alpha < 0.05
        assert hole.any() and np.array_equal(res.alpha, np.where(hole, 1.0, r.alpha))
        # the add-on's conversion keeps the painted grey (with the render's alpha it was 0)
        assert np.allclose(premult_srgb_to_linear(res.rgb, res.alpha)[hole], 0.5 ** 2.2,
                           atol=0.02)
        assert (premult_srgb_to_linear(res.rgb, r.alpha)[hole] < 0.05).all()
    # over a white background the painted grey covers it
    bg = list(render_frames(scene, cams[:1], restorer=PaintHoles(), background=(1, 1, 1)))[0]
    hole = render(scene, cams[0]).alpha < 0.05
    assert np.allclose(bg.rgb[hole], 0.5)


def test_render_stable_and_a_real_restorer_pass_the_alpha_on():
    scene, cams = _setup()
    for linear in (False, True):
        out = list(render_stable(scene, cams, warmup=1, restorer=PaintHoles(), linear=linear))
        for res, cam in zip(out, cams[1:]):
            r = render(scene, cam)
            hole = r.alpha < 0.05
            assert hole.any() and (res.alpha[hole] == 1.0).all()
            assert (res.alpha >= r.alpha).all()
    rest = Restorer(_tiny_painter(), kept_fraction=0.05)
    res = list(render_frames(scene, cams[:1], restorer=rest))[0]
    r = render(scene, cams[0])
    assert np.array_equal(res.alpha, rest.restore_rgba(r.rgb, r.alpha)[1])
    assert (res.alpha > r.alpha + 0.05).any()
