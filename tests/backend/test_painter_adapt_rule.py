"""The adaptive delta's switch-off rule against the better of the generic painter and no
restoration; the ``"none"`` delta (restore with nothing) through files, facts and readers;
the ``auto`` form's candidates by byte budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from exgs.io import exgs as X
from exgs.synth import demo_scene

pytest.importorskip("diffusers")

from exgs.painter.adapt import AdaptConfig  # noqa: E402
from exgs.painter.adapt_judge import choose  # noqa: E402
from exgs.painter.delta import (DeltaError, apply_delta, decode_delta,  # noqa: E402
                                describe_delta, is_none_delta, none_delta)
from exgs.painter.infer import Painter, load_net  # noqa: E402
from exgs.pipeline import (CompressOptions, SceneFacts, compress_scene,  # noqa: E402
                           restorer_for)

FAST = dict(views=4, view_size=(64, 48))


def tiny_cfg(form="last", **kw):
    d = dict(form=form, views=5, holdout=2, size=64, crop=32, batch=2, steps=4,
             seconds=600, min_gain_db=0.3)
    d.update(kw)
    return AdaptConfig(**d)


@pytest.fixture(scope="module")
def scene():
    return demo_scene(n=800, sh_degree=1, seed=3)


@pytest.fixture(scope="module")
def harmful_net():
    """The shipped net made harmful: the gate wide open everywhere and the decoded colour
    pushed to white, so restoring always lowers PSNR (unrestored must win)."""
    net = load_net()
    net.cfg.gate_bias, net.cfg.gate_bias_by_keep = 8.0, ()
    net.cfg.refined_gate_bias_by_keep = ()  # refined files too (they have their own table)
    net.cfg.gate_floor, net.cfg.gate_coverage_gain = 1.0, 0.0
    with torch.no_grad():
        net.vae.decoder.layers[-1].bias[:3].add_(4.0)
    return net


def _frame(scene, size=64):
    from exgs.cameras import orbit_for_scene
    from exgs.render import render

    cam = orbit_for_scene(scene, 1, size, size, seed=7)[0]
    r = render(scene, cam, device="cpu")
    return r.rgb, r.alpha


def test_choose_compares_with_the_better_of_generic_and_none():
    # the full-coverage statue at 300x: none 23.32, generic 17.59, adapted 21.78
    v = choose(21.78, 23.32, 17.59, 0.3)
    assert v["choice"] == "none" and v["reference"] == "none"
    assert v["gain_db"] == pytest.approx(21.78 - 23.32)
    assert choose(24.0, 23.32, 17.59, 0.3)["choice"] == "delta"
    assert choose(23.5, 23.32, 17.59, 0.3)["choice"] == "none"  # +0.18 < the margin
    assert choose(20.0, 18.0, 19.0, 0.3)["choice"] == "delta"
    assert choose(19.1, 18.0, 19.0, 0.3)["choice"] == "generic"
    assert choose(None, 18.0, 19.0, 0.3) == {"choice": "generic", "reference": "generic",
                                             "reference_db": 19.0, "gain_db": None}


def test_none_delta_round_trips_and_returns_the_input_exactly(scene):
    blob = none_delta({"heldout_none_db": 23.3})
    assert len(blob) < 200 and is_none_delta(blob)
    desc, tensors = decode_delta(blob)
    assert desc["form"] == "none" and tensors == []
    assert describe_delta(blob)["params"] == 0
    net = load_net()
    shut = apply_delta(net, blob)
    assert shut is not net and net.cfg.gate_bias != float("-inf")  # base untouched
    rgb, alpha = _frame(scene)
    alpha = alpha * 0.5  # holes everywhere: the generic painter would repaint
    out = Painter(shut).restore(rgb, alpha, kept_fraction=0.02)
    assert np.array_equal(out, rgb)
    assert not np.array_equal(Painter(net).restore(rgb, alpha, kept_fraction=0.02), rgb)
    # facts carrying it (service / add-on path) and a file carrying it (CLI path)
    r = restorer_for(SceneFacts(kept_fraction=0.02, painter_delta=blob))
    assert r.delta["form"] == "none" and np.array_equal(r(rgb, alpha), rgb)
    # a 'none' delta with tensors, or a regular one without, does not decode
    from exgs.painter.delta import encode_delta

    with pytest.raises(DeltaError):
        decode_delta(encode_delta("none", [("x", "diff", np.ones(2, np.float32))], base=""))
    with pytest.raises(DeltaError):
        decode_delta(encode_delta("last", [], base="0" * 16))
    assert not is_none_delta(b"garbage") and not is_none_delta(None)


def test_harmful_painter_file_is_marked_none_and_renders_unrestored(scene, harmful_net,
                                                                     tmp_path):
    from exgs.ugc import inria_ply_bytes

    src = inria_ply_bytes(len(scene), 3)
    opts = CompressOptions(ratio=20.0, source_bytes=src, device="cpu", **FAST)
    res = compress_scene(scene, opts, tiny_cfg(), net=harmful_net)
    pd = res.stats["painter_delta"]
    assert pd["choice"] == "none" and pd["restore"] == "none" and not pd["enabled"]
    assert pd["heldout_none_db"] > pd["heldout_generic_db"]
    assert len(res.data) <= src / 20.0  # the marker counts in the ratio
    blob = X.exgs_section_from_bytes(res.data, X.DELTA_SECTION)
    assert is_none_delta(blob)
    p = tmp_path / "none.exgs"
    p.write_bytes(res.data)
    r = restorer_for(p)
    rgb, alpha = _frame(X.read_exgs_scene(p))
    assert r.delta["applied"] and r.delta["form"] == "none"
    assert np.array_equal(r(rgb, alpha), rgb)
    # --no-delta still restores with the generic painter (old behaviour on request)
    from exgs.pipeline import RestoreOptions

    g = restorer_for(p, RestoreOptions(use_delta=False))
    assert not g.delta["applied"] and g.kept_fraction == r.kept_fraction


def test_keep_target_none_marker_adds_to_the_file(scene, harmful_net):
    # (no per-file setting: one that restores this file better exists even for this net)
    opts = CompressOptions(keep_target=0.2, device="cpu", painter_tune=False, **FAST)
    plain = compress_scene(scene, CompressOptions(keep_target=0.2, device="cpu",
                                                  painter_verdict=False, **FAST))
    res = compress_scene(scene, opts, tiny_cfg(), net=harmful_net)
    assert res.stats["painter_delta"]["choice"] == "none"
    assert len(res.scene) == len(plain.scene)
    assert X.attach_sections(res.data, {X.DELTA_SECTION: None}) == plain.data


def test_auto_form_candidates_follow_the_budget():
    from exgs.painter.delta_forms import size_reserve
    from exgs.pipeline.adapt import (AUTO_MAX_SHARE, DETAIL_MAX_SHARE, candidate_forms,
                                     detail_width)

    net = load_net()
    cfg = AdaptConfig()
    assert cfg.form == "auto"
    r_last, r_head = size_reserve(net, "last"), size_reserve(net, "head")
    assert r_last < r_head
    tiny = candidate_forms(net, cfg, 2048 + r_last + 10)[0]
    assert [f for f, _ in tiny] == ["last"]
    big = candidate_forms(net, cfg, math.ceil(r_head / AUTO_MAX_SHARE) + 1)[0]
    assert [f for f, _ in big][:2] == ["last", "head"]
    # the detail head (fresh on weights without one) is as wide as fits the share
    huge = candidate_forms(net, cfg, 10 ** 7)[0]
    assert [f for f, _ in huge] == ["last", "head", "detail"]
    if net.detail is None:
        r16 = size_reserve(net, "detail", detail_width=16)
        r8 = size_reserve(net, "detail", detail_width=8)
        assert r8 < r16
        assert detail_width(net, cfg, math.ceil(r16 / DETAIL_MAX_SHARE) + 1) == 16
        assert detail_width(net, cfg, math.floor(r16 / DETAIL_MAX_SHARE) - 1) < 16
        assert detail_width(net, cfg, math.ceil(r8 / AUTO_MAX_SHARE) + 1) == 8
        assert dict(candidate_forms(net, cfg, math.ceil(r16 / DETAIL_MAX_SHARE) + 1)[0])[
            "detail"] == r16
        assert "detail" not in dict(candidate_forms(net, cfg, math.floor(
            r8 / AUTO_MAX_SHARE) - 1)[0])
    none, why = candidate_forms(net, cfg, 1000)
    assert none == [] and "no room" in why
    assert [f for f, _ in candidate_forms(net, cfg, None)[0]] == ["last"]
    assert [f for f, _ in candidate_forms(net, AdaptConfig(form="head"), None)[0]] == ["head"]


def test_auto_form_picks_the_best_candidate_at_equal_size(monkeypatch):
    """With a budget big enough for all, ``auto`` trains last, head and detail on the same
    held-out views, keeps the one with the higher held-out PSNR and still meets the ratio."""
    from exgs.pipeline import adapt as pipeline_adapt
    from exgs.ugc import inria_ply_bytes

    monkeypatch.setattr(pipeline_adapt, "AUTO_MAX_SHARE", 0.5)  # a small scene, a big head
    monkeypatch.setattr(pipeline_adapt, "DETAIL_MAX_SHARE", 0.5)
    scene = demo_scene(n=6000, sh_degree=1, seed=4)
    src = inria_ply_bytes(len(scene), 3)
    # ratio 30: room for the differences to the shipped stride-2 generic head (≈ 13k values)
    opts = CompressOptions(ratio=30.0, source_bytes=src, device="cpu", **FAST)
    res = compress_scene(scene, opts, tiny_cfg("auto", min_gain_db=-math.inf))
    pd = res.stats["painter_delta"]
    cands = pd["candidates"]
    assert set(cands) == {"last", "head", "detail"}
    best = max(cands, key=lambda f: cands[f]["heldout_adapted_db"])
    assert pd["enabled"] and pd["form"] == best
    assert len(res.data) <= src / 30.0 and len(res.scene) < 6000


def test_no_room_for_a_delta_still_marks_none_when_restoring_hurts(scene, harmful_net):
    """A budget too small for any delta: no training, but the generic painter is still
    judged against no restoration on held-out views, and the file is marked 'none'."""
    from exgs.ugc import inria_ply_bytes

    src = inria_ply_bytes(len(scene), 3)
    ratio = src / 2600.0  # 2.6 kB: less than a 'last' reserve + 2 kB of scene
    opts = CompressOptions(ratio=ratio, source_bytes=src, device="cpu", painter_tune=False,
                           **FAST)
    res = compress_scene(scene, opts, tiny_cfg(), net=harmful_net)
    pd = res.stats["painter_delta"]
    assert "no room" in pd["reason"] and pd["candidates"] == {}
    assert pd["choice"] == "none" and pd["restore"] == "none"
    assert is_none_delta(X.exgs_section_from_bytes(res.data, X.DELTA_SECTION))
    assert len(res.data) <= 2600


@pytest.fixture(scope="module")
def big_scene():
    return demo_scene(n=3000, sh_degree=1, seed=3)


def _refined(scene, net):
    from exgs.ugc import inria_ply_bytes
    from exgs.ugc.refine import RefineOptions

    src = inria_ply_bytes(len(scene), 1)
    # the count voxel rule: on this tiny scene its refined file fits the budget and wins
    opts = CompressOptions(keep_target=0.08, source_bytes=src, device="cpu", views=6,
                           view_size=(64, 48), voxel_mass_share=0.0, painter_tune=False)
    ref = RefineOptions(steps=60, resolution=48, views=8, decision_views=4,
                        decision_resolution=64, seconds=None)
    res = compress_scene(scene, opts, refine=ref, net=net)
    assert not res.stats["refine"]["switched_off"], "the test needs a refined file"
    return res, src


def test_refined_file_is_marked_none_when_the_painter_hurts_it(big_scene, harmful_net,
                                                              tmp_path):
    """A refined file is judged like an adapted one: when no restoration beats the generic
    painter on held-out views, the file carries the 'none' marker (inside its budget) and
    every restore path returns its frames unchanged."""
    res, src = _refined(big_scene, harmful_net)
    pd = res.stats["painter_delta"]
    assert pd["choice"] == "none" and pd["restore"] == "none"
    assert pd["heldout_none_db"] > pd["heldout_generic_db"]
    assert is_none_delta(X.exgs_section_from_bytes(res.data, X.DELTA_SECTION))
    p = tmp_path / "refined.exgs"
    p.write_bytes(res.data)
    assert X.read_exgs_header(p)["stats"]["refined"]
    rgb, alpha = _frame(X.read_exgs_scene(p))
    assert np.array_equal(restorer_for(p)(rgb, alpha), rgb)


def test_refined_file_keeps_the_generic_painter_when_it_helps(big_scene):
    res, _ = _refined(big_scene, load_net())
    pd = res.stats["painter_delta"]
    blob = X.exgs_section_from_bytes(res.data, X.DELTA_SECTION)
    assert pd["choice"] in ("generic", "none")
    assert is_none_delta(blob) == (pd["choice"] == "none")
    if pd["choice"] == "generic":
        assert blob is None and pd["heldout_generic_db"] >= pd["heldout_none_db"]


def test_training_free_file_is_marked_none_when_the_painter_hurts_it(scene, harmful_net):
    """No delta, no refinement: the compressor still judges the generic painter on held-out
    views and marks the file 'none' when restoring it loses; the file meets the budget."""
    from exgs.ugc import inria_ply_bytes

    src = inria_ply_bytes(len(scene), 3)
    opts = CompressOptions(ratio=25.0, source_bytes=src, device="cpu", **FAST)
    res = compress_scene(scene, opts, net=harmful_net)
    pd = res.stats["painter_delta"]
    assert pd["choice"] == "none" and pd["restore"] == "none"
    assert pd["heldout_none_db"] > pd["heldout_generic_db"]
    assert "training-free" in pd["reason"]
    assert is_none_delta(X.exgs_section_from_bytes(res.data, X.DELTA_SECTION))
    assert len(res.data) <= src / 25.0 and res.stats["file_bytes"] == len(res.data)
    # opted out: no judging, no section (the file of a plain UGC compression)
    off = compress_scene(scene, CompressOptions(ratio=25.0, source_bytes=src, device="cpu",
                                                painter_verdict=False, **FAST),
                         net=harmful_net)
    assert "painter_delta" not in off.stats
    assert X.exgs_section_from_bytes(off.data, X.DELTA_SECTION) is None
    assert len(res.scene) <= len(off.scene)  # room was made for the marker if needed


def test_training_free_file_keeps_the_painter_when_it_helps(scene):
    """An identity-like painter (gate never opens: −∞ bias) cannot lose: generic == none,
    and ties keep the generic painter (no marker)."""
    import copy
    import dataclasses

    net = copy.deepcopy(load_net())
    net.cfg = dataclasses.replace(net.cfg, gate_bias=-math.inf, gate_bias_by_keep=(),
                                  detail_scale_by_keep=())
    opts = CompressOptions(keep_target=0.2, device="cpu", painter_tune=False, **FAST)
    res = compress_scene(scene, opts, net=net)
    pd = res.stats["painter_delta"]
    assert pd["heldout_none_db"] == pd["heldout_generic_db"] and pd["choice"] == "generic"
    assert X.exgs_section_from_bytes(res.data, X.DELTA_SECTION) is None


def test_trimmed_drops_the_least_significant_survivors_to_fit(big_scene):
    """A refined file makes room for a painter section by dropping its least significant
    survivors (their own significance after refinement): the result is the most significant
    subset, fits the limit and decodes."""
    from exgs.cameras import orbit_for_scene
    from exgs.ugc.refine_file import survivor_order, trimmed
    from exgs.ugc.significance import significance

    res, _ = _refined(big_scene, load_net())
    assert trimmed(res, len(res.data)) is res  # already fits: unchanged
    limit = int(len(res.data) * 0.8)
    cams = orbit_for_scene(big_scene, 6, 64, 48, seed=2)
    order = survivor_order(res.scene, cams)
    t = trimmed(res, limit, order)
    assert t is not None and len(t.data) <= limit and 0 < len(t.scene) < len(res.scene)
    n = len(t.scene)
    d = np.linalg.norm(t.scene.means[:, None] - res.scene.means[None], axis=-1)
    assert d.min(1).max() < 1e-3  # every survivor was in the refined file (no new Gaussians)
    # ... and they are its n most significant ones
    assert set(d.argmin(1).tolist()) == set(order[:n].tolist())
    s = significance(res.scene, cams)
    assert s[order[:n]].min() >= s[order[n:]].max()
    assert X.decode_exgs(t.data).means.shape == (n, 3)
    assert X.decode_header(t.data)["stats"]["refined"]  # still a refined file
    assert t.stats["file_bytes"] == len(t.data) and t.stats["kept"] == n
    assert trimmed(res, 100) is None  # nothing fits


def _refine_opts():
    from exgs.ugc.refine import RefineOptions

    return RefineOptions(steps=60, resolution=48, views=8, decision_views=4,
                         decision_resolution=64, seconds=None)


def test_delta_trained_after_refinement_is_stored_in_the_refined_file(big_scene, tmp_path,
                                                                    monkeypatch):
    """--refine with --adapt: the delta is trained on the refined survivors; forced on, it
    lands in the refined file within the ratio's budget, carrying the gate setting it was
    trained at, and a reader of that refined file applies it with that setting (the
    weights' refined tables, which keep the generic painter off on refined files, do not
    shut it)."""
    from exgs.painter.delta import apply_delta
    from exgs.pipeline import adapt as pipeline_adapt
    from exgs.ugc import inria_ply_bytes

    # start from an open gate so the stored delta visibly restores (the default start, a
    # closed gate, returns frames all but unchanged)
    monkeypatch.setattr(pipeline_adapt, "CLOSED_GATE_BIAS", 0.0)
    net = load_net()
    src = inria_ply_bytes(len(big_scene), 1)
    opts = CompressOptions(ratio=40.0, source_bytes=src, device="cpu", views=6,
                           view_size=(64, 48), voxel_mass_share=0.0, painter_tune=False)
    res = compress_scene(big_scene, opts, tiny_cfg(min_gain_db=-math.inf), _refine_opts(),
                         net=net)
    assert not res.stats["refine"]["switched_off"], "the test needs a refined file"
    pd = res.stats["painter_delta"]
    assert pd["enabled"] and pd["choice"] == "delta" and pd["refined"]
    assert pd["schedule"] == {"gate_bias": 0.0, "detail_scale": 0.0}
    assert len(res.data) <= src / 40.0 and res.stats["file_bytes"] == len(res.data)
    blob = X.exgs_section_from_bytes(res.data, X.DELTA_SECTION)
    assert blob is not None and len(blob) == pd["bytes"]
    p = tmp_path / "refined_delta.exgs"
    p.write_bytes(res.data)
    assert X.read_exgs_header(p)["stats"]["refined"]
    r = restorer_for(p)
    assert r.delta["applied"] and r.delta["form"] == "last" and r.refined
    assert decode_delta(blob)[0]["schedule"] == pd["schedule"]
    sc = X.read_exgs_scene(p)
    rgb, alpha = _frame(sc)
    alpha = alpha * 0.5
    kept = len(sc) / len(big_scene)
    # the generic painter on a refined file: off by the weights' refined tables
    assert np.array_equal(Painter(net).restore(rgb, alpha, kept_fraction=kept, refined=True),
                          rgb)
    want = Painter(apply_delta(net, blob)).restore(rgb, alpha, kept_fraction=kept)
    assert not np.array_equal(want, rgb)
    assert np.allclose(r(rgb, alpha), want, atol=1e-6)


def test_delta_after_refinement_is_switched_off_when_it_loses(big_scene, harmful_net):
    """The switch-off rule holds after refinement: a harmful base painter's delta loses to
    the refined file unrestored, so the refined file is written with the 'none' marker,
    within the budget."""
    from exgs.ugc import inria_ply_bytes

    src = inria_ply_bytes(len(big_scene), 1)
    opts = CompressOptions(ratio=40.0, source_bytes=src, device="cpu", views=6,
                           view_size=(64, 48), voxel_mass_share=0.0, painter_tune=False)
    res = compress_scene(big_scene, opts, tiny_cfg(), _refine_opts(), net=harmful_net)
    assert not res.stats["refine"]["switched_off"]
    pd = res.stats["painter_delta"]
    assert not pd["enabled"] and pd["choice"] == "none"
    assert is_none_delta(X.exgs_section_from_bytes(res.data, X.DELTA_SECTION))
    assert X.decode_header(res.data)["stats"]["refined"]
    assert len(res.data) <= src / 40.0


def test_refined_detail_delta_starts_from_the_file_as_readers_see_it(big_scene):
    """A refined file restored with nothing: its detail delta starts at a closed gate and
    a zero residual, so before any training step the delta returns frames (all but)
    unchanged — training can only move away from 'none' where the scene's views pay."""
    from exgs.painter.adapt import adapt
    from exgs.pipeline.adapt import CLOSED_GATE_BIAS

    res, _ = _refined(big_scene, load_net())
    net = load_net()
    r = adapt(big_scene, res.scene, net=net, config=tiny_cfg("detail", steps=0,
                                                             min_gain_db=-math.inf),
              refined=True, schedule=(CLOSED_GATE_BIAS, 0.0))
    desc = decode_delta(r.delta)[0]
    assert desc["schedule"] == {"gate_bias": CLOSED_GATE_BIAS, "detail_scale": 0.0}
    # (not exactly: the start's zero residual is −1 × the generic head's last conv, stored
    # as int8 differences)
    assert r.stats["heldout_adapted_db"] == pytest.approx(r.stats["heldout_none_db"], abs=0.02)
    rgb, alpha = _frame(res.scene)
    out = Painter(apply_delta(net, r.delta)).restore(rgb, alpha * 0.5, kept_fraction=0.05,
                                                     refined=True)
    assert np.abs(out - rgb).max() < 0.02 and np.abs(out - rgb).mean() < 1e-3  # int8 steps
    # a schedule outside the accepted range does not decode
    from exgs.painter.delta import encode_delta

    bad = encode_delta("last", [("x", "diff", np.ones(2, np.float32))], base="0" * 16,
                       extra={"schedule": {"gate_bias": -1e9, "detail_scale": 0.0}})
    with pytest.raises(DeltaError):
        decode_delta(bad)


