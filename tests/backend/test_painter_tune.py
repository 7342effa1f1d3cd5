"""The per-file painter setting (issue 15, session 9): the rule that picks a file's own gate
bias / detail scale on its held-out views (:mod:`exgs.painter.tune`), the ``"tune"`` delta
that stores it (:mod:`exgs.painter.delta`), and the compressor writing it and every reader
applying it (:mod:`exgs.pipeline`)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from exgs.io import exgs as X
from exgs.synth import demo_scene

pytest.importorskip("diffusers")

from exgs.painter.delta import (DeltaError, DeltaMismatch, apply_delta,  # noqa: E402
                                base_fingerprint, decode_delta, describe_delta, encode_delta,
                                tune_delta)
from exgs.painter.infer import Painter, load_net  # noqa: E402
from exgs.painter.tune import choose_setting, safe_score, settings_sweep  # noqa: E402
from exgs.pipeline import (CompressOptions, RestoreOptions, SceneFacts,  # noqa: E402
                           compress_scene, restorer_for)

FAST = dict(views=4, view_size=(64, 48))


def _sweep(tables, *rows):
    """A sweep dict with candidates (bias, 1.0) for bias = 0, 1, 2, … and these gains."""
    return {"cands": [(float(i), 1.0) for i in range(len(rows))],
            "gain": np.array(rows, np.float64).reshape(len(rows), -1),
            "tables": np.array(tables, np.float64)}


def test_safe_score_rejects_a_bad_tail_and_weighs_losses_twice():
    g = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -0.5, -0.5])
    assert safe_score(g) == float("-inf")  # 10 % quantile (linear) below −0.05 dB
    one = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -0.5])  # quantile +0.55: passes,
    assert safe_score(one) == pytest.approx(one.mean() - 2 * 0.5 / 8)  # losses count twice
    assert safe_score([0.2, 0.4]) == pytest.approx(0.3)
    assert safe_score([]) == float("-inf")


def test_choose_setting_prefers_the_tables_unless_a_setting_beats_them_by_the_margin():
    tables = [0.50, 0.60, 0.55, 0.52]
    # a setting only 0.03 dB better than the tables: keep the tables (no section)
    near = _sweep(tables, [0.53, 0.63, 0.58, 0.55])
    assert choose_setting(near)["choice"] == "tables"
    # clearly better: its own setting, with the bias / scale of that candidate
    far = _sweep(tables, [0.1, 0.1, 0.1, 0.1], [0.9, 1.0, 0.95, 0.9])
    pick = choose_setting(far)
    assert pick["choice"] == "tune" and (pick["gate_bias"], pick["detail_scale"]) == (1.0, 1.0)
    assert pick["gain_db"] == pytest.approx(0.9375, abs=1e-3)
    # a higher mean with one view losing 1 dB fails the do-no-harm rule
    risky = _sweep(tables, [2.0, 2.0, 2.0, -1.0])
    assert choose_setting(risky)["choice"] == "tables"


def test_choose_setting_says_none_when_nothing_is_safe_and_positive():
    assert choose_setting(_sweep([-0.3, -0.2, 0.1, -0.4], [-0.1, -0.2, 0.0, -0.3]))[
        "choice"] == "none"
    # the tables fail, a setting passes: that setting, not "none"
    pick = choose_setting(_sweep([-0.3, -0.2, 0.1, -0.4], [0.2, 0.3, 0.25, 0.2]))
    assert pick["choice"] == "tune" and pick["tables_score_db"] is None


def _frame(scene, size=64, holes=True):
    """(rgb, alpha) of one orbit view over black; ``holes``: faded to 60 % (premultiplied
    colour and alpha alike), a stand-in for a pruned render."""
    from exgs.cameras import orbit_for_scene
    from exgs.render import render

    cam = orbit_for_scene(scene, 1, size, size, seed=7)[0]
    r = render(scene, cam, device="cpu")
    k = 0.6 if holes else 1.0
    return r.rgb * k, r.alpha * k


@pytest.fixture(scope="module")
def scene():
    return demo_scene(n=800, sh_degree=1, seed=3)


def test_tune_delta_round_trips_and_pins_the_setting(scene):
    net = load_net()
    blob = tune_delta(1.5, 0.5, base_fingerprint(net), {"heldout_tuned_db": 20.0})
    assert len(blob) < 300
    desc, tensors = decode_delta(blob)
    assert desc["form"] == "tune" and tensors == []
    assert desc["tune"] == {"gate_bias": 1.5, "detail_scale": 0.5}
    assert describe_delta(blob)["params"] == 0
    tuned = apply_delta(net, blob)
    for kf in (0.005, 0.03, 0.4):
        for refined in (False, True):
            assert tuned.cfg.bias_for_kept_fraction(kf, refined) == 1.5
            assert tuned.cfg.detail_scale_for_kept_fraction(kf, refined) == 0.5
    assert tuned.cfg.bias_for_kept_fraction(1.0) == float("-inf")  # nothing pruned: off
    assert tuned.cfg.detail_scale_for_kept_fraction(None) == 0.0
    assert net.cfg.bias_for_kept_fraction(0.03) != 1.5  # the base is untouched
    # what the reader restores is what the sweep scored for that candidate
    rgb, alpha = _frame(scene)
    clean = _frame(scene, holes=False)[0]
    sw = settings_sweep(net, [(rgb, alpha, clean)], 0.03, biases=(1.5,), scales=(0.5,))
    from exgs.metrics import psnr

    out = Painter(tuned).restore(rgb, alpha, kept_fraction=0.03)
    assert psnr(clean, out) - psnr(clean, rgb) == pytest.approx(sw["gain"][0, 0], abs=0.05)
    assert not np.array_equal(out, Painter(net).restore(rgb, alpha, kept_fraction=0.03))


def test_tune_delta_is_validated_and_bound_to_its_weights():
    net = load_net()
    with pytest.raises(DeltaError, match="gate_bias"):
        tune_delta(float("nan"), 1.0, "0" * 16)
    with pytest.raises(DeltaError, match="detail_scale"):
        tune_delta(0.0, -1.0, "0" * 16)
    bad = encode_delta("tune", [], base="0" * 16, extra={"tune": {"gate_bias": 99.0,
                                                                   "detail_scale": 1.0}})
    with pytest.raises(DeltaError, match="gate_bias"):
        decode_delta(bad)
    with pytest.raises(DeltaError, match="tune entry"):
        decode_delta(encode_delta("tune", [], base="0" * 16))
    with pytest.raises(DeltaError, match="tune entry"):
        decode_delta(encode_delta("last", [], base="0" * 16,
                                  extra={"tune": {"gate_bias": 0.0, "detail_scale": 1.0}}))
    other = tune_delta(0.0, 1.0, "0" * 16)  # chosen for other weights
    with pytest.raises(DeltaMismatch):
        apply_delta(net, other)
    warnings = []
    r = restorer_for(SceneFacts(kept_fraction=0.03, painter_delta=other),
                     RestoreOptions(warn=warnings.append))
    assert not r.delta["applied"] and "skipped" in r.delta["reason"] and warnings


@pytest.fixture(scope="module")
def timid_net():
    """The shipped net with tables that never restore much (bias −8, no detail head): on a
    heavily pruned file a setting of its own restores it better."""
    net = copy.deepcopy(load_net())
    net.cfg = dataclasses.replace(net.cfg, gate_bias=-8.0, gate_bias_by_keep=((0.5, -8.0),),
                                  detail_scale_by_keep=())
    return net


def test_compressor_stores_the_files_own_setting_and_readers_apply_it(timid_net, tmp_path):
    from exgs.ugc import inria_ply_bytes

    scene = demo_scene(n=3000, sh_degree=1, seed=3)  # (800 Gaussians at 40x: nothing gains)
    src = inria_ply_bytes(len(scene), 3)
    opts = CompressOptions(ratio=40.0, source_bytes=src, device="cpu", **FAST)
    res = compress_scene(scene, opts, net=timid_net)
    pd = res.stats["painter_delta"]
    assert pd["choice"] == "tune" and pd["restore"] == "tune", pd
    assert pd["heldout_tuned_db"] > max(pd["heldout_none_db"], pd["heldout_generic_db"])
    assert len(res.data) <= src / 40.0 and res.stats["file_bytes"] == len(res.data)
    blob = X.exgs_section_from_bytes(res.data, X.DELTA_SECTION)
    desc, _ = decode_delta(blob)
    assert desc["form"] == "tune" and desc["base"] == base_fingerprint(timid_net)
    assert desc["tune"] == {"gate_bias": pd["tune"]["gate_bias"],
                            "detail_scale": pd["tune"]["detail_scale"]}
    # the CLI / service path: a reader of the file with the same weights applies it
    from exgs.painter.train import export_diffusers

    weights = tmp_path / "timid"
    export_diffusers(timid_net, weights, {})
    p = tmp_path / "tuned.exgs"
    p.write_bytes(res.data)
    reader = restorer_for(p, RestoreOptions(painter_dir=str(weights)))
    assert reader.delta["applied"] and reader.delta["form"] == "tune"
    rgb, alpha = _frame(X.read_exgs_scene(p))
    kf = len(res.scene) / len(scene)
    assert reader.kept_fraction == pytest.approx(kf)
    out = reader(rgb, alpha)
    assert np.array_equal(out, Painter(apply_delta(timid_net, blob)).restore(
        rgb, alpha, kept_fraction=kf))
    assert not np.array_equal(out, Painter(timid_net).restore(rgb, alpha, kept_fraction=kf))
    # the shipped weights have the same parameters (only their tables differ): the file's
    # setting overrides the tables there too, with the same frame (other parameters: the
    # setting is skipped, test_tune_delta_is_validated_and_bound_to_its_weights)
    shipped = restorer_for(p)
    assert shipped.delta["applied"] and np.array_equal(shipped(rgb, alpha), out)
    # opted out: the tables' verdict only (no "tune" section)
    off = compress_scene(scene, CompressOptions(ratio=40.0, source_bytes=src, device="cpu",
                                                painter_tune=False, **FAST), net=timid_net)
    assert off.stats["painter_delta"]["choice"] in ("generic", "none")
    assert "tune" not in off.stats["painter_delta"]


def test_adapted_file_must_beat_its_own_setting_too(timid_net):
    """With ``--adapt`` the file's own setting is chosen first: a delta is kept only when it
    beats that setting as well (on the same held-out views), and a switched-off delta leaves
    the setting in the file — never the tables it beat."""
    from exgs.painter.adapt import AdaptConfig, AdaptResult
    from exgs.pipeline.adapt import _against_setting
    from exgs.ugc import inria_ply_bytes

    scene = demo_scene(n=3000, sh_degree=1, seed=3)
    src = inria_ply_bytes(len(scene), 3)
    opts = CompressOptions(ratio=40.0, source_bytes=src, device="cpu", **FAST)
    cfg = dict(form="last", views=6, holdout=2, size=64, crop=32, batch=2, steps=4,
               seconds=600)
    forced = compress_scene(scene, opts, AdaptConfig(min_gain_db=-np.inf, **cfg),
                            net=timid_net)
    pd = forced.stats["painter_delta"]
    assert pd["enabled"] and pd["heldout_tuned_db"] > pd["heldout_generic_db"], pd
    assert decode_delta(X.exgs_section_from_bytes(forced.data, X.DELTA_SECTION))[0][
        "form"] == "last"
    # the rule against the setting, on these held-out scores
    tuned = pd["heldout_tuned_db"]
    for margin, kept in ((pd["heldout_adapted_db"] - tuned - 0.01, True),
                         (pd["heldout_adapted_db"] - tuned + 0.01, False)):
        r = AdaptResult(b"delta", {"heldout_adapted_db": pd["heldout_adapted_db"],
                                   "enabled": True})
        _against_setting(r, tuned, margin)
        assert (r.delta is not None) == kept == r.stats["enabled"]
        assert r.stats["heldout_tuned_db"] == tuned
        assert kept or (r.stats["choice"] == "tune" and r.stats["bytes_if_kept"] == 5)
    # the delta never pays: the file restores with its own setting, not the tables
    off = compress_scene(scene, opts, AdaptConfig(min_gain_db=np.inf, **cfg), net=timid_net)
    po = off.stats["painter_delta"]
    assert not po["enabled"] and po["choice"] == "tune" and po["restore"] == "tune", po
    d2, _ = decode_delta(X.exgs_section_from_bytes(off.data, X.DELTA_SECTION))
    assert d2["form"] == "tune" and d2["tune"] == {k: po["tune"][k] for k in
                                                   ("gate_bias", "detail_scale")}
    assert len(off.data) <= src / 40.0 and len(forced.data) <= src / 40.0


def test_a_setting_must_beat_the_tables_by_the_margin_through_the_readers_path(timid_net,
                                                                                scene):
    """The sweep scores whole frames, readers restore in tiles: the pick is stored only when
    the reader's restoration confirms it by :data:`exgs.painter.tune.MARGIN_DB`."""
    from exgs.painter.adapt_judge import tune_scene
    from exgs.painter.tune import MARGIN_DB

    rgb, alpha = _frame(scene)
    hold = [{"rgb": rgb, "alpha": alpha, "clean": _frame(scene, holes=False)[0]}]
    low = {"none": -np.inf, "generic": -np.inf}
    first = tune_scene(timid_net, hold, 0.03, False, low)
    assert first["choice"] == "tune" and first["tune"]["choice"] == "tune", first
    d = first["heldout_tuned_db"]
    near = tune_scene(timid_net, hold, 0.03, False, {"none": -np.inf,
                                                     "generic": d - MARGIN_DB / 2})
    assert "choice" not in near and near["tune"]["choice"] == "unconfirmed"
    far = tune_scene(timid_net, hold, 0.03, False, {"none": d - 2 * MARGIN_DB,
                                                    "generic": -np.inf})
    assert far["choice"] == "tune"
