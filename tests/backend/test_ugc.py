"""UGC: significance vs a brute-force per-pixel reference, voxel rule, amplification, API."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exgs.cameras import Camera, look_at
from exgs.errors import UsageError
from exgs.io.exgs_format import decode_exgs, read_exgs_scene
from exgs.scene import SH_C0, GaussianScene
from exgs.synth import demo_scene, random_scene
from exgs.ugc import compress, select, write_exgs
from exgs.ugc.amplify import (amplify, covariances, nearest_in_grid, quat_to_rotmat,
                              rotmat_to_quat)
from exgs.ugc.sh import reduce_sh
from exgs.ugc.significance import significance, volume_factor
from exgs.ugc.voxel import voxel_keys, voxel_sample


# ---------------------------------------------------------------------------- brute force
def brute_force_contrib(scene: GaussianScene, cam: Camera) -> np.ndarray:
    """Σ over pixels of α_j·T_j by direct per-pixel compositing (numpy, float64):
    EWA projection with the 0.3 px² blur, α = min(0.999, o·exp(−½dᵀΣ₂⁻¹d)), α < 1/255 or
    negative exponent skipped, front-to-back by camera z, stop before T ≤ 1e-4."""
    W = cam.world_to_camera
    R, t = W[:3, :3], W[:3, 3]
    mc = scene.means.astype(np.float64) @ R.T + t
    z = mc[:, 2]
    C = covariances(scene)
    Cc = np.einsum("ij,njk,lk->nil", R, C, R)
    J = np.zeros((len(scene), 2, 3))
    J[:, 0, 0] = cam.fx / z
    J[:, 0, 2] = -cam.fx * mc[:, 0] / z**2
    J[:, 1, 1] = cam.fy / z
    J[:, 1, 2] = -cam.fy * mc[:, 1] / z**2
    S2 = np.einsum("nij,njk,nlk->nil", J, Cc, J) + 0.3 * np.eye(2)
    conic = np.linalg.inv(S2)
    uv = np.stack([cam.fx * mc[:, 0] / z + cam.cx, cam.fy * mc[:, 1] / z + cam.cy], 1)
    op = scene.opacities.astype(np.float64)
    order = np.argsort(z, kind="stable")
    contrib = np.zeros(len(scene))
    for row in range(cam.height):
        for col in range(cam.width):
            T = 1.0
            for j in order:
                d = uv[j] - (col + 0.5, row + 0.5)
                power = -0.5 * (conic[j, 0, 0] * d[0] ** 2 + conic[j, 1, 1] * d[1] ** 2) \
                    - conic[j, 0, 1] * d[0] * d[1]
                if power > 0:
                    continue
                a = min(0.999, op[j] * math.exp(power))
                if a < 1 / 255:
                    continue
                nt = T * (1 - a)
                if nt <= 1e-4:
                    break
                contrib[j] += a * T
                T = nt
    return contrib


def _tiny_scene(n=25, seed=0):
    s = random_scene(n=n, sh_degree=0, seed=seed, extent=1.0, max_scale=0.25)
    return s


def test_score_matches_brute_force():
    s = _tiny_scene()
    # identity-ish camera at the origin looking down +z; all centres well inside the view
    cams = [Camera(24, 18, 20.0, 20.0, 12.0, 9.0),
            look_at([0.4, -0.3, 0.0], [0.0, 0.0, 3.0], [0, -1, 0], 20, 16, fov_x_deg=90)]
    want = np.zeros(len(s))
    for c in cams:
        want += brute_force_contrib(s, c)
    want /= sum(c.width * c.height for c in cams)
    got = significance(s, cams, device="cpu")
    assert want.sum() > 0.05 and (want > 0).sum() > 10
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-6)
    # the mean contribution over all pixels equals the mean coverage (alpha)
    from exgs.render import render

    cov = sum(render(s, c, device="cpu").alpha.sum() for c in cams)
    assert got.sum() == pytest.approx(cov / sum(c.width * c.height for c in cams), rel=1e-4)


def test_volume_factor():
    s = _tiny_scene(200)
    g = volume_factor(s, 0.1)
    v = np.exp(s.log_scales.astype(np.float64).sum(1))
    np.testing.assert_allclose(g, (v / np.quantile(v, 0.9)) ** 0.1, rtol=1e-6)
    base = significance(s, [Camera(16, 16, 14.0, 14.0, 8.0, 8.0)], device="cpu")
    boosted = significance(s, [Camera(16, 16, 14.0, 14.0, 8.0, 8.0)], device="cpu",
                           volume_beta=0.1)
    np.testing.assert_allclose(boosted, base * g, rtol=1e-9)


# ---------------------------------------------------------------------------- voxels
def _clustered(n_dense=3000, n_sparse=60, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(0, 0.05, (n_dense, 3))
    sparse = rng.uniform(-1, 1, (n_sparse, 3))
    return np.concatenate([dense, sparse]), rng


def test_voxel_rule_covers_every_qualifying_voxel():
    means, rng = _clustered()
    score = rng.random(len(means))
    score[3000:] *= 1e-3  # sparse Gaussians all score low: top-k alone would drop them
    n = len(means)
    for target, v, m in [(300, 0.2, 2), (150, 0.25, 1), (500, 0.1, 3)]:
        idx, info = voxel_sample(means, score, target, voxel_size=v, min_count=m)
        assert len(idx) == target == len(np.unique(idx))
        assert np.all(np.diff(score[idx]) <= 0)  # most significant first
        keys = voxel_keys(means, v)
        uk, counts = np.unique(keys, return_counts=True)
        qualifying = set(uk[counts >= m])
        assert len(qualifying) <= target
        assert qualifying <= set(keys[idx])
        # per-voxel top-k: inside a voxel, a kept Gaussian outscores every dropped one of
        # that voxel unless the exact-count trim removed it
        top = np.argsort(-score)[:target]
        assert len(set(keys[idx])) > len(set(keys[top]))  # better coverage than top-k
    assert info["qualifying_voxels"] == len(qualifying)
    assert n == 3060


def test_voxel_rule_per_voxel_topk_brute_force():
    """Without trimming, the picks are exactly ⌊|V|ρ⌋ (≥ 1 if |V| ≥ m) best per voxel."""
    rng = np.random.default_rng(5)
    means = rng.uniform(0, 1, (2000, 3))
    score = rng.random(2000)
    v, m, target = 0.25, 3, 400
    idx, info = voxel_sample(means, score, target, voxel_size=v, min_count=m)
    keys = voxel_keys(means, v)
    expect = []
    for k in np.unique(keys):
        members = np.flatnonzero(keys == k)
        kv = max(int(len(members) * target / 2000), 1 if len(members) >= m else 0)
        expect += list(members[np.argsort(-score[members])[:kv]])
    assert info["initial_picks"] == len(expect)
    picked = set(idx.tolist())
    if len(expect) <= target:  # topped up by global score: all per-voxel picks stay
        assert set(expect) <= picked
    else:
        assert picked <= set(expect)


def _object_and_background(seed=2):
    """A dense object (4,000 centres in a small ball, low scores each) inside a sparse
    'background' (300 centres on a sphere of radius 8, one or two per voxel, each scoring
    30× an object centre: big splats that cover much of every view)."""
    rng = np.random.default_rng(seed)
    obj = rng.normal(0, 0.3, (4000, 3))
    d = rng.normal(size=(300, 3))
    bg = 8.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    score = np.concatenate([rng.uniform(0.5, 1.5, 4000), rng.uniform(20, 40, 300)])
    return np.concatenate([obj, bg]), score


def test_voxel_mass_share_keeps_sparse_significant_regions():
    means, score = _object_and_background()
    target, v, m = 200, 1.0, 5
    bg = np.arange(4000, 4300)
    by_count, _ = voxel_sample(means, score, target, voxel_size=v, min_count=m)
    by_mass, info = voxel_sample(means, score, target, voxel_size=v, min_count=m,
                                 mass_share=0.5)
    assert len(by_mass) == target == len(np.unique(by_mass))
    assert np.all(np.diff(score[by_mass]) <= 0)
    # the count rule starves the background (its voxels hold < m centres each) ...
    assert np.isin(by_count, bg).sum() < 30
    # ... the mass share gives it picks, and every voxel whose mass earns a pick has one
    assert np.isin(by_mass, bg).sum() >= max(60, 3 * np.isin(by_count, bg).sum())
    keys = voxel_keys(means, v)
    uk, inv = np.unique(keys, return_inverse=True)
    mass = np.bincount(inv, weights=score)
    earned = set(uk[mass >= score.sum() / target])
    assert earned <= set(keys[by_mass])
    assert info["mass_share"] == 0.5 and info["qualifying_voxels"] >= len(earned)
    # share 0 is the count rule exactly; out-of-range shares are refused
    same, _ = voxel_sample(means, score, target, voxel_size=v, min_count=m, mass_share=0.0)
    assert np.array_equal(same, by_count)
    with pytest.raises(ValueError, match="mass_share"):
        voxel_sample(means, score, target, voxel_size=v, mass_share=1.5)


def test_voxel_mass_share_per_voxel_counts_brute_force():
    """Without trimming, voxel V keeps its best ⌊target·((1−s)|V|/N + s·S_V/S)⌋, at least
    one when |V| ≥ m or S_V ≥ S/target, at most |V|."""
    rng = np.random.default_rng(6)
    means = rng.uniform(0, 1, (1500, 3)) ** 3  # dense near the origin, sparse far out
    score = rng.random(1500) * (1 + 10 * means[:, 0])
    v, m, target, s = 0.25, 4, 300, 0.5
    idx, info = voxel_sample(means, score, target, voxel_size=v, min_count=m, mass_share=s)
    keys = voxel_keys(means, v)
    expect = []
    for k in np.unique(keys):
        members = np.flatnonzero(keys == k)
        sv = score[members].sum()
        kv = math.floor(target * ((1 - s) * len(members) / 1500 + s * sv / score.sum()))
        if len(members) >= m or sv >= score.sum() / target:
            kv = max(kv, 1)
        expect += list(members[np.argsort(-score[members])[:min(kv, len(members))]])
    assert info["initial_picks"] == len(expect)
    picked = set(idx.tolist())
    assert set(expect) <= picked if len(expect) <= target else picked <= set(expect)


def test_compress_refuses_a_bad_voxel_mass_share():
    with pytest.raises(UsageError, match="voxel_mass_share"):
        compress(random_scene(200, seed=1), keep_target=0.5, voxel_mass_share=-0.1,
                 device="cpu")


def test_auto_voxel_size_and_edge_counts():
    means, rng = _clustered()
    score = rng.random(len(means))
    idx, info = voxel_sample(means, score, 200)
    assert len(idx) == 200 and info["voxel_size"] > 0
    assert len(voxel_sample(means, score, 0)[0]) == 0
    assert len(voxel_sample(means, score, 10**6)[0]) == len(means)


# ---------------------------------------------------------------------------- amplify
def test_rotation_conversions():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(500, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q2 = rotmat_to_quat(quat_to_rotmat(q))
    assert np.abs(np.abs(np.einsum("ij,ij->i", q, q2)) - 1).max() < 1e-9


def test_rotation_conversion_at_half_turns():
    """Rotations by exactly 180° (w = 0: eigh returns such frames for covariances with a
    repeated axis) round-trip too; sign tricks on R - Rᵀ (zero there) got some of them wrong."""
    rng = np.random.default_rng(3)
    axes = np.concatenate([rng.normal(size=(200, 3)), np.eye(3), [[1.0, -1.0, 0.0],
                                                                  [0.0, 1.0, -1.0]]])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    q = np.concatenate([np.zeros((len(axes), 1)), axes], 1)
    R = quat_to_rotmat(q)
    R2 = quat_to_rotmat(rotmat_to_quat(R))
    assert np.abs(R2 - R).max() < 1e-9
    # amplification writes survivors' frames from eigenvectors: flips of two axes are 180° turns
    flips = np.stack([np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]),
                      np.diag([-1.0, -1.0, 1.0])])
    assert np.abs(quat_to_rotmat(rotmat_to_quat(flips)) - flips).max() < 1e-12


def test_nearest_in_grid_matches_brute_force():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (400, 3))
    qs = rng.uniform(0, 1, (1000, 3))
    idx, dist = nearest_in_grid(qs, pts, 0.2)
    d = np.linalg.norm(qs[:, None] - pts[None], axis=2)
    true = d.argmin(1)
    near = d.min(1) <= 0.2  # guaranteed region
    assert np.array_equal(idx[near], true[near])
    np.testing.assert_allclose(dist[near], d.min(1)[near])
    assert np.all(idx >= 0)  # 400 points in a 5³ grid: every cell has neighbours


def test_amplify_moment_matching():
    # survivor 0 absorbs an identical copy (1): mean/covariance unchanged, mass doubles
    s = random_scene(n=3, sh_degree=0, seed=3)
    s.means[1] = s.means[0]
    s.quats[1], s.log_scales[1] = s.quats[0], s.log_scales[0]
    s.opacity_logits[:2] = 0.0  # opacity 0.5
    s.means[2] = s.means[0] + 100.0  # far away: its own survivor
    out, info = amplify(s, np.array([0, 2]), strength=0.5, cell=1.0)
    assert info["absorbed"] == 1
    np.testing.assert_allclose(out.means[0], s.means[0], atol=1e-5)
    np.testing.assert_allclose(covariances(out, [0]), covariances(s, [0]), rtol=1e-4,
                               atol=1e-9)
    assert out.opacities[0] == pytest.approx(0.5 + 0.5 * (1.0 - 0.5), abs=1e-4)
    # two offset copies along x: the merged covariance grows along x only (capped)
    s2 = GaussianScene.from_activated(np.array([[0, 0, 0], [0.2, 0, 0]]),
                                      np.tile([1.0, 0, 0, 0], (2, 1)), np.full((2, 3), 0.1),
                                      np.array([0.5, 0.5]), colors=np.full((2, 3), 0.5))
    out2, _ = amplify(s2, np.array([0]), strength=1.0, cell=1.0, growth=10.0)
    sc = np.sort(out2.scales[0])
    assert sc[0] == pytest.approx(0.1, rel=1e-3) and sc[1] == pytest.approx(0.1, rel=1e-3)
    assert sc[2] == pytest.approx(math.sqrt(0.01 + 0.01), rel=1e-3)
    np.testing.assert_allclose(out2.means[0], [0.1, 0, 0], atol=1e-6)
    out3, _ = amplify(s2, np.array([0]), strength=1.0, cell=1.0, growth=1.2)
    assert out3.scales[0].max() == pytest.approx(0.12, rel=1e-3)
    # strength 0 = plain pruning
    out4, _ = amplify(s2, np.array([0]), strength=0.0)
    np.testing.assert_array_equal(out4.means, s2.means[:1])


# ---------------------------------------------------------------------------- SH
def test_sh_distillation_degree0():
    s = random_scene(n=50, sh_degree=2, seed=2)
    cams = [look_at(p, [0, 0, 3], [0, -1, 0], 32, 32) for p in
            ([0, 0, 0], [1, 0, 0.5], [-1, 0.5, 0.2])]
    d = reduce_sh(s, 0, cams, distill=True)
    t = reduce_sh(s, 0, cams, distill=False)
    assert d.sh_degree == 0 and t.sh_degree == 0
    np.testing.assert_array_equal(t.sh[:, 0], s.sh[:, 0])
    from exgs.render.sh import eval_sh

    # mean over the views of the renderer's colour max(SH(dir) + 0.5, 0), clipped at 1
    cols = [np.maximum(eval_sh(2, s.means - c.position, s.sh) + 0.5, 0) for c in cams]
    np.testing.assert_allclose(d.sh[:, 0] * SH_C0 + 0.5, np.minimum(np.mean(cols, 0), 1),
                               atol=1e-5)
    s0 = random_scene(n=20, sh_degree=0)
    np.testing.assert_array_equal(reduce_sh(s0, 0, cams).sh, s0.sh)


# ---------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def small():
    return demo_scene(n=3000, sh_degree=1, seed=3)


@pytest.fixture(scope="module")
def small_score(small):
    from exgs.ugc.significance import default_views

    cams = default_views(small, 6, (96, 72))
    return cams, significance(small, cams)


def test_compress_keep_and_progressive(small, small_score, tmp_path):
    cams, score = small_score
    seen = []
    r = compress(small, keep_target=0.1, cameras=cams, progress=lambda f, m: seen.append(f))
    assert len(r.scene) == 300 and r.stats["kept"] == 300
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    assert r.stats["bytes_per_gaussian"] <= 25
    p = tmp_path / "a.exgs"
    write_exgs(r, p)
    back = read_exgs_scene(p)
    np.testing.assert_array_equal(back.means, r.scene.means)
    assert len(read_exgs_scene(p, keep=0.5)) == 150
    r2 = compress(small, keep_target=123, score=score, cameras=cams, sh_degree=1)
    assert len(r2.scene) == 123 and r2.scene.sh_degree == 1
    # the file stores Gaussians most significant first: a prefix keeps the high scorers
    r3 = compress(small, keep_target=160, method="score", score=score, cameras=cams)
    p3 = tmp_path / "b.exgs"
    write_exgs(r3, p3)
    first = read_exgs_scene(p3, keep=10)  # one sub-level of 160/16
    top = np.argsort(-score)[:10]
    d = np.linalg.norm(first.means[:, None] - small.means[top][None], axis=2)
    assert d.min(1).max() < 1e-3


@pytest.mark.parametrize("ratio", [15, 60, 200])
def test_compress_ratio_is_met(small, small_score, ratio):
    cams, score = small_score
    src = 3000 * 248
    r = compress(small, budget_bytes=src / ratio, score=score, cameras=cams, source_bytes=src)
    assert len(r.data) <= src / ratio
    # searched up to the budget, not far below (or everything fits)
    assert len(r.data) >= 0.9 * src / ratio or r.stats["kept"] == 3000
    assert r.stats["ratio"] >= ratio and r.stats["encode_trials"] <= 6


@pytest.mark.parametrize("method", ["ugc", "score", "opacity", "random"])
def test_pruning_methods(small, small_score, method):
    cams, score = small_score
    idx, _ = select(small, score, 200, method)
    assert len(idx) == 200 == len(np.unique(idx))
    r = compress(small, keep_target=200, method=method, score=score, cameras=cams)
    assert len(decode_exgs(r.data)) == 200


def test_compress_errors(small, small_score):
    cams, score = small_score
    with pytest.raises(UsageError, match="not both"):
        compress(small, budget_bytes=1e4, keep_target=0.1, score=score, cameras=cams)
    with pytest.raises(UsageError, match="unreachable"):
        compress(small, budget_bytes=3000 * 248 / 1e9, score=score, cameras=cams)
    with pytest.raises(UsageError, match="exceeds"):
        compress(small, keep_target=0.1, sh_degree=3, score=score, cameras=cams)
    with pytest.raises(UsageError):
        compress(small, keep_target=0.1, method="magic", score=score, cameras=cams)
    with pytest.raises(UsageError):
        compress(GaussianScene.empty(0), keep_target=0.1)
