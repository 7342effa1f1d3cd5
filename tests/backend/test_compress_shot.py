"""Compressing for a shot (``CompressOptions.shot``, ``exgs compress --shot``): the cameras the
file will be rendered from are scored as well, taught by refinement as well, and the painter's
verdict is judged on their frames (issue 15: do-no-harm on the frames an artist renders)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exgs.cameras import orbit_cameras, read_cameras_json, write_cameras_json
from exgs.cli import main
from exgs.io.exgs import decode_header
from exgs.io.exgs_format import read_exgs_header
from exgs.io.ply import write_ply
from exgs.synth import demo_scene
from exgs.ugc import compress

FAST = dict(views=4, view_size=(64, 48))


@pytest.fixture(scope="module")
def scene():
    return demo_scene(n=1500, sh_degree=1, seed=21)


def close_up_shot(scene, n=6, size=(160, 120)):
    """A close-up arc on one side of the scene (a quarter of an orbit, small radius)."""
    lo, hi = scene.robust_bounds()
    centre = (lo + hi) / 2 + np.array([0.25, 0.0, 0.0]) * (hi - lo)
    r = 0.35 * float(np.linalg.norm(hi - lo))
    return orbit_cameras(centre, r, 4 * n, size[0], size[1], elevation_deg=(15, 15),
                         fov_x_deg=45, seed=None)[:n]


def test_ugc_scores_the_shot_too(scene):
    """The shot's frames join the scoring views: the significance moves towards what the
    shot sees (whether that pays is measured on real captures: bench/shot.py)."""
    from exgs.ugc.significance import significance

    shot = close_up_shot(scene)
    plain = compress(scene, keep_target=0.08, device="cpu", **FAST)
    fitted = compress(scene, keep_target=0.08, device="cpu", shot=shot, **FAST)
    assert plain.stats["shot_views"] == 0 and fitted.stats["shot_views"] == len(shot)
    assert fitted.stats["score_views"] == FAST["views"] + len(shot)
    assert len(fitted.scene) == len(plain.scene)
    # the header records the shot only when there is one (files without one are unchanged)
    assert decode_header(fitted.data)["settings"]["shot_views"] == len(shot)
    assert "shot_views" not in decode_header(plain.data)["settings"]
    seen = significance(scene, [c.resized(64, 48) for c in shot], device="cpu")
    assert (np.corrcoef(fitted.score, seen)[0, 1]
            > np.corrcoef(plain.score, seen)[0, 1] + 0.05)


def test_held_out_views_are_frames_of_the_shot(scene):
    from exgs.painter.adapt import AdaptConfig
    from exgs.painter.adapt_views import camera_key, held_out_views

    cfg = AdaptConfig(views=5, holdout=2, size=64, crop=32).validate()
    shot = close_up_shot(scene, n=6)
    hold, train = held_out_views(scene, cfg, None, shot)
    hold0, train0 = held_out_views(scene, cfg)
    assert [camera_key(c) for c in train] == [camera_key(c) for c in train0]
    assert len(hold) == 2 and [camera_key(c) for c in hold] != [camera_key(c) for c in hold0]
    # the first and last frames, at the judging size (1.5 × size on the long side)
    for c, s in zip(hold, (shot[0], shot[-1])):
        assert max(c.width, c.height) == 96
        assert np.allclose(c.camera_to_world, s.camera_to_world)


def test_painter_verdict_is_judged_on_the_shot(scene, monkeypatch):
    """The compressor's do-no-harm verdict (and the file's own setting) render the shot's
    frames, not orbits."""
    import exgs.painter.adapt_views as views
    from exgs.painter.adapt import AdaptConfig
    from exgs.painter.adapt_views import camera_key, held_out_views
    from exgs.pipeline import CompressOptions, compress_scene

    seen = []
    real = views.render_pairs

    def spy(full, pruned, cams, *a, **kw):
        seen.extend(camera_key(c) for c in cams)
        return real(full, pruned, cams, *a, **kw)

    monkeypatch.setattr(views, "render_pairs", spy)
    shot = close_up_shot(scene, n=10)
    res = compress_scene(scene, CompressOptions(keep_target=0.1, device="cpu", shot=shot,
                                                **FAST))
    expect, _ = held_out_views(scene, AdaptConfig().validate(), None, shot)
    assert seen == [camera_key(c) for c in expect]
    assert res.stats["painter_delta"]["choice"] in ("none", "generic", "tune")
    assert res.stats["shot_views"] == len(shot)


def test_a_long_shot_is_thinned_evenly():
    from exgs.pipeline import MAX_SHOT_VIEWS, CompressOptions

    cams = orbit_cameras(np.zeros(3), 3.0, 100, 32, 32, seed=None)
    used = CompressOptions(shot=cams).shot_cameras()
    assert len(used) == MAX_SHOT_VIEWS and used[0] is cams[0] and used[-1] is cams[-1]
    assert CompressOptions().shot_cameras() is None


def test_refinement_is_taught_the_shot(scene):
    from exgs.ugc.refine import RefineOptions, plan_views

    shot = close_up_shot(scene, n=3, size=(640, 480))
    teach0, dec0, _ = plan_views(scene, None, RefineOptions(views=4, resolution=64))
    teach, dec, _ = plan_views(scene, None, RefineOptions(views=4, resolution=64,
                                                          shot=tuple(shot)))
    assert len(teach) == len(teach0) + 3 and len(dec) == len(dec0)
    for c, s in zip(teach[-3:], shot):
        assert (c.width, c.height) == (64, 48)
        assert np.allclose(c.camera_to_world, s.camera_to_world)


def test_cli_shot(scene, tmp_path, capsys):
    ply = tmp_path / "s.ply"
    write_ply(scene, ply)
    shot = close_up_shot(scene, n=4)
    cams = tmp_path / "shot.json"
    write_cameras_json(shot, cams)
    assert len(read_cameras_json(cams)) == 4
    out = tmp_path / "o.exgs"
    assert main(["compress", str(ply), "-o", str(out), "--keep", "0.1", "--views", "4",
                 "--view-size", "64x48", "--shot", str(cams), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["shot_views"] == 4 and read_exgs_header(out)["settings"]["shot_views"] == 4
    assert main(["compress", str(ply), "-o", str(tmp_path / "p.exgs"), "--keep", "0.1",
                 "--views", "4", "--view-size", "64x48", "--shot", str(cams)]) == 0
    assert "shot: 4 of its 4 cameras scored" in capsys.readouterr().out
    # a bad shot file: one line naming it, exit 2, nothing written
    bad = tmp_path / "bad.json"
    bad.write_text("[{}]")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["compress", str(ply), "-o", str(tmp_path / "q.exgs"), "--keep", "0.1",
                 "--shot", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exgs: error:") and "bad.json" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_delta_is_held_out_on_the_shot_too(scene, monkeypatch):
    """With ``--adapt`` the verdict and every delta candidate are judged on the same frames
    of the shot (the delta must beat the file's own setting on the very views it was
    measured on)."""
    import exgs.painter.adapt_views as views
    from exgs.painter.adapt import AdaptConfig
    from exgs.painter.adapt_views import camera_key, held_out_views
    from exgs.pipeline import CompressOptions, compress_scene

    calls = []
    real = views.render_pairs

    def spy(full, pruned, cams, *a, **kw):
        calls.append([camera_key(c) for c in cams])
        return real(full, pruned, cams, *a, **kw)

    import exgs.painter.adapt as adapt_mod

    monkeypatch.setattr(views, "render_pairs", spy)
    monkeypatch.setattr(adapt_mod, "render_pairs", spy)
    cfg = AdaptConfig(form="last", views=5, holdout=2, size=64, crop=32, batch=2, steps=4,
                      seconds=600)
    shot = close_up_shot(scene, n=5)
    res = compress_scene(scene, CompressOptions(keep_target=0.1, device="cpu", shot=shot,
                                                **FAST), adapt=cfg)
    hold = [camera_key(c) for c in held_out_views(scene, cfg.validate(), None, shot)[0]]
    assert calls[0] == hold and calls[1] == hold  # the verdict, then the delta's held-out
    assert all(k not in hold for c in calls[2:] for k in c)  # training views: orbits
    assert "heldout_adapted_db" in res.stats["painter_delta"] or \
        res.stats["painter_delta"]["choice"] in ("none", "generic", "tune")
