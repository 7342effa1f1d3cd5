"""The CPU renderer against gsplat's pure-PyTorch functions and a slow, obviously-correct
reference compositor written here (per Gaussian, front to back, over every pixel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gsplat.cuda import _torch_impl as gs

from exgs.cameras import Camera, look_at, orbit_for_scene
from exgs.render import render, render_many
from exgs.render.cpu import PreparedScene
from exgs.render.project import project, quat_scale_to_covar
from exgs.render.sh import eval_sh
from exgs.scene import GaussianScene
from exgs.synth import demo_scene, random_scene


# ----------------------------------------------------------------------------- reference
def gsplat_projection(scene: GaussianScene, cam: Camera, sh_degree: int):
    """Projection + colours with gsplat's own torch functions (float64 for a clean
    reference). Returns dict of numpy arrays for the Gaussians gsplat keeps."""
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    means, quats = t(scene.means), t(scene.quats)
    scales, opac = t(scene.scales), t(scene.opacities)
    covars, _ = gs._quat_scale_to_covar_preci(quats, scales, True, False)
    vm, K = t(cam.world_to_camera)[None], t(cam.K)[None]
    radii, m2d, depth, conics, _ = gs._fully_fused_projection(
        means, covars, vm, K, cam.width, cam.height, eps2d=0.3, near_plane=cam.near,
        far_plane=cam.far)
    campos = torch.linalg.inv(vm)[0, :3, 3]
    k = (sh_degree + 1) ** 2
    col = gs._spherical_harmonics(sh_degree, means - campos, t(scene.sh)[:, :k])
    col = torch.clamp_min(col + 0.5, 0.0)
    keep = ((radii[0] > 0).all(-1) & (opac >= 1 / 255)).numpy()
    return dict(keep=keep, xy=m2d[0].numpy(), conic=conics[0].numpy(), depth=depth[0].numpy(),
                color=col.numpy(), opac=opac.numpy())


def reference_render(scene, cam, sh_degree=None, background=(0, 0, 0)):
    """Every kept Gaussian, sorted by depth, against every pixel (no tiles, no boxes)."""
    sh_degree = scene.sh_degree if sh_degree is None else sh_degree
    p = gsplat_projection(scene, cam, sh_degree)
    W, H = cam.width, cam.height
    px, py = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    T = np.ones((H, W))
    rgb = np.zeros((H, W, 3))
    dsum = np.zeros((H, W))
    done = np.zeros((H, W), bool)
    contrib = np.zeros(len(scene))
    hits = np.zeros(len(scene), np.int64)
    idx = np.flatnonzero(p["keep"])
    for g in idx[np.argsort(p["depth"][idx], kind="stable")]:
        a, b, c = p["conic"][g]
        dx, dy = p["xy"][g, 0] - px, p["xy"][g, 1] - py
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = np.minimum(0.999, p["opac"][g] * np.exp(-sigma))
        use = (~done) & (sigma >= 0) & (alpha >= 1 / 255)
        nt = T * (1 - alpha)
        stop = use & (nt <= 1e-4)
        done |= stop
        use &= ~stop
        vis = np.where(use, alpha * T, 0.0)
        rgb += vis[..., None] * p["color"][g]
        dsum += vis * p["depth"][g]
        T = np.where(use, nt, T)
        contrib[g] = vis.sum()
        hits[g] = use.sum()
    alpha = 1 - T
    rgb = np.clip(rgb + T[..., None] * np.asarray(background), 0, 1)
    depth = np.where(alpha >= 1e-6, dsum / np.maximum(alpha, 1e-10), np.inf)
    return rgb, alpha, depth, contrib, hits


def psnr(a, b, peak=1.0):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


# ----------------------------------------------------------------------------- scenes
def cam_front(w=40, h=30, fov=60.0):
    return look_at([0.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, -1.0, 0.0], w, h, fov_x_deg=fov)


def layered_scene():
    """Structured: overlapping opaque walls (early termination), thin needles, tiny dots."""
    rng = np.random.default_rng(3)
    parts = []
    for z, col in ((2.5, [0.9, 0.1, 0.1]), (3.0, [0.1, 0.9, 0.1]), (3.5, [0.1, 0.1, 0.9])):
        g = np.stack(np.meshgrid(np.linspace(-0.8, 0.8, 9), np.linspace(-0.6, 0.6, 7)), -1)
        g = g.reshape(-1, 2)
        m = np.c_[g, np.full(len(g), z)]
        parts.append((m, np.tile([1, 0, 0, 0.0], (len(m), 1)), np.tile([0.12, 0.12, 0.01], (len(m), 1)),
                      np.full(len(m), 0.97), np.tile(col, (len(m), 1))))
    n = 40
    m = rng.uniform([-1, -0.8, 2.0], [1, 0.8, 4.0], (n, 3))
    q = rng.normal(size=(n, 4))
    parts.append((m, q, np.tile([0.3, 0.004, 0.004], (n, 1)), np.full(n, 0.8), rng.uniform(0, 1, (n, 3))))
    m = rng.uniform([-1, -0.8, 1.5], [1, 0.8, 4.0], (n, 3))
    parts.append((m, np.tile([1, 0, 0, 0.0], (n, 1)), np.full((n, 3), 0.001), np.full(n, 0.9),
                  rng.uniform(0, 1, (n, 3))))
    cat = [np.concatenate(x) for x in zip(*parts)]
    return GaussianScene.from_activated(*cat)


SCENES = {
    "random_deg0": lambda: random_scene(300, sh_degree=0, seed=1),
    "random_deg3": lambda: random_scene(400, sh_degree=3, seed=2),
    "layered": layered_scene,
}


# ----------------------------------------------------------------------------- tests
def test_covariance_matches_gsplat():
    s = random_scene(200, seed=4)
    q = s.quats * np.random.default_rng(0).uniform(0.3, 3.0, (len(s), 1)).astype(np.float32)
    ours = quat_scale_to_covar(q, s.scales)
    ref, _ = gs._quat_scale_to_covar_preci(torch.from_numpy(q.astype(np.float64)),
                                           torch.from_numpy(s.scales.astype(np.float64)))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    rng = np.random.default_rng(degree)
    dirs = rng.normal(size=(300, 3)).astype(np.float32) * 5
    sh = rng.normal(size=(300, 16, 3)).astype(np.float32)
    ours = eval_sh(degree, dirs, sh)
    ref = gs._spherical_harmonics(degree, torch.from_numpy(dirs.astype(np.float64)),
                                  torch.from_numpy(sh.astype(np.float64)))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-5, atol=1e-5)


def _affine_camera():
    """Camera whose world_to_camera includes a non-uniform scale and shear (object transform)."""
    cam = look_at([0.4, -0.3, -0.5], [0.0, 0.0, 3.0], [0.0, -1.0, 0.0], 48, 36, fov_x_deg=70)
    A = np.eye(4)
    A[:3, :3] = [[1.2, 0.1, 0.0], [0.0, 0.9, 0.05], [0.0, 0.0, 1.1]]
    cam.world_to_camera = cam.world_to_camera @ A
    cam.cx += 3.0  # off-centre principal point exercises the asymmetric fov clamp
    return cam


@pytest.mark.parametrize("camfn", [cam_front, _affine_camera])
def test_projection_matches_gsplat(camfn):
    s = random_scene(500, sh_degree=2, seed=5, extent=1.5)  # some behind / outside the view
    cam = camfn()
    ours = project(PreparedScene(s), cam, 2)
    ref = gsplat_projection(s, cam, 2)
    vis = ours.visible
    # our opacity-aware box is tighter than the torch impl's 3.33σ box: subset of its kept set
    assert vis.sum() > 50 and not (vis & ~ref["keep"]).any()
    np.testing.assert_allclose(ours.xy[vis], ref["xy"][vis], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours.conic[vis], ref["conic"][vis], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.depth[vis], ref["depth"][vis], rtol=1e-5)
    np.testing.assert_allclose(ours.color[vis], ref["color"][vis], rtol=1e-5, atol=1e-5)
    # the Gaussians we drop in addition cannot reach α ≥ 1/255 on any pixel centre
    extra = np.flatnonzero(ref["keep"] & ~vis)
    W, H = cam.width, cam.height
    px, py = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    for g in extra:
        a, b, c = ref["conic"][g]
        dx, dy = ref["xy"][g, 0] - px, ref["xy"][g, 1] - py
        sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        assert (ref["opac"][g] * np.exp(-sig) < 1 / 255).all()


def test_tile_lists_match_gsplat_isect():
    s = random_scene(150, seed=6)
    cam = cam_front(70, 50)
    ours = project(PreparedScene(s), cam, s.sh_degree)
    tw, th = (cam.width + 15) // 16, (cam.height + 15) // 16
    # gsplat's torch intersection with our opacity-aware radii
    tiles_per_gauss, _, _ = gs._isect_tiles(
        torch.from_numpy(ours.xy)[None], torch.from_numpy(ours.radii)[None],
        torch.from_numpy(ours.depth)[None], 16, tw, th)
    r = ours.rect
    n_ours = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    np.testing.assert_array_equal(n_ours, tiles_per_gauss[0].numpy())


@pytest.mark.parametrize("name", sorted(SCENES))
def test_render_matches_reference(name):
    s = SCENES[name]()
    cam = cam_front(40, 30) if name != "layered" else cam_front(45, 33, fov=50)
    ours = render(s, cam, device="cpu", return_contrib=True)
    rgb, alpha, depth, contrib, hits = reference_render(s, cam)
    assert ours.backend == "cpu"
    assert ours.rgb.shape == (30 if name != "layered" else 33, cam.width, 3)
    assert alpha.max() > 0.5  # the scene is really in view
    assert psnr(ours.rgb, rgb) >= 45
    assert psnr(ours.alpha, alpha) >= 45
    fin = np.isfinite(depth)
    np.testing.assert_array_equal(np.isfinite(ours.depth), fin)
    assert psnr(ours.depth[fin] / depth[fin].max(), depth[fin] / depth[fin].max()) >= 45
    # contributions: same Σα·T per Gaussian, same pixel counts (allow a pixel or two of
    # float disagreement at the α = 1/255 or T = 1e-4 thresholds)
    np.testing.assert_allclose(ours.contrib, contrib, rtol=1e-3, atol=2e-2)
    assert np.abs(ours.hits - hits).max() <= 2
    assert (ours.hits != hits).sum() <= max(2, len(s) // 50)


def test_background_and_alpha_compositing():
    s = random_scene(200, seed=8)
    cam = cam_front(32, 24)
    bg = (0.2, 0.5, 0.9)
    black = render(s, cam, device="cpu")
    col = render(s, cam, device="cpu", background=bg)
    expect = np.clip(black.rgb + (1 - black.alpha)[..., None] * np.asarray(bg, np.float32), 0, 1)
    np.testing.assert_allclose(col.rgb, expect, atol=1e-5)
    rgb, alpha, *_ = reference_render(s, cam, background=bg)
    assert psnr(col.rgb, rgb) >= 45
    # premultiplied on black: colour never exceeds coverage much (colours ≤ ~1)
    assert (black.alpha >= 0).all() and (black.alpha <= 1).all()


def test_empty_and_offscreen():
    cam = cam_front(20, 10)
    r = render(GaussianScene.empty(), cam, device="cpu", return_contrib=True)
    assert r.rgb.shape == (10, 20, 3) and not r.rgb.any() and not r.alpha.any()
    assert np.isinf(r.depth).all() and r.contrib.shape == (0,)
    s = random_scene(50, seed=1)
    s.means[:, 2] = -5  # all behind the camera
    r = render(s, cam, device="cpu", return_contrib=True)
    assert not r.alpha.any() and not r.contrib.any() and not r.hits.any()


def test_sh_degree_option_and_render_many():
    s = random_scene(200, sh_degree=3, seed=9)
    cams = [cam_front(24, 18), _affine_camera()]
    many = list(render_many(s, cams, sh_degree=1, device="cpu"))
    for cam, r in zip(cams, many):
        one = render(s, cam, sh_degree=1, device="cpu")
        np.testing.assert_array_equal(r.rgb, one.rgb)
        ref = reference_render(s, cam, sh_degree=1)[0]
        assert psnr(r.rgb, ref) >= 45


def test_demo_scene_orbit_upright():
    """The demo scene (y down) seen from an up=-y orbit: ground at the bottom of the image."""
    s = demo_scene(4000, sh_degree=1)
    cam = orbit_for_scene(s, 1, 64, 48, up="-y", elevation_deg=(5.0, 5.0))[0]
    r = render(s, cam, device="cpu")
    ref = reference_render(s, cam)[0]
    assert psnr(r.rgb, ref) >= 45
    assert r.alpha.mean() > 0.2


def test_matches_gsplat_torch_pipeline():
    """gsplat's own torch pipeline as far as it runs on CPU: _fully_fused_projection,
    _spherical_harmonics, _isect_tiles and _isect_offset_encode (its tile lists, in its
    (tile, depth) key order). Its compositor ``_rasterize_to_pixels`` needs the CUDA op
    ``rasterize_to_indices_in_range`` (and nerfacc), so the per-tile front-to-back loop that
    op performs is written out here over gsplat's own lists."""
    s = random_scene(250, sh_degree=2, seed=12)
    cam = cam_front(50, 34)
    W, H = cam.width, cam.height
    p = gsplat_projection(s, cam, 2)
    # gsplat's torch projection radii (3.33 σ boxes) for its tile intersection
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    covars, _ = gs._quat_scale_to_covar_preci(t(s.quats), t(s.scales), True, False)
    radii, m2d, depth, conics, _ = gs._fully_fused_projection(
        t(s.means), covars, t(cam.world_to_camera)[None], t(cam.K)[None], W, H)
    radii = radii * torch.from_numpy(p["keep"])[None, :, None]
    tw, th = (W + 15) // 16, (H + 15) // 16
    _, isect_ids, flatten_ids = gs._isect_tiles(m2d, radii, depth, 16, tw, th)
    offsets = gs._isect_offset_encode(isect_ids, 1, tw, th).flatten().numpy()
    flat = flatten_ids.numpy()
    ends = np.r_[offsets[1:], len(flat)]
    img = np.zeros((H, W, 3))
    T = np.ones((H, W))
    for tile in range(tw * th):
        ty, tx = divmod(tile, tw)
        ys, xs = slice(ty * 16, min(H, ty * 16 + 16)), slice(tx * 16, min(W, tx * 16 + 16))
        px, py = np.meshgrid(np.arange(xs.start, xs.stop) + 0.5, np.arange(ys.start, ys.stop) + 0.5)
        Tt, ct = np.ones(px.shape), np.zeros(px.shape + (3,))
        done = np.zeros(px.shape, bool)
        for g in flat[offsets[tile]:ends[tile]]:
            a, b, c = p["conic"][g]
            dx, dy = p["xy"][g, 0] - px, p["xy"][g, 1] - py
            sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            al = np.minimum(0.999, p["opac"][g] * np.exp(-sig))
            use = ~done & (sig >= 0) & (al >= 1 / 255)
            nt = Tt * (1 - al)
            stop = use & (nt <= 1e-4)
            done |= stop
            use &= ~stop
            ct += np.where(use, al * Tt, 0)[..., None] * p["color"][g]
            Tt = np.where(use, nt, Tt)
        img[ys, xs], T[ys, xs] = ct, Tt
    ours = render(s, cam, device="cpu")
    assert (1 - T).max() > 0.5
    assert psnr(ours.rgb, np.clip(img, 0, 1)) >= 45
    assert psnr(ours.alpha, 1 - T) >= 45


