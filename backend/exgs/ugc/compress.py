"""UGC pipeline: score → voxel sampling → amplification → SH reduction → .exgs encoding, and
the kept-count search that fills a byte budget. No re-optimization anywhere.

Size ratio = ``source_bytes / len(file)``; a requested ratio is turned into a byte budget once,
by the caller (:func:`exgs.pipeline.byte_budget`). ``source_bytes`` is what the caller states (the CLI
passes the input file's size); when not given it is the size of the scene written as an INRIA
PLY with its own SH degree and normals: ``4·(14 + 3·(deg+1)²)`` bytes per Gaussian (248 B for
SH degree 3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import UsageError
from ..profiling import stage
from ..scene import GaussianScene, sh_coeffs_for_degree

PRUNE_METHODS = ("ugc", "score", "opacity", "random")


@dataclass
class CompressResult:
    """``scene``: the decoded content of ``data`` (pruned, amplified, quantized; significance
    order), ``data``: the bytes of the .exgs file, ``stats``: JSON-able figures, ``score``:
    the significance [N] of the input's Gaussians (pass it back as ``score=`` to re-compress
    the same scene without re-rendering)."""

    scene: GaussianScene
    data: bytes
    stats: dict = field(default_factory=dict)
    score: np.ndarray | None = None


def inria_ply_bytes(n: int, sh_degree: int) -> int:
    """Size of an INRIA PLY (with normals) of ``n`` Gaussians at ``sh_degree`` (+ ~1 kB
    header): 4·(14 + 3K) bytes each."""
    return n * 4 * (14 + 3 * sh_coeffs_for_degree(sh_degree)) + 1024


def adaptive_strength(kept_fraction: float) -> float:
    """Amplification strength λ = (1 − f)² for kept fraction f: gentle when little is pruned
    (f = 0.5 → 0.25, where enlarging survivors blurs detail and costs SSIM), full under
    extreme pruning (f = 0.1 → 0.81, f = 0.01 → 0.98). Chosen on held-out views of
    playbot_lod4 (see docs/ugc.md)."""
    return float(np.clip(1.0 - kept_fraction, 0.0, 1.0) ** 2)


def _emit(progress, frac, msg):
    if progress is not None:
        progress(float(frac), msg)


def select(scene: GaussianScene, score: np.ndarray, count: int, method: str = "ugc", *,
           voxel: bool = True, voxel_size: float | None = None, min_voxel_count: int = 5,
           voxel_mass_share: float = 0.5, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Indices of ``count`` Gaussians, most significant first, by ``method``:
    ``ugc`` (voxel sampling on the score, or plain top-k if ``voxel`` is False), ``score``
    (top-k by score), ``opacity`` (top-k by opacity), ``random`` (uniform, seeded)."""
    from .voxel import voxel_sample

    n = len(scene)
    count = int(min(max(count, 0), n))
    if method == "ugc" and voxel:
        return voxel_sample(scene.means, score, count, voxel_size=voxel_size,
                            min_count=min_voxel_count, mass_share=voxel_mass_share)
    if method in ("ugc", "score"):
        return np.argsort(-score, kind="stable")[:count], {}
    if method == "opacity":
        return np.argsort(-scene.opacity_logits, kind="stable")[:count], {}
    if method == "random":
        rng = np.random.default_rng(seed)
        idx = rng.choice(n, count, replace=False)
        return idx[np.argsort(-score[idx], kind="stable")], {}
    raise UsageError(f"unknown pruning method {method!r} (expected one of {PRUNE_METHODS})")


