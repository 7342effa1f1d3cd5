"""Training pairs for GaussPainter: (render of a pruned scene, render of the full scene).

A *pair file* ``<cache>/<scene>/<view>.npz`` holds one view of one scene:

==============  ================  =============================================================
key             shape / dtype     meaning
==============  ================  =============================================================
``clean_rgb``   [H,W,3] float16   full-scene render, display sRGB over black (premultiplied)
``clean_alpha`` [H,W]   float16   its alpha (1 − transmittance)
``deg_rgb``     [K,H,W,3] f16     renders of the same view after pruning to ``keeps[k]``
``deg_alpha``   [K,H,W] float16
``keeps``       [K] float32       kept fraction of Gaussians (0.005 … 0.3)
==============  ================  =============================================================

Renders use :func:`exgs.render.render` (black background; other backgrounds are composited at
training time from rgb + alpha, so one cache serves every background colour). Pruning uses
``exgs.ugc.compress(scene, keep_target=f).scene`` when that module is importable (``prune="auto"``),
otherwise a simple opacity × projected-area score (``prune="simple"``).

Scene specs (``--scenes``): ``playbot_lod2`` / ``playbot_lod3`` / ``playbot_lod4`` (PLY files in
the scenes directory), ``garden`` (the SfM points of garden_sfm_points.npz turned into isotropic
Gaussians) and ``proc:A-B`` (procedural scenes with seeds A..B-1, see
:mod:`exgs.painter.procedural`). All randomness is seeded from (seed, scene, view).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..scene import GaussianScene, logit, rgb_to_sh_dc

DEFAULT_SCENES_DIR = "/work/shared/scenes"


# ------------------------------------------------------------------------------ scenes
def _knn_mean_dist(pts: np.ndarray, k: int = 3) -> np.ndarray:
    """[N] mean distance to the k nearest other points (exact, chunked torch; ~1–2 CPU-min
    for 140k points)."""
    import torch

    p = torch.from_numpy(pts)
    nn_d = torch.empty(len(pts))
    for i in range(0, len(pts), 2048):
        dist = torch.cdist(p[i:i + 2048], p)
        nn_d[i:i + 2048] = dist.topk(k + 1, largest=False).values[:, 1:].mean(1)
    return nn_d.numpy()


def garden_scene(npz_path: str | os.PathLike, opacity: float = 0.9,
                 cache_dir: str | os.PathLike | None = None) -> GaussianScene:
    """SfM points → isotropic Gaussians: σ = ½ · mean distance to the 3 nearest neighbours
    (the kNN distances are cached in ``cache_dir`` when given)."""
    d = np.load(npz_path)
    pts = np.asarray(d["means3d"], np.float32)
    cols = np.asarray(d["colors"], np.float32) / 255.0
    cache = Path(cache_dir) / "garden_knn.npy" if cache_dir else None
    if cache is not None and cache.exists() and len(np.load(cache)) == len(pts):
        nn_d = np.load(cache)
    else:
        nn_d = _knn_mean_dist(pts)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, nn_d)
    sig = np.clip(0.5 * nn_d, 1e-4, np.quantile(nn_d, 0.98))
    n = len(pts)
    return GaussianScene(pts, np.tile([1.0, 0, 0, 0], (n, 1)),
                         np.log(np.repeat(sig[:, None], 3, 1)), logit(np.full(n, opacity)),
                         rgb_to_sh_dc(cols)[:, None, :])


def garden_cameras(npz_path):
    from ..cameras import Camera

    d = np.load(npz_path)
    w, h = int(d["width"]), int(d["height"])
    cams = []
    for i in range(len(d["viewmats"])):
        K = d["Ks"][i]
        cams.append(Camera(w, h, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                           np.asarray(d["viewmats"][i], np.float64), name=f"garden_{i}"))
    return cams


def parse_scene_specs(specs: list[str]) -> list[str]:
    """Expand ``proc:A-B`` into ``proc:A`` … ``proc:B-1``; validate names."""
    out = []
    for s in specs:
        for part in s.split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith("proc:"):
                rng = part[5:]
                if "-" in rng:
                    a, b = (int(x) for x in rng.split("-"))
                    out += [f"proc:{k}" for k in range(a, b)]
                else:
                    out.append(f"proc:{int(rng)}")
            elif part in ("garden", "demo", "playbot_lod2", "playbot_lod3", "playbot_lod4") \
                    or part.endswith(".ply") or _is_real_spec(part):
                out.append(part)
            else:
                raise UsageError(f"unknown training scene {part!r} (use playbot_lodN, garden, demo, "
                                 "proc:A-B, real:NAME[+shell] (NAME in "
                                 f"{', '.join(REAL_SCENES)}) or a .ply path)")
    return out


#: real captures in ``<scenes_dir>/real`` (see its README for credits): file, scene up axis
REAL_SCENES = {
    **{f"statue_{n}": (f"real/statue_{n}.sog", "-y") for n in
       ("angel", "angel_candlestick", "angel_kneeling", "massa", "narcissus", "st_peter",
        "trumpet")},
    "aerial_t3": ("real/aerial_t3.spz", "-z"),  # checked: −z looks down onto the roofs
    "flowers": ("real/flowers.lod-sog", "-y"),  # needs the LOD SOG reader (exgs.io)
}


def _is_real_spec(spec: str) -> bool:
    return spec.startswith("real:") and spec[5:].removesuffix("+shell") in REAL_SCENES


def scene_frame(spec: str, scene: GaussianScene) -> dict:
    """Where views of ``spec`` look: {"center" [3], "half_diag", "up"} — the robust bounds of
    the *object* (for ``+shell`` scenes: without the shell, whose Gaussians sit outside
    them) and the scene's up axis (−y unless :data:`REAL_SCENES` says otherwise)."""
    up = REAL_SCENES[spec[5:].removesuffix("+shell")][1] if _is_real_spec(spec) else "-y"
    n = getattr(scene, "object_count", None)
    obj = scene.subset(np.arange(int(n))) if n is not None else scene
    lo, hi = obj.robust_bounds()
    return {"center": (lo + hi) / 2.0, "half_diag": max(float(np.linalg.norm(hi - lo)) / 2, 1e-6),
            "up": up}