def test_extreme_gaussians_match_reference():
    """Huge splats close to the camera (boxes far larger than the image), needles crossing
    the near plane's side, and sub-pixel dots: no overflow, same image as the reference."""
    means = np.array([[0.0, 0.0, 0.05], [0.3, -0.2, 0.5], [0.0, 0.0, 40.0], [0.2, 0.1, 2.0],
                      [-0.4, 0.0, 0.02], [5.0, 0.0, 1.0]])
    scales = np.array([[2.0, 2.0, 2.0], [5.0, 0.001, 0.001], [300.0, 300.0, 1.0],
                       [1e-4, 1e-4, 1e-4], [0.01, 0.5, 0.01], [3.0, 0.05, 0.05]])
    rng = np.random.default_rng(1)
    quats = rng.normal(size=(len(means), 4))
    s = GaussianScene.from_activated(means, quats, scales, np.full(len(means), 0.3),
                                     rng.uniform(0, 1, (len(means), 3)))
    cam = cam_front(36, 28, fov=90)
    ours = render(s, cam, device="cpu", return_contrib=True)
    rgb, alpha, depth, contrib, hits = reference_render(s, cam)
    assert alpha.min() > 0.1  # the big splats cover the whole image
    assert psnr(ours.rgb, rgb) >= 45 and psnr(ours.alpha, alpha) >= 45
    np.testing.assert_allclose(ours.depth, depth, rtol=1e-4)
    np.testing.assert_allclose(ours.contrib, contrib, rtol=1e-3, atol=1e-2)
