"""Round trips and spec conformance of the SPZ, PlayCanvas compressed PLY and SOG v2 formats,
the frame handling of SPZ, and ``exgs convert``. Generated scenes only (no shared files)."""

import gzip
import io
import struct
import zlib

import numpy as np
import pytest

from exgs.cli import main as cli_main
from exgs.errors import SceneFormatError
from exgs.io import detect_format, read_scene, write_scene
from exgs.io.compressed_ply import read_compressed_ply, write_compressed_ply
from exgs.io.ply import read_ply, write_ply
from exgs.io.sog import read_sog, write_sog
from exgs.io.spz import _SH_FLIP, encode_spz, read_spz, read_spz_header, write_spz
from exgs.scene import GaussianScene
from exgs.synth import demo_scene, random_scene


def _unit(q):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return q


def quat_angle_err(a, b):
    """Largest angle (rad) between the rotations of two [N,4] quaternion arrays."""
    d = np.abs((_unit(a.astype(np.float64)) * _unit(b.astype(np.float64))).sum(1))
    return float(2 * np.arccos(np.clip(d, 0, 1)).max())


def _spz_scene(degree, n=400, seed=0):
    s = random_scene(n=n, sh_degree=degree, seed=seed)
    s.sh[:, 1:] = np.clip(s.sh[:, 1:], -0.99, 0.99)  # SPZ's SH range is [-1, 1)
    return s


# ----------------------------------------------------------------------------- SPZ
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spz_roundtrip_within_quantization(tmp_path, version, degree):
    s = _spz_scene(degree, seed=degree)
    p = tmp_path / "a.spz"
    write_spz(s, p, version=version)
    assert detect_format(p) == "spz"
    r = read_scene(p)
    assert len(r) == len(s) and r.sh_degree == degree
    assert read_spz_header(p)["version"] == version
    assert np.abs(r.means - s.means).max() <= 0.5 / 4096 + 1e-6  # 12 fractional bits
    assert np.abs(r.log_scales - s.log_scales).max() <= 0.5 / 16 + 1e-6
    assert np.abs(r.opacities - s.opacities).max() <= 0.5 / 255 + 1e-4
    assert np.abs(r.sh[:, 0] - s.sh[:, 0]).max() <= 0.5 / (0.15 * 255) + 1e-5
    if degree:
        assert np.abs(r.sh[:, 1:4] - s.sh[:, 1:4]).max() <= 4 / 128 + 1 / 256 + 1e-6
        assert np.abs(r.sh[:, 4:] - s.sh[:, 4:]).max(initial=0) <= 8 / 128 + 1 / 256 + 1e-6
    # v3 smallest-three: 9 bits + sign per component. v2 stores x,y,z in 8 bits and rebuilds
    # w = sqrt(1 - |xyz|²), which is coarse when w is small (a limitation of the format)
    if version == 3:
        assert quat_angle_err(r.quats, s.quats) < 0.004
    else:
        assert quat_angle_err(r.quats, s.quats) < 0.25
        small_err = quat_angle_err(r.quats[np.abs(_unit(s.quats)[:, 0]) > 0.3],
                                   s.quats[np.abs(_unit(s.quats)[:, 0]) > 0.3])
        assert small_err < 0.04


def test_spz_fixed_point_bits_adapt_to_large_coordinates(tmp_path):
    s = _spz_scene(0, n=50)
    s.means[0] = [5000.0, -3000.0, 20.0]  # beyond ±2048 (24 bits with 12 fractional bits)
    p = tmp_path / "big.spz"
    write_spz(s, p)
    hdr = read_spz_header(p)
    assert hdr["fractional_bits"] == 10
    r = read_spz(p)
    assert np.abs(r.means - s.means).max() <= 0.5 / 1024 + 1e-6


def _hand_made_spz_v2():
    """One Gaussian written byte by byte from the format description (not by our encoder)."""
    n, frac = 1, 12
    head = struct.pack("<IIIBBBB", 0x5053474E, 2, n, 1, frac, 0, 0)
    fixed = [int(1.5 * 4096), int(-0.25 * 4096), int(2.0 * 4096)]
    pos = b"".join(struct.pack("<i", v)[:3] for v in fixed)
    alpha = bytes([204])                      # opacity 0.8
    color = bytes([128, 166, 51])             # DC = (c/255 - .5)/.15
    scale = bytes([(-3 + 10) * 16] * 3)       # log-scale -3
    rot = bytes([128, 128, 128])              # x = y = z ≈ 0 → identity
    sh = bytes([128 + 64, 128, 128] + [128] * 6)  # sh1n1 red = 0.5 (RUB file frame)
    return gzip.compress(head + pos + alpha + color + scale + rot + sh)