def compress(scene: GaussianScene, *, budget_bytes: float | None = None,
             keep_target: float | int | None = None,
             sh_degree: int = 0, cameras=None, source_bytes: int | None = None,
             progress: Callable | None = None, views: int = 24,
             view_size: tuple[int, int] = (320, 240), up="-y",
             volume_beta: float | None = None, method: str = "ugc", voxel: bool = True,
             voxel_size: float | None = None, min_voxel_count: int = 5,
             voxel_mass_share: float = 0.5, amplify: bool = True,
             amplify_strength: float | None = None,
             colour_strength: float = 0.5, distill: bool = True,
             position_bits: int = 16, zstd_level: int = 19, device: str = "auto",
             score: np.ndarray | None = None, seed: int = 0,
             shot: list | None = None) -> CompressResult:
    """Compress ``scene`` into a progressive .exgs (see :mod:`exgs.ugc`).

    Give ``budget_bytes`` (the file is the largest kept count whose bytes fit in it; a ratio
    R is the budget ``source_bytes / R``, converted once by :func:`exgs.pipeline.byte_budget`)
    or ``keep_target`` (how much to keep: a fraction in (0, 1] or a count ≥ 1); neither →
    keep 10 %. ``cameras`` — scoring views (training cameras, scored with their long side
    reduced to ``max(view_size)``); default ``views`` orbit views of ``view_size`` around
    the scene with ``up``. ``shot`` — the cameras the file will be rendered from (an artist's
    camera path): scored *in addition* to those views, at the same reduced resolution, so
    what the shot sees keeps its share of the budget. ``score`` — precomputed significance
    [N] (skips rendering).
    ``progress(fraction, message)`` is called along the way. Refinement of the survivors
    runs after this, on the chosen file (:func:`exgs.ugc.refine_file.refine_result`).
    """
    from ..io.exgs import decode_exgs, encode_exgs, resolve_count
    from ..cameras import fit_cameras
    from .amplify import amplify as amplify_fn
    from .sh import reduce_sh
    from .significance import default_views, significance

    t_start = time.perf_counter()
    n = len(scene)
    if budget_bytes is not None and keep_target is not None:
        raise UsageError("give ratio or keep, not both")
    if budget_bytes is not None and not (np.isfinite(budget_bytes) and budget_bytes > 0):
        raise UsageError(f"the byte budget must be a positive number, got {budget_bytes}")
    if not isinstance(sh_degree, (int, np.integer)) or not 0 <= sh_degree <= 3:
        raise UsageError(f"sh_degree must be 0..3, got {sh_degree!r}")
    if sh_degree > scene.sh_degree:
        raise UsageError(f"sh_degree {sh_degree} exceeds the scene's SH degree "
                         f"{scene.sh_degree}")
    if not (isinstance(voxel_mass_share, (int, float)) and 0.0 <= voxel_mass_share <= 1.0):
        raise UsageError(f"voxel_mass_share must be in [0, 1], got {voxel_mass_share!r}")
    if method not in PRUNE_METHODS:
        raise UsageError(f"unknown pruning method {method!r} (expected one of {PRUNE_METHODS})")
    if n == 0:
        raise UsageError("the scene has no Gaussians")
    if budget_bytes is None and keep_target is None:
        keep_target = 0.1
    src_bytes = int(source_bytes) if source_bytes else inria_ply_bytes(n, scene.sh_degree)
    src_kind = "stated" if source_bytes else "INRIA PLY estimate"

    # ---- significance
    t0 = time.perf_counter()
    # training cameras (and the shot) are scored at reduced resolution (long side ≤
    # max(view_size)): the ranking barely changes and 200 full-HD views would take long
    cap = max(view_size)
    cameras = (default_views(scene, views, view_size, up=up) if cameras is None
               else fit_cameras(cameras, cap))
    shot = fit_cameras(shot or [], cap)
    cameras = list(cameras) + shot
    if not cameras:
        raise UsageError("no scoring cameras")
    if score is None:
        _emit(progress, 0.0, f"scoring {n:,} Gaussians over {len(cameras)} views")

        def cb(done, total):
            _emit(progress, 0.75 * done / total, f"scoring view {done}/{total}")

        with stage("score"):
            score = significance(scene, cameras, volume_beta=volume_beta, device=device,
                                 progress=cb)
    score = np.asarray(score, np.float64)
    if score.shape != (n,):
        raise UsageError(f"score must have shape ({n},), got {score.shape}")
    t_score = time.perf_counter() - t0

    t0 = time.perf_counter()
    with stage("reduce_sh"):
        base = reduce_sh(scene, int(sh_degree), cameras, distill=distill)
    settings = {"method": method, "voxel": bool(voxel), "voxel_size": voxel_size,
                "min_voxel_count": min_voxel_count, "voxel_mass_share": voxel_mass_share,
                "amplify": bool(amplify and method == "ugc"),
                "amplify_strength": ("adaptive (1-f)^2" if amplify_strength is None
                                     else amplify_strength),
                "colour_strength": colour_strength, "sh_degree": int(sh_degree),
                "distill": bool(distill), "volume_beta": volume_beta,
                "score_views": len(cameras), "position_bits": position_bits,
                "zstd_level": zstd_level, "score": "mean alpha*T over all pixels of all views"}
    if shot:
        settings["shot_views"] = len(shot)
    source = {"bytes": src_bytes, "bytes_kind": src_kind, "gaussians": n,
              "sh_degree": scene.sh_degree}
    trials: list[tuple[int, int]] = []

    def build(count: int):
        with stage("select"):
            idx, vinfo = select(scene, score, count, method, voxel=voxel,
                                voxel_size=voxel_size, min_voxel_count=min_voxel_count,
                                voxel_mass_share=voxel_mass_share,
                                seed=seed)
        with stage("amplify"):
            if amplify and method == "ugc":
                lam = adaptive_strength(len(idx) / n) if amplify_strength is None \
                    else float(amplify_strength)
                pruned, ainfo = amplify_fn(base, idx, strength=lam,
                                           colour_strength=colour_strength)
                ainfo["strength"] = lam
            else:
                pruned, ainfo = base.subset(idx), {}
        stats_in = {"kept": len(idx), "kept_fraction": len(idx) / n}
        with stage("encode"):
            data = encode_exgs(pruned, position_bits=position_bits, zstd_level=zstd_level,
                               source=source, settings=settings, stats=stats_in)
        trials.append((len(idx), len(data)))
        return data, {"voxel": vinfo, "amplify": ainfo}

    if keep_target is not None:
        count = resolve_count(keep_target, n)
        _emit(progress, 0.8, f"encoding {count:,} Gaussians")
        data, info = build(count)
    else:
        data, info, count = _search_budget(build, n, float(budget_bytes), progress)
    t_build = time.perf_counter() - t0

    with stage("decode"):
        result_scene = decode_exgs(data)
    size = len(data)
    stats = {"source_gaussians": n, "kept": len(result_scene),
             "kept_fraction": len(result_scene) / n, "sh_degree": int(sh_degree),
             "file_bytes": size, "bytes_per_gaussian": size / max(len(result_scene), 1),
             "source_bytes": src_bytes, "source_bytes_kind": src_kind,
             "ratio": src_bytes / size, "budget_bytes": budget_bytes,
             "requested_keep": keep_target, "method": method, "score_views": len(cameras),
             "shot_views": len(shot),
             "score_seconds": t_score, "build_seconds": t_build,
             "seconds": time.perf_counter() - t_start, "encode_trials": len(trials),
             "voxel": info.get("voxel", {}), "amplify": info.get("amplify", {})}
    _emit(progress, 1.0, f"done: {len(result_scene):,} Gaussians, {size:,} bytes")
    return CompressResult(scene=result_scene, data=data, stats=stats, score=score)


