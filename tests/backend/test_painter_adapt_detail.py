"""The ``detail`` painter delta (a per-scene full-resolution detail head): round trip through
a .exgs, a fresh head rebuilt at load by every reader, the start from a generic head, the
descriptor's validation, and the switch-off rule for a delta that loses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exgs.io import exgs as X
from exgs.synth import demo_scene

pytest.importorskip("diffusers")

from exgs.painter.adapt import AdaptConfig, adapt  # noqa: E402
from exgs.painter.delta import (DeltaError, apply_delta, decode_delta,  # noqa: E402
                                encode_delta)
from exgs.painter.delta_forms import (set_detail_scale, targets,  # noqa: E402  (re-exported)
                                      with_detail_head)
from exgs.painter.infer import Painter, load_net  # noqa: E402
from exgs.pipeline import restorer_for  # noqa: E402
from exgs.pipeline.restore import PainterCache  # noqa: E402

FAST = dict(views=4, view_size=(64, 48))


def tiny_cfg(**kw):
    d = dict(form="detail", views=5, holdout=2, size=64, crop=32, batch=2, steps=4,
             seconds=600, min_gain_db=-math.inf, detail_width=8)
    d.update(kw)
    return AdaptConfig(**d)


@pytest.fixture(scope="module")
def net():
    """The generic painter without a detail head (the shipped one when it has none)."""
    n = load_net()
    if n.detail is not None:
        import copy
        import dataclasses

        n = copy.deepcopy(n)
        n.detail = None
        n.cfg = dataclasses.replace(n.cfg, detail_head=False, detail_scale_by_keep=())
    return n


@pytest.fixture(scope="module")
def scene():
    return demo_scene(n=800, sh_degree=1, seed=3)


@pytest.fixture(scope="module")
def pruned(scene):
    from exgs.ugc import compress

    return compress(scene, keep_target=0.1, device="cpu", **FAST)


def _frame(scene, size=64, seed=7):
    from exgs.cameras import orbit_for_scene
    from exgs.render import render

    cam = orbit_for_scene(scene, 1, size, size, seed=seed)[0]
    r = render(scene, cam, device="cpu")
    return r.rgb, r.alpha


def test_fresh_head_delta_round_trips_and_every_reader_rebuilds_the_head(net, scene, pruned,
                                                                         tmp_path):
    out = adapt(scene, pruned.scene, net=net, config=tiny_cfg())
    assert out.delta is not None and out.stats["form"] == "detail"
    desc, tensors = decode_delta(out.delta)
    assert desc["detail"] == {"fresh": True, "width": 8, "dilations":
                              [int(d) for d in net.cfg.detail_dilations], "scale": 1.0}
    adapted = apply_delta(net, out.delta)
    assert net.detail is None and adapted.detail is not None  # the base is untouched
    assert {e["name"] for e, _ in tensors} == {n for n, _ in targets(adapted, "detail")}
    # the fresh head's stored values are its full weights (added to an all-zero head)
    sd = adapted.detail.state_dict()
    for e, arr in tensors:
        assert np.array_equal(sd[e["name"][len("detail."):]].numpy(), arr)
    path = tmp_path / "d.exgs"
    path.write_bytes(X.attach_sections(pruned.data, {X.DELTA_SECTION: out.delta}))
    kf = len(pruned.scene) / len(scene)
    rgb, alpha = _frame(X.read_exgs_scene(path))
    want = Painter(adapted).restore(rgb, alpha, kept_fraction=kf)
    generic = Painter(net).restore(rgb, alpha, kept_fraction=kf)
    assert not np.array_equal(want, generic)  # the head does something
    from exgs.painter.train import export_diffusers
    from exgs.pipeline import RestoreOptions

    export_diffusers(net, tmp_path / "w")  # weights without a head (the shipped ones have one)
    r = restorer_for(path, RestoreOptions(painter_dir=tmp_path / "w"))  # CLI render / eval
    assert r.delta["applied"] and r.delta["form"] == "detail"
    assert r.kept_fraction == pytest.approx(kf)
    assert np.array_equal(r(rgb, alpha), want)
    cache = PainterCache()  # the service (and Blender through it)
    cache._generic = Painter(net)
    assert np.array_equal(cache.adapted(out.delta).restore(rgb, alpha, kept_fraction=kf), want)
    # an unknown kept fraction: the head is not applied (as the generic head's table)
    assert np.array_equal(Painter(adapted).restore(rgb, alpha), Painter(net).restore(rgb, alpha))


def test_detail_delta_starts_from_the_generic_head(net, scene, pruned):
    """On weights with a detail head the delta holds differences to it; before any learning
    the adapted painter (run at scale 1) restores as the generic one (run at its scale)."""
    gen = with_detail_head(net, 8, (1, 2), zero=False, seed=5)
    import torch

    with torch.no_grad():  # a head that does something (its last conv starts at zero)
        gen.detail.net[-1].weight.normal_(0, 0.05)
    set_detail_scale(gen, 0.5)
    out = adapt(scene, pruned.scene, net=gen, config=tiny_cfg(lr=1e-12, detail_width=0))
    desc, _ = decode_delta(out.delta)
    assert desc["detail"]["fresh"] is False and desc["detail"]["width"] == 8
    adapted = apply_delta(gen, out.delta)
    kf = len(pruned.scene) / len(scene)
    rgb, alpha = _frame(pruned.scene)
    a = Painter(adapted).restore(rgb, alpha, kept_fraction=kf)
    g = Painter(gen).restore(rgb, alpha, kept_fraction=kf)
    assert not np.array_equal(g, Painter(net).restore(rgb, alpha, kept_fraction=kf))
    assert np.abs(a - g).max() < 2e-3  # int8 rounding of the rescaling only
    # a fresh-head delta does not fit a painter that has a head, and vice versa
    fresh = adapt(scene, pruned.scene, net=net, config=tiny_cfg(steps=1)).delta
    with pytest.raises(DeltaError, match="without a detail head"):
        apply_delta(gen, fresh, check_base=False)
    with pytest.raises(DeltaError, match="does not have"):
        apply_delta(net, out.delta, check_base=False)


_OK = {"fresh": True, "width": 8, "dilations": [1], "scale": 1.0}


@pytest.mark.parametrize("detail", [None, dict(_OK, width=0), dict(_OK, fresh="yes"),
                                    dict(_OK, dilations=[]), dict(_OK, dilations=[1.5]),
                                    dict(_OK, scale=100.0), dict(_OK, scale=-1.0)])
def test_bad_detail_descriptors_are_refused(detail):
    ts = [("detail.net.0.weight", "diff", np.ones((8, 11, 3, 3), np.float32))]
    decode_delta(encode_delta("detail", ts, base="0" * 16, extra={"detail": _OK}))
    blob = encode_delta("detail", ts, base="0" * 16,
                        extra=None if detail is None else {"detail": detail})
    with pytest.raises(DeltaError, match="detail"):
        decode_delta(blob)
    # and a non-detail delta may not carry a detail entry
    with pytest.raises(DeltaError, match="detail"):
        decode_delta(encode_delta("head", ts, base="0" * 16, extra={"detail": _OK}))


def test_switch_off_rule_drops_a_detail_delta_that_loses(net, scene, pruned):
    """A head trained with an absurd learning rate restores worse than the generic painter
    and than no restoration: the rule (default margin) drops it, and says which is better."""
    out = adapt(scene, pruned.scene, net=net,
                config=tiny_cfg(lr=50.0, steps=6, min_gain_db=AdaptConfig().min_gain_db))
    st = out.stats
    assert st["heldout_adapted_db"] < max(st["heldout_generic_db"], st["heldout_none_db"])
    assert out.delta is None and not st["enabled"] and st["choice"] in ("generic", "none")
    assert st["bytes"] == 0 and st["bytes_if_kept"] > 0


def test_isolated_pick_holds_out_the_views_unlike_the_training_ones(scene):
    from exgs.cameras import orbit_for_scene
    from exgs.painter.adapt_views import adaptation_cameras

    ring = orbit_for_scene(scene, 12, 64, 64, seed=None, distance=1.0)  # an even orbit
    odd = orbit_for_scene(scene, 2, 64, 64, seed=3, distance=3.0, fov_x_deg=20.0)
    for c, name in zip(ring + odd, [f"r{i}" for i in range(12)] + ["odd0", "odd1"]):
        c.name = name
    cfg = AdaptConfig(views=14, holdout=2, size=64, crop=32, judge_pick="isolated")
    cams = adaptation_cameras(scene, cfg, ring + odd)
    assert sorted(c.name for c in cams[-2:]) == ["odd0", "odd1"]
    assert sorted(c.name for c in cams) == sorted(c.name for c in ring + odd)
    with pytest.raises(Exception, match="judge_pick"):
        AdaptConfig(judge_pick="best").validate()


@pytest.mark.parametrize("form", ["last", "head"])
def test_gated_forms_train_through_a_generic_detail_head(net, pruned, form):
    """On weights with a detail head, the last/head forms train on what inference computes:
    the gated restoration with the (frozen) generic head's residual on top."""
    import torch

    from exgs.painter.adapt import _Tail, _to_t, gate_bias_for

    gen = with_detail_head(net, 8, (1, 2), zero=False, seed=5)
    with torch.no_grad():
        gen.detail.net[-1].weight.normal_(0, 0.05)
    set_detail_scale(gen, 0.5)
    kf = 0.1
    rgb, alpha = _frame(pruned.scene)
    x, a = _to_t(rgb), _to_t(alpha)
    tail = _Tail(gen, form, gate_bias_for(gen, kf), kf)
    with torch.no_grad():
        got = tail.forward(tail.cache_view(x, a, x))
        want = gen(x, a, kept_fraction=kf)
        plain = net(x, a, kept_fraction=kf)
    assert not torch.allclose(want, plain, atol=1e-4)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_detail_tail_crops_match_the_head_on_the_whole_frame(net, pruned, stride):
    """The per-scene fit runs the head on crops fed cached first-conv features; for a
    stride-2 head those features are folded 2×2, so crops must be taken at half the
    coordinates: a crop's interior equals the head run on the whole frame."""
    import copy
    import dataclasses

    import torch

    from exgs.painter.adapt import _crop, _DetailTail, _to_t
    from exgs.painter.detail import DetailHead

    work = copy.deepcopy(net)
    work.cfg = dataclasses.replace(net.cfg, detail_head=True, detail_stride=stride)
    torch.manual_seed(1)
    work.detail = DetailHead(8, (1, 2), stride)
    with torch.no_grad():
        work.detail.net[-1].weight.normal_(0, 0.05)
    tail = _DetailTail(work, Painter(net), 0.05)
    rgb, alpha = _frame(pruned.scene)
    c = tail.cache_view(_to_t(rgb), _to_t(alpha), _to_t(rgb))
    whole = tail.forward(c)
    crop = tail.forward(_crop(c, 16, 24, 32))
    m = 8
    with torch.no_grad():
        assert torch.allclose(crop[..., m:-m, m:-m], whole[..., 16 + m:48 - m, 24 + m:56 - m],
                              atol=1e-5)