def test_spz_decodes_hand_made_file_per_spec(tmp_path):
    p = tmp_path / "hand.spz"
    p.write_bytes(_hand_made_spz_v2())
    raw = read_spz(p, raw=True)
    np.testing.assert_allclose(raw.means[0], [1.5, -0.25, 2.0], atol=1e-6)
    np.testing.assert_allclose(raw.opacities[0], 0.8, atol=1e-3)
    np.testing.assert_allclose(raw.sh[0, 0], (np.array([128, 166, 51]) / 255 - 0.5) / 0.15,
                               atol=1e-5)
    np.testing.assert_allclose(raw.log_scales[0], [-3, -3, -3])
    assert quat_angle_err(raw.quats, np.array([[1.0, 0, 0, 0]])) < 0.02
    np.testing.assert_allclose(raw.sh[0, 1], [0.5, 0, 0])
    # default read converts RUB (file) → RDF (scene): y, z and the SH parities flip
    rdf = read_spz(p)
    np.testing.assert_allclose(rdf.means[0], [1.5, 0.25, -2.0], atol=1e-6)
    np.testing.assert_allclose(rdf.sh[0, 1], [-0.5, 0, 0])


def test_spz_v3_hand_made_rotation_word(tmp_path):
    """Decode a v3 rotation written by hand: largest = y (index 1 in x,y,z,w order),
    x = -0.5 (sign bit set), z = 0, w = +0.5; y rebuilt as sqrt(1 - 0.5) ≈ 0.7071."""
    mag = round(511 * 0.5 / np.sqrt(0.5))
    word = (1 << 30) | (((1 << 9) | mag) << 20) | (0 << 10) | mag
    head = struct.pack("<IIIBBBB", 0x5053474E, 3, 1, 0, 12, 0, 0)
    body = head + bytes(9) + bytes([255]) + bytes([128] * 3) + bytes([160] * 3) \
        + struct.pack("<I", word)
    p = tmp_path / "rot.spz"
    p.write_bytes(gzip.compress(body))
    q = read_spz(p, raw=True).quats[0]  # w, x, y, z
    np.testing.assert_allclose(q, [0.5, -0.5, np.sqrt(0.5), 0.0], atol=2e-3)


def test_spz_v1_float16_positions(tmp_path):
    head = struct.pack("<IIIBBBB", 0x5053474E, 1, 2, 0, 0, 0, 0)
    pos = np.array([[1.5, -2.0, 0.25], [100.0, 0.0, -0.5]], "<f2").tobytes()
    body = head + pos + bytes([128, 128]) + bytes([128] * 6) + bytes([96] * 6) \
        + bytes([128] * 6)
    p = tmp_path / "v1.spz"
    p.write_bytes(gzip.compress(body))
    r = read_spz(p, raw=True)
    np.testing.assert_array_equal(r.means, [[1.5, -2.0, 0.25], [100.0, 0.0, -0.5]])
    np.testing.assert_allclose(r.log_scales, -4.0)


def test_spz_extension_records_are_skipped_with_a_warning(tmp_path):
    body = zlib.decompress(encode_spz(_spz_scene(1, n=20)), 16 + zlib.MAX_WBITS)
    body = body[:14] + bytes([0x2]) + body[15:]  # flags: has extensions
    body += struct.pack("<II", 0xADBE0002, 12) + struct.pack("<3f", -0.5, 0.5, 1.0)
    p = tmp_path / "ext.spz"
    p.write_bytes(gzip.compress(body))
    with pytest.warns(UserWarning, match="extension records skipped"):
        r = read_spz(p)
    assert len(r) == 20


@pytest.mark.parametrize("degree", [0, 2])
def test_empty_scenes_roundtrip(tmp_path, degree):
    e = GaussianScene.empty(degree)
    for name, write in (("e.spz", write_spz), ("e.ply", write_compressed_ply)):
        write(e, tmp_path / name)
        r = read_scene(tmp_path / name)
        assert len(r) == 0 and r.sh_degree == degree


