"""GaussPainter training loop: losses, checkpoints (resumable), export in diffusers format.

Losses (per batch of crops; rgb in [0, 1]):

* ``L_img  = |out − clean|₁ + w_ssim · (1 − SSIM(out, clean))`` on the gated output;
* ``L_lat  = ‖c(ẑ) − sg(E(clean))‖²`` latent supervision (sg = stop-gradient, c = 3·tanh(·/3),
  the soft clamp TAESD's decoder applies; E's output is soft-clamped the same way);
* ``L_ae   = |D(E(clean)) − clean|₁`` keeps (E, D) an auto-encoder so the latent target is
  meaningful (without it the latent loss could be met by collapsing E);
* ``L_hole = mean(m · |d − clean|₁)`` decoded colour inside the holes (m = 1 − alpha), so the
  decoder learns to fill even where the gate is still closed;
* ``L_gate = BCE(c, 1[|d − clean| + 0.01 < |rgb − clean|])`` trains the confidence logit c to
  say where the decoded colour beats the input (target computed without gradient).

``total = L_img + w_lat · L_lat + L_ae + 0.5 · L_hole + w_gate · L_gate``. Ablations: ``use_mask=False`` (no mask
input, gate from confidence only) and ``w_lat = 0`` (no latent loss).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fsutil import atomic_path
from .model import PainterConfig, PainterNet


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM of [B,C,H,W] images in [0,1] (11×11 Gaussian, σ = 1.5)."""
    C = a.shape[1]
    g = _gauss_window().to(a)
    wx = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def f(t):
        return F.conv2d(F.conv2d(t, wx, groups=C), wy, groups=C)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ma, mb = f(a), f(b)
    saa, sbb, sab = f(a * a) - ma ** 2, f(b * b) - mb ** 2, f(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma ** 2 + mb ** 2 + c1) * (saa + sbb + c2))
    return s.mean()


@dataclass
class TrainConfig:
    steps: int = 3000
    minutes: float = 0.0  #: stop after this wall time (0 = no limit); resumable
    stop_at: int = 0  #: stop after this step but keep the schedule of ``steps`` (0 = off):
    #: equal-step ablations compared with a longer run's checkpoint
    batch: int = 8
    crop: int = 128
    lr: float = 2e-3
    w_lat: float = 1.0
    w_ssim: float = 0.5
    w_gate: float = 0.2
    seed: int = 0
    checkpoint_minutes: float = 3.0
    segment_minutes: float = 0.0  #: stop (checkpointed) after this much wall time of *this*
    #: process (0 = off): runs split into segments, e.g. to hold a shared lock ≤ 15 min
    threads: int = 2