def load_scene(spec: str, scenes_dir: str | os.PathLike = DEFAULT_SCENES_DIR,
               cache_dir: str | os.PathLike | None = None) -> GaussianScene:
    """The scene of a spec (see :func:`parse_scene_specs`). ``real:NAME+shell``: the real
    capture plus a generated background shell (:func:`procedural.with_background_shell`,
    full coverage); its attribute ``object_count`` holds the capture's own count (the
    capture's Gaussians come first)."""
    from .procedural import random_procedural_scene, with_background_shell

    if _is_real_spec(spec):
        from ..io import read_scene

        name = spec[5:].removesuffix("+shell")
        scene = read_scene(Path(scenes_dir) / REAL_SCENES[name][0])
        if spec.endswith("+shell"):
            n = len(scene)
            scene = with_background_shell(scene, seed=_seed(spec) % (1 << 31))
            scene.object_count = n
        return scene
    if spec.startswith("proc:"):
        return random_procedural_scene(int(spec[5:]))
    if spec == "demo":  # exgs.synth.demo_scene: never used for training (a held-out scene)
        from ..synth import demo_scene

        return demo_scene()
    if spec == "garden":
        return garden_scene(Path(scenes_dir) / "garden_sfm_points.npz", cache_dir=cache_dir)
    from ..io import read_scene

    path = Path(spec) if spec.endswith(".ply") else Path(scenes_dir) / f"{spec}.ply"
    return read_scene(path)


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def random_views(scene: GaussianScene, spec: str, count: int, size: int, seed: int,
                 scenes_dir=DEFAULT_SCENES_DIR) -> list:
    """``count`` varied cameras of ``size``×``size`` px: orbit distance 0.35–1.5, fov 30–80°,
    elevation −10–65°, up = −y; for the garden, its real cameras with random zoom and shift."""
    from ..cameras import Camera, orbit_for_scene

    rng = np.random.default_rng(_seed(seed, spec, "views"))
    cams = []
    if _is_real_spec(spec):  # the capture's own up axis, views framing the object
        return frame_views(scene_frame(spec, scene), count, size, int(rng.integers(1 << 30)))
    if spec == "garden":
        real = garden_cameras(Path(scenes_dir) / "garden_sfm_points.npz")
        for i in range(count):
            c = real[i % len(real)]
            zoom = rng.uniform(1.0, 2.5) * size / min(c.width, c.height)
            cx = c.cx * zoom + rng.uniform(-0.3, 0.3) * c.width * zoom
            cy = c.cy * zoom + rng.uniform(-0.2, 0.2) * c.height * zoom
            cams.append(Camera(size, size, c.fx * zoom, c.fy * zoom,
                               cx - (c.width * zoom - size) / 2, cy - (c.height * zoom - size) / 2,
                               c.world_to_camera, name=f"v{i}"))
        return cams
    for i in range(count):
        el = rng.uniform(-10, 65)
        cams += orbit_for_scene(scene, 1, size, size, up="-y", distance=rng.uniform(0.35, 1.5),
                                fov_x_deg=rng.uniform(30, 80), seed=int(rng.integers(1 << 30)),
                                elevation_deg=(el, el), azimuth_offset_deg=rng.uniform(0, 360))
    return cams


