"""exgs.ugc.refine: distillation of UGC survivors against the full scene (tiny scenes, fixed
step counts), the codec round trip it trains through, the switch-off rule, cancel, budget
and input checks, and the re-encoded file."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from exgs.errors import UsageError
from exgs.io.exgs import decode_exgs, encode_exgs
from exgs.synth import demo_scene, random_scene
from exgs.ugc import compress
from exgs.ugc.fakequant import codec_roundtrip
from exgs.ugc.refine import RefineOptions, check_budget, refine
from exgs.ugc.refine_file import byte_budget, refine_result

SMALL = dict(resolution=48, views=8, decision_views=4, decision_resolution=64, seconds=None)


@pytest.fixture(scope="module")
def setup():
    full = demo_scene(n=3000, sh_degree=1, seed=3)
    res = compress(full, keep_target=0.08, views=6, view_size=(64, 48))
    return full, res


def _rows(sc):
    a = np.concatenate([sc.means, sc.quats * np.sign(sc.quats[:, :1] + 1e-9), sc.log_scales,
                        sc.opacities[:, None], sc.sh.reshape(len(sc), -1)], 1)
    return a[np.lexsort(a[:, :3].T[::-1])]


@pytest.mark.parametrize("deg", [0, 1, 3])
def test_codec_roundtrip_is_what_the_file_decodes(deg):
    sc = random_scene(700, sh_degree=deg, seed=deg)
    m, q, ls, op, sh = codec_roundtrip(sc.means, sc.quats, sc.log_scales, sc.opacities, sc.sh)
    dec = decode_exgs(encode_exgs(sc))
    from exgs.scene import GaussianScene, logit

    mine = GaussianScene(m, q, ls, logit(op, eps=1e-4), sh)
    np.testing.assert_allclose(_rows(mine), _rows(dec), rtol=0, atol=2e-6)


def test_refine_gains_and_is_deterministic(setup):
    full, res = setup
    opt = RefineOptions(steps=40, **SMALL)
    a, rep = refine(full, res.scene, None, opt)
    b, rep2 = refine(full, res.scene, None, opt)
    assert rep["steps"] == 40 and rep["qat_started"] and not rep["cancelled"]
    assert rep["loss_last"] < rep["loss_first"]
    d = rep["decision_psnr"]
    assert not rep["switched_off"] and rep["gain_db"] > 0.5, d
    assert max(d.values()) == d[rep["chosen"]]
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert rep["decision_psnr"] == rep2["decision_psnr"]
    # same count and order as the survivors (significance order kept), codec values
    assert len(a) == len(res.scene)
    m, *_ = codec_roundtrip(a.means, a.quats, a.log_scales, a.opacities, a.sh)
    np.testing.assert_allclose(m, a.means, atol=1e-6)


def test_switch_off_keeps_training_free(setup):
    full, res = setup
    bad = RefineOptions(steps=6, lr_means=50.0, lr_scales=3.0, lr_opacity=5.0, **SMALL)
    out, rep = refine(full, res.scene, None, bad)
    assert rep["switched_off"] and rep["chosen"] == "training-free"
    assert max(rep["decision_psnr"].values()) == rep["decision_psnr"]["training-free"]
    assert out is res.scene


def test_cancel_stops_cleanly(setup):
    full, res = setup
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 5

    out, rep = refine(full, res.scene, None, RefineOptions(steps=500, cancel=cancel, **SMALL))
    assert rep["cancelled"] and rep["steps"] == 5
    assert rep["decision_psnr"][rep["chosen"]] >= rep["decision_psnr"]["training-free"]
    ev = threading.Event()
    ev.set()
    out, rep = refine(full, res.scene, None, RefineOptions(steps=5, cancel=ev, **SMALL))
    assert rep["cancelled"] and rep["steps"] == 0 and out is res.scene


def test_budget_is_kept(setup):
    full, res = setup
    msgs = []
    opt = RefineOptions(seconds=3.0, resolution=48, views=8, decision_views=4,
                        decision_resolution=64, coarse_fraction=0.5, progress=lambda f, m: msgs.append((f, m)))
    out, rep = refine(full, res.scene, None, opt)
    assert rep["seconds"] <= 3.0 * 1.2 and rep["steps"] > 0
    assert msgs and all(0.0 <= f <= 1.0 for f, _ in msgs)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "abc"])
def test_bad_budget(bad):
    with pytest.raises(UsageError, match="budget"):
        check_budget(bad)


def test_nan_scene_and_empty(setup):
    full, res = setup
    broken = res.scene.subset(np.arange(len(res.scene)))
    broken.means[3, 1] = np.nan
    with pytest.raises(UsageError, match="non-finite"):
        refine(full, broken, None, RefineOptions(steps=2, **SMALL))
    with pytest.raises(UsageError, match="or a step count"):
        refine(full, res.scene, None, RefineOptions(seconds=None))


def test_refine_result_file(setup):
    full, res = setup
    out = refine_result(full, res, RefineOptions(steps=30, **SMALL))
    rep = out.stats["refine"]
    assert len(out.data) <= byte_budget(res) == len(res.data)
    dec = decode_exgs(out.data)
    np.testing.assert_array_equal(dec.means, out.scene.means)
    if not rep["switched_off"]:
        assert out.data != res.data and out.stats["file_bytes"] == len(out.data)
    assert rep["steps"] == 30


def test_training_cameras_hold_out_every_eighth(setup):
    full, res = setup
    from exgs.cameras import orbit_for_scene

    cams = orbit_for_scene(full, 16, 64, 48, seed=5)
    _, rep = refine(full, res.scene, cams, RefineOptions(steps=4, **SMALL))
    assert rep["teacher_kind"] == "training cameras"
    assert rep["teacher_views"] == 14 and rep["decision_views"] == 2


def test_torch_ssim_equals_metrics_ssim():
    import torch

    from exgs.metrics import ssim
    from exgs.ugc.refine_views import ssim_target_stats, ssim_torch

    rng = np.random.default_rng(0)
    a = rng.uniform(size=(40, 52, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    ta, tb = torch.tensor(a), torch.tensor(b)
    want = ssim(a, b)
    assert abs(float(ssim_torch(ta, tb)) - want) < 1e-5
    assert abs(float(ssim_torch(ta, tb, ssim_target_stats(tb))) - want) < 1e-5