def test_spz_smallest_three_bit_layout(tmp_path):
    """v3 rotation word: 2 bits index of the largest (x,y,z,w order), then 10-bit fields."""
    q = np.array([[0.5, 0.5, -0.5, 0.5]])  # w, x, y, z
    s = GaussianScene(np.zeros((1, 3)), q, np.zeros((1, 3)), np.zeros(1), np.zeros((1, 1, 3)))
    body = zlib.decompress(encode_spz(s, raw=True), 16 + zlib.MAX_WBITS)
    word = struct.unpack_from("<I", body, 16 + 9 + 1 + 3 + 3)[0]
    # all |components| equal: the first, x (index 0), is the largest; made positive
    assert word >> 30 == 0
    fields = [(word >> sh) & 0x3FF for sh in (20, 10, 0)]  # y, z, w
    mags = [f & 0x1FF for f in fields]
    signs = [f >> 9 for f in fields]
    assert signs == [1, 0, 0]  # y negative, z and w positive
    assert all(abs(m - round(511 * 0.5 / np.sqrt(0.5))) <= 1 for m in mags)


def test_spz_frame_conversion_is_rotation_about_x(tmp_path):
    """The RUB file holds the scene rotated 180° about x: same rendered colours (SH) and
    covariances in the rotated frame."""
    import torch
    from gsplat.cuda._torch_impl import _quat_to_rotmat, _spherical_harmonics

    s = _spz_scene(3, n=64, seed=5)
    p = tmp_path / "f.spz"
    write_spz(s, p)
    stored = read_spz(p, raw=True)  # the RUB values in the file
    flip = np.diag([1.0, -1.0, -1.0])
    assert np.abs(stored.means - s.means @ flip).max() < 1e-3
    ra = _quat_to_rotmat(torch.tensor(_unit(s.quats))).numpy()
    rb = _quat_to_rotmat(torch.tensor(_unit(stored.quats))).numpy()
    assert np.abs(flip @ ra @ flip - rb).max() < 0.01
    # exact parity table: colour along d in RDF == colour along flip·d with flipped SH
    dirs = torch.tensor(np.random.default_rng(0).normal(size=(64, 3)), dtype=torch.float32)
    sh = torch.tensor(s.sh)
    sh_f = sh.clone()
    sh_f[:, 1:] *= torch.tensor(_SH_FLIP)[:, None]
    c0 = _spherical_harmonics(3, dirs, sh)
    c1 = _spherical_harmonics(3, dirs * torch.tensor([1.0, -1.0, -1.0]), sh_f)
    assert torch.allclose(c0, c1, atol=1e-5)
    # and PLY → SPZ → PLY keeps the frame
    back = read_spz(p)
    assert np.abs(back.means - s.means).max() < 1e-3


def _spz_v4_bytes(scene):
    """A version-4 file (32-byte header + TOC + ZSTD streams) built from our v3 body."""
    import zstandard

    body = zlib.decompress(encode_spz(scene), 16 + zlib.MAX_WBITS)
    n, k = len(scene), scene.sh.shape[1] - 1
    sizes = [n * 9, n, n * 3, n * 3, n * 4, n * 3 * k]
    streams, off = [], 16
    for sz in sizes:
        if sz:
            streams.append(body[off:off + sz])
        off += sz
    comp = [zstandard.ZstdCompressor().compress(x) for x in streams]
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, scene.sh_degree, 12, 0, len(comp), 32)
    toc = b"".join(struct.pack("<QQ", len(c), len(u)) for c, u in zip(comp, streams))
    return head + toc + b"".join(comp)


def test_spz_v4_zstd_read(tmp_path):
    s = _spz_scene(2, n=300, seed=2)
    p3, p4 = tmp_path / "a.spz", tmp_path / "b.spz"
    write_spz(s, p3)
    p4.write_bytes(_spz_v4_bytes(s))
    assert detect_format(p4) == "spz"
    a, b = read_spz(p3), read_spz(p4)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    data = p4.read_bytes()
    p4.write_bytes(data[:-10])
    with pytest.raises(SceneFormatError, match="b.spz"):
        read_spz(p4)


