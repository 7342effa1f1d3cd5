"""Choose the inference gate settings (``gate_bias``, ``gate_floor``) of trained weights.

Training leaves the gate fully learned (floor 1, bias 0). How far the shipped painter may
touch pixels is then chosen by measurement on *training* pairs (never the held-out scenes):
every candidate (bias, floor) is scored from one network evaluation per pair (the decoded
colour ``d`` and the confidence logit ``c`` do not depend on them)::

    g   = σ(c + bias) · max(clamp(gain · (1 − α), 0, 1), floor)
    out = rgb + g · (d − rgb)

Rule: among the candidates whose identity pairs (nothing pruned) stay ≥ ``min_identity_db``
from the input and whose lightly pruned pairs (kept > 10 %) do not lose more than
``max_light_loss_db``, take the one with the largest mean PSNR gain over the pruned pairs
(mean over the kept-fraction buckets < 2 %, 2–10 %, > 10 %).
"""

from __future__ import annotations

import numpy as np
import torch

from .model import PainterNet


def _bucket(keep: float) -> str:
    return "identity" if keep >= 1 else "<2%" if keep < 0.02 else "2-10%" if keep <= 0.1 else ">10%"


def _psnr_t(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse <= 1e-10 else min(99.0, -10.0 * float(np.log10(mse)))


@torch.no_grad()
def gate_sweep(net: PainterNet, pairs: list[dict], biases, floors) -> list[dict]:
    """Score every (bias, floor) on cached pairs (see :mod:`exgs.painter.data`).

    Returns one dict per candidate: ``bias``, ``floor`` and per bucket the mean PSNR gain
    (restored − pruned, dB, vs the clean render) or, for ``identity``, the mean PSNR of the
    output vs the input.
    """
    net.eval()
    cfg = net.cfg
    saved = (cfg.gate_bias, cfg.gate_floor)
    cfg.gate_bias, cfg.gate_floor = 0.0, 1.0
    items = []
    try:
        for p in pairs:
            clean = torch.from_numpy(p["clean_rgb"].astype(np.float32)).permute(2, 0, 1)[None]
            H, W = clean.shape[-2:]
            H8, W8 = H - H % 8, W - W % 8
            clean = clean[..., :H8, :W8]
            cands = [(float(k), p["deg_rgb"][i], p["deg_alpha"][i]) for i, k in enumerate(p["keeps"])]
            cands.append((1.0, p["clean_rgb"], p["clean_alpha"]))
            for keep, r, a in cands:
                x = torch.from_numpy(r.astype(np.float32)).permute(2, 0, 1)[None, :, :H8, :W8]
                al = torch.from_numpy(a.astype(np.float32))[None, None, :H8, :W8]
                _, aux = net(x.contiguous(), al.contiguous(), return_all=True)
                items.append((keep, x, al, clean, aux["decoded"].clamp(0, 1), aux["conf_logit"]))
    finally:
        cfg.gate_bias, cfg.gate_floor = saved
    rows = []
    for b in biases:
        for f in floors:
            acc: dict[str, list] = {}
            for keep, x, al, clean, d, c in items:
                cap = torch.clamp(cfg.gate_gain * (1.0 - al), 0.0, 1.0)
                if cfg.use_mask:
                    cap = torch.clamp(cap, min=f)
                else:
                    cap = torch.ones_like(cap)
                out = x + torch.sigmoid(c + b) * cap * (d - x)
                k = _bucket(keep)
                if k == "identity":
                    acc.setdefault(k, []).append(_psnr_t(out, x))
                else:
                    acc.setdefault(k, []).append(_psnr_t(out, clean) - _psnr_t(x, clean))
            rows.append({"bias": float(b), "floor": float(f),
                         **{k: float(np.mean(v)) for k, v in acc.items()}})
    return rows


def choose(rows: list[dict], min_identity_db: float = 45.0,
           max_light_loss_db: float = 0.0) -> dict:
    """The best admissible row (see module docstring); the most conservative if none is."""
    def score(r):
        return float(np.mean([r[k] for k in ("<2%", "2-10%", ">10%") if k in r]))

    ok = [r for r in rows if r.get("identity", 99.0) >= min_identity_db
          and r.get(">10%", 0.0) >= -max_light_loss_db]
    if not ok:
        return min(rows, key=lambda r: (r["floor"], r["bias"]))
    return max(ok, key=score)