def losses(net: PainterNet, deg: torch.Tensor, alpha: torch.Tensor, clean: torch.Tensor,
           tc: TrainConfig, clean_alpha: torch.Tensor | None = None,
           keep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """deg, clean [B,3,H,W]; alpha, clean_alpha [B,1,H,W]; keep [B] kept fractions (the gate
    head's keep channel; None = its default) → (total loss, dict of floats)."""
    out, aux = net(deg, alpha, return_all=True, train_keep=keep)
    z_clean = net.encode(clean)
    h = max(1, clean.shape[0] // 2)  # auto-encoder term on half the batch (CPU time)
    rec, _ = net.decode(z_clean[:h])
    if clean_alpha is None:
        clean_alpha = torch.ones_like(alpha)
    rec = net.decoded_colour(rec, clean[:h], clean_alpha[:h])  # fill(clean) + correction
    l1 = (out - clean).abs().mean()
    l_ssim = 1.0 - ssim_torch(out, clean)
    from .model import soft_clamp

    l_lat = F.mse_loss(soft_clamp(aux["z_hat"]), z_clean.detach())
    l_ae = (rec - clean[:h]).abs().mean()
    m = 1.0 - alpha
    l_hole = (m * (aux["decoded"] - clean).abs()).mean()
    # confidence target: 1 where the decoded colour is closer to the clean render than the
    # input is (by a margin), else 0 — a direct signal for the gate
    with torch.no_grad():
        err_dec = (aux["decoded"].clamp(0, 1) - clean).abs().mean(1, keepdim=True)
        err_in = (deg - clean).abs().mean(1, keepdim=True)
        target = (err_dec + 0.01 < err_in).float()
    l_gate = F.binary_cross_entropy_with_logits(aux["conf_logit"], target)
    total = l1 + tc.w_ssim * l_ssim + tc.w_lat * l_lat + l_ae + 0.5 * l_hole + tc.w_gate * l_gate
    parts = {"l1": l1, "ssim": l_ssim, "lat": l_lat, "ae": l_ae, "hole": l_hole, "gate": l_gate}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def to_tensors(deg, alpha, clean, clean_alpha=None):
    t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    out = (t(deg), torch.from_numpy(alpha)[:, None].contiguous(), t(clean))
    if clean_alpha is not None:
        out = out + (torch.from_numpy(clean_alpha)[:, None].contiguous(),)
    return out


def export_diffusers(net: PainterNet, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write ``out_dir/{vae,unet}/`` (diffusers ``save_pretrained``, safetensors) +
    ``painter.json`` (PainterConfig + training metadata). Replaces the directory atomically
    enough for readers: files are written to a sibling temp dir, then swapped in."""
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        net.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        net.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        from safetensors.torch import save_file

        for module, name in ((net.gate_head, "gate_head"), (net.detail, "detail_head")):
            if module is not None:
                save_file({k: v.contiguous() for k, v in module.state_dict().items()},
                          tmp / f"{name}.safetensors")
        d = net.cfg.to_dict()
        if meta:
            d["training"] = meta
        (tmp / "painter.json").write_text(json.dumps(d, indent=2))
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


@torch.no_grad()
def evaluate(net: PainterNet, pairs: list[dict]) -> dict:
    """Mean PSNR over all (view, keep) of held-out pairs: pruned vs clean and restored vs clean,
    per keep bucket (< 2 %, 2–10 %, > 10 %) and for identity inputs (nothing pruned)."""
    from ..metrics import psnr

    net.eval()
    buckets: dict[str, list] = {}
    for p in pairs:
        clean = p["clean_rgb"].astype(np.float32)
        H, W = clean.shape[:2]
        H8, W8 = H - H % 8, W - W % 8
        items = [(float(k), p["deg_rgb"][i], p["deg_alpha"][i]) for i, k in enumerate(p["keeps"])]
        items.append((1.0, p["clean_rgb"], p["clean_alpha"]))
        for keep, r, a in items:
            r = r.astype(np.float32)[:H8, :W8]
            a = a.astype(np.float32)[:H8, :W8]
            x, al, _ = to_tensors(r[None], a[None], r[None])
            out = net(x, al, train_keep=torch.tensor([keep]))[0].permute(1, 2, 0).clamp(0, 1).numpy()
            c = clean[:H8, :W8]
            b = "identity" if keep >= 1 else "<2%" if keep < 0.02 else "2-10%" if keep <= 0.1 else ">10%"
            buckets.setdefault(b, []).append((psnr(r, c), psnr(out, c), psnr(out, r)))
    net.train()
    res = {}
    for b, v in buckets.items():
        v = np.array(v)
        v[~np.isfinite(v)] = 99.0
        res[b] = {"n": len(v), "pruned_db": float(v[:, 0].mean()), "restored_db": float(v[:, 1].mean()),
                  "vs_input_db": float(v[:, 2].mean())}
    return res


def train(net: PainterNet, sampler, tc: TrainConfig, out_dir: str | Path, *, val_pairs=None,
          log=print, meta: dict | None = None) -> dict:
    """Train ``net`` in place; checkpoint to ``out_dir/checkpoint.pt`` every
    ``tc.checkpoint_minutes`` (and export ``out_dir/painter/``); resume from it if present."""
    from tqdm import tqdm

    torch.set_num_threads(tc.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ck_path = out_dir / "checkpoint.pt"
    torch.manual_seed(tc.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=1e-4)
    step, elapsed, history = 0, 0.0, []
    rng = np.random.default_rng(tc.seed)
    if ck_path.exists():
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        missing, unexpected = net.load_state_dict(ck["model"], strict=False)
        if unexpected:
            raise RuntimeError(f"checkpoint has parameters this model lacks: {unexpected[:3]}")
        if missing:  # e.g. a gate head added to a run: new parameters, fresh optimizer
            log(f"checkpoint lacks {len(missing)} tensors (new modules): starting them fresh")
        else:
            opt.load_state_dict(ck["opt"])
        step, elapsed, history = ck["step"], ck["elapsed"], ck.get("history", [])
        rng = np.random.default_rng([tc.seed, step])
        log(f"resumed from {ck_path} at step {step} ({elapsed / 60:.1f} min trained)")

    def lr_at(s, el):
        """Linear warm-up (100 steps), then cosine decay to 5 % over the run; the run's
        progress is the larger of steps done / steps and (with a time budget) time / budget."""
        warm = 100
        if s < warm:
            return tc.lr * (s + 1) / warm
        prog = s / max(tc.steps, 1)
        if tc.minutes:
            prog = max(prog, el / (60 * tc.minutes))
        return tc.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, prog))))

    def save(final=False):
        info = {"step": step, "minutes": elapsed / 60, "history": history[-200:]}
        val = evaluate(net, val_pairs) if val_pairs else None
        if val:
            info["val"] = val
            log("val " + json.dumps({k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in val.items()}))
        with atomic_path(ck_path) as tmp:
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step,
                        "elapsed": elapsed, "history": history, "train_config": asdict(tc)}, tmp)
        m = dict(meta or {}, train_config=asdict(tc), steps_done=step,
                 train_minutes=round(elapsed / 60, 2), val=val)
        export_diffusers(net, out_dir / "painter", m)
        (out_dir / "progress.json").write_text(json.dumps(m, indent=2))
        return info

    net.train()
    t_last_ck = time.time()
    pbar = tqdm(total=tc.steps, initial=step, desc="painter-train", mininterval=5)
    run = {}
    t0 = time.time() - elapsed
    t_seg = time.time()
    while step < (min(tc.steps, tc.stop_at) if tc.stop_at else tc.steps):
        if tc.minutes and (time.time() - t0) / 60 >= tc.minutes:
            log(f"time budget {tc.minutes} min reached")
            break
        if tc.segment_minutes and (time.time() - t_seg) / 60 >= tc.segment_minutes:
            log(f"segment of {tc.segment_minutes} min done at step {step} (resume to continue)")
            run["_segment"] = 1.0
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, time.time() - t0)
        *arrs, keep = sampler.sample(rng, tc.batch, tc.crop, with_keep=True)
        deg, alpha, clean, clean_alpha = to_tensors(*arrs)
        loss, parts = losses(net, deg, alpha, clean, tc, clean_alpha, torch.from_numpy(keep))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.time() - t0
        for k, v in parts.items():
            run[k] = 0.98 * run.get(k, v) + 0.02 * v
        if step % 25 == 0:
            history.append({"step": step, "min": round(elapsed / 60, 2), **{k: round(v, 4) for k, v in run.items()}})
        pbar.update(1)
        pbar.set_postfix({k: f"{v:.3f}" for k, v in run.items()}, refresh=False)
        if time.time() - t_last_ck > tc.checkpoint_minutes * 60:
            save()
            t_last_ck = time.time()
    pbar.close()
    seg = run.pop("_segment", 0.0)
    info = save(final=True)
    info["finished"] = not seg
    return info