def _search_budget(build, n: int, target: float, progress):
    """Largest kept count whose file fits in ``target`` bytes (size ≈ a + b·count: secant
    steps from a first guess, 2–4 encodes). Raises UsageError if even 1 Gaussian is too big."""
    best = None  # (count, data, info)
    lo_fail = None  # smallest count known to be too big
    count = int(np.clip(target / 14.0, 1, n))
    overhead = 1500.0
    for it in range(6):
        _emit(progress, 0.8 + 0.03 * it, f"encoding {count:,} Gaussians (size search)")
        data, info = build(count)
        size = len(data)
        if size <= target:
            if best is None or count > best[0]:
                best = (count, data, info)
            if count == n or size >= 0.985 * target:
                break
        else:
            lo_fail = count if lo_fail is None else min(lo_fail, count)
            if count == 1:
                raise UsageError(f"ratio unreachable: even one Gaussian needs {size} bytes "
                                 f"(> the {target:.0f}-byte budget)")
        per = max((size - overhead) / count, 1.0)
        nxt = int((target - overhead) / per * (0.995 if size > target else 1.0))
        nxt = max(1, min(n, nxt))
        if lo_fail is not None:
            nxt = min(nxt, lo_fail - 1)
        if best is not None:
            nxt = max(nxt, best[0] + 1) if nxt > best[0] else nxt
        if nxt == count or (best is not None and nxt <= best[0]):
            if best is not None:
                break
            nxt = max(1, int(count * 0.9))
        count = nxt
    if best is None:
        # fall back: shrink geometrically until it fits
        while count > 1:
            count = max(1, int(count * 0.7))
            data, info = build(count)
            if len(data) <= target:
                best = (count, data, info)
                break
        if best is None:
            raise UsageError(f"ratio unreachable within the {target:.0f}-byte budget")
    return best[1], best[2], best[0]
