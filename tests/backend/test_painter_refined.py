"""Refinement-aware GaussPainter (issue 15): files refined after pruning (issue 10; the .exgs
header records it) use the weights' refined gate / detail tables; a refined table that shuts
the gate returns the input exactly; weights without a refined table behave as before; the
refinement state travels from the header through the facts, the restorer and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from exgs.cli import main
from exgs.painter.infer import Painter, load_net
from exgs.painter.model import PainterConfig, PainterNet
from exgs.painter.train import export_diffusers

INF = float("-inf")
OPEN = ((0.01, 3.0), (0.5, 3.0))  # generic table: gate wide open (a fresh net's gate ≈ σ(0.5))
SHUT = ((0.01, INF), (0.5, INF), (1.0, INF))


def _net(**kw) -> PainterNet:
    torch.manual_seed(0)
    cfg = PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8), gate_head=True,
                        gate_stats=True, detail_head=True, gate_bias_by_keep=OPEN, **kw)
    net = PainterNet(cfg).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.detail.net[-1].weight, std=0.05)
    return net


def _frame(seed=0, size=64):
    """rgb [H,W,3] with a hole (alpha 0) in the middle of an opaque frame."""
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    alpha = np.ones((size, size), np.float32)
    alpha[size // 4: size // 2, size // 4: size // 2] = 0.0
    rgb[alpha == 0] = 0.0
    return rgb, alpha


def test_refined_tables_lookup_and_off_bins():
    cfg = PainterConfig(detail_head=True, gate_bias=-4.0, gate_bias_by_keep=((0.01, 1.0), (0.1, -2.0)),
                        detail_scale_by_keep=((0.01, 1.0), (0.1, 0.0)),
                        refined_gate_bias_by_keep=((0.007, INF), (0.014, -1.0), (0.028, INF),
                                                   (1.0, INF)),
                        refined_detail_scale_by_keep=((0.007, 0.0), (0.014, 0.5), (0.028, 0.0),
                                                      (1.0, 0.0)))
    # training-free files: today's tables
    assert cfg.bias_for_kept_fraction(0.01) == 1.0 and cfg.detail_scale_for_kept_fraction(0.01) == 1.0
    # refined: the bin a kept fraction falls in (nearest node in log keep next to an off bin)
    assert cfg.bias_for_kept_fraction(0.014, refined=True) == -1.0
    assert cfg.bias_for_kept_fraction(0.012, refined=True) == -1.0  # nearer 0.014 than 0.007
    assert cfg.bias_for_kept_fraction(0.0085, refined=True) == INF  # in the off bin
    assert cfg.bias_for_kept_fraction(0.004, refined=True) == INF  # below the first node
    assert cfg.bias_for_kept_fraction(0.1, refined=True) == INF
    assert cfg.detail_scale_for_kept_fraction(0.014, refined=True) == 0.5
    assert cfg.detail_scale_for_kept_fraction(0.0085, refined=True) == 0.0  # off: no head
    # unknown kept fraction: the unknown-keep default for both kinds of file
    assert cfg.bias_for_kept_fraction(None, refined=True) == -4.0
    assert cfg.detail_scale_for_kept_fraction(None, refined=True) == 0.0
    # weights without a refined table: refined files as before
    old = PainterConfig(gate_bias_by_keep=((0.01, 1.0), (0.1, -2.0)))
    for k in (0.005, 0.03, 0.2, 1.0, None):
        assert old.bias_for_kept_fraction(k, refined=True) == old.bias_for_kept_fraction(k)


def test_refined_table_json_round_trip_writes_null_for_off(tmp_path):
    net = _net(refined_gate_bias_by_keep=((0.01, INF), (0.1, -1.5), (1.0, INF)),
               refined_detail_scale_by_keep=((0.01, 0.0), (0.1, 0.25), (1.0, 0.0)))
    export_diffusers(net, tmp_path / "w")
    text = (tmp_path / "w" / "painter.json").read_text()
    d = json.loads(text)  # standard JSON: no -Infinity
    assert "Infinity" not in text
    assert d["refined_gate_bias_by_keep"] == [[0.01, None], [0.1, -1.5], [1.0, None]]
    cfg = load_net(tmp_path / "w").cfg
    assert cfg.refined_gate_bias_by_keep == net.cfg.refined_gate_bias_by_keep
    assert cfg.refined_detail_scale_by_keep == net.cfg.refined_detail_scale_by_keep


def test_refined_file_goes_through_the_refined_table(tmp_path):
    """A painter.json whose refined table shuts the gate: a refined frame comes back exactly
    (detail head included), the same frame of a training-free file is restored."""
    export_diffusers(_net(refined_gate_bias_by_keep=SHUT,
                          refined_detail_scale_by_keep=((0.01, 1.0), (1.0, 1.0))),
                     tmp_path / "w")
    cfg = json.loads((tmp_path / "w" / "painter.json").read_text())
    cfg["detail_scale_by_keep"] = [[0.01, 1.0], [1.0, 1.0]]
    (tmp_path / "w" / "painter.json").write_text(json.dumps(cfg))
    p = Painter(load_net(tmp_path / "w"))
    rgb, alpha = _frame()
    for keep in (0.005, 0.01, 0.03, 0.1, 0.3):
        out, a = p.restore(rgb, alpha, kept_fraction=keep, refined=True, return_alpha=True)
        assert np.array_equal(out, rgb) and np.array_equal(a, alpha)
        free = p.restore(rgb, alpha, kept_fraction=keep)
        assert np.abs(free - rgb).max() > 1e-3
    # tiled frames too (the refined state reaches every tile)
    big_rgb, big_alpha = np.tile(rgb, (5, 5, 1)), np.tile(alpha, (5, 5))
    assert np.array_equal(p.restore(big_rgb, big_alpha, kept_fraction=0.02, refined=True),
                          big_rgb)


def test_old_painter_json_without_refined_table_behaves_as_before(tmp_path):
    export_diffusers(_net(), tmp_path / "w")
    d = json.loads((tmp_path / "w" / "painter.json").read_text())
    for k in ("refined_gate_bias_by_keep", "refined_detail_scale_by_keep"):
        d.pop(k)  # a painter.json written before session 7
    (tmp_path / "w" / "painter.json").write_text(json.dumps(d))
    p = Painter(load_net(tmp_path / "w"))
    rgb, alpha = _frame(1)
    for keep in (0.01, 0.05, None):
        a = p.restore(rgb, alpha, kept_fraction=keep, refined=True)
        b = p.restore(rgb, alpha, kept_fraction=keep)
        assert np.array_equal(a, b)


def test_sweep_scores_what_inference_computes():
    """The refined calibration scores candidate (bias, scale) exactly as the painter then
    restores with that setting in its refined table."""
    from exgs.painter.calibrate_refined import refined_sweep, refined_tables

    net = _net()
    rng = np.random.default_rng(2)
    rgb, alpha = _frame(3, 64)  # ≥ MIN_SIZE: the painter does not pad it
    clean = np.clip(rgb + rng.normal(0, 0.05, rgb.shape), 0, 1).astype(np.float16)
    pair = {"clean_rgb": clean, "clean_alpha": np.ones_like(alpha, np.float16),
            "deg_rgb": np.stack([rgb, rgb]).astype(np.float16),
            "deg_alpha": np.stack([alpha, alpha]).astype(np.float16),
            "keeps": np.array([0.03, 0.03], np.float32), "refined": np.array([False, True])}
    sw = refined_sweep(net, [pair], biases=(-1.0, 0.5), scales=(0.0, 0.5))
    assert sw["gain"].shape == (4, 1) and sw["keeps"].tolist() == [pytest.approx(0.03)]
    from exgs.metrics import psnr

    x = rgb.astype(np.float16).astype(np.float32)
    c = clean.astype(np.float32)
    p0 = psnr(x, c)
    for i, (b, s) in enumerate(zip(sw["biases"], sw["scales"])):
        net.cfg.refined_gate_bias_by_keep = ((0.03, float(b)), (1.0, INF))
        net.cfg.refined_detail_scale_by_keep = ((0.03, float(s)), (1.0, 0.0))
        out = Painter(net).restore(x, alpha, kept_fraction=0.03, refined=True)
        assert abs((psnr(out, c) - p0) - sw["gain"][i, 0]) < 2e-3
    # every candidate worse than the input on every frame → the bin is off
    bt, st, rep = refined_tables({**sw, "gain": -np.abs(sw["gain"]) - 0.1})
    assert bt[0][1] == INF and st[0][1] == 0.0 and rep[0]["bias"] is None
    assert bt[-1] == (1.0, INF)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(training-free .exgs, refined .exgs, PLY) of one small scene (refine_result writes the
    refined file's header as the compressor does)."""
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene
    from exgs.ugc import compress
    from exgs.ugc.refine import RefineOptions
    from exgs.ugc.refine_file import refine_result

    d = tmp_path_factory.mktemp("refined")
    full = demo_scene(n=3000, sh_degree=1, seed=3)
    # the count voxel rule: on this tiny scene its refined file fits the budget and wins
    res = compress(full, keep_target=0.08, views=6, view_size=(64, 48), voxel_mass_share=0.0)
    out = refine_result(full, res, RefineOptions(steps=40, resolution=48, views=8,
                                                 decision_views=4, decision_resolution=64,
                                                 seconds=None))
    assert not out.stats["refine"]["switched_off"]
    (d / "free.exgs").write_bytes(res.data)
    (d / "refined.exgs").write_bytes(out.data)
    write_ply(full, d / "full.ply")
    return d / "free.exgs", d / "refined.exgs", d / "full.ply"