def test_switched_off_refinement_keeps_its_report_through_the_verdict(scene, harmful_net,
                                                                    monkeypatch):
    """A refinement that switched itself off leaves the training-free file; when the verdict
    then has to make room for its section (the kept count searched again), the file's stats
    still carry the refinement's report and the requested ratio."""
    import exgs.ugc.refine_file as rf
    from exgs.ugc import inria_ply_bytes
    from exgs.ugc.refine import RefineOptions

    report = {"switched_off": True, "steps": 3, "seconds": 0.1, "cancelled": False,
              "decision_psnr": {"training-free": 20.0}, "chosen": "training-free"}

    def switched_off(full, result, *a, **kw):
        stats = dict(result.stats, refine=dict(report))
        return type(result)(scene=result.scene, data=result.data, stats=stats,
                            score=result.score)

    monkeypatch.setattr(rf, "refine_result", switched_off)
    src = inria_ply_bytes(len(scene), 3)
    res = compress_scene(scene, CompressOptions(ratio=25.0, source_bytes=src, device="cpu",
                                                **FAST),
                         refine=RefineOptions(seconds=5.0), net=harmful_net)
    assert res.stats["painter_delta"]["choice"] == "none"
    assert res.stats["refine"] == report and res.stats["requested_ratio"] == 25.0