def test_spz_absurd_header_and_gzip_bomb(tmp_path):
    p = tmp_path / "huge.spz"
    p.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, 150_000_000, 3, 12, 0, 0)
                                + b"\0" * 1000))
    with pytest.raises(SceneFormatError, match="decompression bomb"):
        read_spz(p)
    # a gzip bomb: header for 1 Gaussian followed by 200 MB of zeros (200 kB compressed)
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [bomb.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, 1, 0, 12, 0, 0))]
    chunk = b"\0" * (1 << 20)
    parts += [bomb.compress(chunk) for _ in range(200)]
    parts.append(bomb.flush())
    p.write_bytes(b"".join(parts))
    with pytest.raises(SceneFormatError, match="more data than 1 Gaussians need"):
        read_spz(p)


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[:20], "truncated|corrupt"),
    (lambda b: gzip.compress(gzip.decompress(b)[:-5]), "truncated SPZ"),
    (lambda b: gzip.compress(b"XGSP" + gzip.decompress(b)[4:]), "not an SPZ"),
    (lambda b: gzip.compress(gzip.decompress(b)[:4] + struct.pack("<I", 9)
                             + gzip.decompress(b)[8:]), "unsupported SPZ version 9"),
    (lambda b: gzip.compress(gzip.decompress(b)[:12] + b"\x07" + gzip.decompress(b)[13:]),
     "SH degree 7"),
    (lambda b: gzip.compress(gzip.decompress(b) + b"junk"), "more data than 30 Gaussians"),
])
def test_spz_bad_input_one_line(tmp_path, mutate, match):
    p = tmp_path / "bad.spz"
    p.write_bytes(mutate(encode_spz(_spz_scene(1, n=30))))
    with pytest.raises(SceneFormatError, match=match) as ei:
        read_scene(p)
    assert "\n" not in str(ei.value) and str(p) in str(ei.value)


# ----------------------------------------------------------------------------- compressed PLY
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_compressed_ply_roundtrip(tmp_path, degree):
    s = random_scene(n=700, sh_degree=degree, seed=10 + degree)  # 3 chunks, last partial
    p = tmp_path / "c.ply"
    write_compressed_ply(s, p)
    assert detect_format(p) == "compressed_ply"
    r = read_scene(p)
    assert len(r) == 700 and r.sh_degree == degree
    ext = np.ptp(s.means, 0)  # chunk bounds are at most the scene's
    assert (np.abs(r.means - s.means).max(0) <= ext / 1023 * 0.5 + 1e-5).all()
    assert np.abs(r.log_scales - s.log_scales).max() <= np.ptp(s.log_scales) / 1023 * 0.5 + 1e-5
    assert np.abs(r.base_colors - s.base_colors).max() <= 0.5 / 255 + 1e-5
    assert np.abs(r.opacities - s.opacities).max() <= 0.5 / 255 + 1e-4
    assert quat_angle_err(r.quats, s.quats) < 0.004
    if degree:
        ok = np.abs(s.sh[:, 1:]) < 3.9
        assert np.abs(r.sh[:, 1:] - s.sh[:, 1:])[ok].max() <= 8 / 256 + 1e-5


def test_compressed_ply_without_chunk_colours(tmp_path):
    """Older SuperSplat files have 12 chunk properties: colour = byte/255 directly."""
    import plyfile

    chunk = np.zeros(1, dtype=[(nm, "<f4") for nm in
                               ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                                "min_scale_x", "min_scale_y", "min_scale_z",
                                "max_scale_x", "max_scale_y", "max_scale_z"]])
    chunk["max_x"], chunk["max_y"], chunk["max_z"] = 2.0, 4.0, 8.0
    chunk["min_scale_x"] = chunk["min_scale_y"] = chunk["min_scale_z"] = -5
    chunk["max_scale_x"] = chunk["max_scale_y"] = chunk["max_scale_z"] = -1
    v = np.zeros(1, dtype=[(nm, "<u4") for nm in ["packed_position", "packed_rotation",
                                                 "packed_scale", "packed_color"]])
    v["packed_position"] = (2047 << 21) | (0 << 11) | 1023   # x = max, y = min, z ≈ half
    v["packed_rotation"] = (0 << 30) | (512 << 20) | (512 << 10) | 512  # w largest, rest ≈ 0
    v["packed_scale"] = (0 << 21) | (1023 << 11) | 2047       # -5, -1, -1
    v["packed_color"] = (255 << 24) | (0 << 16) | (128 << 8) | 51
    p = tmp_path / "old.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(chunk, "chunk"),
                     plyfile.PlyElement.describe(v, "vertex")]).write(str(p))
    r = read_compressed_ply(p)
    np.testing.assert_allclose(r.means[0], [2.0, 0.0, 8.0 * 1023 / 2047], atol=1e-5)
    np.testing.assert_allclose(r.log_scales[0], [-5, -1, -1], atol=1e-5)
    np.testing.assert_allclose(r.base_colors[0], [1.0, 0.0, 128 / 255], atol=1e-5)
    np.testing.assert_allclose(r.opacities[0], 0.2, atol=1e-4)
    assert quat_angle_err(r.quats, np.array([[1.0, 0, 0, 0]])) < 0.01