def test_header_to_facts_and_restorer(files):
    from exgs.pipeline import RestoreOptions, facts_of_bytes, facts_of_file
    from exgs.pipeline.restore import _restorer_for

    free, refined, ply = files
    assert facts_of_file(refined).refined and facts_of_bytes(refined.read_bytes()).refined
    assert not facts_of_file(free).refined and not facts_of_file(ply).refined
    assert facts_of_file(refined).info()["refined"] is True

    class Fake:
        def restore(self, rgb, alpha, **kw):
            self.kw = kw
            return rgb, alpha

    import exgs.pipeline.restore as R

    fake = Fake()
    orig = R._load_painter
    R._load_painter = lambda *a: fake
    try:
        for path, want in ((refined, True), (free, False), (ply, False)):
            r = _restorer_for(path)
            r.restore_rgba(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32))
            assert fake.kw["refined"] is want and r.refined is want
        r = _restorer_for(refined, RestoreOptions(refined=False))  # an explicit override
        assert r.refined is False
    finally:
        R._load_painter = orig


@pytest.mark.parametrize("command", ["render", "eval"])
def test_cli_passes_the_files_refinement_state(files, tmp_path, monkeypatch, command):
    import exgs.painter as painter

    free, refined, ply = files
    seen = []

    class Fake:
        def restore(self, rgb, alpha, kept_fraction=None, refined=False, return_alpha=False):
            seen.append((kept_fraction, refined))
            return (rgb, alpha) if return_alpha else rgb

    monkeypatch.setattr(painter, "load_painter", lambda path=None, device="cpu": Fake())
    for path, want in ((refined, True), (free, False), (ply, False)):
        seen.clear()
        if command == "render":
            argv = ["render", str(path), "--out", str(tmp_path / path.stem), "--orbit", "1",
                    "--size", "16x12", "--restore", "--device", "cpu"]
        else:
            argv = ["eval", str(ply), str(path), "--views", "1", "--size", "16x12",
                    "--restore", "--device", "cpu"]
        assert main(argv) == 0
        assert seen and all(r is want for _, r in seen)
        if path != ply:
            assert all(k is not None and 0 < k < 1 for k, _ in seen)


