"""Stabilised restoration of one animation frame per request (``exgs.pipeline.render_stable``):
the request's warm-up frames make its output a pure function of the request, the memo only
saves time, and the frames of one request never flicker more than their input."""

from __future__ import annotations

import numpy as np
import pytest

from exgs.cameras import orbit_cameras
from exgs.painter.temporal import TemporalStabilizer, flicker
from exgs.pipeline.sequence import RestoreMemo, render_stable
from exgs.render import render
from exgs.synth import demo_scene


def flickery_restorer(rgb, alpha):
    """A deterministic stand-in for a painter whose fill changes a lot between frames: noise
    seeded by the frame's bytes, where alpha < 1."""
    seed = int.from_bytes(np.asarray(rgb, np.float32).tobytes()[:4096:7][:8].ljust(8, b"\0"),
                          "little") ^ len(rgb.tobytes())
    noise = np.random.default_rng(seed).uniform(-0.3, 0.3, rgb.shape).astype(np.float32)
    return np.clip(rgb + noise * (1.0 - alpha[..., None]), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def path():
    scene = demo_scene(n=1500, sh_degree=1, seed=3)
    cams = orbit_cameras(np.zeros(3), 4.0, 240, 40, 32, elevation_deg=(20, 20), seed=None)
    return scene, cams[:10]


def _stable(scene, cams, warmup, memo=None, **kw):
    return list(render_stable(scene, cams, warmup=warmup, restorer=flickery_restorer,
                              memo=memo, scope="s", **kw))


def test_a_request_equals_one_stabiliser_run_over_its_cameras(path):
    scene, cams = path
    xs = [render(scene, c, device="cpu") for c in cams[:6]]
    st = TemporalStabilizer()
    ref = [st(np.clip(r.rgb, 0, 1), flickery_restorer(r.rgb, r.alpha)) for r in xs]
    out = _stable(scene, cams[:6], warmup=3)
    assert len(out) == 3
    for o, r, x in zip(out, ref[3:], xs[3:]):
        assert np.array_equal(o.rgb, r)
        assert np.array_equal(o.alpha, x.alpha) and np.array_equal(o.depth, x.depth)
    # flicker of the run: never above the unrestored input's, pair by pair
    for t in range(1, 6):
        assert flicker(ref[t - 1:t + 1]) <= flicker([x.rgb for x in xs[t - 1:t + 1]]) + 1e-4
    assert flicker([flickery_restorer(x.rgb, x.alpha) for x in xs]) > \
        flicker([x.rgb for x in xs])  # the stand-in painter does flicker


def test_the_memo_never_changes_a_pixel_whatever_the_order(path):
    """Frame f = one request with the frames 0..f-1 as warm-up (what the add-on sends
    inside a segment): cold, with a shared memo in path order, in reverse and shuffled
    order, and with a memo too small to hold a frame — all bit-identical."""
    scene, cams = path
    cold = [_stable(scene, cams[:f + 1], warmup=f)[0].rgb for f in range(len(cams))]
    rng = np.random.default_rng(0)
    for order in (list(range(len(cams))), list(range(len(cams)))[::-1],
                  list(rng.permutation(len(cams)))):
        memo = RestoreMemo()
        for f in order:
            got = _stable(scene, cams[:f + 1], warmup=f, memo=memo)[0].rgb
            assert np.array_equal(got, cold[f]), (order, f)
        assert memo.hits > 0
    tiny = RestoreMemo(max_bytes=100)
    assert np.array_equal(_stable(scene, cams[:5], warmup=4, memo=tiny)[0].rgb, cold[4])
    assert len(tiny) == 0 and tiny.bytes == 0


def test_the_memo_resumes_from_the_stored_state(path):
    """In path order each request restores one new frame: the memo is asked for one new
    (x, y) per request after the first, and holds the state of each request's list."""
    scene, cams = path
    memo = RestoreMemo()
    calls = []

    def counting(rgb, alpha):
        calls.append(1)
        return flickery_restorer(rgb, alpha)

    for f in range(len(cams)):
        list(render_stable(scene, cams[:f + 1], warmup=f, restorer=counting, memo=memo,
                           scope="s"))
    assert len(calls) == len(cams)  # every frame restored exactly once


def test_background_and_bad_warmup(path):
    scene, cams = path
    a = _stable(scene, cams[:3], warmup=2)[0]
    b = _stable(scene, cams[:3], warmup=2, background=(0.2, 0.4, 0.6))[0]
    np.testing.assert_allclose(b.rgb, a.rgb + (1 - a.alpha[..., None]) * [0.2, 0.4, 0.6],
                               atol=1e-6)
    with pytest.raises(ValueError):
        _stable(scene, cams[:3], warmup=3)


def test_memo_evicts_least_recently_used_within_its_cap():
    one = np.zeros((10, 10, 3), np.float32)
    memo = RestoreMemo(max_bytes=3 * 2 * one.nbytes)
    for k in "abc":
        memo.put(k, one, one)
    assert memo.get("a") is not None  # a is now the most recent
    memo.put("d", one, one)
    assert "b" not in memo and all(k in memo for k in "acd")
    assert memo.bytes == 3 * 2 * one.nbytes
    x, _ = memo.get("a")
    with pytest.raises(ValueError):
        x[0, 0, 0] = 1.0  # stored arrays are read-only


def test_linear_frames_are_stabilised_in_scene_linear(path):
    """``linear``: the stabiliser runs on (and returns) the add-on's conversion of the
    unrestored and restored frames, so Blender's Combined pass gets the bounded values."""
    from exgs.pipeline.sequence import premult_srgb_to_linear

    scene, cams = path
    xs = [render(scene, c, device="cpu") for c in cams[:4]]
    st = TemporalStabilizer()
    ref = [st(premult_srgb_to_linear(np.clip(r.rgb, 0, 1), r.alpha),
              premult_srgb_to_linear(flickery_restorer(r.rgb, r.alpha), r.alpha)) for r in xs]
    out = _stable(scene, cams[:4], warmup=1, linear=True)
    for o, r in zip(out, ref[1:]):
        assert np.array_equal(o.rgb, r)
    with pytest.raises(ValueError):
        _stable(scene, cams[:2], warmup=1, linear=True, background=(0.1, 0.1, 0.1))
    # the conversion is the add-on's: straight colour clipped, sRGB decoded, × alpha
    rgb = np.array([[[0.5, 0.25, 0.9]]], np.float32)
    a = np.array([[0.5]], np.float32)
    lin = premult_srgb_to_linear(rgb, a)
    np.testing.assert_allclose(lin[0, 0], [0.5 * 1.0, 0.5 * ((0.5 + 0.055) / 1.055) ** 2.4,
                                           0.5 * 1.0], rtol=1e-5)


def test_restart_cross_fades_two_runs_and_reuses_the_memo(path):
    """``restart`` + ``blend``: (1 − blend)·(run over all) + blend·(run from ``restart``),
    the same with and without the memo; the second run's state serves the next request."""
    scene, cams = path
    a = _stable(scene, cams[:7], warmup=6)[0].rgb
    b = _stable(scene, cams[3:7], warmup=3)[0].rgb
    memo = RestoreMemo()
    got = _stable(scene, cams[:7], warmup=6, restart=3, blend=0.25, memo=memo)[0].rgb
    np.testing.assert_allclose(got, 0.75 * a + 0.25 * b, atol=1e-6)
    assert np.array_equal(got, _stable(scene, cams[:7], warmup=6, restart=3, blend=0.25)[0].rgb)
    hits = memo.hits
    nxt = _stable(scene, cams[3:8], warmup=4, memo=memo)[0].rgb  # the new run goes on alone
    assert memo.hits > hits
    assert np.array_equal(nxt, _stable(scene, cams[3:8], warmup=4)[0].rgb)
    with pytest.raises(ValueError):
        _stable(scene, cams[:4], warmup=2, restart=3)
