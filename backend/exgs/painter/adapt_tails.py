"""The trainable tails of the per-scene painter adaptation (:mod:`.adapt`): the frozen
front of GaussPainter is run once per training view and cached, then each step runs only
what a delta form trains.

* :class:`_Tail` — forms ``last``/``head``/``lora``/``bias``: from the cached latent (or the
  gate head's features) to the restored frame, exactly as inference computes it.
* :class:`_DetailTail` — form ``detail``: the detail head on cached first-conv features.
* Crop helpers: views padded to multiples of 8, crops at multiples of 8.
Tensors NCHW float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np

from .delta_forms import last_conv
from .detail import set_detail_scale, with_detail_head

class _Tail:
    """The trainable part of the net for one form, run from cached frozen activations.

    Per view (full frame, padded to a multiple of 8) it caches: rgb, alpha, clean [1,C,H,W],
    fill [1,3,H,W], coverage [1,5,H,W], and the frozen input of the trainable part: the
    decoder's last-conv input (head) or the encoder latent z (lora, bias).
    """

    def __init__(self, net, form: str, gate_bias: float | None = None, keep=None):
        # the gate as inference will run it for this scene's kept fraction ``keep``
        self.net, self.form, self.gate_bias, self.keep = net, form, gate_bias, keep
        self.covered = net.cfg.covered_cap_for_kept_fraction(keep)
        self.detail_scale = net.cfg.detail_scale_for_kept_fraction(keep)

    def cache_view(self, rgb, alpha, clean) -> dict:
        import torch

        from .model import pull_push_fill

        net = self.net
        with torch.no_grad():
            fill, cov = pull_push_fill(rgb, alpha, net.cfg.fill_levels, return_coverage=True)
            c = {"rgb": rgb, "alpha": alpha, "clean": clean, "fill": fill, "cov": cov}
            z = net.encode(rgb)
            if self.form in ("head", "last"):
                zh = net.restore_latent(z, alpha)
                x = torch.tanh(zh / 3) * 3
                for layer in list(net.vae.decoder.layers)[:-1]:
                    x = layer(x)
                c["feat"] = x
            if self.form == "last" and net.gate_head is not None and net.cfg.fill:
                # the gate head's frozen part: capture its last conv's input
                last = last_conv(net.gate_head)
                got = {}
                h = last.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0]))
                try:
                    net.gate_head(rgb, alpha, fill, cov, self.keep)
                finally:
                    h.remove()
                c["gfeat"] = got["x"]
            else:
                c["z"] = z
        return c

    def forward(self, c: dict):
        """Output [B,3,h,w] of the (parametrized) net on a cached crop dict."""
        import torch

        net = self.net
        if "feat" in c:
            d4 = net.vae.decoder.layers[-1](c["feat"])
        else:
            zh = net.restore_latent(c["z"], c["alpha"])
            d4 = net.vae.decoder.layers(torch.tanh(zh / 3) * 3)
        dec, conf = d4[:, :3], d4[:, 3:4]
        if net.cfg.fill:
            if "gfeat" in c:
                conf = conf + last_conv(net.gate_head)(c["gfeat"])
            elif net.gate_head is not None:
                conf = conf + net.gate_head(c["rgb"], c["alpha"], c["fill"], c["cov"], self.keep)
            dec = c["fill"] + dec
        g = net.gate(conf, c["alpha"], self.gate_bias, self.covered)
        out = c["rgb"] + g * (dec.clamp(0.0, 1.0) - c["rgb"])
        # the generic detail head (frozen) on top, as inference runs it at this kept fraction
        return net.add_detail(out, c["rgb"], c["alpha"], self.keep, self.detail_scale)


class _DetailTail:
    """The trainable detail head run from cached inputs (form ``detail``).

    Per view (padded to a multiple of 8) it caches rgb, alpha, clean, the generic
    restoration without the detail head (``restored``, exactly as inference computes it for
    this kept fraction) and the head's input features (``feat``: the input of its first
    conv on the *full* frame, so pooled features are not cut at crop borders). A step runs
    the head on crops, its first conv fed the cached features; the loss ignores ``margin``
    pixels at crop borders (the convs' zero padding)."""

    def __init__(self, work, base, keep):
        from torch import nn

        self.net, self.keep = work, keep
        self.head = work.detail
        self.first = next(m for m in self.head.modules() if isinstance(m, nn.Conv2d))
        self.base = base  #: Painter without a detail head (the generic restoration)
        self.margin = 8
        self._feed = None
        self.first.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if self._feed is not None:
            return (self._feed,)
        self._captured = args[0]
        return None

    def cache_view(self, rgb, alpha, clean) -> dict:
        import torch

        r = rgb[0].permute(1, 2, 0).numpy()
        a = alpha[0, 0].numpy()
        restored = _to_t(self.base.restore(r, a, kept_fraction=self.keep))
        with torch.no_grad():
            self._feed = None
            self.head(rgb, restored, alpha, self.keep)
            feat = self._captured.detach()
        self._captured = None
        return {"rgb": rgb, "alpha": alpha, "clean": clean, "restored": restored, "feat": feat}

    def forward(self, c: dict):
        self._feed = c["feat"]
        try:
            r = self.head(c["rgb"], c["restored"], c["alpha"], self.keep)
        finally:
            self._feed = None
        return (c["restored"] + r).clamp(0.0, 1.0)


def _detail_setup(net, cfg, kept):
    """(work net with a trainable head at scale 1, parametrize ``init``, fresh, base
    Painter without detail) for form ``detail`` (see :class:`_DetailTail`)."""
    import copy
    import dataclasses

    from .infer import Painter

    nodetail = copy.deepcopy(net)
    nodetail.detail = None
    nodetail.cfg = dataclasses.replace(net.cfg, detail_head=False, detail_scale_by_keep=())
    base = Painter(nodetail)
    init = {}
    fresh = net.detail is None
    if fresh:
        width = cfg.detail_width or net.cfg.detail_width
        dil = tuple(cfg.detail_dilations) or tuple(net.cfg.detail_dilations)
        work = with_detail_head(net, width, dil, zero=True)
        seeded = with_detail_head(net, width, dil, zero=False, seed=cfg.seed)
        init = {f"detail.{n}": p.detach().clone() for n, p in seeded.detail.named_parameters()}
    else:
        work = copy.deepcopy(net)
        s = float(net.cfg.detail_scale_for_kept_fraction(kept))
        last = last_conv(work.detail)
        names = {id(m): n for n, m in work.detail.named_modules()}
        for pn in ("weight", "bias"):  # start at the generic head's residual, run at scale 1
            init[f"detail.{names[id(last)]}.{pn}"] = (s - 1.0) * getattr(last, pn).detach()
    set_detail_scale(work, 1.0)
    return work, init, fresh, base


def _to_t(x):
    import torch

    if x.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def _pad8(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8
    if not (ph or pw):
        return a
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode="edge")


def _crop(c: dict, y: int, x: int, s: int) -> dict:
    """Crop a cached view at pixel (y, x) of size s (y, x, s multiples of 8)."""
    out = {}
    for k, v in c.items():
        if k == "z":
            out[k] = v[..., y // 8:(y + s) // 8, x // 8:(x + s) // 8]
        elif k == "feat":  # the detail head's first-conv input: folded f×f with stride f
            f = c["rgb"].shape[-1] // v.shape[-1]
            out[k] = v[..., y // f:(y + s) // f, x // f:(x + s) // f]
        else:
            out[k] = v[..., y:y + s, x:x + s]
    return out


def _cat(crops: list[dict]) -> dict:
    import torch

    return {k: torch.cat([c[k] for c in crops], 0) for k in crops[0]}


