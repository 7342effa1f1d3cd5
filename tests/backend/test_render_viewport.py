"""Viewport rendering (exgs.render.viewport) and its frame codec: same pixels as render(),
F12's colour and compositing conventions, orthographic depth, cache, warm-up, cancel."""

import gc
import os
import sys

import numpy as np
import pytest

from exgs.render import render
from exgs.render.viewport import (Cancelled, PreparedCache, composite, importance,
                                  linear_premultiplied, lod_prep, render_objects, warm_up)
from exgs.service import viewport_codec
from exgs.synth import random_scene
from exgs.viewport_camera import camera_from_view

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from exgs_blender import conventions as addon_cv  # noqa: E402  (numpy only, no bpy)

W, H = 96, 64


def look(eye, target=(0, 0, 0)):
    """Blender-style view matrix (camera looks down −z, +z up in the world)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross([0, 0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return np.linalg.inv(c2w)


def persp(fov_deg=50.0, aspect=W / H, n=0.1, f=100.0):
    t = n * np.tan(np.radians(fov_deg) / 2)
    r = t * aspect
    return np.array([[n / r, 0, 0, 0], [0, n / t, 0, 0],
                     [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)], [0, 0, -1, 0]])


def orthographic(half_w, half_h, n=-50.0, f=50.0):
    return np.array([[1 / half_w, 0, 0, 0], [0, 1 / half_h, 0, 0],
                     [0, 0, -2 / (f - n), -(f + n) / (f - n)], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def scene():
    s = random_scene(800, sh_degree=1, seed=5, extent=1.0)
    s.means[:, 2] -= 3.0  # centred at the origin
    return s


def test_one_object_equals_render_in_linear(scene):
    v, p = look([2.0, -3.0, 1.5]), persp()
    obj = np.diag([1.0, 1.0, 1.0, 1.0])
    obj[:3, 3] = [0.1, 0.0, -0.2]
    fr = render_objects([(scene, obj)], v, p, W, H, cache=PreparedCache())
    cam = camera_from_view(v, p, W, H, object_matrix_world=obj).camera
    ref = render(scene, cam, device="cpu")
    assert ref.alpha.max() > 0.3  # the view sees the scene
    np.testing.assert_array_equal(fr.alpha, ref.alpha)
    np.testing.assert_array_equal(fr.depth, ref.depth)
    np.testing.assert_array_equal(fr.rgb, linear_premultiplied(ref.rgb, ref.alpha))
    assert not fr.ortho and set(fr.timings) >= {"render_ms", "prepare_ms"}


def test_reused_projection_buffers_stay_exact(scene):
    """Frames of different views and sizes in a row (buffers reused, stale culled entries)
    equal fresh renders."""
    cache = PreparedCache()
    for eye, scale in (([2.0, -3.0, 1.5], 1.0), ([-0.5, -1.2, 0.3], 1.0), ([3, 1, 2], 0.5),
                       ([2.0, -3.0, 1.5], 1.0)):
        v, p = look(eye), persp()
        fr = render_objects([(scene, np.eye(4))], v, p, W, H, scale=scale, cache=cache)
        cam = camera_from_view(v, p, W, H).camera
        cam = cam.resized(fr.alpha.shape[1], fr.alpha.shape[0])
        ref = render(scene, cam, device="cpu")
        np.testing.assert_array_equal(fr.alpha, ref.alpha)
        np.testing.assert_array_equal(fr.depth, ref.depth)


def test_colour_and_composite_match_the_addon_f12_path(scene):
    v, p = look([0.5, -3.5, 0.8]), persp()
    a, b = np.eye(4), np.eye(4)
    b[:3, 3] = [0.4, 0.6, 0.1]  # a second copy, partly behind the first
    fr = render_objects([(scene, a), (scene, b)], v, p, W, H, cache=PreparedCache())
    layers = []
    for m in (a, b):
        r = render(scene, camera_from_view(v, p, W, H, object_matrix_world=m).camera,
                   device="cpu")
        lin = addon_cv.premult_srgb_to_linear(r.rgb, r.alpha)
        np.testing.assert_allclose(linear_premultiplied(r.rgb, r.alpha), lin, atol=2e-6)
        layers.append((lin, r.alpha, r.depth))
    rgb, alpha, depth = addon_cv.composite_layers(layers)
    np.testing.assert_allclose(fr.rgb, rgb, atol=2e-6)
    np.testing.assert_allclose(fr.alpha, alpha, atol=2e-6)
    hit = alpha > 1e-6
    np.testing.assert_allclose(fr.depth[hit], depth[hit], rtol=1e-6)
    assert np.isinf(fr.depth[depth >= 1e10]).all()


def test_composite_orders_layers_per_pixel():
    one = np.ones((1, 2), np.float32)
    red = (np.stack([one * 0.5, one * 0, one * 0], -1), one * 0.5, np.array([[1.0, 3.0]]))
    blue = (np.stack([one * 0, one * 0, one * 0.8], -1) * [[[1], [0]]],
            np.array([[0.8, 0.0]], np.float32), np.array([[2.0, np.inf]], np.float32))
    rgb, a, d = composite([red, blue])
    np.testing.assert_allclose(rgb[0, 0], [0.5, 0, 0.5 * 0.8])    # red in front
    np.testing.assert_allclose(rgb[0, 1], [0.5, 0, 0])            # blue empty there
    np.testing.assert_allclose(a[0], [1 - 0.5 * 0.2, 0.5])
    np.testing.assert_allclose(d[0], [1.0, 3.0])


def test_orthographic_view_depth_and_placement(scene):
    v = look([0.0, -4.0, 0.0])
    p = orthographic(1.5, 1.0)
    fr = render_objects([(scene, np.eye(4))], v, p, W, H, cache=PreparedCache())
    assert fr.ortho and fr.alpha.max() > 0.3
    hit = fr.alpha > 0.5
    # depth = distance along the view axis (eye 4 units from the origin, scene within ±1.x)
    assert np.all(np.abs(fr.depth[hit] - 4.0) < 2.0)
    # an orthographic image of a scene centred at the origin is centred in the region
    ys, xs = np.nonzero(fr.alpha > 0.05)
    assert abs(xs.mean() - W / 2) < 8 and abs(ys.mean() - H / 2) < 8


def test_scale_crop_and_empty(scene):
    v, p = look([2.0, -3.0, 1.5]), persp()
    fr = render_objects([(scene, np.eye(4))], v, p, W, H, scale=0.5, crop=(8, 4, 72, 60),
                        cache=PreparedCache())
    assert fr.alpha.shape == (28, 32)
    empty = render_objects([], v, p, W, H, scale=0.25)
    assert empty.alpha.shape == (16, 24) and empty.alpha.max() == 0
    assert np.isinf(empty.depth).all()


def test_check_cancels(scene):
    def check():
        raise Cancelled("newer view")

    with pytest.raises(Cancelled):
        render_objects([(scene, np.eye(4))], look([2, -3, 1]), persp(), W, H, check=check)
    calls = []

    def late(n=2):  # the second check runs between projection and compositing
        calls.append(1)
        if len(calls) == n:
            raise Cancelled("newer view")

    with pytest.raises(Cancelled):
        render_objects([(scene, np.eye(4))], look([2, -3, 1]), persp(), W, H, check=late)
    assert len(calls) == 2


def test_prepared_cache_hits_and_drops_with_the_scene():
    c = PreparedCache()
    s = random_scene(100, sh_degree=0, seed=1)
    e1 = c.get(s)
    e2 = c.get(s)
    assert e1 is e2 and (c.hits, c.misses) == (1, 1) and len(c) == 1
    assert e1.radius > 0 and e1.nbytes > 0
    del s, e1, e2
    gc.collect()
    assert len(c) == 0
    small = PreparedCache(budget_bytes=1)
    keep = [random_scene(50, sh_degree=0, seed=k) for k in range(3)]
    for s in keep:
        small.get(s)
    assert len(small) == 1  # over budget: only the newest stays


def test_tune_allocator_runs():
    from exgs.render.viewport import tune_allocator

    assert tune_allocator() in (True, False)


def test_warm_up_compiles_the_kernels():
    st = warm_up()
    assert st["done"] and st["error"] is None and st["seconds"] is not None


def test_codec_round_trip():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 1, (5, 7, 3)).astype(np.float32)
    a = rng.uniform(0, 1, (5, 7)).astype(np.float32)
    d = np.where(a > 0.5, rng.uniform(1, 9, (5, 7)), np.inf).astype(np.float32)
    data = viewport_codec.encode(rgb, a, d, generation=42, ortho=True)
    viewport_codec.set_ms(data, 12.5)
    f = viewport_codec.decode(bytes(data))
    assert (f["width"], f["height"], f["generation"], f["ortho"]) == (7, 5, 42, True)
    assert f["ms"] == pytest.approx(12.5)
    np.testing.assert_allclose(f["rgba"][..., :3], rgb, atol=1e-3)
    np.testing.assert_allclose(f["rgba"][..., 3], a, atol=1e-3)
    np.testing.assert_array_equal(f["depth"], d)
    assert viewport_codec.decode(viewport_codec.encode(rgb, a))["depth"] is None
    with pytest.raises(ValueError, match="expected"):
        viewport_codec.decode(bytes(data)[:-1])
    with pytest.raises(ValueError, match="magic"):
        viewport_codec.decode(b"XXXX" + bytes(data)[4:])


def test_coarse_budget_renders_the_most_important_gaussians(scene):
    cache = PreparedCache()
    v, p = look([2.0, -3.0, 1.5]), persp()
    entry = cache.get(scene)
    sub = lod_prep(entry, scene, 200)
    imp = importance(scene)
    kept = np.sort(np.argsort(-imp, kind="stable")[:200])
    assert sub.n == 200 and lod_prep(entry, scene, 200) is sub  # computed once
    np.testing.assert_array_equal(sub.means, scene.means[kept])
    assert lod_prep(entry, scene, None) is entry.prep and lod_prep(entry, scene, 10**6) is \
        entry.prep
    # render_objects with a budget = render() of that subset; two objects share it by size
    fr = render_objects([(scene, np.eye(4))], v, p, W, H, max_gaussians=200, cache=cache)
    ref = render(scene.subset(kept), camera_from_view(v, p, W, H).camera, device="cpu")
    np.testing.assert_array_equal(fr.alpha, ref.alpha)
    full = render_objects([(scene, np.eye(4))], v, p, W, H, cache=cache)
    assert 0 < fr.alpha.sum() < full.alpha.sum()
    two = render_objects([(scene, np.eye(4)), (scene, np.eye(4))], v, p, W, H,
                         max_gaussians=400, cache=cache)
    assert two.alpha.shape == (H, W) and 200 in entry.lods


def test_opaque_film_puts_the_background_behind(scene):
    v, p = look([2.0, -3.0, 1.5]), persp()
    cache = PreparedCache()
    clear = render_objects([(scene, np.eye(4))], v, p, W, H, cache=cache)
    bg = (0.05, 0.1, 0.2)
    fr = render_objects([(scene, np.eye(4))], v, p, W, H, background=bg, cache=cache)
    assert (fr.alpha == 1).all()
    np.testing.assert_allclose(fr.rgb, clear.rgb + (1 - clear.alpha)[..., None] * bg, atol=1e-6)
    np.testing.assert_array_equal(fr.depth, clear.depth)
