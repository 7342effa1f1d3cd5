"""The views a per-scene painter delta is trained and judged on (:mod:`exgs.painter.adapt`):
cameras (the scene's training cameras, or seeded orbits of varied radius and focal length)
and (clean, degraded) render pairs.
"""

from __future__ import annotations

import numpy as np


def adaptation_cameras(scene, cfg, cameras=None) -> list:
    """``cfg.views`` cameras: the given ones (resized to ``cfg.size`` long side, evenly
    chosen, shuffled with the seed) or seeded orbits of varied radius and focal length."""
    from ..cameras import orbit_for_scene

    rng = np.random.default_rng([cfg.seed, 8])
    out = []
    if cameras:
        cams = list(cameras)
        idx = np.unique(np.linspace(0, len(cams) - 1, min(cfg.views, len(cams)))
                        .round().astype(int))
        for i in idx:
            c = cams[int(i)]
            s = cfg.size / max(c.width, c.height)
            out.append(c.resized(max(8, round(c.width * s)), max(8, round(c.height * s))))
        order = rng.permutation(len(out))
        out = [out[i] for i in order]
        if len(out) >= cfg.views:
            if getattr(cfg, "judge_pick", "random") == "isolated":
                out = isolated_last(out, cfg.holdout)
            return out
    # orbits (all of them without cameras; the rest when too few cameras were given)
    cams = out
    for i in range(cfg.views - len(out)):
        el = rng.uniform(-10, 60)
        cams += orbit_for_scene(scene, 1, cfg.size, cfg.size, up=cfg.up,
                                distance=rng.uniform(0.35, 1.3), fov_x_deg=rng.uniform(20, 70),
                                seed=int(rng.integers(1 << 30)), elevation_deg=(el, el),
                                azimuth_offset_deg=rng.uniform(0, 360))
    return cams


def camera_distance(a, b, scale: float) -> float:
    """Dissimilarity of two views: centre distance / ``scale`` + angle between the viewing
    directions / π + |log(fov_a / fov_b)|."""
    da = a.camera_to_world[:3, 2]
    db = b.camera_to_world[:3, 2]
    cos = float(np.dot(da, db) / max(np.linalg.norm(da) * np.linalg.norm(db), 1e-12))
    return (float(np.linalg.norm(a.position - b.position)) / max(scale, 1e-12)
            + float(np.arccos(np.clip(cos, -1.0, 1.0))) / np.pi
            + abs(float(np.log(a.fov_x / b.fov_x))))


def isolated_last(cams: list, k: int) -> list:
    """``cams`` reordered so that the last ``k`` are the views least like the others
    (greedily: the one whose nearest remaining view is farthest, :func:`camera_distance`,
    moved to the end, k times). Deciding on views unlike every training view is the
    conservative estimate: views interleaved with training views (an evenly spaced orbit)
    overstated a delta's gain (statue_st_peter, docs/painter.md)."""
    n = len(cams)
    if k <= 0 or n <= k:
        return list(cams)
    pos = np.array([c.position for c in cams])
    scale = float(np.median(np.linalg.norm(pos - pos.mean(0), axis=1))) or 1.0
    d = np.array([[camera_distance(a, b, scale) if i != j else np.inf
                   for j, b in enumerate(cams)] for i, a in enumerate(cams)])
    train = list(range(n))
    hold: list[int] = []
    for _ in range(k):
        sub = d[np.ix_(train, train)]
        i = train[int(np.argmax(sub.min(1)))]
        train.remove(i)
        hold.append(i)
    return [cams[i] for i in train] + [cams[i] for i in hold]


def judging_cameras(cams, cfg) -> list:
    """The held-out (switch-off decision) cameras: ``cams`` resized to ``cfg.judge_size`` on
    the long side (0 = 1.5 × ``cfg.size``, a multiple of 8). Judging at the size frames are
    restored at matters: the painter's features are in pixels (docs/painter.md)."""
    js = int(getattr(cfg, "judge_size", 0) or 0)
    if js <= 0:
        js = int(round(1.5 * cfg.size / 8)) * 8
    out = []
    for c in cams:
        s = js / max(c.width, c.height)
        out.append(c.resized(max(8, round(c.width * s)), max(8, round(c.height * s))))
    return out


def held_out_views(full_scene, cfg, cameras=None, shot=None) -> tuple[list, list]:
    """(held-out cameras at the judging size, training cameras) of a delta or a verdict:
    the last ``cfg.holdout`` of :func:`adaptation_cameras` hold out and the others train —
    unless ``shot`` (the cameras the file will be rendered from, an artist's camera path) is
    given: then ``cfg.holdout`` frames spread evenly over the shot are judged instead, so
    the do-no-harm verdict, the file's own setting and a delta's switch-off are decided on
    the frames that will be rendered."""
    from ..cameras import even_pick

    cams = adaptation_cameras(full_scene, cfg, cameras)
    hold = even_pick(shot, cfg.holdout) if shot else cams[-cfg.holdout:]
    return judging_cameras(hold, cfg), cams[:-cfg.holdout]


def camera_key(cam) -> tuple:
    """Hashable identity of a camera's image (size, intrinsics, pose)."""
    return (cam.width, cam.height, float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy),
            np.asarray(cam.world_to_camera, np.float64).tobytes())


def render_pairs(full_scene, pruned_scene, cameras, baseline_scene=None, progress=None,
                 frac=(0.0, 1.0), clean_cache: dict | None = None) -> list[dict]:
    """Per camera: clean (full scene) and degraded (pruned scene) renders over black, and the
    baseline scene's render when given. Arrays: rgb [H,W,3] float32, alpha [H,W].
    ``clean_cache``: {:func:`camera_key`: (rgb, alpha)} of full-scene renders, read and
    filled (one compression renders the same views of the full scene for its verdict and
    every delta candidate; the full scene is what is expensive to render)."""
    from ..render import render

    out = []
    for i, cam in enumerate(cameras):
        key = camera_key(cam) if clean_cache is not None else None
        if key is not None and key in clean_cache:
            c_rgb, c_alpha = clean_cache[key]
        else:
            c = render(full_scene, cam, device="cpu")
            c_rgb, c_alpha = c.rgb.astype(np.float32), c.alpha.astype(np.float32)
            if key is not None:
                clean_cache[key] = (c_rgb, c_alpha)
        d = render(pruned_scene, cam, device="cpu")
        item = {"clean": c_rgb, "clean_alpha": c_alpha,
                "rgb": d.rgb.astype(np.float32), "alpha": d.alpha.astype(np.float32)}
        if baseline_scene is not None:
            b = render(baseline_scene, cam, device="cpu")
            item["base_rgb"] = b.rgb.astype(np.float32)
            item["base_alpha"] = b.alpha.astype(np.float32)
        out.append(item)
        if progress is not None:
            progress(frac[0] + (frac[1] - frac[0]) * (i + 1) / len(cameras),
                     f"adapt: rendering view {i + 1}/{len(cameras)}")
    return out
