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
(mean over the kept-fraction buckets < 2 %, 2–10 %, > 10 %). That single bias is the default
for scenes of unknown kept fraction.

When the kept fraction is known (a .exgs file stores it), a bias per kept fraction does better:
heavily pruned scenes gain from an open gate, nearly complete ones only lose from it.
:func:`bias_by_keep` picks, per bin of kept fractions, the bias with the largest mean gain on the
training pairs of that bin (non-increasing in keep; at keep = 1 the identity rule above).
"""

from __future__ import annotations

import numpy as np
import torch

from .model import PainterNet


def _bucket(kept_fraction: float) -> str:
    f = kept_fraction
    return "identity" if f >= 1 else "<2%" if f < 0.02 else "2-10%" if f <= 0.1 else ">10%"


def _psnr_t(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse <= 1e-10 else min(99.0, -10.0 * float(np.log10(mse)))


@torch.no_grad()
def gate_sweep(net: PainterNet, pairs: list[dict], biases, floors, return_items: bool = False,
               covered=(0.0,)):
    """Score every (bias, floor) on cached pairs (see :mod:`exgs.painter.data`).

    ``covered``: candidate caps inside fully covered surroundings (``PainterNet.gate``).
    Returns one dict per candidate: ``bias``, ``floor``, ``covered`` and per bucket the mean PSNR gain
    (restored − pruned, dB, vs the clean render) or, for ``identity``, the mean PSNR of the
    output vs the input. With ``return_items`` also a dict ``keeps`` [N] (1 for identity
    pairs) and ``scores`` [candidates, N] (the per-pair values) for :func:`bias_by_keep`.
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
            for kept_fraction, r, a in cands:
                x = torch.from_numpy(r.astype(np.float32)).permute(2, 0, 1)[None, :, :H8, :W8]
                al = torch.from_numpy(a.astype(np.float32))[None, None, :H8, :W8]
                _, aux = net(x.contiguous(), al.contiguous(), return_all=True,
                             train_keep=torch.tensor([kept_fraction]))
                items.append((kept_fraction, x, al, clean, aux["decoded"].clamp(0, 1),
                              aux["conf_logit"]))
        rows, per_item = [], []
        cands = [(b, f, cv) for b in biases for f in floors for cv in covered]
        for b, f, cv in cands:
            cfg.gate_floor = f  # the candidate's gate, computed by the network's own rule
            acc: dict[str, list] = {}
            scores = []
            for kept_fraction, x, al, clean, d, c in items:
                cap = cv if kept_fraction < 1 else 0.0  # nothing pruned: never a cap
                out = x + net.gate(c, al, b, cap) * (d - x)
                k = _bucket(kept_fraction)
                if k == "identity":
                    v = _psnr_t(out, x)
                else:
                    v = _psnr_t(out, clean) - _psnr_t(x, clean)
                acc.setdefault(k, []).append(v)
                scores.append(v)
            rows.append({"bias": float(b), "floor": float(f), "covered": float(cv),
                         **{k: float(np.mean(v)) for k, v in acc.items()}})
            per_item.append(scores)
    finally:
        cfg.gate_bias, cfg.gate_floor = saved
    if return_items:
        return rows, {"keeps": np.array([it[0] for it in items]), "scores": np.array(per_item)}
    return rows


def gate_tables(rows: list[dict], items: dict, floor: float = 0.0,
                edges=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32), min_identity_db: float = 45.0,
                loss_weight: float = 2.0, worst_db: float = -0.05, quantile: float = 0.1):
    """(bias table, covered-cap table) per kept fraction at gate floor ``floor``.

    Each bin picks the (bias, covered cap) pair with the largest risk-averse score (see
    :func:`bias_by_keep`), where a candidate with a covered cap > 0 must also keep the
    ``quantile`` of its per-frame gains ≥ ``worst_db`` (opening fully covered pixels must not
    cost a noticeable share of frames anything). Both tables are made non-increasing in keep."""
    cols = [i for i, r in enumerate(rows) if r["floor"] == floor]
    biases = np.array([rows[i]["bias"] for i in cols])
    caps = np.array([rows[i].get("covered", 0.0) for i in cols])
    sc = items["scores"][cols]
    keeps = items["keeps"]
    bt, ct = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (keeps >= lo) & (keeps < hi)
        if not sel.any():
            continue
        g = sc[:, sel]
        score = g.mean(1) + loss_weight * np.minimum(g, 0.0).mean(1)
        bad = (caps > 0) & (np.quantile(g, quantile, axis=1) < worst_db)
        score = np.where(bad, -np.inf, score)
        i = int(np.argmax(score))
        node = float(np.sqrt(lo * hi))
        bt.append([node, float(biases[i])])
        ct.append([node, float(caps[i])])
    for t in (bt, ct):
        for i in range(1, len(t)):
            t[i][1] = min(t[i][1], t[i - 1][1])
    zero = caps == 0
    ident = keeps >= 1.0
    if ident.any():
        ok = [b for b, v in zip(biases[zero], sc[zero][:, ident].mean(1)) if v >= min_identity_db]
        b1 = max(ok) if ok else float(biases.min())
        if bt:
            b1 = min(b1, bt[-1][1])
        bt.append([1.0, float(b1)])
        ct.append([1.0, 0.0])
    return [tuple(x) for x in bt], [tuple(x) for x in ct]


def bias_by_keep(rows: list[dict], items: dict, floor: float = 0.0,
                 edges=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32),
                 min_identity_db: float = 45.0, loss_weight: float = 2.0) -> list[tuple[float, float]]:
    """Gate bias per kept fraction (``PainterConfig.gate_bias_by_keep``) at gate floor ``floor``.

    ``rows``/``items`` from ``gate_sweep(..., return_items=True)``. For each bin of kept
    fractions (``edges``) the bias with the largest risk-averse score on the bin's pairs —
    mean gain + ``loss_weight`` · mean(min(gain, 0)), so a loss on some frames counts
    (1 + loss_weight)× against gains elsewhere (unseen scenes vary more than the training
    pairs) — made
    non-increasing in keep (a less pruned scene never gets a more open gate); at keep = 1 (nothing
    pruned) the largest bias whose identity pairs stay ≥ ``min_identity_db`` from the input
    (capped by the last bin's). Table nodes sit at the bins' geometric centres.
    """
    cols = [i for i, r in enumerate(rows) if not r.get("covered", 0.0)]
    table, _ = gate_tables([rows[i] for i in cols],
                           {"keeps": items["keeps"], "scores": items["scores"][cols]},
                           floor=floor, edges=edges, min_identity_db=min_identity_db,
                           loss_weight=loss_weight)
    return table


def choose(rows: list[dict], min_identity_db: float = 45.0,
           max_light_loss_db: float = 0.0) -> dict:
    """The best admissible row (see module docstring); the most conservative if none is."""
    def score(r):
        return float(np.mean([r[k] for k in ("<2%", "2-10%", ">10%") if k in r]))

    rows = [r for r in rows if not r.get("covered", 0.0)]  # unknown keep: never a cap
    ok = [r for r in rows if r.get("identity", 99.0) >= min_identity_db
          and r.get(">10%", 0.0) >= -max_light_loss_db]
    if not ok:
        return min(rows, key=lambda r: (r["floor"], r["bias"]))
    return max(ok, key=score)
