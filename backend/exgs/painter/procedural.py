"""Random procedural Gaussian scenes for GaussPainter training (extends :mod:`exgs.synth`).

``random_procedural_scene(seed)`` draws a scene family from the seed: palette (harmonious,
pastel, saturated, dark, grey), object shapes (spheres, boxes, tori, cylinders, blobs, poles,
planes), textures (solid, stripes, checker, value noise, gradient), background (empty: objects
floating in nothing; ground patch; cluttered: ground + back walls + many small props) and
scale (the whole scene is multiplied by a random factor 0.05–20 so the painter does not learn a
scene size). Frame as in :mod:`exgs.synth`: y down, objects stand on y = 0 and extend to −y.
Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import numpy as np

from ..scene import GaussianScene
from ..synth import _Builder, _hsv, quat_z_to, random_quats  # noqa: F401  (reuse, do not edit synth)


def _palette(rng: np.random.Generator, kind: str, n: int = 6) -> np.ndarray:
    """[n,3] display colours for a palette family."""
    h0 = rng.uniform(0, 1)
    if kind == "harmonious":
        h = h0 + rng.normal(0, 0.06, n)
        s, v = rng.uniform(0.3, 0.8, n), rng.uniform(0.3, 0.95, n)
    elif kind == "pastel":
        h, s, v = rng.uniform(0, 1, n), rng.uniform(0.1, 0.35, n), rng.uniform(0.75, 1.0, n)
    elif kind == "saturated":
        h, s, v = rng.uniform(0, 1, n), rng.uniform(0.8, 1.0, n), rng.uniform(0.6, 1.0, n)
    elif kind == "dark":
        h, s, v = rng.uniform(0, 1, n), rng.uniform(0.2, 0.9, n), rng.uniform(0.05, 0.4, n)
    else:  # grey / earthy
        h, s, v = h0 + rng.normal(0, 0.03, n), rng.uniform(0.0, 0.25, n), rng.uniform(0.15, 0.9, n)
    return np.stack([_hsv(h[i], s[i], v[i]) for i in range(n)]).reshape(n, 3)


def _value_noise(p: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """Cheap smooth 3-D noise in [0,1] at points p [N,3] (sum of random sinusoids)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(p))
    for k in range(4):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        f = freq * (1.7 ** k)
        out += np.sin(p @ d * f + rng.uniform(0, 6.3)) / (1.5 ** k)
    return 0.5 + 0.5 * out / 2.2


