"""Training and calibration of the detail head (exgs.painter.detail_train, issue 15): the
risk-averse scale rule, a head that learns a residual it can see, and the painter-train CLI
(generated scenes only)."""

import json

import numpy as np
import torch

from exgs.painter.detail import DetailHead
from exgs.painter.detail_train import (DetailTrainConfig, detail_tables, psnr_loss,
                                       split_views, train_detail)
from exgs.painter.model import PainterConfig, PainterNet


def test_split_views_keeps_every_sixth_view_for_calibration(tmp_path):
    files = [tmp_path / "s" / f"v{i:03d}.npz" for i in range(13)]
    tr, cal = split_views(files)
    assert [f.stem for f in cal] == ["v000", "v006", "v012"]
    assert len(tr) == 10 and not set(tr) & set(cal)


def test_psnr_loss_is_minus_mean_crop_psnr():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.1)
    assert abs(float(psnr_loss(a, b, eps=0.0)) + 20.0) < 1e-4  # MSE 0.01 → 20 dB


def _sweep(deltas_free, deltas_ref, keep=0.01, base=0.5):
    """A sweep of scales (0, 0.5, 1) whose per-frame gains over the base are given."""
    df, dr = np.asarray(deltas_free, float), np.asarray(deltas_ref, float)
    n = df.shape[1] + dr.shape[1]
    gain = np.concatenate([df, dr], 1) + base
    return {"keeps": np.full(n, keep), "refined": np.r_[np.zeros(df.shape[1], bool),
                                                        np.ones(dr.shape[1], bool)],
            "scales": np.array([0.0, 0.5, 1.0]), "gain": gain, "base_gain": np.full(n, base)}


def test_detail_tables_take_the_best_safe_scale_per_kind():
    z = [0.0] * 10
    # scale 1 gains most but loses on 2 of 10 refined frames (10 % quantile < −0.05 dB)
    sw = _sweep([z, [0.2] * 10, [0.4] * 10],
                [z, [0.1] * 10, [0.5] * 8 + [-0.3, -0.3]])
    table, report = detail_tables(sw, quantile=0.1)
    assert table[0][1] == 0.5
    assert table[-1] == (1.0, 0.0)
    assert report[0]["scale"] == 0.5 and report[0]["refined"]["n"] == 10
    # every scale harmful: the head stays off
    sw = _sweep([z, [-0.1] * 10, [-0.2] * 10], [z, [-0.1] * 10, [-0.2] * 10])
    assert detail_tables(sw)[0][0][1] == 0.0


def test_detail_tables_are_non_increasing_in_keep():
    z = [0.0] * 4
    a = _sweep([z, [0.1] * 4, [0.05] * 4], [z, [0.1] * 4, [0.05] * 4], keep=0.01)  # best 0.5
    b = _sweep([z, [0.1] * 4, [0.3] * 4], [z, [0.1] * 4, [0.3] * 4], keep=0.1)  # best 1.0
    sw = {k: np.concatenate([a[k], b[k]], -1) for k in ("keeps", "refined", "gain", "base_gain")}
    sw["scales"] = a["scales"]
    table, _ = detail_tables(sw)
    scales = [s for _, s in table]
    assert scales[0] == 0.5 and all(x >= y for x, y in zip(scales, scales[1:]))
    free, _ = detail_tables(sw, monotone=False)  # each bin keeps its own safe best
    assert [s for _, s in free] == [0.5, 1.0, 0.0]


def test_base_restorations_keep_only_renders_up_to_max_keep():
    from exgs.painter.detail_train import base_restorations

    rng = np.random.default_rng(0)
    pair = {"clean_rgb": rng.uniform(0, 1, (32, 32, 3)).astype(np.float16),
            "clean_alpha": np.ones((32, 32), np.float16),
            "deg_rgb": rng.uniform(0, 1, (3, 32, 32, 3)).astype(np.float16),
            "deg_alpha": np.ones((3, 32, 32), np.float16),
            "keeps": np.array([0.01, 0.05, 0.2], np.float32), "refined": np.array([0, 1, 0], bool)}
    net = PainterNet(PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8))).eval()
    (b,) = base_restorations(net, [pair], max_keep=0.06)
    assert np.allclose(b["keeps"], [0.01, 0.05]) and b["refined"].tolist() == [False, True]
    assert b["rgb"].shape == b["restored"].shape == (2, 32, 32, 3)
    assert np.array_equal(b["rgb"][1], pair["deg_rgb"][1])
    assert base_restorations(net, [pair], max_keep=0.001) == []


