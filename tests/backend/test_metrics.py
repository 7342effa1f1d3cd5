import math

import numpy as np

from exgs.metrics import psnr, ssim


def test_psnr_known_value():
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.1)
    assert psnr(a, b) == np.float64(20.0) or abs(psnr(a, b) - 20.0) < 1e-9
    assert psnr(a, a) == math.inf


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (32, 32, 3))
    assert abs(ssim(img, img) - 1.0) < 1e-9
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    s = ssim(img, noisy)
    assert 0.0 < s < 0.9
    # a constant shift hurts less than noise of the same energy
    assert ssim(img, np.clip(img + 0.05, 0, 1)) > s