def frame_views(frame: dict, count: int, size: int, seed: int, distance=(0.3, 1.3),
                fov=(25.0, 75.0), elevation=(-5.0, 60.0), width: int | None = None) -> list:
    """``count`` cameras (``width`` or ``size`` × ``size`` px) orbiting a :func:`scene_frame`:
    distance (× the framing radius, 1 = the bounding sphere fills the narrower fov), horizontal
    fov (degrees) and elevation (degrees above the plane normal to ``frame["up"]``) drawn
    uniformly from the ranges, azimuth uniform; the kinds of views artists render, from
    close-ups that fill the frame to whole-object shots. Deterministic in ``seed``."""
    from ..cameras import orbit_cameras

    rng = np.random.default_rng(seed)
    w = width or size
    cams = []
    for i in range(count):
        fx = rng.uniform(*fov)
        narrow = min(math.radians(fx), 2 * math.atan(math.tan(math.radians(fx) / 2) * size / w))
        r = rng.uniform(*distance) * frame["half_diag"] / math.sin(narrow / 2)
        el = rng.uniform(*elevation)
        c = orbit_cameras(frame["center"], r, 1, w, size, up=frame["up"], elevation_deg=(el, el),
                          fov_x_deg=fx, seed=None, azimuth_offset_deg=rng.uniform(0, 360))[0]
        c.name = f"v{i}"
        cams.append(c)
    return cams


def significance_views(frame: dict) -> list:
    """24 orbit views (320×240) of a :func:`scene_frame` for UGC scoring: inside a background
    shell, unlike UGC's default views around the robust bounds."""
    return frame_views(frame, 24, 240, seed=0, distance=(0.8, 0.8), fov=(50, 50),
                       elevation=(10, 40), width=320)


def get_renderer():
    """:func:`exgs.render.render`."""
    from ..render import render

    return render


# ------------------------------------------------------------------------------ pruning
from .pruning import prune, prune_many, refine_many, simple_prune, ugc_available  # noqa: E402,F401


# ------------------------------------------------------------------------------ pair cache
@dataclass
class PairSpec:
    views: int = 8  #: views per scene
    size: int = 192  #: render size (square)
    keeps_per_view: int = 3  #: pruned renders per view
    keep_range: tuple = (0.005, 0.30)
    prune: str = "auto"
    seed: int = 0
    real_view_factor: int = 3  #: real scenes (playbot, garden) get this many times more views
    refine_steps: int = 0  #: > 0: real scenes also get renders after this many refinement
    #: steps of each pruned scene (issue 10; ``deg_*`` then holds 2K entries, ``refined`` [K])


def scene_keeps(spec: str, ps: PairSpec) -> list[float]:
    """Kept fractions used for a scene: log-uniform, stratified, deterministic."""
    rng = np.random.default_rng(_seed(ps.seed, spec, "keeps"))
    lo, hi = (math.log(x) for x in ps.keep_range)
    k = ps.keeps_per_view
    u = (np.arange(k) + rng.uniform(0, 1, k)) / k
    return [float(math.exp(lo + (hi - lo) * x)) for x in u]


def build_scene_pairs(spec: str, cache_dir: str | os.PathLike, ps: PairSpec,
                      scenes_dir=DEFAULT_SCENES_DIR, log=print) -> list[Path]:
    """Render and cache every pair of one scene (skips views already cached). Returns files."""
    from ..fsutil import atomic_path

    render = get_renderer()

    out_dir = Path(cache_dir) / spec.replace(":", "_").replace("/", "_")
    n_views = ps.views if spec.startswith("proc:") else ps.views * ps.real_view_factor
    files = [out_dir / f"v{i:03d}.npz" for i in range(n_views)]
    if all(f.exists() for f in files):
        return files
    scene = load_scene(spec, scenes_dir, Path(cache_dir).parent)  # shared by pruning modes
    cams = random_views(scene, spec, n_views, ps.size, ps.seed, scenes_dir)
    keeps = scene_keeps(spec, ps)
    teachers, up = None, "-y"
    if _is_real_spec(spec):
        fr = scene_frame(spec, scene)
        up = fr["up"]
        pruned = prune_many(scene, keeps, ps.prune, cameras=significance_views(fr), up=up)
        teachers = frame_views(fr, 24, 128, seed=_seed(ps.seed, spec, "teach") % (1 << 31))
    else:
        pruned = prune_many(scene, keeps, ps.prune)
    refined = [False] * len(pruned)
    if ps.refine_steps > 0 and not spec.startswith("proc:") and ps.prune == "ugc":
        pruned = pruned + refine_many(scene, pruned, ps.refine_steps, teachers, up, ps.seed)
        refined += [True] * len(keeps)
        keeps = keeps + keeps
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, cam in zip(files, cams):
        if f.exists():
            continue
        r = render(scene, cam, device="cpu")
        degs = [render(p, cam, device="cpu") for p in pruned]
        with atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, clean_rgb=r.rgb.astype(np.float16),
                         clean_alpha=r.alpha.astype(np.float16),
                         deg_rgb=np.stack([d.rgb for d in degs]).astype(np.float16),
                         deg_alpha=np.stack([d.alpha for d in degs]).astype(np.float16),
                         keeps=np.asarray(keeps, np.float32), refined=np.asarray(refined))
    return files


