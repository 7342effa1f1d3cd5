"""The .exgs container: quantization bounds, progressive prefixes, corruption handling."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from exgs.errors import SceneFormatError, UsageError
from exgs.io import detect_format, read_scene
from exgs.io import exgs as X
from exgs.io.exgs.container import PREFIX
from exgs.scene import SH_C0, GaussianScene
from exgs.synth import random_scene
from exgs.io.exgs import quantize as Q


def _scene(n, deg, seed=0):
    s = random_scene(n=n, sh_degree=deg, seed=seed)
    s.opacity_logits[:5] = [-20.0, 20.0, 0.0, -3.0, 3.0]  # opacities near 0 and 1
    return s


# ---------------------------------------------------------------------------- primitives
def test_morton_roundtrip_and_order():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 1 << 21, (1000, 3), dtype=np.int64).astype(np.uint64)
    assert np.array_equal(Q.morton_decode(Q.morton_encode(g)), g)
    # bit interleaving: x is bit 0, y bit 1, z bit 2
    assert list(Q.morton_encode(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 0]],
                                         np.uint64))) == [1, 2, 4, 9]


def test_smallest_three_roundtrip():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(5000, 4)) * rng.uniform(0.1, 5, (5000, 1))
    q[:4] = np.eye(4)  # exact axes
    d = Q.unpack_smallest_three(Q.pack_smallest_three(q))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dot = np.abs(np.einsum("ij,ij->i", qn, d))
    # 3 components of step √2/255, error ≤ half a step each
    assert dot.min() > 1 - 2e-4
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-6)


def test_planes_roundtrip():
    a = np.random.default_rng(3).integers(0, 2**63, (37, 2), dtype=np.uint64)
    assert np.array_equal(Q.from_planes(Q.to_planes(a), 37, 2, np.uint64), a)


def test_chunk_counts():
    assert X.chunk_counts(0) == []
    assert X.chunk_counts(10, 4) == [4, 4, 2]
    assert X.chunk_counts(40, 4) == [4, 4, 8, 16, 8]
    assert sum(X.chunk_counts(123457)) == 123457


# ---------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("deg", [0, 1, 2, 3])
def test_roundtrip_within_quantization_bounds(deg):
    s = _scene(200, deg)
    data = X.encode_exgs(s, source={"bytes": 123}, settings={"x": 1})
    d = X.decode_exgs(data)
    # file order inside a chunk is Morton order within 16 significance sub-levels:
    # pair each decoded Gaussian with its source by position (points are far apart)
    dist = np.linalg.norm(d.means[:, None] - s.means[None], axis=2)
    perm = dist.argmin(1)
    assert len(np.unique(perm)) == 200
    assert np.all(np.diff(perm * 16 // 200) >= 0)  # sub-levels in significance order
    s = s.subset(perm)
    h = X.decode_header(data)
    q = h["quant"]
    assert len(d) == 200 and d.sh_degree == deg
    assert h["source"]["bytes"] == 123 and h["settings"] == {"x": 1}
    lo, hi = np.array(q["position"]["min"]), np.array(q["position"]["max"])
    step = (hi - lo) / (2**16 - 1)
    assert np.all(np.abs(d.means - s.means) <= step / 2 + 1e-6 * (1 + np.abs(s.means)))
    ls_step = (q["log_scale"]["max"] - q["log_scale"]["min"]) / 255
    assert np.abs(d.log_scales - s.log_scales).max() <= ls_step / 2 + 1e-5
    assert np.abs(d.opacities - s.opacities).max() <= 0.5 / 255 + 1e-4
    dot = np.abs(np.einsum("ij,ij->i", d.quats,
                           s.quats / np.linalg.norm(s.quats, axis=1, keepdims=True)))
    assert dot.min() > 1 - 2e-4
    if deg == 0:
        col = np.clip(s.sh[:, 0] * SH_C0 + 0.5, 0, 1)
        assert np.abs(d.base_colors - col).max() <= 0.5 / 255 + 1e-6
    else:
        clo, chi = np.array(q["colour"]["min"]), np.array(q["colour"]["max"])
        ref = np.clip(s.sh[:, 0], clo, chi)
        assert np.all(np.abs(d.sh[:, 0] - ref) <= (chi - clo) / 255 / 2 + 1e-5)
        for band in range(1, deg + 1):
            a = q["sh_rest"]["absmax"][band - 1]
            sl = slice(band * band, (band + 1) ** 2)
            ref = np.clip(s.sh[:, sl], -a, a)
            bits = q["sh_rest"]["bits"][band - 1]
            assert np.abs(d.sh[:, sl] - ref).max() <= a / (2**bits - 1) + 1e-5


def test_every_prefix_decodes_and_is_consistent():
    s = _scene(700, 1, seed=4)
    data = X.encode_exgs(s, first_chunk=64)
    h = X.decode_header(data)
    assert [c["count"] for c in h["chunks"]] == [64, 64, 128, 256, 188]
    full = X.decode_exgs(data)
    for k in range(1, 701):
        p = X.decode_exgs(data, keep=k)
        assert len(p) == k
        assert np.array_equal(p.means, full.means[:k])
        assert np.array_equal(p.sh, full.sh[:k])
    # at chunk boundaries the prefix is exactly the first k input Gaussians (as a set)
    tol = float(np.max(np.subtract(h["quant"]["position"]["max"], h["quant"]["position"]["min"]))) / 65535

    def matches(a, b):  # every point of a has a point of b within one quantization step
        d = np.linalg.norm(a.means[:, None, :] - b.means[None, :, :], axis=2)
        return bool((d.min(1) <= tol).all())

    for k in (64, 128, 256, 512):
        assert matches(full.subset(np.arange(k)), s.subset(np.arange(k)))
        assert not matches(full.subset(np.arange(k + 64)), s.subset(np.arange(k)))
    # inside a chunk the rank byte keeps significance order approximately
    p = X.decode_exgs(data, keep=256 + 64)
    assert matches(p.subset(np.arange(256, 320)), s.subset(np.arange(256, 256 + 128)))
    # fraction keep
    assert len(X.decode_exgs(data, keep=0.5)) == 350
    assert len(X.decode_exgs(data, keep=1.0)) == 700
    assert len(X.decode_exgs(data, keep=10**6)) == 700
    for bad in (0, -1, 0.0, 1.5, True):
        with pytest.raises(UsageError):
            X.decode_exgs(data, keep=bad)


def test_file_api(tmp_path):
    s = _scene(300, 0)
    data = X.encode_exgs(s)
    p = tmp_path / "a.exgs"
    X.write_exgs_bytes(data, p)
    assert detect_format(p) == "exgs"
    assert len(read_scene(p)) == 300
    assert len(X.read_exgs_scene(p, keep=30)) == 30
    h = X.read_exgs_header(p)
    assert h["count"] == 300 and h["file_bytes"] == len(data) and h["version"] == 1
    assert list(tmp_path.iterdir()) == [p]  # atomic write leaves no temp file


def test_empty_scene_roundtrip():
    data = X.encode_exgs(GaussianScene.empty(0))
    assert len(X.decode_exgs(data)) == 0


# ---------------------------------------------------------------------------- corruption
def _check_one_line(err: SceneFormatError, name: str):
    msg = str(err)
    assert "\n" not in msg and name in msg and len(msg) < 400


def test_fuzzed_corruption_gives_one_line_error(tmp_path):
    s = _scene(600, 1, seed=5)
    good = X.encode_exgs(s, first_chunk=128)
    rng = np.random.default_rng(1234)
    p = tmp_path / "bad.exgs"
    for case in range(200):
        b = bytearray(good)
        kind = case % 4
        if kind == 0:  # truncation
            b = b[:int(rng.integers(0, len(good)))]
        elif kind == 1:  # flip 1-8 random bytes
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(0, len(b)))
                b[i] ^= int(rng.integers(1, 256))
        elif kind == 2:  # garbage appended or spliced
            junk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            i = int(rng.integers(0, len(b)))
            b = b[:i] + junk + (b[i:] if rng.random() < 0.5 else b"")
        else:  # overwrite a run with random bytes
            i = int(rng.integers(0, len(b) - 8))
            ln = int(rng.integers(1, 32))
            b[i:i + ln] = rng.integers(0, 256, len(b[i:i + ln]), dtype=np.uint8).tobytes()
        if bytes(b) == good:
            continue
        p.write_bytes(bytes(b))
        with pytest.raises(SceneFormatError) as ei:
            X.read_exgs_scene(p)
        _check_one_line(ei.value, "bad.exgs")


def _header(data: bytes) -> tuple[dict, int]:
    import zstandard

    _, _, flags, hlen = PREFIX.unpack_from(data, 0)
    raw = data[12:12 + hlen]
    if flags & 1:
        raw = zstandard.ZstdDecompressor().decompress(raw)
    return json.loads(raw), hlen


def _forge(data: bytes, edit, compress_header: bool = True) -> bytes:
    """Re-encode the header after ``edit(header)`` with a valid digest (schema checks)."""
    import zstandard

    h, hlen = _header(data)
    edit(h)
    hj = json.dumps(h).encode()
    if compress_header:
        hj = zstandard.compress(hj)
    body = data[12 + hlen + 8:]
    return (PREFIX.pack(b"EXGS", 1, int(compress_header), len(hj)) + hj
            + hashlib.blake2b(hj, digest_size=8).digest() + body)


def test_plain_json_header_accepted():
    good = X.encode_exgs(_scene(50, 0))
    plain = _forge(good, lambda h: None, compress_header=False)
    assert plain[12:13] == b"{"
    assert len(X.decode_exgs(plain)) == 50


@pytest.mark.parametrize("edit", [
    lambda h: h.update(count=h["count"] + 1),
    lambda h: h.update(count="many"),
    lambda h: h.update(sh_degree=7),
    lambda h: h.pop("quant"),
    lambda h: h["quant"]["position"].update(bits=40),
    lambda h: h["quant"]["position"].update(min=[0, 0]),
    lambda h: h["quant"]["log_scale"].update(min=None),
    lambda h: h["quant"]["sh_rest"].update(bits=[9]),
    lambda h: h["chunks"][0].update(raw_length=5),
    lambda h: h["chunks"][0].update(offset=3),
    lambda h: h["chunks"][0].update(length=h["chunks"][0]["length"] + 1),
    lambda h: h["chunks"][0].update(checksum="00" * 8),
    lambda h: h["chunks"].append({"count": 1}),
    lambda h: h.update(chunks={}),
    lambda h: h.update(version=2),
], ids=lambda f: "edit")
def test_forged_headers_rejected(tmp_path, edit):
    good = X.encode_exgs(_scene(300, 1))
    p = tmp_path / "forged.exgs"
    p.write_bytes(_forge(good, edit))
    with pytest.raises(SceneFormatError) as ei:
        X.read_exgs_scene(p)
    _check_one_line(ei.value, "forged.exgs")


def test_forged_chunk_payload_rejected(tmp_path):
    """Valid checksums over data that is not zstd / has the wrong size."""
    good = X.encode_exgs(_scene(100, 0))
    h, hlen = _header(good)
    huge = (b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", 1 << 40)
            + bytes([0x01, 0x05, 0x00]) + b"hello")  # frame claiming 1 TiB of content
    for payload in (b"not zstd at all", __import__("zstandard").compress(b"x" * 5), huge):
        def edit(hh, payload=payload):
            hh["chunks"][0].update(length=len(payload),
                                   checksum=hashlib.blake2b(payload, digest_size=8).hexdigest())
        forged = _forge(good[:12 + hlen + 8], edit) + payload
        p = tmp_path / "payload.exgs"
        p.write_bytes(forged)
        with pytest.raises(SceneFormatError) as ei:
            X.read_exgs_scene(p)
        _check_one_line(ei.value, "payload.exgs")
    assert h["count"] == 100


def test_unreadable_inputs(tmp_path):
    with pytest.raises(SceneFormatError):
        X.read_exgs_scene(tmp_path / "missing.exgs")
    with pytest.raises(SceneFormatError):
        X.read_exgs_scene(tmp_path)
    p = tmp_path / "v9.exgs"
    p.write_bytes(struct.pack("<4sHHI", b"EXGS", 9, 0, 10) + b"{}" * 20)
    with pytest.raises(SceneFormatError, match="version 9"):
        X.read_exgs_header(p)
    p.write_bytes(b"")
    with pytest.raises(SceneFormatError):
        X.read_exgs_header(p)


# ----------------------------------------------------- issue 19: forged (digest-valid) ranges
def _forged(edit, deg: int = 1) -> bytes:
    """A .exgs whose header (re-digested, so it passes the checksum) is edited by ``edit``."""
    from exgs.io.exgs.container import assemble

    data = X.encode_exgs(_scene(300, deg, seed=9))
    h = X.decode_header(data)
    body = data[len(data) - sum(c["length"] for c in h["chunks"]):]
    edit(h["quant"])
    return assemble(h, [body], None)


FORGED = {
    "position_1e308": lambda q: q["position"].update(min=[-1e308] * 3, max=[1e308] * 3),
    "position_max_1e308": lambda q: q["position"].update(max=[1e308, 1.0, 1.0]),
    "log_scale_1e308": lambda q: q["log_scale"].update(max=1e308),
    "log_scale_absurd": lambda q: q["log_scale"].update(min=50.0, max=300.0),
    "colour_1e308": lambda q: q["colour"].update(min=[-1e308] * 3, max=[1e308] * 3),
    "sh_rest_1e308": lambda q: q["sh_rest"].update(absmax=[1e308]),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_header_ranges_are_refused_in_one_line(tmp_path, case, capsys):
    import warnings

    from exgs.cli import main
    from exgs.errors import SceneFormatError

    p = tmp_path / f"{case}.exgs"
    p.write_bytes(_forged(FORGED[case]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warnings either
        with pytest.raises(SceneFormatError) as ei:
            X.read_exgs_scene(p)
        with pytest.raises(SceneFormatError):
            X.decode_exgs(p.read_bytes())
    assert f"{case}.exgs" in str(ei.value) and "\n" not in str(ei.value)
    out = tmp_path / "out.ply"
    assert main(["decompress", str(p), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exgs: error:") and err.count("\n") == 1 and not out.exists()
