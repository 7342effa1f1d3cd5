"""A per-scene GaussPainter delta: serialization, validation and application.

A delta is a small set of additive weight changes to a *frozen* base PainterNet (the shipped
generic weights), stored inside a .exgs file as its ``painter_delta`` section
(:mod:`exgs.io.exgs`). Applying it never touches the base net: :func:`apply_delta`
returns an adapted copy. Every form (``head``, ``lora``, ``bias``; see
:mod:`exgs.painter.adapt`) ends up as "parameter += difference" at apply time, so applying is
exact and deterministic (float32 arithmetic on the dequantized values, in a fixed order).

Byte layout of a delta (all integers little-endian)::

    offset  size  field
    0       4     magic b"EXPD"
    4       1     layout version = 1
    5       4     L = length of the zstd frame that follows (u32)
    9       L     zstd( u32 J ‖ JSON descriptor (J bytes, UTF-8) ‖ payload )

JSON descriptor::

    {"form": "head"|"lora"|"bias", "rank": r (lora) or 0, "dtype": "int8"|"fp16",
     "base": BLAKE2b-64 hex of the base net's parameters (see :func:`base_fingerprint`),
     "tensors": [{"name": parameter name in the PainterNet state dict, "shape": [...],
                  "kind": "diff" | "lora_a" | "lora_b", "scale": float (int8 only),
                  "offset": byte offset in the payload, "length": bytes}],
     "stats": {...},   # informative only (training time, held-out gain, ...)
     "detail": {"fresh": bool, "width": int, "dilations": [int], "scale": float},
                       # form "detail" only (see below)
     "schedule": {"gate_bias": b, "detail_scale": s}}
                       # optional (see below)

A delta of form ``"none"`` has no tensors (and base ``""``): it is the compressor's verdict
that *no* restoration renders this scene best (held-out views: the unrestored render beat
the generic painter and every adapted one). Applying it gives a painter whose gate is shut
everywhere — the input comes back exactly and the network is not run
(:func:`none_delta`); it fits any base weights.

A delta of form ``"tune"`` has no tensors either: its descriptor's ``tune`` entry
``{"gate_bias": b, "detail_scale": s}`` is the gate bias and detail-head scale the compressor
measured to restore *this* file best on its held-out views (:mod:`exgs.painter.tune`). The
reader's painter then uses b and s at every kept fraction < 1 instead of the weights' tables
(:func:`tune_delta`). ``base`` is the fingerprint of the weights they were chosen for (other
weights: :class:`DeltaMismatch`, the reader restores with its own tables).

A ``"detail"`` delta adapts the full-resolution detail head (:mod:`exgs.painter.detail`).
With ``fresh`` false its tensors are differences to the base net's own head; with ``fresh``
true the base net has no head, and the reader first builds a head of ``width`` channels and
``dilations`` whose parameters are all 0, then adds the tensors (the full weights). The
adapted head runs at ``scale`` for every kept fraction < 1 (``PainterConfig.
detail_scale_by_keep``); at an unknown or ≥ 1 kept fraction it is not applied.

A trained delta (any form with tensors) restores at the training-free gate schedule (the
weights' ``gate_bias_by_keep`` / ``detail_scale_by_keep``), refined files too: it was trained
there. With a ``schedule`` entry (a delta trained after refinement, :mod:`exgs.pipeline.adapt`)
it restores at that fixed gate bias and detail scale instead, at every kept fraction < 1
(a ``"detail"`` delta's head at its own ``scale``). Readers that predate the entry restore a
refined file's delta through the weights' refined tables (off: unrestored).

``diff`` tensors have the target parameter's shape and are added to it. A ``lora_a``
[r, fan_in] / ``lora_b`` [out, r] pair with the same ``name`` adds ``(B @ A).reshape(shape)``.
int8 values are ``round(x / scale)`` in [−127, 127] (symmetric, one scale per tensor);
fp16 values are stored as IEEE half floats. Readers validate everything and raise
:class:`DeltaError` (an :class:`~exgs.errors.ExgsError`) with one line.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct

import numpy as np

from ..errors import ExgsError

MAGIC = b"EXPD"
LAYOUT_VERSION = 1
PREFIX = struct.Struct("<4sBI")
MAX_DELTA_BYTES = 16 << 20  #: refuse descriptors/payloads beyond this (hostile input)
KINDS = ("diff", "lora_a", "lora_b")
NONE_FORM = "none"  #: the "do not restore this scene" delta (no tensors)
TUNE_FORM = "tune"  #: per-file gate bias / detail scale (no tensors; :mod:`.tune`)
TUNE_BIAS_RANGE = (-20.0, 10.0)  #: accepted "tune" gate biases (logit units)
TUNE_SCALE_RANGE = (0.0, 8.0)  #: accepted "tune" detail scales
DETAIL_FORM = "detail"  #: the detail-head delta (its descriptor has a "detail" entry)
DTYPES = ("int8", "fp16")


class DeltaError(ExgsError):
    """A painter delta that cannot be decoded or does not fit the painter (one line)."""


class DeltaMismatch(DeltaError):
    """The delta was made for other painter weights (its ``base`` fingerprint differs)."""


def base_fingerprint(net) -> str:
    """BLAKE2b-64 hex over the base net's parameters and buffers (sorted names, float32
    little-endian bytes): identifies the weights a delta was trained against."""
    h = hashlib.blake2b(digest_size=8)
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode() + b"\0")
        h.update(np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4")).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------ encode
def quantize(x: np.ndarray, dtype: str) -> tuple[bytes, float | None]:
    """float array → (bytes, scale). int8: symmetric per-tensor, scale = max|x|/127."""
    x = np.asarray(x, np.float32)
    if dtype == "fp16":
        return x.astype("<f2").tobytes(), None
    if dtype != "int8":
        raise ValueError(f"unknown delta dtype {dtype!r}")
    m = float(np.abs(x).max()) if x.size else 0.0
    scale = m / 127.0 if m > 0 else 1.0
    q = np.clip(np.round(x / scale), -127, 127).astype(np.int8)
    return q.tobytes(), scale


def dequantize(buf: bytes, shape, dtype: str, scale: float | None) -> np.ndarray:
    if dtype == "fp16":
        return np.frombuffer(buf, "<f2").astype(np.float32).reshape(shape)
    return (np.frombuffer(buf, np.int8).astype(np.float32) * np.float32(scale)).reshape(shape)


def encode_delta(form: str, tensors: list[tuple[str, str, np.ndarray]], *, base: str,
                 dtype: str = "int8", rank: int = 0, stats: dict | None = None,
                 level: int = 19, extra: dict | None = None) -> bytes:
    """Serialize ``tensors`` = [(param name, kind, float array)] → delta bytes. ``extra``:
    more descriptor entries (``{"detail": {...}}``)."""
    import zstandard

    entries, parts, off = [], [], 0
    for name, kind, arr in tensors:
        if kind not in KINDS:
            raise ValueError(f"unknown tensor kind {kind!r}")
        buf, scale = quantize(arr, dtype)
        e = {"name": name, "shape": list(np.shape(arr)), "kind": kind, "offset": off,
             "length": len(buf)}
        if scale is not None:
            e["scale"] = float(scale)
        entries.append(e)
        parts.append(buf)
        off += len(buf)
    desc = {"form": form, "rank": int(rank), "dtype": dtype, "base": base, "tensors": entries,
            "stats": stats or {}}
    for k, v in (extra or {}).items():
        if k in desc:
            raise ValueError(f"descriptor entry {k!r} is reserved")
        desc[k] = v
    dj = json.dumps(desc, separators=(",", ":"), allow_nan=False).encode()
    body = struct.pack("<I", len(dj)) + dj + b"".join(parts)
    frame = zstandard.ZstdCompressor(level=level).compress(body)
    return PREFIX.pack(MAGIC, LAYOUT_VERSION, len(frame)) + frame


# ------------------------------------------------------------------------------ decode
def _need(cond, msg):
    if not cond:
        raise DeltaError(f"painter delta: {msg}")


def decode_delta(data: bytes) -> tuple[dict, list[tuple[dict, np.ndarray]]]:
    """Validate delta bytes → (descriptor, [(tensor entry, float32 array)]). Raises
    :class:`DeltaError` (one line) on any inconsistency."""
    import zstandard

    data = bytes(data)
    _need(len(data) >= PREFIX.size, f"too short ({len(data)} bytes)")
    magic, ver, flen = PREFIX.unpack_from(data, 0)
    _need(magic == MAGIC, "bad magic (not a painter delta)")
    _need(ver == LAYOUT_VERSION, f"unsupported layout version {ver}")
    _need(flen == len(data) - PREFIX.size, f"frame length {flen} does not match the "
                                           f"{len(data) - PREFIX.size} bytes present")
    try:
        frame = data[PREFIX.size:]
        cs = zstandard.get_frame_parameters(frame).content_size
        _need(cs == zstandard.CONTENTSIZE_UNKNOWN or cs <= MAX_DELTA_BYTES,
              f"declares {cs} bytes of content")
        body = zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_DELTA_BYTES)
    except zstandard.ZstdError as e:
        raise DeltaError(f"painter delta: does not decompress: {e}") from None
    _need(len(body) >= 4, "truncated descriptor")
    (jlen,) = struct.unpack_from("<I", body, 0)
    _need(4 + jlen <= len(body), "descriptor length out of range")
    try:
        desc = json.loads(body[4:4 + jlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeltaError(f"painter delta: descriptor is not valid JSON: {e}") from None
    payload = body[4 + jlen:]
    _need(isinstance(desc, dict), "descriptor is not an object")
    _need(isinstance(desc.get("form"), str), "descriptor lacks form")
    _need(desc.get("dtype") in DTYPES, f"dtype must be one of {DTYPES}")
    _need(isinstance(desc.get("base"), str), "descriptor lacks base")
    _need(isinstance(desc.get("rank"), int) and 0 <= desc["rank"] <= 4096, "bad rank")
    ts = desc.get("tensors")
    _need((desc["form"] == TUNE_FORM) == ("tune" in desc),
          f"a {TUNE_FORM!r} delta needs a tune entry (and only it has one)")
    if desc["form"] in (NONE_FORM, TUNE_FORM):
        _need(ts == [], f"a {desc['form']!r} delta has no tensors")
        _need(len(payload) == 0, f"a {desc['form']!r} delta has no payload")
        if desc["form"] == TUNE_FORM:
            _check_tune_spec(desc["tune"])
        return desc, []
    _need(isinstance(ts, list) and ts, "descriptor has no tensors")
    if desc["form"] == DETAIL_FORM or "detail" in desc:
        _check_detail_spec(desc)
    if "schedule" in desc:
        _check_tune_spec(desc["schedule"], "schedule")
    out, expect = [], 0
    isz = 1 if desc["dtype"] == "int8" else 2
    for i, e in enumerate(ts):
        _need(isinstance(e, dict) and isinstance(e.get("name"), str), f"tensor {i}: no name")
        _need(e.get("kind") in KINDS, f"tensor {i}: bad kind")
        shp = e.get("shape")
        _need(isinstance(shp, list) and 0 < len(shp) <= 6 and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 1 << 24 for s in shp),
            f"tensor {i}: bad shape")
        n = int(np.prod(shp))
        _need(e.get("offset") == expect and e.get("length") == n * isz,
              f"tensor {i}: offset/length do not match its shape")
        scale = e.get("scale")
        if desc["dtype"] == "int8":
            _need(isinstance(scale, (int, float)) and not isinstance(scale, bool)
                  and np.isfinite(scale) and scale > 0, f"tensor {i}: bad scale")
        arr = dequantize(payload[expect:expect + n * isz], shp, desc["dtype"], scale)
        _need(np.isfinite(arr).all(), f"tensor {i}: non-finite values")
        expect += n * isz
        out.append((e, arr))
    _need(expect == len(payload), f"payload has {len(payload)} bytes, tensors need {expect}")
    return desc, out


def _check_tune_spec(t, what: str = "tune") -> None:
    _need(isinstance(t, dict), f"{what}: not an object")
    for key, (lo, hi) in (("gate_bias", TUNE_BIAS_RANGE), ("detail_scale", TUNE_SCALE_RANGE)):
        v = t.get(key)
        _need(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
              and lo <= v <= hi, f"{what}: {key} must be a number in {lo:g}..{hi:g}")


def _check_detail_spec(desc: dict) -> None:
    d = desc.get("detail")
    _need(desc["form"] == DETAIL_FORM and isinstance(d, dict),
          "a 'detail' delta needs a detail entry (and only it has one)")
    _need(isinstance(d.get("fresh"), bool), "detail: fresh must be true or false")
    w = d.get("width")
    _need(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 256,
          "detail: width must be an integer in 1..256")
    dil = d.get("dilations")
    _need(isinstance(dil, list) and 1 <= len(dil) <= 8 and all(
        isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 64 for x in dil),
        "detail: dilations must be 1–8 integers in 1..64")
    sc = d.get("scale")
    _need(isinstance(sc, (int, float)) and not isinstance(sc, bool) and np.isfinite(sc)
          and 0 <= sc <= 16, "detail: scale must be a number in 0..16")


def delta_differences(desc: dict, tensors) -> dict[str, np.ndarray]:
    """name → summed float32 difference (lora pairs multiplied out) in descriptor order."""
    diffs: dict[str, np.ndarray] = {}
    pending: dict[str, dict] = {}
    for e, arr in tensors:
        name = e["name"]
        if e["kind"] == "diff":
            diffs[name] = diffs.get(name, 0) + arr
            continue
        p = pending.setdefault(name, {})
        _need(e["kind"] not in p, f"{name}: repeated {e['kind']}")
        p[e["kind"]] = arr
        if len(p) == 2:
            a, b = p.pop("lora_a"), p.pop("lora_b")
            _need(a.ndim == 2 and b.ndim == 2 and b.shape[1] == a.shape[0],
                  f"{name}: lora shapes {list(b.shape)} @ {list(a.shape)} do not chain")
            diffs[name] = diffs.get(name, 0) + (b @ a)
            pending.pop(name)
    _need(not any(pending.values()), "a lora tensor lacks its pair")
    return diffs


def apply_delta(net, data: bytes, *, check_base: bool = True):
    """A copy of ``net`` (PainterNet) with the delta added to its parameters. The base net is
    not modified. Raises :class:`DeltaMismatch` when the delta was made for other weights
    (with ``check_base``), :class:`DeltaError` when it does not decode or does not fit."""
    import torch

    desc, tensors = decode_delta(data)
    if desc["form"] == NONE_FORM:
        return _gate_shut_copy(net)
    if check_base:
        fp = base_fingerprint(net)
        if desc["base"] != fp:
            raise DeltaMismatch(f"painter delta was made for other painter weights (base "
                                f"{desc['base']}, these are {fp})")
    if desc["form"] == TUNE_FORM:
        return _tuned_copy(net, desc["tune"]["gate_bias"], desc["tune"]["detail_scale"])
    diffs = delta_differences(desc, tensors)
    if desc["form"] == DETAIL_FORM:
        out = _detail_base(net, desc["detail"])
    else:
        out = copy.deepcopy(net)
    if "schedule" in desc:  # trained at a fixed gate bias / detail scale (a refined file's)
        _set_schedule(out, desc["schedule"]["gate_bias"], desc["schedule"]["detail_scale"])
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, d in diffs.items():
            _need(name in params, f"no parameter {name!r} in this painter")
            p = params[name]
            _need(int(np.prod(d.shape)) == p.numel(),
                  f"{name}: {list(d.shape)} does not fit {list(p.shape)}")
            p.add_(torch.from_numpy(np.ascontiguousarray(d, np.float32)).reshape(p.shape)
                   .to(p.device))
    if desc["form"] == DETAIL_FORM:
        from .detail import set_detail_scale

        set_detail_scale(out, desc["detail"]["scale"])
    return _unrefined_schedule(out).eval()


def _unrefined_schedule(net):
    """``net`` (modified) restoring refined files with the training-free gate / detail
    schedule: a trained delta learnt its corrections at that schedule
    (:func:`exgs.painter.adapt.gate_bias_for`), also when it was trained on a refined file's
    renders, so readers of a refined file apply it as it was trained rather than through
    the weights' refined tables (which may keep the painter off)."""
    import dataclasses

    if hasattr(net, "cfg") and (net.cfg.refined_gate_bias_by_keep
                                or net.cfg.refined_detail_scale_by_keep):
        net.cfg = dataclasses.replace(net.cfg, refined_gate_bias_by_keep=(),
                                      refined_detail_scale_by_keep=())
    return net