def load_pairs(files) -> list[dict]:
    out = []
    for f in files:
        with np.load(f) as d:
            out.append({k: d[k] for k in d.files})
    return out


# ------------------------------------------------------------------------------ sampling
class PairSampler:
    """Random training crops with augmentation from cached pairs.

    ``sample(rng, batch, crop)`` → (deg_rgb, deg_alpha, clean_rgb, clean_alpha) float32
    arrays [B,crop,crop,3], [B,crop,crop], [B,crop,crop,3], [B,crop,crop]. Augmentations: random crop, horizontal
    flip, 90° rotation (p = 0.15), colour matrix near identity + channel permutation + gain
    (applied to premultiplied colour, so rgb/alpha stay consistent), a random background
    colour composited with each render's own alpha (p = ``p_background``), and identity pairs
    (degraded = clean, p = ``p_identity``) that teach the gate to leave complete renders alone.
    """

    def __init__(self, pairs: list[dict], p_identity: float = 0.1, p_background: float = 0.0):
        self.pairs = pairs
        self.p_identity = p_identity
        self.p_background = p_background

    def sample(self, rng: np.random.Generator, batch: int, crop: int, with_keep: bool = False):
        """The 4 arrays above; with ``with_keep`` also the crops' kept fractions [B] float32
        (1 for identity pairs)."""
        xs, als, ys, cas, kf = [], [], [], [], []
        for _ in range(batch):
            p = self.pairs[rng.integers(len(self.pairs))]
            H, W = p["clean_alpha"].shape
            c = min(crop, H, W)
            y0, x0 = rng.integers(0, H - c + 1), rng.integers(0, W - c + 1)
            sl = (slice(y0, y0 + c), slice(x0, x0 + c))
            cr = p["clean_rgb"][sl].astype(np.float32)
            ca = p["clean_alpha"][sl].astype(np.float32)
            if rng.uniform() < self.p_identity:
                dr, da = cr.copy(), ca.copy()
                kf.append(1.0)
            else:
                k = rng.integers(len(p["keeps"]))
                kf.append(float(p["keeps"][k]))
                dr = p["deg_rgb"][k][sl].astype(np.float32)
                da = p["deg_alpha"][k][sl].astype(np.float32)
            # colour augmentation on premultiplied colour (linear → consistent with alpha)
            if rng.uniform() < 0.7:
                M = np.eye(3)[rng.permutation(3)] if rng.uniform() < 0.5 else np.eye(3)
                M = M + rng.normal(0, 0.08, (3, 3))
                M = M * rng.uniform(0.7, 1.3)
                cr, dr = cr @ M.T.astype(np.float32), dr @ M.T.astype(np.float32)
            if rng.uniform() < self.p_background:
                bg = rng.uniform(0, 1, 3).astype(np.float32) * (rng.uniform() < 0.8)
                cr = cr + (1 - ca[..., None]) * bg
                dr = dr + (1 - da[..., None]) * bg
            st = np.concatenate([dr, da[..., None], cr, ca[..., None]], -1)
            if rng.uniform() < 0.5:
                st = st[:, ::-1]
            if rng.uniform() < 0.15:
                st = np.rot90(st, int(rng.integers(1, 4)))
            st = np.clip(st, 0.0, 1.0)
            if c < crop:  # pad small renders with black/empty
                st = np.pad(st, ((0, crop - c), (0, crop - c), (0, 0)))
            xs.append(st[..., :3])
            als.append(st[..., 3])
            ys.append(st[..., 4:7])
            cas.append(st[..., 7])
        out = tuple(np.ascontiguousarray(np.stack(v)) for v in (xs, als, ys, cas))
        return out + (np.asarray(kf, np.float32),) if with_keep else out
