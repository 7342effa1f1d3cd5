"""The forms a per-scene painter delta can take (see :mod:`exgs.painter.adapt`): which
parameters of the PainterNet each form trains (:func:`targets`), how many values it stores,
how many bytes it may add to a file (:func:`size_reserve`), the trainable parametrizations
(:func:`parametrize`) and their export as delta bytes (:func:`export`).

* ``last``  — the decoder's last conv and the gate head's last conv, int8 differences.
* ``head``  — the gate head (all of it) and the decoder's last conv, int8 differences.
* ``lora``  — rank-``r`` adapters (A [r, fan_in], B [out, r], B starts at 0) on the UNet's
  last up block, its ``conv_out`` and the decoder's full-resolution convs.
* ``bias``  — every bias and GroupNorm scale/shift of the UNet and decoder plus the gate
  head's biases, int8 differences.
* ``detail`` — the full-resolution detail head (:mod:`.detail`, a residual on *every* pixel,
  covered ones included): all of its parameters. When the base net has a detail head they
  are differences to it; when it has none, the delta brings a head of its own (a *fresh*
  head: the differences are to an all-zero head of the width/dilations the delta's
  descriptor names, i.e. the full weights; :func:`detail_spec`, :func:`with_detail_head`).
  Either way the adapted head runs at the scale the descriptor stores (1 unless set).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from .delta import encode_delta
from .detail import set_detail_scale, with_detail_head  # noqa: F401  (re-exported)

FORMS = ("head", "last", "lora", "bias", "detail")
DETAIL_FORM = "detail"


def _decoder_layers(net):
    return list(net.vae.decoder.layers)


def _full_res_decoder_index(net) -> int:
    """Index of the first decoder layer after the last Upsample (full resolution)."""
    from torch import nn

    layers = _decoder_layers(net)
    last_up = max((i for i, m in enumerate(layers) if isinstance(m, nn.Upsample)), default=-1)
    return last_up + 1


def targets(net, form: str) -> list[tuple[str, str]]:
    """[(parameter name, "diff" | "lora")] trained by ``form`` on ``net`` (state-dict names)."""
    from torch import nn

    names = dict(net.named_parameters())
    out: list[tuple[str, str]] = []
    nlayers = len(_decoder_layers(net))
    if form == "head":
        if net.gate_head is not None:
            out += [(n, "diff") for n in names if n.startswith("gate_head.")]
        out += [(f"vae.decoder.layers.{nlayers - 1}.{p}", "diff") for p in ("weight", "bias")]
    elif form == "last":
        if net.gate_head is not None:
            last = last_conv(net.gate_head)
            gh = {id(m): n for n, m in net.gate_head.named_modules()}
            out += [(f"gate_head.{gh[id(last)]}.{p}", "diff") for p in ("weight", "bias")]
        out += [(f"vae.decoder.layers.{nlayers - 1}.{p}", "diff") for p in ("weight", "bias")]
    elif form == "bias":
        for n, p in names.items():
            if n.startswith(("unet.", "vae.decoder.", "gate_head.")) and (
                    n.endswith(".bias") or (".norm" in n or "norm_out" in n)):
                out.append((n, "diff"))
    elif form == DETAIL_FORM:
        if net.detail is None:
            raise UsageError("form 'detail' needs a net with a detail head "
                             "(with_detail_head(net, spec) adds a fresh one)")
        out += [(n, "diff") for n in names if n.startswith("detail.")]
    elif form == "lora":
        convs = [(f"unet.{n}", m) for n, m in net.unet.named_modules()
                 if isinstance(m, nn.Conv2d) and (n.startswith(f"up_blocks.{len(net.unet.up_blocks) - 1}.")
                                                  or n == "conv_out")]
        first = _full_res_decoder_index(net)
        convs += [(f"vae.decoder.{n}", m) for n, m in net.vae.decoder.named_modules()
                  if isinstance(m, nn.Conv2d) and n.startswith("layers.")
                  and int(n.split(".")[1]) >= first]
        for n, m in convs:
            out.append((f"{n}.weight", "lora"))
            if m.bias is not None:
                out.append((f"{n}.bias", "diff"))
    else:
        raise UsageError(f"unknown painter delta form {form!r}")
    missing = [n for n, _ in out if n not in names]
    if missing:
        raise UsageError(f"painter has no parameter {missing[0]!r} for form {form!r}")
    return out


def delta_param_count(net, form: str, rank: int = 4, detail_width: int = 0) -> int:
    """Number of stored values of a ``form`` delta on ``net`` (``detail`` on a net without a
    head: a fresh head of ``detail_width`` channels, 0 = the config's width)."""
    net = _with_head_for(net, form, detail_width)
    names = dict(net.named_parameters())
    total = 0
    for n, kind in targets(net, form):
        p = names[n]
        if kind == "diff":
            total += p.numel()
        else:
            fan_in = p[0].numel()
            r = min(rank, p.shape[0], fan_in)
            total += r * (fan_in + p.shape[0])
    return total


def size_reserve(net, form: str, rank: int = 4, dtype: str = "int8",
                 detail_width: int = 0) -> int:
    """Upper estimate of the bytes a ``form`` delta adds to a .exgs file: a delta of random
    (incompressible) values of the right shapes, plus 160 bytes for the header's section
    entry. Used to reserve room in the ``--ratio`` search."""
    net = _with_head_for(net, form, detail_width)
    rng = np.random.default_rng(0)
    names = dict(net.named_parameters())
    ts = []
    for n, kind in targets(net, form):
        p = names[n]
        if kind == "diff":
            ts.append((n, "diff", rng.normal(0, 1, tuple(p.shape)).astype(np.float32)))
        else:
            fan_in = p[0].numel()
            r = min(rank, p.shape[0], fan_in)
            ts.append((n, "lora_a", rng.normal(0, 1, (r, fan_in)).astype(np.float32)))
            ts.append((n, "lora_b", rng.normal(0, 1, (p.shape[0], r)).astype(np.float32)))
    stats = {"steps": 10 ** 6, "seconds": 1e4, "gain_db": -10.123456, "heldout_generic_db":
             10.123456, "heldout_adapted_db": 10.123456, "views": 999, "train_views": 999}
    extra = ({"detail": detail_spec(net, fresh=True, scale=1.0)} if form == DETAIL_FORM
             else None)
    blob = encode_delta(form, ts, base="0" * 16, dtype=dtype, rank=rank, stats=stats,
                        extra=extra)
    return len(blob) + 160


# ------------------------------------------------------------------------ detail head
def detail_spec(net, *, fresh: bool, scale: float) -> dict:
    """The descriptor entry of a ``detail`` delta on ``net`` (which has a detail head):
    ``{"fresh": bool, "width": int, "dilations": [int], "scale": float}``. ``fresh``: the
    base net has no head; the reader builds an all-zero head of this shape and adds the
    delta's values (the full weights). ``scale``: the adapted head's residual scale at every
    kept fraction < 1 (unknown or ≥ 1: 0, as for the generic head)."""
    return {"fresh": bool(fresh), "width": int(net.cfg.detail_width),
            "dilations": [int(d) for d in net.cfg.detail_dilations], "scale": float(scale)}


def _with_head_for(net, form: str, detail_width: int = 0):
    """``net`` itself, or for ``detail`` on a net without a head a copy with a fresh one."""
    if form != DETAIL_FORM or net.detail is not None:
        return net
    return with_detail_head(net, detail_width or net.cfg.detail_width, net.cfg.detail_dilations)


def last_conv(module):
    """The last Conv2d of ``module``."""
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1]



