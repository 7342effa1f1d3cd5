"""Gate calibration (exgs.painter.calibrate): the sweep's bookkeeping and the selection rule."""

import numpy as np
import torch

from exgs.painter.calibrate import choose, gate_sweep
from exgs.painter.model import PainterConfig, PainterNet


def _pair(rng, size=32):
    clean = rng.uniform(0, 1, (size, size, 3)).astype(np.float16)
    deg = clean.copy()
    deg[8:20, 8:20] = 0  # a hole
    da = np.ones((size, size), np.float16)
    da[8:20, 8:20] = 0
    return {"clean_rgb": clean, "clean_alpha": np.ones((size, size), np.float16),
            "deg_rgb": deg[None], "deg_alpha": da[None], "keeps": np.array([0.01], np.float32)}


def test_gate_sweep_rows_and_identity_exact_at_floor_zero():
    torch.manual_seed(0)
    net = PainterNet(PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 16)))
    rows = gate_sweep(net, [_pair(np.random.default_rng(0))], biases=[-2, 0], floors=[0.0, 1.0])
    assert [(r["bias"], r["floor"]) for r in rows] == [(-2, 0), (-2, 1), (0, 0), (0, 1)]
    for r in rows:
        assert set(r) >= {"<2%", "identity"}
        if r["floor"] == 0.0:  # identity input is fully opaque: the capped gate is 0 → exact
            assert r["identity"] == 99.0
    assert net.cfg.gate_bias == 0.0 and net.cfg.gate_floor == 0.0  # restored afterwards


def test_choose_respects_do_no_harm_constraints():
    rows = [{"bias": 0, "floor": 1, "<2%": 3.0, "2-10%": 2.0, ">10%": 1.0, "identity": 38.0},
            {"bias": 0, "floor": 0, "<2%": 2.0, "2-10%": 1.0, ">10%": -0.5, "identity": 60.0},
            {"bias": -1, "floor": 0, "<2%": 1.5, "2-10%": 0.8, ">10%": 0.1, "identity": 62.0},
            {"bias": -2, "floor": 0, "<2%": 0.5, "2-10%": 0.2, ">10%": 0.05, "identity": 70.0}]
    assert choose(rows) is rows[2]  # row 0 harms identity, row 1 harms light pruning
    assert choose(rows[:2])["floor"] == 0  # nothing admissible → the most conservative


def test_bias_by_keep_is_monotone_and_respects_identity():
    from exgs.painter.calibrate import bias_by_keep

    biases = [-3.0, -1.0, 1.0]
    rows = [{"bias": b, "floor": 0.0} for b in biases]
    keeps = np.array([0.006, 0.007, 0.05, 0.2, 1.0, 1.0])
    # gains per (bias, pair): heavy pruning likes an open gate, light pruning a shut one;
    # identity pairs (keep 1) hold 50 / 44 / 38 dB vs the input
    scores = np.array([[0.2, 0.3, 0.1, 0.0, 50, 50],
                       [1.0, 1.1, 0.5, -0.2, 44, 44],
                       [2.0, 2.1, 0.2, -1.0, 38, 38]])
    table = bias_by_keep(rows, {"keeps": keeps, "scores": scores}, floor=0.0,
                         edges=(0.005, 0.01, 0.1, 0.32), min_identity_db=45.0)
    assert [b for _, b in table] == [1.0, -1.0, -3.0, -3.0]
    assert table[-1][0] == 1.0


def test_config_bias_for_keep_interpolates_in_log_keep():
    from exgs.painter.model import PainterConfig

    cfg = PainterConfig(gate_bias=-2.0, gate_bias_by_keep=((0.01, 1.0), (0.1, -1.0), (1.0, -3.0)))
    assert cfg.bias_for_kept_fraction(None) == -2.0
    assert cfg.bias_for_kept_fraction(0.001) == 1.0 and abs(cfg.bias_for_kept_fraction(0.99) + 3.0) < 0.01
    assert cfg.bias_for_kept_fraction(1.0) == float("-inf")  # nothing pruned: gate shut
    assert abs(cfg.bias_for_kept_fraction(0.01 ** 0.5 * 0.1 ** 0.5) - 0.0) < 1e-9  # halfway in log
    assert PainterConfig.from_dict({"gate_bias_by_keep": [[0.01, 1], [1, -3]]}).gate_bias_by_keep \
        == ((0.01, 1.0), (1.0, -3.0))
    assert PainterConfig().bias_for_kept_fraction(0.01) == 0.0  # no table: the single bias


def test_kept_fraction_of_exgs_file(tmp_path):
    from exgs.painter.infer import kept_fraction
    from exgs.synth import random_scene
    from exgs.ugc import compress

    scene = random_scene(3000, seed=1)
    res = compress(scene, keep_target=0.1, zstd_level=1, device="cpu")
    path = tmp_path / "s.exgs"
    path.write_bytes(res.data)
    k = kept_fraction(path)
    assert k is not None and abs(k - len(res.scene) / len(scene)) < 1e-9
    assert abs(kept_fraction(path, count=30) - 0.01) < 1e-9
    other = tmp_path / "x.ply"
    other.write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    assert kept_fraction(other) is None
