"""Pruned versions of a scene for painter training pairs: UGC (training-free) and UGC
followed by refinement (issue 10, :func:`exgs.ugc.refine.refine`), or a simple stand-in.

All functions take and return :class:`exgs.scene.GaussianScene` (world units, as read)."""

from __future__ import annotations

import hashlib

import numpy as np

from ..scene import GaussianScene


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def simple_prune(scene: GaussianScene, keep: float, seed: int = 0) -> GaussianScene:
    """A stand-in for UGC: sample ``keep`` of the Gaussians with probability ∝ √(opacity ×
    σ-area) (Gumbel top-k, seeded), then amplify the kept σ so that the kept projected area
    makes up ~70 % of the original total (factor clipped to [1, 4])."""
    from ..scene import sigmoid

    n = len(scene)
    k = max(1, int(round(keep * n)))
    s = np.exp(scene.log_scales.astype(np.float64))
    area = np.prod(np.sort(s, 1)[:, 1:], 1)  # the two largest axes
    score = sigmoid(scene.opacity_logits).astype(np.float64) * area
    rng = np.random.default_rng(_seed(seed, n, k))
    g = 0.5 * np.log(np.maximum(score, 1e-30)) - np.log(-np.log(rng.uniform(1e-12, 1, n)))
    idx = np.sort(np.argpartition(-g, k - 1)[:k])
    f = float(np.clip(np.sqrt(0.7 * area.sum() / max(area[idx].sum(), 1e-30)), 1.0, 4.0))
    return GaussianScene(scene.means[idx], scene.quats[idx],
                         scene.log_scales[idx] + np.float32(np.log(f)),
                         scene.opacity_logits[idx], scene.sh[idx])


def ugc_available() -> bool:
    try:
        from .. import ugc  # noqa: F401

        return hasattr(ugc, "compress")
    except Exception:
        return False


def prune(scene: GaussianScene, keep: float, method: str = "auto",
          score: np.ndarray | None = None, up="-y") -> GaussianScene:
    """Pruned (and, with UGC, amplified) scene keeping ``keep`` ∈ (0, 1] of the Gaussians.

    ``method="ugc"``: ``exgs.ugc.compress(scene, keep_target=keep)`` with its defaults (SH degree 0,
    quantized, decoded back), given a precomputed significance ``score`` when available and a
    fast zstd level (the bytes are not used here)."""
    if keep >= 1.0:
        return scene
    if method == "auto":
        method = "ugc" if ugc_available() else "simple"
    if method == "ugc":
        from .. import ugc

        return ugc.compress(scene, keep_target=keep, score=score, zstd_level=1, device="cpu",
                            up=up).scene
    return simple_prune(scene, keep)


def prune_many(scene: GaussianScene, keeps, method: str = "auto", cameras=None,
               up="-y") -> list[GaussianScene]:
    """:func:`prune` at several kept fractions, scoring the scene once (UGC) on ``cameras``
    (default: UGC's own orbit views around the robust bounds, with ``up``; give views inside
    a background shell for ``+shell`` scenes, whose robust bounds are the shell's)."""
    if method == "auto":
        method = "ugc" if ugc_available() else "simple"
    score = None
    if method == "ugc" and any(k < 1 for k in keeps):
        from ..ugc.significance import default_views, significance

        score = significance(scene, cameras or default_views(scene, up=up), device="cpu")
    return [prune(scene, k, method, score, up) for k in keeps]


def refine_many(scene: GaussianScene, pruned: list[GaussianScene], steps: int,
                teacher_cameras=None, up="-y", seed: int = 0) -> list[GaussianScene]:
    """Each pruned scene after ``steps`` deterministic refinement steps against ``scene``
    (:func:`exgs.ugc.refine.refine`: 128 px teachers, quantization-aware end, switch-off rule
    on its decision views — so a refined scene is never worse there than the input one).
    ``teacher_cameras``: views of the object (every 8th is a decision view); None = refine's
    own orbits with ``up``."""
    from ..ugc.refine import RefineOptions, refine

    out = []
    for i, p in enumerate(pruned):
        if len(p) >= len(scene) or steps <= 0:
            out.append(p)
            continue
        opt = RefineOptions(seconds=None, steps=int(steps), resolution=128, views=16,
                            decision_views=3, decision_resolution=160, up=up, seed=seed + i)
        r, _ = refine(scene, p, teacher_cameras, opt)
        out.append(r)
    return out
