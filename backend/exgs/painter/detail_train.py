"""Training and calibration of GaussPainter's detail head (:mod:`.detail`, issue 15).

The rest of the painter stays frozen: the gated latent restoration ``restored`` of every
cached training pair is computed once, with the gate inference uses for the pair's kept
fraction (:meth:`PainterNet.forward` with ``kept_fraction``; the head at scale 0), and the
head learns the residual on top of it::

    out  = clamp(restored + DetailHead(rgb, restored, alpha, keep), 0, 1)
    loss = mean over crops of 10·log10(MSE(out, clean) + 1e-5)      (= − mean crop PSNR, dB)

The loss is the metric the issue measures (mean PSNR gain): a crop the pruning barely
changed has a tiny MSE, so any harm there costs as much as a large error elsewhere — the
loss itself is risk-averse. Training-free and refined renders (``refined`` in the pair
files, ``--refine-steps``) are both in the data.

Calibration (:func:`detail_tables`): the head's scale per kept fraction
(``PainterConfig.detail_scale_by_keep``) on training-scene views the head did not train on
(:func:`split_views`), by a risk-averse rule per bin of kept fractions: among the scales whose
``quantile`` of per-frame gains is ≥ ``worst_db`` *separately* for training-free and refined
frames, the one with the largest mean gain + ``loss_weight`` · mean(min(gain, 0)). This table
serves training-free files, and refined ones when the weights have no refined table; files
refined after pruning get their own gate and detail tables (:mod:`.calibrate_refined`).

Arrays are NHWC float32 numpy unless noted; display sRGB in [0, 1].
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .model import PainterNet


def split_views(files, every: int = 6) -> tuple[list, list]:
    """(train files, calibration files): every ``every``-th view of each scene (``v000``,
    ``v006``, …) is kept for calibration; pair files are ``<cache>/<scene>/vNNN.npz``."""
    tr, cal = [], []
    for f in files:
        i = int(Path(f).stem[1:])
        (cal if i % every == 0 else tr).append(f)
    return tr, cal


@torch.no_grad()
def base_restorations(net: PainterNet, pairs: list[dict], max_keep: float = 1.0) -> list[dict]:
    """Per pair file: ``{"rgb" [K,H,W,3], "alpha" [K,H,W], "restored" [K,H,W,3], "clean"
    [H,W,3], "keeps" [K], "refined" [K] bool}`` (float16 arrays; H, W cropped to multiples of
    8) where ``restored`` is the net's inference output for that kept fraction *without* the
    detail head. Only renders with kept fraction ≤ ``max_keep`` are kept (K counts those;
    pair files with none are skipped)."""
    from .fast import inference_copy

    saved = net.cfg.detail_scale_by_keep
    net.cfg.detail_scale_by_keep = ()
    fast = inference_copy(net)
    out = []
    try:
        for p in pairs:
            H, W = p["clean_alpha"].shape
            H8, W8 = H - H % 8, W - W % 8
            keeps = np.asarray(p["keeps"], np.float32)
            refined = np.asarray(p.get("refined", np.zeros(len(keeps), bool)), bool)
            sel = keeps <= max_keep
            if not sel.any():
                continue
            keeps, refined = keeps[sel], refined[sel]
            rgb = p["deg_rgb"][sel, :H8, :W8].astype(np.float32)
            al = p["deg_alpha"][sel, :H8, :W8].astype(np.float32)
            res = np.empty_like(rgb)
            for k in range(len(keeps)):
                x = torch.from_numpy(rgb[k]).permute(2, 0, 1)[None].contiguous(
                    memory_format=torch.channels_last)
                a = torch.from_numpy(al[k])[None, None].contiguous(memory_format=torch.channels_last)
                y = fast(x, a, kept_fraction=float(keeps[k])).clamp(0, 1)
                res[k] = y[0].permute(1, 2, 0).numpy()
            out.append({"rgb": rgb.astype(np.float16), "alpha": al.astype(np.float16),
                        "restored": res.astype(np.float16),
                        "clean": p["clean_rgb"][:H8, :W8].astype(np.float16),
                        "keeps": keeps, "refined": refined})
    finally:
        net.cfg.detail_scale_by_keep = saved
    return out


def sample_crops(bases: list[dict], rng: np.random.Generator, batch: int, crop: int):
    """Random crops: (rgb, alpha, restored, clean, keep) as tensors [B,3,c,c], [B,1,c,c],
    [B,3,c,c], [B,3,c,c], [B]. Augmentation: horizontal flip, 90° rotations, and one colour
    matrix near identity (with channel permutation and gain) applied to the three colour
    images alike (alpha unchanged)."""
    rs, als, res, cls, ks = [], [], [], [], []
    for _ in range(batch):
        b = bases[rng.integers(len(bases))]
        k = rng.integers(len(b["keeps"]))
        H, W = b["clean"].shape[:2]
        c = min(crop, H, W)
        y0, x0 = rng.integers(0, H - c + 1), rng.integers(0, W - c + 1)
        sl = (slice(y0, y0 + c), slice(x0, x0 + c))
        st = np.concatenate([b["rgb"][k][sl], b["alpha"][k][sl][..., None], b["restored"][k][sl],
                             b["clean"][sl]], -1).astype(np.float32)
        if rng.uniform() < 0.5:
            M = np.eye(3)[rng.permutation(3)] if rng.uniform() < 0.5 else np.eye(3)
            M = (M + rng.normal(0, 0.05, (3, 3))) * rng.uniform(0.8, 1.2)
            M = M.T.astype(np.float32)
            for s in (slice(0, 3), slice(4, 7), slice(7, 10)):
                st[..., s] = st[..., s] @ M
            st = np.clip(st, 0.0, 1.0)
        if rng.uniform() < 0.5:
            st = st[:, ::-1]
        st = np.rot90(st, int(rng.integers(0, 4)))
        if c < crop:
            st = np.pad(st, ((0, crop - c), (0, crop - c), (0, 0)))
        st = np.ascontiguousarray(st)
        rs.append(st[..., 0:3])
        als.append(st[..., 3:4])
        res.append(st[..., 4:7])
        cls.append(st[..., 7:10])
        ks.append(float(b["keeps"][k]))
    t = lambda v: torch.from_numpy(np.stack(v)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return t(rs), t(als), t(res), t(cls), torch.tensor(ks, dtype=torch.float32)


def psnr_loss(out: torch.Tensor, clean: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean over the batch of 10·log10(per-crop MSE + eps): minus the mean crop PSNR (dB)."""
    mse = ((out - clean) ** 2).flatten(1).mean(1)
    return (10.0 * torch.log10(mse + eps)).mean()


