"""GaussPainter data: procedural scenes, pruning stand-in, pair sampling, painter-train CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exgs.errors import UsageError
from exgs.painter.data import PairSampler, parse_scene_specs, simple_prune
from exgs.painter.procedural import random_procedural_scene


def test_procedural_scenes_are_deterministic_and_varied():
    a, b = random_procedural_scene(3, n_target=3000), random_procedural_scene(3, n_target=3000)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.sh, b.sh)
    sizes, extents = [], []
    for seed in range(6):
        s = random_procedural_scene(seed, n_target=3000)
        assert len(s) > 50 and np.isfinite(s.means).all() and np.isfinite(s.log_scales).all()
        sizes.append(len(s))
        lo, hi = s.robust_bounds()
        extents.append(float(np.linalg.norm(hi - lo)))
    assert len(set(sizes)) > 3  # different families / object counts
    assert max(extents) / min(extents) > 3  # scale is randomised


def test_simple_prune_keeps_fraction_and_amplifies():
    s = random_procedural_scene(1, n_target=4000)
    p = simple_prune(s, 0.05)
    assert len(p) == round(0.05 * len(s))
    assert p.log_scales.mean() >= s.log_scales.mean()  # σ amplified to cover the holes


def test_scene_specs():
    assert parse_scene_specs(["proc:2-4,garden", "playbot_lod3"]) == [
        "proc:2", "proc:3", "garden", "playbot_lod3"]
    with pytest.raises(UsageError):
        parse_scene_specs(["mystery"])


def test_pair_sampler_shapes_and_identity_pairs():
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, (40, 48, 3)).astype(np.float16)
    a = np.ones((40, 48), np.float16)
    pair = dict(clean_rgb=c, clean_alpha=a, deg_rgb=np.zeros((2, 40, 48, 3), np.float16),
                deg_alpha=np.zeros((2, 40, 48), np.float16), keeps=np.array([0.01, 0.1], np.float32))
    s = PairSampler([pair], p_identity=1.0)
    x, al, y, ca = s.sample(rng, 3, 32)
    assert x.shape == (3, 32, 32, 3) and al.shape == (3, 32, 32) and y.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(x, y, atol=1e-6)  # identity pairs: degraded = clean
    x, al, y, ca = PairSampler([pair], p_identity=0.0, p_background=0.0).sample(rng, 2, 64)
    assert x.shape == (2, 64, 64, 3)  # small renders are padded
    assert float(al.max()) == 0.0


def test_painter_train_cli_tiny(tmp_path, capsys):
    from exgs.cli import main

    out = tmp_path / "run"
    args = ["painter-train", "--scenes", "proc:0", "--val-scenes", "proc:1000",
            "--prune", "simple", "--cache", str(tmp_path / "cache"), "--out", str(out),
            "--views", "1", "--val-views", "1", "--size", "64", "--crop", "64",
            "--keeps-per-view", "1", "--steps", "2", "--batch", "2",
            "--vae-width", "8", "--latent-channels", "4"]
    assert main(args) == 0
    assert (out / "painter" / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    prog = json.loads((out / "progress.json").read_text())
    assert prog["steps_done"] == 2 and "val" in prog
    # re-running resumes (nothing left to do) and reuses the cache
    assert main(args) == 0
    assert "resumed" in capsys.readouterr().out
    from exgs.painter import load_painter

    p = load_painter(out / "painter")
    assert p.restore(np.zeros((20, 30, 3), np.float32), np.ones((20, 30), np.float32)).shape == (20, 30, 3)
    # a scene both trained on and held out: one-line error, exit 2
    assert main(["painter-train", "--scenes", "proc:0", "--val-scenes", "proc:0",
                 "--cache", str(tmp_path / "c2"), "--out", str(tmp_path / "o2")]) == 2
    assert "held out" in capsys.readouterr().err
