"""Flicker of restored animations: the measurement, the temporal stabiliser's
never-above-the-input property, determinism of the painter, ``exgs render --temporal``."""

from __future__ import annotations

import numpy as np
import pytest

from exgs.painter.temporal import TemporalStabilizer, flicker


def test_flicker_measures_mean_frame_difference_on_the_255_scale():
    a = np.zeros((4, 6, 3), np.float32)
    b = np.ones((4, 6, 3), np.float32)
    assert flicker([a, a, a]) == 0.0
    assert flicker([a, b, a]) == pytest.approx(255.0)
    c = a.copy()
    c[:2] = 0.5  # half the frame changes by 0.5
    assert flicker([a, c]) == pytest.approx(255 * 0.25)
    assert flicker([a]) == 0.0


def _sequence(rng, n=8, h=37, w=53):
    x = [np.clip(rng.uniform(0.2, 0.8, (h, w, 3)), 0, 1).astype(np.float32)]
    for _ in range(n - 1):
        x.append(np.clip(x[-1] + rng.normal(0, rng.uniform(0.0, 0.05), (h, w, 3)), 0, 1)
                 .astype(np.float32))
    return x


def test_stabilizer_never_flickers_more_than_its_input():
    rng = np.random.default_rng(0)
    for trial in range(10):
        xs = _sequence(rng)
        ys = [np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1) for x in xs]  # a flickery painter
        st = TemporalStabilizer(block=int(rng.choice([1, 8, 16])))
        os_ = [st(x, y) for x, y in zip(xs, ys)]
        assert flicker(ys) > flicker(xs)
        # every frame pair (hence the whole sequence), to float rounding
        for t in range(1, len(xs)):
            assert flicker(os_[t - 1:t + 1]) <= flicker(xs[t - 1:t + 1]) + 1e-4, (trial, t)
        assert np.array_equal(os_[0], ys[0].astype(np.float32))


def test_stabilizer_passes_a_steady_or_absent_restoration_through():
    rng = np.random.default_rng(1)
    xs = _sequence(rng)
    st = TemporalStabilizer()
    assert all(np.array_equal(st(x, x), x) for x in xs)  # painter did nothing: input exactly
    st.reset()
    bump = np.zeros_like(xs[0])
    bump[5:20, 10:30] = 0.1
    ys = [np.clip(x + bump, 0, 1) for x in xs]  # a restoration that stays put
    outs = [st(x, y) for x, y in zip(xs, ys)]
    assert np.abs(outs[-1] - ys[-1]).max() < 1e-5


def test_painter_flicker_on_a_generated_path_is_not_above_unrestored():
    """A small procedural scene, a slow orbit, simple pruning to 3 %: the painter is
    deterministic, and painter + stabiliser flickers no more than the pruned frames
    (flicker measured as in bench/painter_flicker.py: minus the full render's)."""
    pytest.importorskip("diffusers")
    from exgs.cameras import orbit_cameras
    from exgs.painter.data import scene_frame, simple_prune
    from exgs.painter.infer import load_painter
    from exgs.painter.procedural import random_procedural_scene
    from exgs.render import render

    scene = random_procedural_scene(1003)
    frame = scene_frame("proc:1003", scene)
    cams = orbit_cameras(frame["center"], 2.2 * frame["half_diag"], 360, 64, 64,
                         up=frame["up"], elevation_deg=(20, 20), fov_x_deg=50, seed=None)[:6]
    pruned = simple_prune(scene, 0.03)
    full = [render(scene, c, device="cpu").rgb for c in cams]
    ds = [render(pruned, c, device="cpu") for c in cams]
    painter = load_painter()
    kf = len(pruned) / len(scene)
    ys = [painter.restore(d.rgb, d.alpha, kept_fraction=kf) for d in ds]
    assert np.array_equal(ys[0], painter.restore(ds[0].rgb, ds[0].alpha, kept_fraction=kf))
    st = TemporalStabilizer()
    zs = [st(d.rgb, y) for d, y in zip(ds, ys)]
    base = flicker(full)
    unrestored = flicker([d.rgb for d in ds]) - base
    assert flicker(zs) - base <= unrestored + 1e-4


def test_render_cli_temporal(tmp_path, capsys):
    from exgs.cli import main
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    p = tmp_path / "s.ply"
    write_ply(demo_scene(n=300, sh_degree=0, seed=1), p)
    assert main(["render", str(p), "--orbit", "2", "--size", "32x32", "--out",
                 str(tmp_path / "a"), "--temporal"]) == 2
    assert "--temporal needs --restore" in capsys.readouterr().err
    pytest.importorskip("diffusers")
    assert main(["render", str(p), "--orbit", "3", "--size", "48x48", "--out",
                 str(tmp_path / "b"), "--restore", "--temporal", "--device", "cpu"]) == 0
    assert len(list((tmp_path / "b").glob("*.png"))) == 3