@dataclass
class DetailTrainConfig:
    steps: int = 4000
    minutes: float = 0.0  #: wall-time budget of the whole run (0 = none); sets the cosine
    segment_minutes: float = 0.0  #: stop (checkpointed) after this long in this process
    batch: int = 16
    crop: int = 96
    lr: float = 2e-3
    seed: int = 0
    checkpoint_minutes: float = 3.0
    threads: int = 2


def train_detail(net: PainterNet, bases: list[dict], tc: DetailTrainConfig, out_dir,
                 log=print) -> dict:
    """Train ``net.detail`` in place (the rest frozen) on :func:`base_restorations` output;
    resumable from ``out_dir/detail_checkpoint.pt``. Returns {"step", "minutes", "finished",
    "history"}."""
    torch.set_num_threads(tc.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ck = out_dir / "detail_checkpoint.pt"
    head = net.detail
    opt = torch.optim.AdamW(head.parameters(), lr=tc.lr, weight_decay=1e-5)
    step, elapsed, history = 0, 0.0, []
    if ck.exists():
        d = torch.load(ck, map_location="cpu", weights_only=False)
        head.load_state_dict(d["head"])
        opt.load_state_dict(d["opt"])
        step, elapsed, history = d["step"], d["elapsed"], d["history"]
        log(f"resumed detail head at step {step} ({elapsed / 60:.1f} min)")
    rng = np.random.default_rng([tc.seed, step])

    def lr_at(s, el):
        if s < 50:
            return tc.lr * (s + 1) / 50
        prog = s / max(tc.steps, 1)
        if tc.minutes:
            prog = max(prog, el / (60 * tc.minutes))
        return tc.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, prog))))

    def save():
        from ..fsutil import atomic_path

        with atomic_path(ck) as tmp:
            torch.save({"head": head.state_dict(), "opt": opt.state_dict(), "step": step,
                        "elapsed": elapsed, "history": history, "config": asdict(tc)}, tmp)

    head.train()
    t0, t_seg, t_ck = time.time() - elapsed, time.time(), time.time()
    run_gain, finished = None, True
    while step < tc.steps:
        if tc.minutes and (time.time() - t0) / 60 >= tc.minutes:
            break
        if tc.segment_minutes and (time.time() - t_seg) / 60 >= tc.segment_minutes:
            finished = False
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, time.time() - t0)
        rgb, al, res, clean, keep = sample_crops(bases, rng, tc.batch, tc.crop)
        out = (res + head(rgb, res, al, keep)).clamp(0.0, 1.0)
        loss = psnr_loss(out, clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            gain = float(psnr_loss(res, clean) - loss)  # dB gained on this batch
        run_gain = gain if run_gain is None else 0.98 * run_gain + 0.02 * gain
        step += 1
        elapsed = time.time() - t0
        if step % 50 == 0:
            history.append({"step": step, "min": round(elapsed / 60, 2),
                            "gain_db": round(run_gain, 4)})
            log(f"step {step} {elapsed / 60:.1f} min  batch gain {run_gain:+.3f} dB")
        if time.time() - t_ck > tc.checkpoint_minutes * 60:
            save()
            t_ck = time.time()
    save()
    head.eval()
    return {"step": step, "minutes": elapsed / 60, "finished": finished and step >= tc.steps
            or bool(tc.minutes and elapsed / 60 >= tc.minutes), "history": history[-20:]}


# ------------------------------------------------------------------------- calibration
def _psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 99.0 if mse <= 1e-10 else -10.0 * math.log10(mse)


@torch.no_grad()
def detail_sweep(net: PainterNet, bases: list[dict], scales) -> dict:
    """Per frame of ``bases`` and candidate scale s: PSNR gain (dB) of clamp(restored + s·r)
    over the *pruned* render (vs the clean render), and the gain of ``restored`` itself.
    Returns {"keeps" [N], "refined" [N] bool, "scales" [S], "gain" [S,N], "base_gain" [N]}."""
    from .fast import inference_copy

    head = inference_copy(net.detail)
    keeps, refined, gains, base = [], [], [], []
    for b in bases:
        for k in range(len(b["keeps"])):
            x = torch.from_numpy(b["rgb"][k].astype(np.float32)).permute(2, 0, 1)[None]
            a = torch.from_numpy(b["alpha"][k].astype(np.float32))[None, None]
            y = torch.from_numpy(b["restored"][k].astype(np.float32)).permute(2, 0, 1)[None]
            r = head(x.contiguous(memory_format=torch.channels_last),
                     y.contiguous(memory_format=torch.channels_last),
                     a.contiguous(memory_format=torch.channels_last), float(b["keeps"][k]))
            clean = b["clean"].astype(np.float32)
            p0 = _psnr_np(b["rgb"][k].astype(np.float32), clean)
            row = []
            for s in scales:
                o = (y + float(s) * r).clamp(0, 1)[0].permute(1, 2, 0).numpy()
                row.append(_psnr_np(o, clean) - p0)
            gains.append(row)
            base.append(_psnr_np(b["restored"][k].astype(np.float32), clean) - p0)
            keeps.append(float(b["keeps"][k]))
            refined.append(bool(b["refined"][k]))
    return {"keeps": np.array(keeps), "refined": np.array(refined, bool),
            "scales": np.array(scales, np.float64), "gain": np.array(gains).T,
            "base_gain": np.array(base)}


def detail_tables(sweep: dict, edges=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32),
                  worst_db: float = -0.05, quantile: float = 0.1,
                  loss_weight: float = 2.0, monotone: bool = True) -> tuple[list, list]:
    """(scale table, report rows) from :func:`detail_sweep`: per bin of kept fractions the
    scale with the largest risk-averse score (mean Δ + ``loss_weight`` · mean(min(Δ, 0)),
    Δ = gain over the head-less painter) among the scales whose per-frame Δ has its
    ``quantile`` ≥ ``worst_db`` on training-free and on refined frames separately (scale 0
    always qualifies). With ``monotone`` the table is made non-increasing in keep (a less
    pruned scene never gets a larger scale); without, each bin keeps its own choice (each
    passed the quantile rule on its own frames). It ends at scale 0 for keep = 1 (nothing
    pruned)."""
    scales, keeps, ref = sweep["scales"], sweep["keeps"], sweep["refined"]
    delta = sweep["gain"] - sweep["base_gain"][None]
    table, report = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (keeps >= lo) & (keeps < hi)
        if not sel.any():
            continue
        d = delta[:, sel]
        score = d.mean(1) + loss_weight * np.minimum(d, 0.0).mean(1)
        ok = np.ones(len(scales), bool)
        for kind in (False, True):
            m = ref[sel] == kind
            if m.any():
                ok &= np.quantile(d[:, m], quantile, axis=1) >= worst_db
        ok |= scales == 0
        score = np.where(ok, score, -np.inf)
        i = int(np.argmax(score))
        node = float(math.sqrt(lo * hi))
        table.append([node, float(scales[i])])
        row = {"keep": node, "n": int(sel.sum()), "scale": float(scales[i])}
        for kind, name in ((False, "free"), (True, "refined")):
            m = ref[sel] == kind
            if m.any():
                row[name] = {"n": int(m.sum()), "delta_db": float(d[i, m].mean()),
                             "q_db": float(np.quantile(d[i, m], quantile)),
                             "gain_db": float(sweep["gain"][i, sel][m].mean())}
        report.append(row)
    for i in range(1, len(table) if monotone else 0):
        table[i][1] = min(table[i][1], table[i - 1][1])
    table.append([1.0, 0.0])
    return [tuple(t) for t in table], report


