"""GaussPainter's gate and detail tables for *refined* files (issue 15 / issue 10).

A file refined after pruning (:mod:`exgs.ugc.refine`; its .exgs header records it) renders
much closer to the full scene than a training-free one, and the generic tables
(``gate_bias_by_keep``, ``detail_scale_by_keep``, calibrated mostly on training-free frames)
were measured to lower held-out refined renders by up to 0.23 dB. This module chooses
separate tables, ``refined_gate_bias_by_keep`` / ``refined_detail_scale_by_keep`` in
``painter.json``, on the REFINED frames of cached training pairs (``refined`` flag of
:func:`exgs.painter.data.build_scene_pairs`) only.

Per refined frame the network runs once (the decoded colour ``d`` and confidence logit
``c`` do not depend on the bias); every candidate (bias b, detail scale s) is then scored
exactly as inference computes it (:meth:`PainterNet.forward` with the weights' own floor,
coverage gain and covered-pixel cap)::

    restored = x + gate(c, α, b) · (clamp(d, 0, 1) − x)
    out      = clamp(restored + s · DetailHead(x, restored, α, keep), 0, 1)
    gain     = PSNR(out, clean) − PSNR(x, clean)                       (dB, per frame)

Rule per bin of kept fractions (the do-no-harm rule of
:func:`exgs.painter.detail_train.detail_tables`, here against the *unrestored* frame): among
the candidates whose ``quantile`` (10 %) of per-frame gains is ≥ ``worst_db`` (−0.05 dB),
the one with the largest mean gain + ``loss_weight`` · mean(min(gain, 0)). The painter *off*
(bias −∞: the input returned exactly, gain 0) always qualifies and wins ties, so a bin where
no setting passes, or none beats doing nothing, is off. No monotonicity is imposed across
bins (each bin's setting is one that was measured). The table ends with (1, −∞): nothing
pruned, nothing to restore.

Run: ``exgs painter-train --scenes "" --val-scenes "" --extra-pairs CACHE/ugc --cache TMP
--out RUN --calibrate-refined`` (writes ``RUN/painter/painter.json``; see docs/painter.md).

The same sweep and rule on the *training-free* frames (``refined=False``) give the generic
tables ``gate_bias_by_keep`` / ``detail_scale_by_keep`` (:func:`calibrate_free`,
``--calibrate-free``; session 8, after UGC's voxel rule changed what pruned renders look
like): the do-no-harm rule then holds for training-free files too, off bins included.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .model import PainterNet

BIASES = (-8.0, -6.0, -5.0, -4.0, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)
SCALES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
EDGES = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)


@torch.no_grad()
def refined_sweep(net: PainterNet, pairs: list[dict], biases=BIASES, scales=SCALES,
                  refined: bool = True) -> dict:
    """Score every (bias, scale) candidate on the refined frames of ``pairs`` (cached pair
    dicts, :func:`exgs.painter.data.load_pairs`; ``refined=False``: on the training-free
    frames instead, scored against the generic tables). Returns {"keeps" [N], "biases" [C],
    "scales" [C] (candidate c = (biases[c], scales[c]); the off candidate is not listed: gain
    0), "gain" [C,N] dB over the unrestored frame, "generic" [N] the gain of the weights'
    generic tables (what refined files got before)}."""
    from .fast import inference_copy
    from .tune import candidates, frame_gains, to_nchw

    net.eval()
    fast = inference_copy(net)
    cands = candidates(net, biases, scales)
    keeps, gains, generic = [], [], []
    for p in pairs:
        ref = np.asarray(p.get("refined", np.zeros(len(p["keeps"]), bool)), bool)
        ref = ref if refined else ~ref & (np.asarray(p["keeps"]) < 1.0)
        for k in np.flatnonzero(ref):
            kf = float(p["keeps"][k])
            # every candidate, and the generic tables' output (what refined files got before)
            row, g0 = frame_gains(fast, *to_nchw(p["deg_rgb"][k], p["deg_alpha"][k],
                                                 p["clean_rgb"]), kf, cands)
            gains.append(row)
            keeps.append(kf)
            generic.append(g0)
    return {"keeps": np.array(keeps), "biases": np.array([b for b, _ in cands]),
            "scales": np.array([s for _, s in cands]),
            "gain": np.array(gains).T.reshape(len(cands), len(keeps)),
            "generic": np.array(generic)}


def refined_tables(sweep: dict, edges=EDGES, worst_db: float = -0.05, quantile: float = 0.1,
                   loss_weight: float = 2.0) -> tuple[list, list, list]:
    """(bias table, scale table, report rows) from :func:`refined_sweep` by the rule in the
    module docstring. Off bins have bias −∞ and scale 0."""
    keeps, gain = sweep["keeps"], sweep["gain"]
    bt, st, report = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (keeps >= lo) & (keeps < hi)
        if not sel.any():
            continue
        g = gain[:, sel]
        score = g.mean(1) + loss_weight * np.minimum(g, 0.0).mean(1)
        ok = np.quantile(g, quantile, axis=1) >= worst_db
        score = np.where(ok, score, -np.inf)
        i = int(np.argmax(score))
        node = float(math.sqrt(lo * hi))
        on = bool(score[i] > 0.0)  # off (gain 0, score 0) wins ties and failures
        b = float(sweep["biases"][i]) if on else float("-inf")
        s = float(sweep["scales"][i]) if on else 0.0
        bt.append([node, b])
        st.append([node, s])
        gen = sweep["generic"][sel]
        report.append({"keep": node, "n": int(sel.sum()), "bias": None if not on else b,
                       "scale": s, "gain_db": float(g[i].mean()) if on else 0.0,
                       "q_db": float(np.quantile(g[i], quantile)) if on else 0.0,
                       "worst_db": float(g[i].min()) if on else 0.0,
                       "generic_gain_db": float(gen.mean()),
                       "generic_q_db": float(np.quantile(gen, quantile))})
    bt.append([1.0, float("-inf")])
    st.append([1.0, 0.0])
    return [tuple(t) for t in bt], [tuple(t) for t in st], report


def calibrate_refined(weights_dir, pairs: list[dict], **kw) -> tuple[list, list]:
    """Sweep, choose (:func:`refined_tables`), print, and write ``refined_gate_bias_by_keep``
    (−∞ as null) and ``refined_detail_scale_by_keep`` into ``weights_dir/painter.json``
    (atomically; the rest of the file unchanged). Returns (bias table, scale table)."""
    return _calibrate(weights_dir, pairs, True, **kw)


def calibrate_free(weights_dir, pairs: list[dict], **kw) -> tuple[list, list]:
    """The same on the training-free frames of ``pairs``: writes the generic
    ``gate_bias_by_keep`` (−∞ as null: the painter off) and ``detail_scale_by_keep``."""
    return _calibrate(weights_dir, pairs, False, **kw)


def _calibrate(weights_dir, pairs: list[dict], refined: bool, **kw) -> tuple[list, list]:
    from .infer import load_net

    kind = "refined" if refined else "training-free"
    net = load_net(weights_dir)
    sw = refined_sweep(net, pairs, refined=refined)
    if not len(sw["keeps"]):
        from ..errors import UsageError

        raise UsageError(f"no {kind} pruned frames in the calibration pairs"
                         + (" (build the cache with --refine-steps)" if refined else ""))
    bt, st, report = refined_tables(sw, **kw)
    write_tables(weights_dir, refined, bt, st, report, int(len(sw["keeps"])), kw)
    return bt, st


def write_tables(weights_dir, refined: bool, bt, st, report, frames: int, rule: dict,
                 source: str | None = None) -> None:
    """Print the report and write the tables (:func:`refined_tables`) into
    ``weights_dir/painter.json`` atomically (−∞ as null; the rest of the file unchanged):
    the ``refined_*`` tables when ``refined``, else the generic ones. ``source``: how the
    frames were made (recorded with the report)."""
    from ..fsutil import atomic_path
    from .model import bias_table_json

    kind = "refined" if refined else "training-free"
    print(f"{kind} calibration on {frames} frames (gain over the unrestored "
          "frame, dB; q = 10 % quantile; generic = the weights' generic tables)")
    for r in report:
        setting = "OFF" if r["bias"] is None else f"bias {r['bias']:+.1f} scale {r['scale']:.2f}"
        print(f"keep {r['keep']:.4f} n {r['n']:3d} {setting:24s} gain {r['gain_db']:+.3f} "
              f"q {r['q_db']:+.3f} worst {r['worst_db']:+.3f} | generic gain "
              f"{r['generic_gain_db']:+.3f} q {r['generic_q_db']:+.3f}")
    cfg_file = Path(weights_dir) / "painter.json"
    d = json.loads(cfg_file.read_text())
    prefix = "refined_" if refined else ""
    d[f"{prefix}gate_bias_by_keep"] = bias_table_json(bt)
    d[f"{prefix}detail_scale_by_keep"] = [list(t) for t in st]
    d.setdefault("training", {})[f"{'refined' if refined else 'free'}_calibration"] = {
        "frames": int(frames), "report": report,
        "rule": "exgs.painter.calibrate_refined.refined_tables", **rule,
        **({"source": source} if source else {})}
    with atomic_path(cfg_file) as tmp:
        Path(tmp).write_text(json.dumps(d, indent=2))
