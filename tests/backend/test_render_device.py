"""Back-end choice: gsplat only when CUDA is available; cuda.py imports without CUDA."""

from __future__ import annotations

import importlib

import pytest
import torch

import exgs.render as R
from exgs.errors import UsageError


def test_cuda_module_imports_without_cuda():
    mod = importlib.import_module("exgs.render.cuda")
    assert hasattr(mod, "render_gsplat") and hasattr(mod, "PreparedTorchScene")
    dev = R.available_devices()
    assert dev["cpu"] is True and dev["gsplat"] is True
    assert dev["cuda"] == torch.cuda.is_available()


@pytest.mark.parametrize("cuda", [False, True])
def test_select_device(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert R.select_device("cpu") == "cpu"
    assert R.select_device("auto") == ("gsplat" if cuda else "cpu")
    if cuda:
        assert R.select_device("cuda") == "gsplat" and R.select_device("gsplat") == "gsplat"
    else:
        with pytest.raises(UsageError, match="no CUDA device"):
            R.select_device("cuda")
    with pytest.raises(UsageError, match="unknown render device"):
        R.select_device("tpu")


def test_auto_renders_on_cpu_here(monkeypatch):
    from exgs.cameras import look_at
    from exgs.synth import random_scene

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cam = look_at([0, 0, 0], [0, 0, 3], [0, -1, 0], 16, 12)
    r = R.render(random_scene(50), cam)
    assert r.backend == "cpu" and r.rgb.shape == (12, 16, 3)


def test_auto_dispatches_to_gsplat_when_cuda(monkeypatch):
    """With CUDA reported, render() goes through the gsplat path (stubbed here)."""
    import numpy as np

    import exgs.render.cuda as C
    from exgs.cameras import look_at
    from exgs.synth import random_scene

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = {}

    class Prep:
        def __init__(self, scene, device="cuda"):
            seen["device"] = device

    def fake(prep, camera, *, sh_degree, background, return_contrib=False, eps2d=0.3):
        seen["deg"] = sh_degree
        H, W = camera.height, camera.width
        z = np.zeros((H, W), np.float32)
        return np.zeros((H, W, 3), np.float32), z, z + np.inf, None, None

    monkeypatch.setattr(C, "PreparedTorchScene", Prep)
    monkeypatch.setattr(C, "render_gsplat", fake)
    cam = look_at([0, 0, 0], [0, 0, 3], [0, -1, 0], 8, 6)
    r = R.render(random_scene(20, sh_degree=1), cam)
    assert r.backend == "gsplat" and seen == {"device": "cuda", "deg": 1}