def test_none_delta_shuts_a_refined_file_too():
    from exgs.painter.delta import apply_delta, none_delta

    net = apply_delta(_net(refined_gate_bias_by_keep=((0.01, 3.0), (1.0, 3.0))), none_delta())
    rgb, alpha = _frame(4)
    assert np.array_equal(Painter(net).restore(rgb, alpha, kept_fraction=0.01, refined=True),
                          rgb)
    assert math.isinf(net.cfg.bias_for_kept_fraction(0.01, refined=True))


def test_shipped_painter_does_no_harm_to_a_generated_refined_file(files):
    """The shipped weights' refined table on a small generated refined file: restored views
    lose at most 0.05 dB against the unrestored ones (vs the full scene's renders)."""
    from exgs.cameras import orbit_for_scene
    from exgs.io import read_scene
    from exgs.io.exgs import read_exgs_scene
    from exgs.metrics import psnr
    from exgs.pipeline import restorer_for
    from exgs.render import render

    _, refined, ply = files
    full, sc = read_scene(ply), read_exgs_scene(refined)
    restorer = restorer_for(refined)
    assert restorer.refined and restorer.painter.config.refined_gate_bias_by_keep
    for cam in orbit_for_scene(full, 3, 96, 96, seed=11):
        clean, r = render(full, cam), render(sc, cam)
        out = restorer(r.rgb, r.alpha)
        assert psnr(out, clean.rgb) >= psnr(r.rgb, clean.rgb) - 0.05


