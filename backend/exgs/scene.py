"""GaussianScene: the one in-memory representation of a 3DGS scene.

Storage follows the INRIA 3DGS convention (the values a trained PLY holds, *before*
activation); the activations live here and nowhere else:

==================  =========  ==============================================================
attribute           shape      activation / meaning
==================  =========  ==============================================================
``means``           [N, 3]     centres, in the scene's own frame (the PLY's; for COLMAP
                               captures usually x right, y down, z forward). No axis change is
                               ever applied to the data: Blender puts it in ``matrix_world``.
``quats``           [N, 4]     rotation quaternion (w, x, y, z), not necessarily unit length;
                               normalised on use (as gsplat does).
``log_scales``      [N, 3]     ``scales = exp(log_scales)``, standard deviations in scene units.
``opacity_logits``  [N]        ``opacity = sigmoid(opacity_logits)`` in (0, 1).
``sh``              [N, K, 3]  real spherical-harmonic coefficients, K = (degree + 1)²,
                               ``sh[:, 0]`` is the DC term. Colour (display-referred sRGB) =
                               ``clamp(Σ_k sh_k · Y_k(dir) + 0.5, 0, 1)`` with
                               ``Y_0 = SH_C0 = 0.28209479177387814``; dir = mean − camera
                               centre, normalised (gsplat's convention).
==================  =========  ==============================================================

All arrays are float32 and C-contiguous. ``extras`` keeps further per-Gaussian properties a
file carried (e.g. PLY ``nx, ny, nz`` are dropped, unknown properties kept here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SceneFormatError

SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 3
#: Refuse scenes larger than this many Gaussians (a corrupt header, not a real scene).
MAX_GAUSSIANS = 200_000_000
#: rows checked at a time by :meth:`GaussianScene.validate`
VALIDATE_ROWS = 1 << 20


def sh_coeffs_for_degree(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (0..3)."""
    return (degree + 1) ** 2


def sh_degree_for_coeffs(k: int) -> int:
    """Inverse of :func:`sh_coeffs_for_degree`; raises ValueError if ``k`` is not a square."""
    d = int(round(np.sqrt(k))) - 1
    if d < 0 or d > MAX_SH_DEGREE or (d + 1) ** 2 != k:
        raise ValueError(f"{k} SH coefficients per channel is not (degree+1)^2 for degree 0..3")
    return d


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    """Display colour in [0, 1] → DC coefficient (inverse of ``sh0 · SH_C0 + 0.5``)."""
    return (np.asarray(rgb, np.float32) - 0.5) / SH_C0


def sh_dc_to_rgb(dc: np.ndarray) -> np.ndarray:
    """DC coefficient → view-independent display colour, clamped to [0, 1]."""
    return np.clip(np.asarray(dc, np.float32) * SH_C0 + 0.5, 0.0, 1.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).astype(np.float32)


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