class _LoRA:
    """Parametrization W → W + B @ A (reshaped), A [r, fan_in] small random, B [out, r] = 0."""

    @staticmethod
    def make(shape, rank, gen):
        import torch
        from torch import nn

        class LoRA(nn.Module):
            def __init__(self):
                super().__init__()
                fan_in = int(np.prod(shape[1:]))
                r = min(rank, shape[0], fan_in)
                self.a = nn.Parameter(torch.randn(r, fan_in, generator=gen) / math.sqrt(fan_in))
                self.b = nn.Parameter(torch.zeros(shape[0], r))

            def forward(self, w):
                return w + (self.b @ self.a).view(w.shape)

        return LoRA()


class _Diff:
    @staticmethod
    def make(shape, init=None):
        import torch
        from torch import nn

        class Diff(nn.Module):
            def __init__(self):
                super().__init__()
                d = torch.zeros(shape) if init is None else init.detach().clone().reshape(shape)
                self.d = nn.Parameter(d)

            def forward(self, w):
                return w + self.d

        return Diff()


def parametrize(net, form: str, rank: int, seed: int, init: dict | None = None):
    """Register the form's trainable parametrizations on ``net`` (a private copy) →
    [(name, kind, module)] with module.d (diff) or module.a/.b (lora). ``init``: parameter
    name → the starting difference (a tensor of its shape; default 0)."""
    import torch
    from torch.nn.utils import parametrize as P

    gen = torch.Generator().manual_seed(int(seed))
    mods = dict(net.named_modules())
    out = []
    for name, kind in targets(net, form):
        mod_name, pname = name.rsplit(".", 1)
        mod = mods[mod_name]
        shape = tuple(getattr(mod, pname).shape)
        pm = (_Diff.make(shape, (init or {}).get(name)) if kind == "diff"
              else _LoRA.make(shape, rank, gen))
        P.register_parametrization(mod, pname, pm, unsafe=True)
        out.append((name, kind, pm))
    return out


def export(params, form, dtype, rank, base, stats, extra: dict | None = None) -> bytes:
    """Delta bytes of trained ``params`` (:func:`parametrize`); ``extra``: more descriptor
    entries (``{"detail": detail_spec(...)}`` for the detail form)."""
    ts = []
    for name, kind, pm in params:
        if kind == "diff":
            ts.append((name, "diff", pm.d.detach().numpy().copy()))
        else:
            ts.append((name, "lora_a", pm.a.detach().numpy().copy()))
            ts.append((name, "lora_b", pm.b.detach().numpy().copy()))
    return encode_delta(form, ts, base=base, dtype=dtype, rank=rank if form == "lora" else 0,
                        stats=stats, extra=extra)
