"""Procedural Gaussian scenes generated in code (no data files): the built-in demo scene and
random scenes for tests and painter training.

Scenes are in a capture-like frame: **y down** (up = −y), as INRIA/COLMAP scenes usually are,
so the same orbit defaults work for them and for real captures.
"""

from __future__ import annotations

import numpy as np

from .scene import GaussianScene, logit, rgb_to_sh_dc, sh_coeffs_for_degree


def quat_z_to(normals: np.ndarray) -> np.ndarray:
    """[N,4] (w,x,y,z) unit quaternions rotating +z onto each unit normal [N,3]."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(np.broadcast_to(z, n.shape), n)
    w = 1.0 + n[:, 2]
    q = np.concatenate([w[:, None], axis], 1)
    flip = w < 1e-6  # normal = −z: rotate 180° about x
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def random_quats(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


class _Builder:
    """Accumulates Gaussians given in activated form (σ, opacity, display colour)."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []

    def add(self, means, quats, scales, opacities, colors) -> None:
        n = len(means)
        self.parts.append((np.asarray(means, np.float32).reshape(n, 3),
                           np.asarray(quats, np.float32).reshape(n, 4),
                           np.broadcast_to(np.asarray(scales, np.float32), (n, 3)),
                           np.broadcast_to(np.asarray(opacities, np.float32), (n,)),
                           np.broadcast_to(np.asarray(colors, np.float32), (n, 3))))

    def surface(self, points, normals, colors, spacing, opacity=0.95, thickness=0.15):
        s = np.array([spacing, spacing, spacing * thickness], np.float32)
        self.add(points, quat_z_to(normals), s, opacity, colors)

    def build(self, sh_degree: int = 0, rng: np.random.Generator | None = None,
              sh_strength: float = 0.0) -> GaussianScene:
        means, quats, scales, opac, cols = (np.concatenate(x, 0) for x in zip(*self.parts))
        k = sh_coeffs_for_degree(sh_degree)
        sh = np.zeros((len(means), k, 3), np.float32)
        sh[:, 0] = rgb_to_sh_dc(cols)
        if k > 1 and rng is not None and sh_strength > 0:
            sh[:, 1:] = rng.normal(0, sh_strength, size=(len(means), k - 1, 3))
        return GaussianScene(means, quats, np.log(np.maximum(scales, 1e-8)),
                             logit(opac), sh)


def _hsv(h, s, v):
    h = np.asarray(h) % 1.0
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(np.shape(h) + (3,))
    for k, (r, g, b) in enumerate(table):
        m = i == k
        out[m] = np.stack([np.broadcast_to(r, np.shape(h))[m], np.broadcast_to(g, np.shape(h))[m],
                           np.broadcast_to(b, np.shape(h))[m]], -1)
    return out


def _sphere(rng, n, center, radius):
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return center + radius * d, d