@dataclass
class GaussianScene:
    """N Gaussians in INRIA storage convention (see module docstring)."""

    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.means = _f32(self.means)
        self.quats = _f32(self.quats)
        self.log_scales = _f32(self.log_scales)
        self.opacity_logits = _f32(self.opacity_logits).reshape(-1)
        self.sh = _f32(self.sh)
        n = self.means.shape[0]
        if self.means.shape != (n, 3):
            raise ValueError(f"means must be [N,3], got {self.means.shape}")
        if self.quats.shape != (n, 4):
            raise ValueError(f"quats must be [N,4], got {self.quats.shape}")
        if self.log_scales.shape != (n, 3):
            raise ValueError(f"log_scales must be [N,3], got {self.log_scales.shape}")
        if self.opacity_logits.shape != (n,):
            raise ValueError(f"opacity_logits must be [N], got {self.opacity_logits.shape}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"sh must be [N,K,3], got {self.sh.shape}")
        sh_degree_for_coeffs(self.sh.shape[1])
        for k, v in self.extras.items():
            if len(v) != n:
                raise ValueError(f"extra property {k!r} has {len(v)} rows, expected {n}")

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return len(self)

    @property
    def sh_degree(self) -> int:
        return sh_degree_for_coeffs(self.sh.shape[1])

    @property
    def scales(self) -> np.ndarray:
        """[N,3] standard deviations in scene units."""
        return np.exp(self.log_scales)

    @property
    def opacities(self) -> np.ndarray:
        """[N] opacity in (0, 1)."""
        return sigmoid(self.opacity_logits)

    @property
    def base_colors(self) -> np.ndarray:
        """[N,3] view-independent display sRGB colour from the DC term, in [0, 1]."""
        return sh_dc_to_rgb(self.sh[:, 0, :])

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (memory footprint of the scene)."""
        arrays = [self.means, self.quats, self.log_scales, self.opacity_logits, self.sh]
        return int(sum(a.nbytes for a in arrays) + sum(v.nbytes for v in self.extras.values()))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_activated(
        cls,
        means,
        quats,
        scales,
        opacities,
        colors=None,
        sh=None,
    ) -> "GaussianScene":
        """Build from activated values: scales (σ, scene units), opacities in (0,1), and
        either display colours [N,3] in [0,1] (degree 0) or raw SH [N,K,3]."""
        means = _f32(means)
        if sh is None:
            if colors is None:
                raise ValueError("give colors or sh")
            sh = rgb_to_sh_dc(colors)[:, None, :]
        return cls(
            means=means,
            quats=quats,
            log_scales=np.log(np.maximum(_f32(scales), 1e-12)),
            opacity_logits=logit(opacities),
            sh=sh,
        )

    @classmethod
    def empty(cls, sh_degree: int = 0) -> "GaussianScene":
        k = sh_coeffs_for_degree(sh_degree)
        z = np.zeros
        return cls(z((0, 3)), z((0, 4)), z((0, 3)), z((0,)), z((0, k, 3)))

    # ------------------------------------------------------------------ transforms
    def subset(self, index) -> "GaussianScene":
        """Gaussians selected by a boolean mask or an index array (order kept as given)."""
        index = np.asarray(index)
        return GaussianScene(
            means=self.means[index],
            quats=self.quats[index],
            log_scales=self.log_scales[index],
            opacity_logits=self.opacity_logits[index],
            sh=self.sh[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def with_sh_degree(self, degree: int) -> "GaussianScene":
        """Truncate (or zero-pad) the SH bands to ``degree``."""
        k_new = sh_coeffs_for_degree(degree)
        k_old = self.sh.shape[1]
        if k_new <= k_old:
            sh = self.sh[:, :k_new]
        else:
            sh = np.concatenate([self.sh, np.zeros((len(self), k_new - k_old, 3), np.float32)], 1)
        return GaussianScene(self.means, self.quats, self.log_scales, self.opacity_logits,
                             sh, dict(self.extras))

    def copy(self) -> "GaussianScene":
        return GaussianScene(self.means.copy(), self.quats.copy(), self.log_scales.copy(),
                             self.opacity_logits.copy(), self.sh.copy(),
                             {k: v.copy() for k, v in self.extras.items()})

    # ------------------------------------------------------------------ geometry
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min [3], max [3]) of the centres; zeros for an empty scene."""
        if len(self) == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return self.means.min(0), self.means.max(0)

    def robust_bounds(self, quantile: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis [q, 1−q] quantiles of the centres: the bounds without stray floaters."""
        if len(self) == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        lo, hi = np.quantile(self.means, [quantile, 1.0 - quantile], axis=0)
        return lo.astype(np.float32), hi.astype(np.float32)

    # ------------------------------------------------------------------ checks
    def validate(self, path=None) -> "GaussianScene":
        """Raise :class:`SceneFormatError` naming ``path`` if any value is NaN/Inf or a
        quaternion has zero length. Returns self for chaining."""
        if len(self) > MAX_GAUSSIANS:
            raise SceneFormatError(path, f"{len(self)} Gaussians is more than the limit "
                                         f"of {MAX_GAUSSIANS}")
        n = len(self)
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            a = getattr(self, name)
            a = a.reshape(n, -1) if n else a
            for s in range(0, n, VALIDATE_ROWS):  # chunks: no [N, ...] bool temporaries
                if np.isfinite(a[s:s + VALIDATE_ROWS]).all():
                    continue
                finite = np.isfinite(a[s:s + VALIDATE_ROWS]).all(1)
                if not finite.all():
                    raise SceneFormatError(path, f"non-finite value (NaN or Inf) in {name} "
                                                 f"of Gaussian {s + int(np.argmin(finite))}")
        for s in range(0, n, VALIDATE_ROWS):
            q = self.quats[s:s + VALIDATE_ROWS]
            bad = np.einsum("ij,ij->i", q, q) <= 1e-20
            if bad.any():
                raise SceneFormatError(path, f"zero-length rotation quaternion at Gaussian "
                                             f"{s + int(np.argmax(bad))}")
            if (self.log_scales[s:s + VALIDATE_ROWS] > 30).any():
                raise SceneFormatError(path, "absurd Gaussian scale (log-scale > 30)")
        return self

    def summary(self) -> dict:
        lo, hi = self.bounds()
        rlo, rhi = self.robust_bounds()
        return {
            "gaussians": len(self),
            "sh_degree": self.sh_degree,
            "bounds_min": [float(x) for x in lo],
            "bounds_max": [float(x) for x in hi],
            "robust_bounds_min": [float(x) for x in rlo],
            "robust_bounds_max": [float(x) for x in rhi],
            "memory_bytes": self.nbytes,
            "extras": sorted(self.extras),
        }

    def to_torch(self, device="cpu") -> dict:
        """Activated tensors in gsplat's layout: means [N,3], quats [N,4] (wxyz),
        scales [N,3], opacities [N], sh [N,K,3] (float32 on ``device``)."""
        import torch

        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        return {
            "means": t(self.means),
            "quats": t(self.quats),
            "scales": t(self.scales),
            "opacities": t(self.opacities),
            "sh": t(self.sh),
        }
