"""GaussPainter inference: load weights (diffusers layout), restore frames of any size by
overlapping tiles blended with smooth weights.

Weights directory layout (what ``exgs painter-train`` writes, and what ``--painter DIR``
accepts)::

    DIR/painter.json                      PainterConfig (+ training metadata)
    DIR/vae/config.json                   diffusers AutoencoderTiny
    DIR/vae/diffusion_pytorch_model.safetensors
    DIR/unet/config.json                  diffusers UNet2DModel
    DIR/unet/diffusion_pytorch_model.safetensors
    DIR/gate_head.safetensors             the small gate head (when painter.json says so)
    DIR/detail_head.safetensors           the full-resolution detail head (likewise)

Tiling: a frame is cut into ``tile``×``tile`` tiles overlapping by ``overlap`` pixels (edge
tiles are shifted inwards, so every tile is full size when the frame is larger than a tile;
smaller frames are padded by edge replication to a multiple of 8). Each tile's output is
weighted by a separable raised-cosine ramp over the overlap (1 in the interior, → 0 at an inner
tile edge, 1 at a frame edge) and the weighted sum is normalised, so there are no seams.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ExgsError
from . import fast
from .model import LATENT_SCALE, PainterConfig, PainterNet

MIN_SIZE = 64  #: frames are padded to at least this many pixels per side
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights"


def load_net(path: str | os.PathLike | None = None, device: str = "cpu") -> PainterNet:
    """PainterNet from a weights directory (default: the shipped weights)."""
    from diffusers import AutoencoderTiny, UNet2DModel

    d = Path(path) if path is not None else DEFAULT_WEIGHTS
    cfg_file = d / "painter.json"
    if not d.is_dir():
        raise ExgsError(f"{d}: painter weights directory not found")
    for need in (cfg_file, d / "vae" / "config.json", d / "unet" / "config.json"):
        if not need.is_file():
            raise ExgsError(f"{d}: not a painter weights directory (missing "
                            f"{need.relative_to(d)}; expected painter.json, vae/, unet/)")
    try:
        cfg = PainterConfig.from_dict(json.loads(cfg_file.read_text()))
        import logging

        logging.getLogger("diffusers").setLevel(logging.ERROR)
        vae = AutoencoderTiny.from_pretrained(d / "vae")
        unet = UNet2DModel.from_pretrained(d / "unet")
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as e:
        raise ExgsError(f"{d}: cannot load painter weights: {' '.join(str(e).split())[:300]}") from None
    net = PainterNet(cfg, vae=vae, unet=unet)
    for module, name in ((net.gate_head, "gate_head"), (net.detail, "detail_head")):
        if module is not None:
            _load_head(module, d / f"{name}.safetensors")
    return net.to(device).eval()


def _load_head(module, file: Path) -> None:
    """Load a head's state dict from a safetensors file (ExgsError naming the file)."""
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(file))
    except (OSError, RuntimeError, ValueError) as e:
        raise ExgsError(f"{file.parent}: cannot load {file.name}: "
                        f"{' '.join(str(e).split())[:200]}") from None


def _ramp(n: int, overlap: int, left_edge: bool, right_edge: bool) -> np.ndarray:
    """[n] blend weights: raised cosine over ``overlap`` px at inner edges, 1 at frame edges."""
    w = np.ones(n, np.float32)
    if overlap > 0:
        t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        r = 0.5 - 0.5 * np.cos(np.pi * t)
        if not left_edge:
            w[:overlap] = r
        if not right_edge:
            w[n - overlap:] = r[::-1]
    return np.maximum(w, 1e-4)


def _fit_tile(size: int, tile: int, overlap: int) -> int:
    """Tile length (≤ ``tile``, multiple of 8) that covers ``size`` px with the fewest tiles
    and as little duplicated work as possible: the same number of tiles as ``tile`` needs,
    shrunk evenly (512 px with tile 256 / overlap 32: 3 × 192 instead of 256, 224, 256 —
    a third fewer pixels through the network)."""
    if size <= tile:
        return size
    n = math.ceil((size - overlap) / (tile - overlap))
    t = math.ceil((size + (n - 1) * overlap) / n)
    t += (-t) % LATENT_SCALE
    return min(tile, t)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((size - overlap) / stride)
    s = [min(i * stride, size - tile) for i in range(n)]
    return sorted(set(s))