def _detail_base(net, spec: dict):
    """The copy of ``net`` a ``detail`` delta is added to: with ``fresh`` a new all-zero
    head of the spec's shape (the base must have none), else the base's own head (which
    must have the spec's shape)."""
    from .detail import with_detail_head

    if spec["fresh"]:
        _need(net.detail is None, "a fresh-head 'detail' delta needs a painter without a "
                                  "detail head")
        return with_detail_head(net, spec["width"], spec["dilations"], zero=True)
    _need(net.detail is not None, "this 'detail' delta adapts a detail head the painter "
                                  "does not have")
    _need(int(net.cfg.detail_width) == spec["width"]
          and [int(x) for x in net.cfg.detail_dilations] == spec["dilations"],
          "the detail head's shape differs from the delta's")
    return copy.deepcopy(net)


def none_delta(stats: dict | None = None) -> bytes:
    """The ``"none"`` delta: restore this scene with nothing (``stats``: why, informative)."""
    return encode_delta(NONE_FORM, [], base="", dtype="int8", stats=stats)


def is_none_delta(data: bytes | None) -> bool:
    """True when ``data`` is a valid ``"none"`` delta."""
    if not data:
        return False
    try:
        return decode_delta(data)[0]["form"] == NONE_FORM
    except DeltaError:
        return False


