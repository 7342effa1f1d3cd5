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