# --------------------------------------------- generic tables by the same rule (session 8)
def test_free_sweep_scores_training_free_frames_as_inference_computes():
    """``refined=False``: the sweep scores the training-free frames, exactly as the painter
    restores a training-free file with that (bias, scale) in its generic tables."""
    from exgs.metrics import psnr
    from exgs.painter.calibrate_refined import refined_sweep

    net = _net()
    rng = np.random.default_rng(4)
    rgb, alpha = _frame(5, 64)
    rgb2, alpha2 = _frame(6, 64)
    clean = np.clip(rgb + rng.normal(0, 0.05, rgb.shape), 0, 1).astype(np.float16)
    pair = {"clean_rgb": clean, "clean_alpha": np.ones_like(alpha, np.float16),
            "deg_rgb": np.stack([rgb, rgb2]).astype(np.float16),
            "deg_alpha": np.stack([alpha, alpha2]).astype(np.float16),
            "keeps": np.array([0.03, 0.03], np.float32), "refined": np.array([False, True])}
    sw = refined_sweep(net, [pair], biases=(-1.0, 0.5), scales=(0.0, 0.5), refined=False)
    assert sw["gain"].shape == (4, 1)
    x = rgb.astype(np.float16).astype(np.float32)
    c = clean.astype(np.float32)
    p0 = psnr(x, c)
    for i, (b, s) in enumerate(zip(sw["biases"], sw["scales"])):
        net.cfg.gate_bias_by_keep = ((0.03, float(b)), (1.0, float(b)))
        net.cfg.detail_scale_by_keep = ((0.03, float(s)), (1.0, float(s)))
        out = Painter(net).restore(x, alpha, kept_fraction=0.03)
        assert abs((psnr(out, c) - p0) - sw["gain"][i, 0]) < 2e-3
    # frames with nothing pruned are not calibration frames
    ident = {**pair, "keeps": np.array([1.0, 0.03], np.float32)}
    assert len(refined_sweep(net, [ident], biases=(0.0,), scales=(0.0,), refined=False)
               ["keeps"]) == 0


def test_generic_off_bin_returns_the_input_and_round_trips(tmp_path):
    """A null (−∞) in ``gate_bias_by_keep`` switches the painter off for training-free files
    of that kept fraction (detail head included) and survives painter.json."""
    net = _net()
    net.cfg.gate_bias_by_keep = ((0.01, 0.0), (0.03, INF), (1.0, INF))
    net.cfg.detail_scale_by_keep = ((0.01, 1.0), (0.03, 1.0), (1.0, 0.0))
    export_diffusers(net, tmp_path / "w")
    d = json.loads((tmp_path / "w" / "painter.json").read_text())
    assert d["gate_bias_by_keep"][1] == [0.03, None]
    p = Painter(load_net(tmp_path / "w"))
    assert p.config.gate_bias_by_keep == net.cfg.gate_bias_by_keep
    rgb, alpha = _frame(7)
    assert np.array_equal(p.restore(rgb, alpha, kept_fraction=0.03), rgb)
    assert p.config.detail_scale_for_kept_fraction(0.03) == 0.0
    assert np.abs(p.restore(rgb, alpha, kept_fraction=0.01) - rgb).max() > 1e-3


def test_calibrate_free_writes_the_generic_tables(tmp_path, capsys):
    from exgs.painter.calibrate_refined import calibrate_free

    export_diffusers(_net(), tmp_path / "w")
    before = json.loads((tmp_path / "w" / "painter.json").read_text())
    rgb, alpha = _frame(8, 64)
    clean = np.clip(rgb * 0.9 + 0.05, 0, 1).astype(np.float16)
    pair = {"clean_rgb": clean, "clean_alpha": np.ones_like(alpha, np.float16),
            "deg_rgb": np.stack([rgb, rgb]).astype(np.float16),
            "deg_alpha": np.stack([alpha, alpha]).astype(np.float16),
            "keeps": np.array([0.012, 0.05], np.float32), "refined": np.array([False, False])}
    bt, st = calibrate_free(tmp_path / "w", [pair])
    d = json.loads((tmp_path / "w" / "painter.json").read_text())
    assert [k for k, _ in d["gate_bias_by_keep"]] == [k for k, _ in bt]
    assert d["gate_bias_by_keep"][-1] == [1.0, None] and len(bt) == 3  # two bins + the end
    assert d["refined_gate_bias_by_keep"] == before["refined_gate_bias_by_keep"]
    assert d["training"]["free_calibration"]["frames"] == 2
    assert "training-free calibration on 2 frames" in capsys.readouterr().out