def tune_delta(gate_bias: float, detail_scale: float, base: str,
               stats: dict | None = None) -> bytes:
    """The ``"tune"`` delta: restore this file with gate bias ``gate_bias`` and detail scale
    ``detail_scale`` (chosen for the weights whose :func:`base_fingerprint` is ``base``)."""
    spec = {"gate_bias": float(gate_bias), "detail_scale": float(detail_scale)}
    _check_tune_spec(spec)
    return encode_delta(TUNE_FORM, [], base=base, dtype="int8", stats=stats,
                        extra={"tune": spec})


def _tuned_copy(net, gate_bias: float, detail_scale: float):
    """A copy of ``net`` that restores every frame with a known kept fraction < 1 at this
    gate bias and detail scale (refined or not; unknown kept fraction: the bias, no head;
    kept fraction ≥ 1: off, as with the tables)."""
    out = copy.deepcopy(net)
    _set_schedule(out, gate_bias, detail_scale)
    return out.eval()


def _set_schedule(net, gate_bias: float, detail_scale: float) -> None:
    """In place: ``net`` restores every frame with a known kept fraction < 1 at this gate
    bias and detail scale (see :func:`_tuned_copy`)."""
    import dataclasses

    b, s = float(gate_bias), float(detail_scale)
    head = s > 0.0 and getattr(net, "detail", None) is not None
    net.cfg = dataclasses.replace(
        net.cfg, gate_bias=b, gate_bias_by_keep=((0.5, b),), refined_gate_bias_by_keep=(),
        detail_scale_by_keep=((0.5, s),) if head else (), refined_detail_scale_by_keep=())