def demo_scene(n: int = 60_000, sh_degree: int = 3, seed: int = 7) -> GaussianScene:
    """The built-in demo: a textured ground patch, a striped globe, a checkered box, a torus
    with fine stripes, thin poles, and a sparse cloud of bright "fireflies" — colourful, with
    fine detail and sparse regions. Y down: objects rest on the ground at y = 0 and extend to
    negative y. About ``n`` Gaussians; view-dependent SH up to ``sh_degree``.
    """
    rng = np.random.default_rng(seed)
    b = _Builder()
    # Ground patch (y = 0), radius 3, hue rings + fine checker.
    ng = int(n * 0.35)
    r = 3.0 * np.sqrt(rng.uniform(0, 1, ng))
    a = rng.uniform(0, 2 * np.pi, ng)
    p = np.stack([r * np.cos(a), np.zeros(ng), r * np.sin(a)], 1)
    checker = ((np.floor(p[:, 0] * 2.5) + np.floor(p[:, 2] * 2.5)) % 2).astype(float)
    col = _hsv(0.08 + 0.05 * np.sin(r * 3), 0.5, 0.35 + 0.35 * checker)
    b.surface(p, np.tile([0, -1.0, 0], (ng, 1)), col, spacing=0.035)
    # Striped globe.
    ns = int(n * 0.2)
    p, d = _sphere(rng, ns, np.array([-1.0, -0.9, 0.3]), 0.85)
    lat = np.arcsin(np.clip(-d[:, 1], -1, 1))
    col = _hsv(np.floor(lat * 8 / np.pi) / 8, 0.75, 0.95)
    b.surface(p, d, col, spacing=0.03)
    # Checkered box (faces of a cube).
    nb = int(n * 0.15)
    c, hs = np.array([1.1, -0.6, -0.5]), 0.6
    face = rng.integers(0, 6, nb)
    uv = rng.uniform(-hs, hs, (nb, 2))
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    p = np.zeros((nb, 3))
    nrm = np.zeros((nb, 3))
    for ax in range(3):
        m = axis == ax
        others = [k for k in range(3) if k != ax]
        p[m, ax] = sign[m] * hs
        p[m, others[0]], p[m, others[1]] = uv[m, 0], uv[m, 1]
        nrm[m, ax] = sign[m]
    p += c
    chk = ((np.floor(uv[:, 0] * 5) + np.floor(uv[:, 1] * 5)) % 2).astype(float)
    col = np.where(chk[:, None] > 0, [0.95, 0.85, 0.1], [0.1, 0.2, 0.7])
    b.surface(p, nrm, col, spacing=0.025)
    # Torus with fine stripes (fine detail).
    nt = int(n * 0.18)
    u, v = rng.uniform(0, 2 * np.pi, nt), rng.uniform(0, 2 * np.pi, nt)
    R0, r0 = 0.7, 0.18
    ct = np.array([0.2, -1.9, 1.2])
    p = np.stack([(R0 + r0 * np.cos(v)) * np.cos(u), r0 * np.sin(v),
                  (R0 + r0 * np.cos(v)) * np.sin(u)], 1)
    nrm = np.stack([np.cos(v) * np.cos(u), np.sin(v), np.cos(v) * np.sin(u)], 1)
    # tilt the torus 60° about x
    t = np.radians(60)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    p, nrm = p @ rot.T + ct, nrm @ rot.T
    stripe = (np.floor(u * 24 / (2 * np.pi)) % 2).astype(float)
    col = _hsv(u / (2 * np.pi), 0.9, 0.5 + 0.45 * stripe)
    b.surface(p, nrm, col, spacing=0.012)
    # Thin poles (elongated Gaussians: anisotropy).
    npl = int(n * 0.04)
    for k, x in enumerate(np.linspace(-2.2, 2.2, 5)):
        m = npl // 5
        yy = -rng.uniform(0, 1.6 + 0.3 * k, m)
        p = np.stack([np.full(m, x), yy, np.full(m, -2.0) + 0.0 * yy], 1)
        b.add(p, np.tile([1.0, 0, 0, 0], (m, 1)), [0.012, 0.05, 0.012], 0.9,
              _hsv(np.full(m, k / 5), 0.7, 0.95))
    # Sparse fireflies: a weakly populated region that pruning must not empty.
    nf = max(50, int(n * 0.008))
    p = rng.uniform([-3, -3.5, -3], [3, -2.2, 3], (nf, 3))
    b.add(p, random_quats(rng, nf), rng.uniform(0.008, 0.02, (nf, 1)) * [1, 1, 1], 0.9,
          _hsv(rng.uniform(0, 1, nf), 0.6, 1.0))
    # Fill to a volumetric fuzz on the globe (semi-transparent shell): depth complexity.
    nv = max(0, n - sum(len(x[0]) for x in b.parts))
    if nv:
        p, d = _sphere(rng, nv, np.array([-1.0, -0.9, 0.3]), 0.95)
        b.add(p, random_quats(rng, nv), rng.uniform(0.01, 0.03, (nv, 1)) * [1, 1, 1], 0.06,
              _hsv(0.6 + 0.1 * rng.uniform(0, 1, nv), 0.3, 1.0))
    return b.build(sh_degree=sh_degree, rng=rng, sh_strength=0.08)


def random_scene(n: int = 2000, sh_degree: int = 1, seed: int = 0, extent: float = 1.0,
                 max_scale: float = 0.08) -> GaussianScene:
    """Unstructured random Gaussians in a cube of half-size ``extent`` centred at z = 3·extent
    (in front of an identity camera): random rotations, anisotropic scales, opacities and SH.
    For unit tests."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-extent, extent, (n, 3))
    means[:, 2] += 3 * extent
    k = sh_coeffs_for_degree(sh_degree)
    sh = rng.normal(0, 0.25, (n, k, 3)).astype(np.float32)
    sh[:, 0] = rgb_to_sh_dc(rng.uniform(0.05, 0.95, (n, 3)))
    return GaussianScene(
        means=means,
        quats=random_quats(rng, n),
        log_scales=np.log(rng.uniform(0.15, 1.0, (n, 3)) * max_scale * extent),
        opacity_logits=logit(rng.uniform(0.05, 0.99, n)),
        sh=sh,
    )