def calibrate_detail(weights_dir, bases: list[dict], scales=(0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
                     **kw) -> list:
    """Sweep, choose (:func:`detail_tables`), print, and write ``detail_scale_by_keep`` into
    ``weights_dir/painter.json`` (atomically). Returns the table."""
    from ..fsutil import atomic_path
    from .infer import load_net

    net = load_net(weights_dir)
    sw = detail_sweep(net, bases, scales)
    table, report = detail_tables(sw, **kw)
    print(f"detail-head calibration on {len(sw['keeps'])} frames (Δ = gain over the head-less "
          "painter, dB; q = 10 % quantile of per-frame Δ)")
    for r in report:
        line = f"keep {r['keep']:.4f} n {r['n']:3d} scale {r['scale']:.2f}"
        for name in ("free", "refined"):
            if name in r:
                v = r[name]
                line += (f" | {name} n {v['n']} Δ {v['delta_db']:+.3f} q {v['q_db']:+.3f} "
                         f"gain {v['gain_db']:+.3f}")
        print(line)
    cfg_file = Path(weights_dir) / "painter.json"
    d = json.loads(cfg_file.read_text())
    d["detail_scale_by_keep"] = [list(t) for t in table]
    d.setdefault("training", {})["detail_calibration"] = {
        "frames": int(len(sw["keeps"])), "report": report,
        "rule": "exgs.painter.detail_train.detail_tables", **{k: v for k, v in kw.items()}}
    with atomic_path(cfg_file) as tmp:
        Path(tmp).write_text(json.dumps(d, indent=2))
    return table