def _gate_shut_copy(net):
    """A copy of ``net`` whose gate bias is −∞ for every kept fraction: it returns its input
    exactly (:func:`exgs.painter.fast.gate_shut`: the network is not even run)."""
    import dataclasses

    out = copy.deepcopy(net)
    if hasattr(out, "cfg"):
        out.cfg = dataclasses.replace(out.cfg, gate_bias=float("-inf"), gate_bias_by_keep=(),
                                      refined_gate_bias_by_keep=())
    return out.eval()


def describe_delta(data: bytes) -> dict:
    """Descriptor summary (form, rank, dtype, base, tensors, params, bytes, stats)."""
    desc, tensors = decode_delta(data)
    return {"form": desc["form"], "rank": desc["rank"], "dtype": desc["dtype"],
            "base": desc["base"], "tensors": len(tensors),
            "params": int(sum(a.size for _, a in tensors)), "bytes": len(data),
            "stats": desc.get("stats", {})}


def check_delta(blob: bytes, path=None) -> bytes:
    """``blob`` when it is a valid delta (:func:`decode_delta`); otherwise SceneFormatError
    naming ``path`` (the file whose ``painter_delta`` section it is)."""
    from ..errors import SceneFormatError
    from ..io.exgs import DELTA_SECTION

    try:
        decode_delta(blob)
    except DeltaError as e:
        raise SceneFormatError(path, f"section {DELTA_SECTION}: {e}") from None
    return blob


def file_delta(path) -> bytes | None:
    """The per-scene painter delta stored in .exgs file ``path`` (validated bytes for
    :func:`apply_delta`), or None when it has none. Raises SceneFormatError (one line naming
    the file) when the section is corrupt: checksum, size, or a payload that does not
    decode. (The container checks the checksum; what the bytes mean is checked here.)"""
    from ..io.exgs import DELTA_SECTION, read_exgs_section

    blob = read_exgs_section(path, DELTA_SECTION)
    return None if blob is None else check_delta(blob, path)