def test_compressed_ply_wrong_chunk_count(tmp_path):
    import plyfile

    p = tmp_path / "c.ply"
    write_compressed_ply(random_scene(n=300), p)
    d = plyfile.PlyData.read(str(p))
    els = [plyfile.PlyElement.describe(d["chunk"].data[:1], "chunk"),
           plyfile.PlyElement.describe(d["vertex"].data, "vertex")]
    q = tmp_path / "bad.ply"  # (p is still memory-mapped by plyfile: never write it)
    plyfile.PlyData(els).write(str(q))
    with pytest.raises(SceneFormatError, match="1 chunks for 300 Gaussians"):
        read_scene(q)


# ----------------------------------------------------------------------------- SOG
def test_webp_lossless_is_exact():
    from PIL import Image

    rgba = np.random.default_rng(0).integers(0, 256, (37, 53, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] < 30, 0, rgba[..., 3])  # RGB kept under alpha 0 too
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="WEBP", lossless=True, exact=True)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA"))
    np.testing.assert_array_equal(back, rgba)


@pytest.mark.parametrize("degree,layout", [(0, "zip"), (1, "folder"), (3, "meta")])
def test_sog_roundtrip(tmp_path, degree, layout):
    s = random_scene(n=900, sh_degree=degree, seed=20 + degree)
    target = tmp_path / ("s.sog" if layout == "zip" else "s")
    write_sog(s, target, palette=900)  # a palette per Gaussian: only the codebook quantizes
    p = target / "meta.json" if layout == "meta" else target
    assert detect_format(p) == "sog"
    r = read_scene(p)
    assert len(r) == 900 and r.sh_degree == degree
    span = np.ptp(np.sign(s.means) * np.log1p(np.abs(s.means)), 0)
    lim = span / 65535 * np.exp(np.abs(s.means).max(0))  # 16 bits in log space
    assert (np.abs(r.means - s.means).max(0) <= lim + 1e-6).all()
    assert np.abs(r.log_scales - s.log_scales).max() < 0.03  # 256-entry codebook
    assert np.abs(r.sh[:, 0] - s.sh[:, 0]).max() < 0.03
    assert np.abs(r.opacities - s.opacities).max() <= 0.5 / 255 + 1e-5
    assert quat_angle_err(r.quats, s.quats) < 0.02  # 8 bits per component
    if degree:  # every SH value decodes to the codebook entry nearest to it
        import json

        cb = np.array(json.loads((target / "meta.json").read_text())["shN"]["codebook"])
        x = s.sh[:, 1:].reshape(-1)
        nearest = cb[np.argmin(np.abs(cb[None, :] - x[:, None]), 1)]
        assert (np.abs(r.sh[:, 1:].reshape(-1) - x) <= np.abs(nearest - x) + 1e-5).all()
        assert np.percentile(np.abs(r.sh[:, 1:] - s.sh[:, 1:]), 99) < 0.02