def test_train_detail_learns_a_residual_it_can_see(tmp_path):
    """Covered pixels whose clean colour is the render's darkened by a fixed amount: the
    head must gain on them (the gated restoration never touches covered pixels)."""
    rng = np.random.default_rng(0)
    bases = []
    for _ in range(4):
        rgb = rng.uniform(0.3, 0.9, (2, 48, 48, 3)).astype(np.float16)
        bases.append({"rgb": rgb, "alpha": np.ones((2, 48, 48), np.float16), "restored": rgb,
                      "clean": (rgb[0].astype(np.float32) * 0.8).astype(np.float16),
                      "keeps": np.array([0.01, 0.01], np.float32),
                      "refined": np.array([False, True])})
    net = PainterNet(PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8),
                                   detail_head=True))
    tc = DetailTrainConfig(steps=120, batch=4, crop=32, lr=3e-3)
    info = train_detail(net, bases, tc, tmp_path, log=lambda *_: None)
    assert info["step"] == 120 and info["finished"]
    assert info["history"][-1]["gain_db"] > 1.0
    assert (tmp_path / "detail_checkpoint.pt").is_file()
    info = train_detail(net, bases, DetailTrainConfig(steps=120), tmp_path, log=lambda *_: None)
    assert info["step"] == 120  # resumed: nothing left to do


def test_painter_train_detail_head_cli(tmp_path, capsys):
    from exgs.cli import main
    from exgs.painter.infer import load_net
    from exgs.painter.train import export_diffusers

    torch.manual_seed(0)
    init = tmp_path / "init"
    base = PainterNet(PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8),
                                    gate_head=True, gate_stats=True))
    export_diffusers(base, init, {"note": "tiny"})
    out = tmp_path / "run"
    args = ["painter-train", "--scenes", "proc:0", "--val-scenes", "", "--prune", "simple",
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--views", "2",
            "--size", "64", "--crop", "64", "--keeps-per-view", "2", "--steps", "3",
            "--init", str(init), "--detail-head", "--detail-crop", "32", "--detail-batch", "2",
            "--calibrate"]
    assert main(args) == 0
    w = out / "painter"
    assert (w / "detail_head.safetensors").is_file()
    cfg = json.loads((w / "painter.json").read_text())
    assert cfg["detail_head"] and cfg["detail_scale_by_keep"][-1] == [1.0, 0.0]
    assert cfg["training"]["base"] == {"note": "tiny"}
    assert cfg["training"]["detail"]["steps_done"] == 3
    assert cfg["training"]["detail_calibration"]["frames"] == 2  # v000: 2 kept fractions
    net = load_net(w)
    for (k, a), b in zip(net.vae.state_dict().items(), base.vae.state_dict().values()):
        assert torch.equal(a, b), k  # the rest of the painter is frozen
    assert isinstance(net.detail, DetailHead)
    assert main(args) == 0  # re-run: resumes, nothing left to train
    assert "resumed detail head at step 3" in capsys.readouterr().out


def test_stride_two_head_shapes_zero_start_and_round_trip(tmp_path):
    from exgs.painter.infer import load_net
    from exgs.painter.train import export_diffusers

    head = DetailHead(8, (1, 2), stride=2)
    rgb, alpha = torch.rand(2, 3, 21, 30), torch.rand(2, 1, 21, 30)
    assert torch.equal(head(rgb, rgb, alpha, 0.01), torch.zeros(2, 3, 21, 30))
    with torch.no_grad():
        torch.nn.init.normal_(head.net[-1].weight, std=0.1)
    r = head(rgb, rgb, alpha, torch.tensor([0.01, 0.1]))
    assert r.shape == (2, 3, 21, 30) and float(r.detach().abs().max()) > 0
    # a residual per pixel, not per 2×2 block
    q = r[..., :20, :]
    assert float((q[..., 0::2, 0::2] - q[..., 1::2, 1::2]).detach().abs().max()) > 0
    net = PainterNet(PainterConfig(vae_width=8, latent_channels=4, unet_channels=(8, 8),
                                   detail_head=True, detail_width=8, detail_dilations=(1, 2),
                                   detail_stride=2))
    net.detail.load_state_dict(head.state_dict())
    export_diffusers(net, tmp_path / "w")
    back = load_net(tmp_path / "w")
    assert back.detail.stride == 2
    assert torch.equal(back.detail(rgb, rgb, alpha, 0.01), head(rgb, rgb, alpha, 0.01))