def _texture(rng, p: np.ndarray, uv: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Colours [N,3] for surface points p [N,3] with 2-D parameters uv [N,2]."""
    kind = rng.choice(["solid", "stripes", "checker", "noise", "gradient", "noise"])
    c1, c2 = pal[rng.integers(len(pal))], pal[rng.integers(len(pal))]
    n = len(p)
    if kind == "solid":
        t = np.zeros(n)
    elif kind == "stripes":
        f = rng.uniform(2, 30)
        t = (np.floor(uv[:, rng.integers(2)] * f) % 2).astype(float)
    elif kind == "checker":
        f = rng.uniform(2, 20)
        t = ((np.floor(uv[:, 0] * f) + np.floor(uv[:, 1] * f)) % 2).astype(float)
    elif kind == "noise":
        t = _value_noise(p, rng.uniform(2, 25), int(rng.integers(1 << 30)))
        if rng.uniform() < 0.5:
            t = (t > 0.5).astype(float)
    else:
        t = np.clip(uv[:, 0], 0, 1)
    col = c1[None] * (1 - t[:, None]) + c2[None] * t[:, None]
    col = col * rng.uniform(0.85, 1.15, (n, 1)) if rng.uniform() < 0.3 else col
    return np.clip(col, 0, 1)


def _add_shape(b: _Builder, rng, center, size, pal, budget: float, fine: float) -> None:
    kind = rng.choice(["sphere", "box", "torus", "cylinder", "blob", "poles", "plane"])
    area = {"sphere": 12.6, "box": 24.0, "torus": 8.0, "cylinder": 9.4, "blob": 12.6,
            "poles": 2.0, "plane": 4.0}[kind] * size ** 2
    n = int(np.clip(budget * rng.uniform(0.5, 1.5) / fine ** 2, 100, 12000))
    spacing = max(np.sqrt(area / n) * rng.uniform(0.8, 1.6), 1e-4)
    if kind in ("sphere", "blob"):
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        r = size * (1 + (0.35 * (_value_noise(d, 3, int(rng.integers(1 << 30))) - 0.5)
                         if kind == "blob" else 0))
        p = center + d * np.atleast_1d(r)[:, None]
        uv = np.stack([np.arctan2(d[:, 2], d[:, 0]) / np.pi, d[:, 1]], 1) * 0.5 + 0.5
        nrm = d
    elif kind == "box":
        hs = size * rng.uniform(0.5, 1.0, 3)
        face = rng.integers(0, 6, n)
        axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
        uvr = rng.uniform(-1, 1, (n, 2))
        p = np.zeros((n, 3))
        nrm = np.zeros((n, 3))
        for ax in range(3):
            m = axis == ax
            o = [k for k in range(3) if k != ax]
            p[m, ax] = sign[m] * hs[ax]
            p[m, o[0]], p[m, o[1]] = uvr[m, 0] * hs[o[0]], uvr[m, 1] * hs[o[1]]
            nrm[m, ax] = sign[m]
        p = p + center
        uv = uvr * 0.5 + 0.5
    elif kind == "torus":
        u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
        R0, r0 = size * 0.75, size * rng.uniform(0.1, 0.3)
        p = np.stack([(R0 + r0 * np.cos(v)) * np.cos(u), r0 * np.sin(v),
                      (R0 + r0 * np.cos(v)) * np.sin(u)], 1)
        nrm = np.stack([np.cos(v) * np.cos(u), np.sin(v), np.cos(v) * np.sin(u)], 1)
        q = random_quats(rng, 1)[0]
        R = _quat_to_mat(q)
        p, nrm = p @ R.T + center, nrm @ R.T
        uv = np.stack([u, v], 1) / (2 * np.pi)
    elif kind == "cylinder":
        u, h = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 1, n)
        r0, hh = size * rng.uniform(0.2, 0.6), size * rng.uniform(1, 2.5)
        p = np.stack([r0 * np.cos(u), -h * hh, r0 * np.sin(u)], 1) + center * [1, 0, 1]
        p[:, 1] += center[1] + size
        nrm = np.stack([np.cos(u), np.zeros(n), np.sin(u)], 1)
        uv = np.stack([u / (2 * np.pi), h], 1)
    elif kind == "poles":
        k = int(rng.integers(2, 7))
        m = n // k
        ps, cs = [], []
        for i in range(k):
            x0 = center + rng.uniform(-size, size, 3) * [1, 0, 1]
            y = -rng.uniform(0, size * rng.uniform(1, 3), m)
            ps.append(np.stack([np.full(m, x0[0]), y, np.full(m, x0[2])], 1))
            cs.append(np.tile(pal[rng.integers(len(pal))], (m, 1)))
        th = size * rng.uniform(0.01, 0.05)
        b.add(np.concatenate(ps), np.tile([1.0, 0, 0, 0], (m * k, 1)), [th, th * 4, th],
              rng.uniform(0.6, 1.0), np.concatenate(cs))
        return
    else:  # vertical plane (a panel / painting)
        uvr = rng.uniform(-1, 1, (n, 2))
        p = center + np.stack([uvr[:, 0] * size, uvr[:, 1] * size * 0.7, np.zeros(n)], 1)
        nrm = np.tile([0, 0, -1.0], (n, 1))
        uv = uvr * 0.5 + 0.5
    col = _texture(rng, p, uv, pal)
    op = rng.uniform(0.5, 1.0) if rng.uniform() < 0.8 else rng.uniform(0.1, 0.5)
    b.surface(p, nrm, col, spacing=spacing, opacity=op, thickness=rng.uniform(0.1, 0.6))


def _quat_to_mat(q) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def random_procedural_scene(seed: int, n_target: int = 30_000, sh_degree: int = 1) -> GaussianScene:
    """A random varied scene of roughly ``n_target`` Gaussians (fewer for sparse families)."""
    rng = np.random.default_rng(seed)
    b = _Builder()
    pal = _palette(rng, rng.choice(["harmonious", "pastel", "saturated", "dark", "grey"]))
    background = rng.choice(["empty", "ground", "cluttered"], p=[0.35, 0.35, 0.3])
    fine = rng.uniform(0.5, 2.0)  # < 1: finer Gaussians (denser), > 1: coarser
    extent = 2.0
    if background in ("ground", "cluttered"):
        ng = int(n_target * rng.uniform(0.2, 0.4))
        r = extent * 1.4 * np.sqrt(rng.uniform(0, 1, ng))
        a = rng.uniform(0, 2 * np.pi, ng)
        p = np.stack([r * np.cos(a), np.zeros(ng), r * np.sin(a)], 1)
        gpal = _palette(rng, rng.choice(["grey", "harmonious", "dark"]))
        col = _texture(rng, p, p[:, [0, 2]] / (2 * extent) + 0.5, gpal)
        b.surface(p, np.tile([0, -1.0, 0], (ng, 1)), col,
                  spacing=extent * 2.5 / np.sqrt(ng) * fine, opacity=rng.uniform(0.8, 1.0))
    if background == "cluttered":
        for wall in range(int(rng.integers(1, 3))):
            nw = int(n_target * 0.12)
            uvr = rng.uniform(-1, 1, (nw, 2))
            ang = rng.uniform(0, 2 * np.pi)
            tang = np.array([np.cos(ang), 0, np.sin(ang)])
            nrm = np.array([-np.sin(ang), 0, np.cos(ang)])
            p = (-nrm * extent * 1.3)[None] + uvr[:, :1] * tang * extent * 1.4 \
                + np.array([0, -1.0, 0]) * (uvr[:, 1:] + 1) * extent * 0.6
            col = _texture(rng, p, uvr * 0.5 + 0.5, _palette(rng, "grey"))
            b.surface(p, np.tile(nrm, (nw, 1)), col, spacing=extent * 2 / np.sqrt(nw) * fine)
    n_obj = int(rng.integers(1, 5)) + (int(rng.integers(4, 14)) if background == "cluttered" else 0)
    for _ in range(n_obj):
        size = extent * (rng.uniform(0.15, 0.6) if n_obj < 5 else rng.uniform(0.05, 0.3))
        c = np.array([rng.uniform(-1, 1) * extent, -size * rng.uniform(0.8, 2.0),
                      rng.uniform(-1, 1) * extent])
        if background == "empty":
            c[1] = -rng.uniform(0, 2) * extent
        _add_shape(b, rng, c, size, pal, n_target * 0.5 / n_obj, fine)
    if rng.uniform() < 0.4:  # sparse fireflies / floaters
        nf = int(rng.integers(30, 400))
        p = rng.uniform([-extent, -2 * extent, -extent], [extent, 0, extent], (nf, 3))
        b.add(p, random_quats(rng, nf), rng.uniform(0.005, 0.03, (nf, 1)) * extent * [1, 1, 1],
              rng.uniform(0.3, 0.9), _palette(rng, "saturated", nf))
    scene = b.build(sh_degree=sh_degree, rng=rng, sh_strength=rng.uniform(0, 0.1))
    scale = float(np.exp(rng.uniform(np.log(0.05), np.log(20.0))))
    scene.means *= scale
    scene.log_scales += np.float32(np.log(scale))
    return scene


def with_background_shell(scene: GaussianScene, seed: int = 0, n: int = 3_000,
                          radius_factor: float = 8.0, center=None,
                          half_diag: float | None = None) -> GaussianScene:
    """``scene`` plus a closed shell of ``n`` flat, nearly opaque Gaussians on a sphere of
    radius ``radius_factor`` × the object's robust half-diagonal around its robust centre
    (or ``center`` / ``half_diag`` when given): every view from inside the shell is covered
    (alpha = 1 everywhere), as in unbounded captures whose background Gaussians fill the frame.
    The shell is textured (smooth noise, a brighter "sky" half towards −y) and has the scene's
    SH degree (higher bands zero). Deterministic in ``seed``. Frame: the scene's own."""
    rng = np.random.default_rng(seed)
    if center is None or half_diag is None:
        lo, hi = scene.robust_bounds()
        center = (lo + hi) / 2.0 if center is None else center
        half_diag = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6) if half_diag is None else half_diag
    R = radius_factor * float(half_diag)
    i = np.arange(n) + 0.5  # Fibonacci sphere + jitter: near-uniform directions
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i + rng.uniform(-0.3, 0.3, n)
    rxy = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    d = np.stack([rxy * np.cos(phi), z, rxy * np.sin(phi)], 1)
    pts = np.asarray(center, np.float64)[None] + R * d
    pal = _palette(rng, rng.choice(["harmonious", "grey", "pastel"]))
    t = _value_noise(d * 3.0, rng.uniform(1.0, 4.0), int(rng.integers(1 << 30)))
    c1, c2 = pal[0], pal[1]
    col = c1[None] * (1 - t[:, None]) + c2[None] * t[:, None]
    sky = np.clip(-d[:, 1], 0.0, 1.0)[:, None]  # −y is up in captures: a brighter upper half
    col = np.clip(col * (1 - 0.5 * sky) + 0.5 * sky * np.array([0.75, 0.85, 1.0]), 0.0, 1.0)
    sig = 1.2 * R * np.sqrt(4.0 * np.pi / n)  # in-plane σ > the point spacing: no gaps
    rot = quat_z_to(d)  # local z → the sphere normal (flat disc tangent to the shell)
    from ..scene import logit, rgb_to_sh_dc

    sh = np.zeros((n, scene.sh.shape[1], 3), np.float32)
    sh[:, 0] = rgb_to_sh_dc(col)
    shell = GaussianScene(pts, rot, np.log(np.tile([sig, sig, 0.05 * sig], (n, 1))),
                          logit(np.full(n, 0.97)), sh)
    cat = lambda a, b: np.concatenate([a, b], 0)  # noqa: E731
    return GaussianScene(cat(scene.means, shell.means), cat(scene.quats, shell.quats),
                         cat(scene.log_scales, shell.log_scales),
                         cat(scene.opacity_logits, shell.opacity_logits), cat(scene.sh, shell.sh))
