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


# ---------------------------------------------------------------- the one device resolver
@pytest.mark.parametrize("cuda,gsplat", [(False, False), (False, True), (True, False),
                                         (True, True)])
def test_resolve_device_needs_cuda_and_gsplat(monkeypatch, cuda, gsplat):
    """Regression (issue 12): with CUDA present but gsplat missing, the service's old
    resolver answered "cuda" and every render then raised. The one resolver answers "cuda"
    only when the gsplat path can run, and refuses an explicit cuda request otherwise."""
    import exgs.render.cuda as C
    from exgs.pipeline import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(C, "gsplat_importable", lambda: gsplat)
    ok = cuda and gsplat
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if ok else "cpu")
    assert resolve_device(None) == resolve_device("AUTO") == ("cuda" if ok else "cpu")
    if ok:
        assert resolve_device("cuda") == "cuda" == resolve_device("gsplat")
    else:
        with pytest.raises(UsageError) as ei:
            resolve_device("cuda")
        assert ("gsplat is not installed" if cuda else "no CUDA device") in str(ei.value)
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")


def test_service_renders_on_cpu_when_cuda_lacks_gsplat(monkeypatch, tmp_path):
    """The same host through the service: it resolves to cpu and a render job succeeds."""
    from fastapi.testclient import TestClient

    import exgs.render.cuda as C
    from exgs.cameras import orbit_for_scene
    from exgs.io.ply import write_ply
    from exgs.service.app import create_app
    from exgs.service.config import ServiceConfig
    from exgs.synth import random_scene

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(C, "gsplat_importable", lambda: False)
    scene = random_scene(300, seed=2)
    ply = tmp_path / "s.ply"
    write_ply(scene, ply)
    token = "d" * 32
    app = create_app(ServiceConfig(token=token, device="auto", data_dir=str(tmp_path / "d")))
    hdr = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(app) as tc:
            assert tc.get("/v1/health", headers=hdr).json()["device"] == "cpu"
            sid = tc.post("/v1/scenes?filename=s.ply", content=ply.read_bytes(),
                          headers=hdr).json()["id"]
            cam = orbit_for_scene(scene, 1, 16, 12)[0].to_dict()
            job = tc.post(f"/v1/scenes/{sid}/render", json={"cameras": [cam]},
                          headers=hdr).json()
            job = tc.get(f"/v1/jobs/{job['id']}?wait=20", headers=hdr).json()
            while job["state"] in ("queued", "running"):
                job = tc.get(f"/v1/jobs/{job['id']}?wait=20&since={job['version']}",
                             headers=hdr).json()
            assert job["state"] == "done", job
    finally:
        app.state.jobs.shutdown()