def test_sog_demo_scene_palette_is_faithful(tmp_path):
    """With the default (clustered) SH palette, view-dependent colour stays close."""
    s = demo_scene(n=3000, sh_degree=2)
    write_sog(s, tmp_path / "d.sog")
    r = read_sog(tmp_path / "d.sog")
    assert np.abs(r.sh[:, 1:] - s.sh[:, 1:]).mean() < 0.05
    assert np.abs(r.base_colors - s.base_colors).max() < 0.03


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(version=1), "unsupported SOG version 1"),
    (lambda m: m.pop("version"), "SOG v1 meta.json: means.shape"),
    (lambda m: m.update(count=10 ** 12), "declares 1000000000000 Gaussians"),
    (lambda m: m.update(count=20_000_000), "decompression bomb"),
    (lambda m: m.update(count=5000), "texels, needs 5000"),
    (lambda m: m["means"].update(mins=[0, 0]), "means.mins"),
    (lambda m: m["scales"].update(codebook=[1.0] * 10), "outside its codebook"),
    (lambda m: m["quats"].update(files=["nope.webp"]), "missing nope.webp"),
    (lambda m: m["quats"].update(files=["../x.webp"]), "bad file name"),
])
def test_sog_bad_meta(tmp_path, edit, match):
    import json

    d = tmp_path / "s"
    write_sog(random_scene(n=200, sh_degree=1), d, palette=64)
    meta = json.loads((d / "meta.json").read_text())
    edit(meta)
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match=match):
        read_scene(d)


def test_sog_oversized_image_refused(tmp_path):
    """An image far larger than the count needs is refused before it is decoded."""
    from PIL import Image

    d = tmp_path / "s"
    write_sog(random_scene(n=10, sh_degree=0), d)
    Image.new("RGBA", (4096, 4096)).save(d / "means_l.webp", format="WEBP", lossless=True)
    with pytest.raises(SceneFormatError, match="far larger than 10 Gaussians need"):
        read_scene(d)


# ----------------------------------------------------------------------------- convert / CLI
def test_write_scene_by_suffix_and_convert(tmp_path, capsys):
    s = random_scene(n=200, sh_degree=2, seed=3)
    s.sh[:, 1:] = np.clip(s.sh[:, 1:], -0.99, 0.99)
    src = tmp_path / "a.ply"
    write_scene(s, src)
    assert cli_main(["convert", str(src), str(tmp_path / "b.spz")]) == 0
    assert cli_main(["convert", str(tmp_path / "b.spz"), str(tmp_path / "c.ply")]) == 0
    r = read_ply(tmp_path / "c.ply")
    assert np.abs(r.means - s.means).max() < 1e-3  # same frame after PLY → SPZ → PLY
    assert cli_main(["convert", str(src), str(tmp_path / "d.spz"), "--sh-degree", "0"]) == 0
    assert read_spz(tmp_path / "d.spz").sh_degree == 0
    capsys.readouterr()
    before = src.read_bytes()
    assert cli_main(["convert", str(src), str(src)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert cli_main(["convert", str(src), str(tmp_path / "e.txt")]) == 2
    assert not (tmp_path / "e.txt").exists()
    capsys.readouterr()
    # a failed conversion leaves nothing behind
    bad = tmp_path / "bad.spz"
    bad.write_bytes(b"\x1f\x8b garbage")
    assert cli_main(["convert", str(bad), str(tmp_path / "f.ply")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exgs: error:") and err.count("\n") == 1 and "bad.spz" in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.ply", "b.spz", "bad.spz",
                                                           "c.ply", "d.spz"]


def test_sog_zip_detected_by_content(tmp_path):
    p = tmp_path / "scene.zip"
    write_sog(random_scene(n=50, sh_degree=0), tmp_path / "a.sog")
    p.write_bytes((tmp_path / "a.sog").read_bytes())
    assert detect_format(p) == "sog" and len(read_scene(p)) == 50


def test_info_every_format(tmp_path, capsys):
    s = random_scene(n=300, sh_degree=1, seed=4)
    files = {"ply": tmp_path / "a.ply", "spz": tmp_path / "a.spz",
             "compressed_ply": tmp_path / "a.compressed.ply", "sog": tmp_path / "a.sog"}
    write_ply(s, files["ply"])
    write_spz(s, files["spz"])
    write_compressed_ply(s, files["compressed_ply"])
    write_sog(s, files["sog"])
    for fmt, p in files.items():
        assert cli_main(["info", str(p)]) == 0
        out = capsys.readouterr().out
        assert f"format          {fmt}" in out and "300" in out and "sh degree       1" in out
    for fmt, name, degree in [("gltf", "a.glb", 1), ("splat", "a.splat", 0)]:
        write_scene(s, tmp_path / name)
        assert cli_main(["info", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        assert f"format          {fmt}" in out and "300" in out and f"sh degree       {degree}" in out
        assert "bounds          (" in out
