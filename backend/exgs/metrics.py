"""Image quality metrics on display-referred images in [0, 1].

``psnr`` and ``ssim`` take [H,W,3] (or [H,W]) float arrays; SSIM uses the standard 11×11
Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, averaged over channels (Wang et al. 2004),
computed over the valid region (no padding).
"""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; +inf for identical images."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> float:
    """Mean structural similarity of two [H,W,C] or [H,W] images (C channels averaged)."""
    import torch
    import torch.nn.functional as F

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]  # [C,1,H,W]
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]
    size = min(11, x.shape[-1], x.shape[-2])
    g = _gaussian_window(size)
    wx, wy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def filt(t):
        return F.conv2d(F.conv2d(t, wx), wy)

    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx**2
    syy = filt(y * y) - my**2
    sxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())