class Painter:
    """Restores renders of pruned scenes. Not thread-safe (one torch module)."""

    #: tiles go through the network in batches of at most this many pixels (6 of the nine 192²
    #: tiles of a 512² frame, 4 of the 208×240 tiles of 1280×720: measured fastest, the
    #: activations stay in cache; 1 = one tile per call)
    tile_batch_pixels = 6 * 192 * 192

    def __init__(self, net: PainterNet, device: str = "cpu", path: str | None = None,
                 precision: str | None = None):
        self.net = net.eval()
        self.device = device
        self.path = path
        self.tile = int(net.cfg.tile)
        self.overlap = int(net.cfg.overlap)
        prec = precision or os.environ.get("EXGS_PAINTER_PRECISION", "fp32")
        if prec not in fast.PRECISIONS:
            raise ExgsError(f"painter precision must be one of {', '.join(fast.PRECISIONS)}, "
                            f"got {prec!r}")
        self.precision = prec
        self._fast, self._fast_version = None, None

    def _inference_net(self):
        """The channels-last inference copy of ``self.net`` (:mod:`.fast`), rebuilt when the
        net's weights change."""
        v = fast.weights_version(self.net)
        if self._fast is None or v != self._fast_version:
            self._fast, self._fast_version = fast.inference_copy(self.net), v
        elif self._fast.cfg is not self.net.cfg:  # a config replaced on the net (e.g.
            self._fast.cfg = self.net.cfg  # detail.set_detail_scale) applies to the copy too
        return self._fast

    @property
    def config(self) -> PainterConfig:
        return self.net.cfg

    # ----------------------------------------------------------------------- core
    @torch.inference_mode()
    def _run_tensor(self, x: torch.Tensor, a: torch.Tensor, kept_fraction: float | None = None,
                    refined: bool = False) -> torch.Tensor:
        """x [B,3,h,w], a [B,1,h,w] (contiguous, on the painter's device; h, w multiples of 8)
        → [B,4,h,w]: restored rgb and the restored alpha ``alpha + g·(1 − alpha)`` (g the
        gate) (:func:`.fast.run`: the fused float32 forward of the inference copy; frames
        whose gate is shut everywhere skip the network)."""
        out, g = fast.run(self._inference_net(), x, a, kept_fraction, self.precision, refined)
        return torch.cat([out, a + g * (1.0 - a)], 1)

    def _tensors(self, rgb: np.ndarray, alpha: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """[B,h,w,3], [B,h,w] numpy → contiguous NCHW tensors [B,3,h,w], [B,1,h,w]."""
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).to(self.device)
        return x, torch.from_numpy(np.ascontiguousarray(alpha[:, None])).to(self.device)

    def _run(self, rgb: np.ndarray, alpha: np.ndarray,
             kept_fraction: float | None = None, refined: bool = False) -> np.ndarray:
        """[B,h,w,3], [B,h,w] with h, w multiples of 8 → [B,h,w,4] (:meth:`_run_tensor`)."""
        x, a = self._tensors(rgb, alpha)
        return self._run_tensor(x, a, kept_fraction, refined).permute(0, 2, 3, 1).cpu().numpy()

    def restore_batch(self, rgb, alpha, *, kept_fraction: float | None = None,
                      refined: bool = False, tile: int | None = None,
                      overlap: int | None = None, return_alpha: bool = False):
        """Restore B frames of one size.

        rgb [B,H,W,3] float (display sRGB in [0,1], composited over the render background),
        alpha [B,H,W] float in [0,1] (the pruned render's alpha) → [B,H,W,3] float32.
        Lists of frames are accepted too. Frames of any size (tiled, see module docstring).
        ``kept_fraction``: the kept fraction of the rendered scene's Gaussians when known
        (a .exgs file stores it, :class:`exgs.pipeline.SceneFacts`): the gate opens more for heavily pruned scenes
        and stays shut for complete ones (``painter.json`` ``gate_bias_by_keep``); None = the
        conservative default bias. ``refined``: the scene's file was refined after pruning
        (its .exgs header says so, :class:`exgs.pipeline.SceneFacts`): the weights' refined
        gate / detail tables when they have them (``painter.json``
        ``refined_gate_bias_by_keep``), else as a training-free file. ``return_alpha``: return ``(rgb, alpha)``, the second the
        restored frame's alpha [B,H,W] ``alpha + g·(1 − alpha)`` (g = the gate): the restoration
        blends the input with an *opaque* restored layer, so restored colour is valid
        premultiplied colour under it and compositing over a background covers painted holes.
        """
        rgb = np.asarray(rgb, np.float32)
        alpha = np.asarray(alpha, np.float32)
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ExgsError(f"painter: rgb must be [B,H,W,3], got {list(rgb.shape)}")
        if alpha.shape != rgb.shape[:3]:
            raise ExgsError(f"painter: alpha must be [B,H,W] = {list(rgb.shape[:3])}, got {list(alpha.shape)}")
        B, H, W, _ = rgb.shape
        if B == 0 or H == 0 or W == 0:
            return (rgb.copy(), alpha.copy()) if return_alpha else rgb.copy()
        rgb = np.clip(np.nan_to_num(rgb), 0.0, 1.0)
        alpha = np.clip(np.nan_to_num(alpha), 0.0, 1.0)
        if self.net.cfg.bias_for_kept_fraction(kept_fraction, refined) == float("-inf"):
            # the painter is off here (nothing pruned, a "none" delta, a refined file's off
            # bin): the input exactly, whatever the frame size (no tile blending)
            return (rgb, alpha) if return_alpha else rgb
        tile = int(tile or self.tile)
        tile = max(LATENT_SCALE, tile - tile % LATENT_SCALE)
        ov = int(self.overlap if overlap is None else overlap)
        ov = min(max(0, ov - ov % LATENT_SCALE), tile // 2)
        # pad to a multiple of 8 (edge replication) and to at least MIN_SIZE px (the UNet's
        # group norms need more than one latent pixel)
        Hp = max(H + (-H) % LATENT_SCALE, MIN_SIZE)
        Wp = max(W + (-W) % LATENT_SCALE, MIN_SIZE)
        if (Hp, Wp) != (H, W):
            rgb = np.pad(rgb, ((0, 0), (0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
            alpha = np.pad(alpha, ((0, 0), (0, Hp - H), (0, Wp - W)), mode="edge")
        th, tw = _fit_tile(Hp, tile, ov), _fit_tile(Wp, tile, ov)
        ys, xs = _starts(Hp, th, ov), _starts(Wp, tw, ov)
        if len(ys) == 1 and len(xs) == 1:
            out = self._run(rgb, alpha, kept_fraction, refined)
        else:
            out = self._tiled(rgb, alpha, (kept_fraction, refined), th, tw, ys, xs, ov)
        out = out[:, :H, :W]
        if return_alpha:
            return np.ascontiguousarray(out[..., :3]), np.ascontiguousarray(out[..., 3])
        return np.ascontiguousarray(out[..., :3])

    @torch.inference_mode()
    def _tiled(self, rgb, alpha, facts, th, tw, ys, xs, ov) -> np.ndarray:
        """(``facts``: (kept fraction, refined) for :meth:`_run_tensor`.) Overlapping
        ``th``×``tw`` tiles at rows ``ys``, columns ``xs`` blended by raised-cosine weights
        (module docstring) → [B,Hp,Wp,4] (rgb + restored alpha). The tiles of all B frames go
        through the network together, ``tile_batch_pixels`` pixels per call (each tile's
        output is the same as alone, to float32 rounding: nothing in the network mixes batch
        items); the blend runs in torch on NCHW tensors."""
        B, Hp, Wp, _ = rgb.shape
        X, A = self._tensors(rgb, alpha)
        pos = [(y, x) for y in ys for x in xs]
        per = max(1, int(self.tile_batch_pixels) // (th * tw))
        acc = torch.zeros((B, 4, Hp, Wp), dtype=torch.float32, device=X.device)
        wsum = np.zeros((Hp, Wp), np.float32)
        for s in range(0, len(pos), per):
            chunk = pos[s:s + per]  # tile-major, frame-minor: [len(chunk)·B, ·, th, tw]
            xt = torch.stack([X[:, :, y:y + th, x:x + tw] for y, x in chunk]).flatten(0, 1)
            at = torch.stack([A[:, :, y:y + th, x:x + tw] for y, x in chunk]).flatten(0, 1)
            o = self._run_tensor(xt, at, *facts).reshape(len(chunk), B, 4, th, tw)
            for k, (y, x) in enumerate(chunk):
                w = (_ramp(th, ov, y == 0, y + th >= Hp)[:, None]
                     * _ramp(tw, ov, x == 0, x + tw >= Wp)[None, :])
                acc[:, :, y:y + th, x:x + tw] += o[k] * torch.from_numpy(w).to(X.device)
                wsum[y:y + th, x:x + tw] += w
        out = acc.div_(torch.from_numpy(wsum).to(X.device))
        return out.permute(0, 2, 3, 1).cpu().numpy()

    def restore(self, rgb, alpha, **kw):
        """One frame: rgb [H,W,3] float in [0,1], alpha [H,W] → restored rgb [H,W,3] float32
        (with ``return_alpha=True``: ``(rgb, alpha [H,W])``). Keyword arguments as
        :meth:`restore_batch` (``kept_fraction``, ``refined``, ``tile``, ``overlap``, ``return_alpha``)."""
        rgb = np.asarray(rgb, np.float32)
        alpha = np.asarray(alpha, np.float32)
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ExgsError(f"painter: rgb must be [H,W,3], got {list(rgb.shape)}")
        out = self.restore_batch(rgb[None], alpha[None], **kw)
        return (out[0][0], out[1][0]) if kw.get("return_alpha") else out[0]


def kept_fraction(path: str | os.PathLike, count: int | None = None) -> float | None:
    """Kept fraction of a .exgs file's Gaussians (stored count, or ``count`` when only a
    prefix was decoded, / source count, in (0, 1]); None for other formats or files without
    the source count (the painter then uses its conservative default gate)."""
    from ..io import detect_format
    from ..io.exgs import kept_fraction as of_header, read_exgs_header

    try:
        return of_header(read_exgs_header(path), count) if detect_format(path) == "exgs" \
            else None
    except (ExgsError, OSError):
        return None


def load_painter(path: str | os.PathLike | None = None, device: str = "cpu",
                 precision: str | None = None) -> Painter:
    """The painter from ``path`` (a weights directory in the layout above; None = the
    default weights shipped in ``exgs/painter/weights``) on ``device`` ("cpu", "cuda", "auto").
    ``precision``: "fp32" (default) or "bf16" (:mod:`.fast`; default from the environment
    variable ``EXGS_PAINTER_PRECISION``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    net = load_net(path, device)
    return Painter(net, device, None if path is None else str(path), precision)
