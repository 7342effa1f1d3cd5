"""``.splat``, ``.ksplat`` and glTF ``KHR_gaussian_splatting``: every file here is encoded or
decoded *independently* by the test (struct/numpy straight from the published layouts), never
by the writer or reader under test. Generated scenes only."""

import json
import struct

import numpy as np
import pytest

from exgs.errors import SceneFormatError
from exgs.io import detect_format, read_header, read_scene, write_scene
from exgs.io.spz import encode_spz
from exgs.scene import SH_C0, GaussianScene
from exgs.synth import random_scene

from test_formats import quat_angle_err


def _scene(n=50, degree=0, seed=0):
    s = random_scene(n=n, sh_degree=degree, seed=seed)
    s.sh[:, 1:] = np.clip(s.sh[:, 1:], -0.95, 0.95)
    s.sh[:, 0] = np.clip(s.sh[:, 0], -1.7, 1.7)  # displayable colour (8-bit formats clamp)
    return s


def _unit(q):
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- .splat
def test_splat_reader_decodes_hand_made_records(tmp_path):
    recs = [((1.0, -2.0, 3.5), (0.1, 0.2, 0.05), (255, 128, 0, 200), (255, 128, 128, 128)),
            ((0.0, 0.0, -1.0), (1.0, 1.0, 1.0), (0, 64, 32, 10), (128, 255, 128, 128))]
    p = tmp_path / "a.splat"
    p.write_bytes(b"".join(struct.pack("<3f3f4B4B", *pos, *sc, *col, *rot)
                           for pos, sc, col, rot in recs))
    assert detect_format(p) == "splat" and read_header(p)["gaussians"] == 2
    s = read_scene(p)
    assert s.sh_degree == 0 and len(s) == 2
    np.testing.assert_array_equal(s.means, np.float32([r[0] for r in recs]))
    np.testing.assert_allclose(s.scales, [r[1] for r in recs], rtol=1e-6)
    col = np.array([r[2] for r in recs], np.float64) / 255
    np.testing.assert_allclose(s.base_colors, col[:, :3], atol=1e-6)
    np.testing.assert_allclose(s.opacities, col[:, 3], atol=1e-6)
    np.testing.assert_allclose(_unit(s.quats), [[1, 0, 0, 0], [0, 1, 0, 0]], atol=1e-6)


def test_splat_writer_matches_spec(tmp_path):
    s = _scene(200, degree=2, seed=1)
    p = tmp_path / "w.splat"
    write_scene(s, p)
    raw = p.read_bytes()
    assert len(raw) == 32 * len(s)
    recs = [struct.unpack_from("<3f3f4B4B", raw, 32 * i) for i in range(len(s))]
    pos = np.array([r[0:3] for r in recs])
    scale = np.array([r[3:6] for r in recs])
    rgba = np.array([r[6:10] for r in recs]) / 255.0
    rot = (np.array([r[10:14] for r in recs]) - 128.0) / 128.0
    np.testing.assert_array_equal(pos, s.means)
    np.testing.assert_allclose(scale, s.scales, rtol=1e-6)
    assert np.abs(rgba[:, :3] - s.base_colors).max() <= 0.5 / 255 + 1e-6
    assert np.abs(rgba[:, 3] - s.opacities).max() <= 0.5 / 255 + 1e-6
    assert quat_angle_err(rot, s.quats) < 0.03  # 8 bits per component
    r = read_scene(p)  # and our reader agrees with the independent decode
    np.testing.assert_allclose(r.base_colors, np.clip(rgba[:, :3], 0, 1), atol=1e-6)


def test_splat_bad_size(tmp_path):
    p = tmp_path / "x.splat"
    p.write_bytes(b"\0" * 33)
    with pytest.raises(SceneFormatError, match="unknown scene format"):
        read_scene(p)
    from exgs.io.splat import read_splat

    with pytest.raises(SceneFormatError, match="not a multiple of 32"):
        read_splat(p)


# ----------------------------------------------------------------------------- .ksplat
_KS_BASE = {0: (12, 12, 16, 4, 4), 1: (6, 6, 8, 4, 2), 2: (6, 6, 8, 4, 1)}


def _ksplat_bytes(sections, level, degree, sh_range=(-1.0, 1.0), bucket=4, block=5.0):
    """A .ksplat file from the published SplatBuffer layout. ``sections``: list of scenes."""
    c, sc, r, col, shb = _KS_BASE[level]
    nsh = {0: 0, 1: 9, 2: 24}[degree]
    bps = c + sc + r + col + shb * nsh
    head = bytearray(4096)
    n_total = sum(len(s) for s in sections)
    struct.pack_into("<BB", head, 0, 0, 1)
    struct.pack_into("<4I", head, 4, len(sections), len(sections), n_total, n_total)
    struct.pack_into("<H", head, 20, level)
    struct.pack_into("<2f", head, 36, *sh_range)
    sec_heads, blobs = b"", b""
    for s in sections:
        n = len(s)
        nb = -(-n // bucket) if level else 0
        full = n // bucket if level else 0
        partial = nb - full
        sh = bytearray(1024)
        meta = struct.pack(f"<{partial}I", *([n - full * bucket] * partial))
        cents = np.zeros((nb, 3), np.float32)
        for b in range(nb):
            cents[b] = s.means[b * bucket:(b + 1) * bucket].mean(0)
        rng = 32767
        sf = block / 2 / rng
        recs = b""
        for i in range(n):
            if level == 0:
                rec = struct.pack("<3f", *s.means[i])
            else:
                v = np.round((s.means[i] - cents[i // bucket]) / sf + rng).astype(int)
                rec = struct.pack("<3H", *v)
            q = _unit(s.quats[i:i + 1].astype(np.float64))[0]  # w, x, y, z
            fmt = "<3f4f" if level == 0 else "<3e4e"
            rec += struct.pack(fmt, *np.exp(s.log_scales[i]), *q)
            rgb = np.clip(np.round((s.sh[i, 0] * SH_C0 + 0.5) * 255), 0, 255).astype(int)
            a = int(np.clip(np.round(s.opacities[i] * 255), 0, 255))
            rec += struct.pack("<4B", *rgb, a)
            vals = []
            if degree >= 1:
                vals += [s.sh[i, 1 + k, ch] for ch in range(3) for k in range(3)]
            if degree >= 2:
                vals += [s.sh[i, 4 + k, ch] for ch in range(3) for k in range(5)]
            if level == 0:
                rec += struct.pack(f"<{len(vals)}f", *vals)
            elif level == 1:
                rec += struct.pack(f"<{len(vals)}e", *vals)
            else:
                lo, hi = sh_range
                rec += bytes(int(np.clip(np.round((v - lo) / (hi - lo) * 255), 0, 255))
                             for v in vals)
            assert len(rec) == bps
            recs += rec
        storage = len(meta) + 12 * nb + len(recs)
        struct.pack_into("<4I", sh, 0, n, n, bucket if level else 0, nb)
        struct.pack_into("<f", sh, 16, block if level else 0.0)
        struct.pack_into("<H", sh, 20, 12 if level else 0)
        struct.pack_into("<4I", sh, 24, rng if level else 0, storage, full, partial)
        struct.pack_into("<H", sh, 40, degree)
        sec_heads += bytes(sh)
        blobs += meta + cents.tobytes() + recs
    return bytes(head) + sec_heads + blobs


@pytest.mark.parametrize("level,degree", [(0, 0), (0, 2), (1, 1), (2, 2)])
def test_ksplat_levels_and_sh(tmp_path, level, degree):
    a, b = _scene(37, degree, seed=3), _scene(22, degree, seed=4)
    p = tmp_path / "scene.bin"  # detected by content, not name
    p.write_bytes(_ksplat_bytes([a, b], level, degree))
    assert detect_format(p) == "ksplat"
    hdr = read_header(p)
    assert hdr["gaussians"] == 59 and hdr["sh_degree"] == degree
    assert hdr["compression_level"] == level
    r = read_scene(p)
    s = GaussianScene(*(np.concatenate([getattr(a, k), getattr(b, k)]) for k in
                        ("means", "quats", "log_scales", "opacity_logits", "sh")))
    assert len(r) == 59 and r.sh_degree == degree
    pos_tol = 1e-6 if level == 0 else 5.0 / 2 / 32767
    assert np.abs(r.means - s.means).max() <= pos_tol + 1e-6
    assert np.abs(r.log_scales - s.log_scales).max() < (1e-6 if level == 0 else 2e-3)
    assert quat_angle_err(r.quats, s.quats) < (1e-5 if level == 0 else 4e-3)
    assert np.abs(r.base_colors - s.base_colors).max() <= 0.5 / 255 + 1e-6
    assert np.abs(r.opacities - s.opacities).max() <= 0.5 / 255 + 2e-4
    if degree:
        tol = {0: 1e-6, 1: 1e-3, 2: 1 / 255 + 1e-6}[level]
        assert np.abs(r.sh[:, 1:] - s.sh[:, 1:]).max() <= tol


@pytest.mark.parametrize("edit,match", [
    (lambda b: b[:-1], "truncated .ksplat"),
    (lambda b: b[:12] + struct.pack("<2I", 10 ** 8, 10 ** 8) + b[20:],
     "declares 100000000 Gaussians .* decompression bomb"),
    (lambda b: b[:16] + struct.pack("<I", 29) + b[20:], "hold 30 Gaussians, the header says 29"),
    (lambda b: b[:4] + struct.pack("<I", 1 << 30) + b[8:], "more than the file can hold"),
    (lambda b: b[:4096 + 40] + struct.pack("<H", 5) + b[4096 + 42:], "SH degree 5"),
])
def test_ksplat_bad_headers(tmp_path, edit, match):
    p = tmp_path / "x.ksplat"
    p.write_bytes(edit(_ksplat_bytes([_scene(30, 1)], 1, 1)))
    with pytest.raises(SceneFormatError, match=match):
        read_scene(p)


# ----------------------------------------------------------------------------- glTF
def _glb(doc: dict, blob: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    return (struct.pack("<4sII", b"glTF", 2, 28 + len(js) + len(blob))
            + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(blob), 0x004E4942) + blob)


def _gltf_doc(columns, n, spz_view=None):
    """(doc, blob) with one accessor per (semantic, array, componentType, normalized)."""
    blob, views, accs, att = b"", [], [], {}
    for name, arr, ctype, norm in columns:
        data = np.ascontiguousarray(arr).tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        typ = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}[arr.shape[1]]
        accs.append({"bufferView": len(views) - 1, "componentType": ctype, "count": n,
                     "type": typ, **({"normalized": True} if norm else {})})
        att[name] = len(accs) - 1
        blob += data + b"\0" * (-len(data) % 4)
    ext = {}
    if spz_view is not None:
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(spz_view)})
        ext = {"extensions": {"KHR_gaussian_splatting_compression_spz_2":
                              {"bufferView": len(views) - 1}}}
        blob += spz_view
    doc = {"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_gaussian_splatting"],
           "buffers": [{"byteLength": len(blob)}], "bufferViews": views, "accessors": accs,
           "meshes": [{"primitives": [{"attributes": att, "mode": 0,
                                       "extensions": {"KHR_gaussian_splatting": ext}}]}],
           "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}]}
    return doc, blob


def test_gltf_plain_accessors_with_quantized_types(tmp_path):
    s = _scene(64, degree=1, seed=5)
    q = _unit(s.quats.astype(np.float64))[:, [1, 2, 3, 0]]  # x, y, z, w
    pre = "KHR_gaussian_splatting:"
    cols = [("POSITION", s.means.astype("<f4"), 5126, False),
            (pre + "ROTATION", np.round(q * 32767).astype("<i2"), 5122, True),
            (pre + "SCALE", s.scales.astype("<f4"), 5126, False),
            (pre + "OPACITY", np.round(s.opacities * 255).astype("u1")[:, None], 5121, True),
            (pre + "SH_DEGREE_0_COEF_0", s.sh[:, 0].astype("<f4"), 5126, False)]
    cols += [(pre + f"SH_DEGREE_1_COEF_{i}", s.sh[:, 1 + i].astype("<f4"), 5126, False)
             for i in range(3)]
    doc, blob = _gltf_doc(cols, len(s))
    p = tmp_path / "scene.dat"
    p.write_bytes(_glb(doc, blob))
    assert detect_format(p) == "gltf"
    r = read_scene(p)
    assert r.sh_degree == 1 and len(r) == 64
    np.testing.assert_array_equal(r.means, s.means)
    np.testing.assert_allclose(r.log_scales, s.log_scales, atol=1e-6)
    np.testing.assert_allclose(r.sh, s.sh, atol=1e-7)
    assert quat_angle_err(r.quats, s.quats) < 2e-4
    assert np.abs(r.opacities - s.opacities).max() <= 0.5 / 255 + 1e-5
    # the same data as a .gltf JSON with an external .bin next to it
    doc["buffers"][0]["uri"] = "scene.bin"
    (tmp_path / "scene.bin").write_bytes(blob)
    (tmp_path / "scene.gltf").write_text(json.dumps(doc))
    np.testing.assert_array_equal(read_scene(tmp_path / "scene.gltf").means, s.means)
    doc["buffers"][0]["uri"] = "../outside.bin"
    (tmp_path / "bad.gltf").write_text(json.dumps(doc))
    with pytest.raises(SceneFormatError, match="outside the glTF folder"):
        read_scene(tmp_path / "bad.gltf")


def _sh_eval(sh, d):
    """Σ_k sh_k · Y_k(d) for unit directions d [M,3] (real SH with the INRIA/gsplat signs)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    Y = [np.full_like(x, 0.28209479177387814), -0.4886025119029199 * y,
         0.4886025119029199 * z, -0.4886025119029199 * x,
         1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
         0.31539156525252005 * (2 * z * z - x * x - y * y), -1.0925484305920792 * x * z,
         0.5462742152960396 * (x * x - y * y),
         -0.5900435899266435 * y * (3 * x * x - y * y), 2.890611442640554 * x * y * z,
         -0.4570457994644658 * y * (4 * z * z - x * x - y * y),
         0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y),
         -0.4570457994644658 * x * (4 * z * z - x * x - y * y),
         1.445305721320277 * z * (x * x - y * y), -0.5900435899266435 * x * (x * x - 3 * y * y)]
    return sum(sh[:, k, None, :] * Y[k][None, :, None] for k in range(sh.shape[1]))


def test_gltf_spz2_payload_is_unpacked_in_the_gltf_frame(tmp_path):
    """The extension requires unpacking SPZ (stored RUB) to glTF's LUF: (x, z) negated."""
    s = _scene(80, degree=3, seed=6)
    payload = encode_spz(s, raw=True)  # the file stores s's numbers as its RUB data
    doc, blob = _gltf_doc([], len(s), spz_view=payload)
    doc["meshes"][0]["primitives"][0]["attributes"] = {"POSITION": 0}
    doc["accessors"] = [{"componentType": 5126, "count": len(s), "type": "VEC3"}]
    p = tmp_path / "t.glb"
    p.write_bytes(_glb(doc, blob))
    assert read_header(p)["spz"] is True
    r = read_scene(p)
    flip = np.array([-1.0, 1.0, -1.0])
    assert np.abs(r.means - s.means * flip).max() < 1e-3
    # rotation matrices: R' = F R F
    def rotm(q):
        w, x, y, z = _unit(q.astype(np.float64)).T
        return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                         2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                         2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                        1).reshape(-1, 3, 3)
    F = np.diag(flip)
    assert np.abs(rotm(r.quats) - F @ rotm(s.quats) @ F).max() < 0.01
    # view-dependent colour: original along d == read along F·d (up to SPZ's SH steps)
    d = _unit(np.random.default_rng(0).normal(size=(40, 3)))
    a = _sh_eval(np.concatenate([s.sh[:, :1] * 0, s.sh[:, 1:]], 1).astype(np.float64), d)
    b = _sh_eval(np.concatenate([r.sh[:, :1] * 0, r.sh[:, 1:]], 1).astype(np.float64), d @ F)
    assert np.abs(a - b).max() < 0.35  # SPZ keeps 4-5 bits per SH value
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98  # a wrong parity gives ~0


def test_gltf_writer_independent_parse(tmp_path):
    """The GLB holds the scene turned from RDF into glTF's +Y-up frame (180° about z, as
    PlayCanvas splat-transform writes GLB): same covariances and view-dependent colours."""
    s = _scene(120, degree=2, seed=7)
    p = tmp_path / "out.glb"
    write_scene(s, p)
    raw = p.read_bytes()
    magic, ver, total = struct.unpack_from("<4sII", raw)
    assert magic == b"glTF" and ver == 2 and total == len(raw)
    jlen, jtype = struct.unpack_from("<II", raw, 12)
    doc = json.loads(raw[20:20 + jlen])
    blen, btype = struct.unpack_from("<II", raw, 20 + jlen)
    assert (jtype, btype) == (0x4E4F534A, 0x004E4942)
    blob = raw[28 + jlen:28 + jlen + blen]
    prim = doc["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0 and "KHR_gaussian_splatting" in prim["extensions"]
    assert "matrix" not in doc["nodes"][0]

    def acc(name):
        a = doc["accessors"][prim["attributes"][name]]
        v = doc["bufferViews"][a["bufferView"]]
        k = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[a["type"]]
        assert a["componentType"] == 5126 and a["count"] == len(s)
        return np.frombuffer(blob, "<f4", a["count"] * k, v["byteOffset"]).reshape(-1, k)

    pre = "KHR_gaussian_splatting:"
    F = np.diag([-1.0, -1.0, 1.0])
    pos = acc("POSITION")
    np.testing.assert_array_equal(pos, s.means @ F)
    assert doc["accessors"][prim["attributes"]["POSITION"]]["min"] == pos.min(0).tolist()
    np.testing.assert_allclose(acc(pre + "SCALE"), s.scales, rtol=1e-6)
    np.testing.assert_allclose(acc(pre + "OPACITY")[:, 0], s.opacities, atol=1e-6)
    q = acc(pre + "ROTATION").astype(np.float64)
    assert np.abs(np.linalg.norm(q, axis=1) - 1).max() < 1e-6

    def cov(quat_wxyz, scales):
        w, x, y, z = _unit(quat_wxyz).T
        R = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                      2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                      2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                     1).reshape(-1, 3, 3)
        return R @ (scales[:, :, None] ** 2 * np.eye(3)) @ R.transpose(0, 2, 1)

    want = F @ cov(s.quats.astype(np.float64), s.scales.astype(np.float64)) @ F
    got = cov(q[:, [3, 0, 1, 2]], acc(pre + "SCALE").astype(np.float64))
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    sh = np.stack([acc(pre + f"SH_DEGREE_{int(np.sqrt(k))}_COEF_{k - int(np.sqrt(k)) ** 2}")
                   for k in range(9)], 1).astype(np.float64)
    d = _unit(np.random.default_rng(1).normal(size=(30, 3)))
    np.testing.assert_allclose(_sh_eval(sh, d @ F), _sh_eval(s.sh.astype(np.float64), d),
                               atol=1e-5)
    r = read_scene(p)  # our reader returns the file's (glTF-frame) numbers
    np.testing.assert_array_equal(r.means, pos)
    np.testing.assert_allclose(r.sh, sh, atol=1e-7)
    write_scene(s, tmp_path / "raw.glb", frame="luf")  # no conversion on request
    np.testing.assert_array_equal(read_scene(tmp_path / "raw.glb").means, s.means)


def test_gltf_spz_writer(tmp_path, capsys):
    """``--glb-spz``: the payload is exactly our SPZ v3 file (RDF → RUB, as the extension packs
    glTF's LUF into RUB), the accessors carry no data, and it reads back as the plain GLB does."""
    from exgs.cli import main as cli_main
    from exgs.io.ply import write_ply

    s = _scene(150, degree=3, seed=8)
    write_ply(s, tmp_path / "s.ply")
    assert cli_main(["convert", str(tmp_path / "s.ply"), str(tmp_path / "c.glb"), "--glb-spz"]) == 0
    raw = (tmp_path / "c.glb").read_bytes()
    jlen = struct.unpack_from("<I", raw, 12)[0]
    doc = json.loads(raw[20:20 + jlen])
    ext = doc["meshes"][0]["primitives"][0]["extensions"]["KHR_gaussian_splatting"]
    view = doc["bufferViews"][ext["extensions"]["KHR_gaussian_splatting_compression_spz_2"][
        "bufferView"]]
    payload = raw[28 + jlen + view.get("byteOffset", 0):][:view["byteLength"]]
    assert payload == encode_spz(s)
    assert all("bufferView" not in a and a["count"] == 150 for a in doc["accessors"])
    assert "KHR_gaussian_splatting_compression_spz_2" in doc["extensionsRequired"]
    write_scene(s, tmp_path / "p.glb")
    a, b = read_scene(tmp_path / "c.glb"), read_scene(tmp_path / "p.glb")
    assert np.abs(a.means - b.means).max() < 1e-3 and quat_angle_err(a.quats, b.quats) < 0.01
    assert np.abs(a.sh[:, 1:] - b.sh[:, 1:]).max() < 0.07  # SPZ's 4-5-bit SH
    assert (tmp_path / "c.glb").stat().st_size < (tmp_path / "p.glb").stat().st_size / 4


def test_gltf_without_gaussians(tmp_path):
    p = tmp_path / "mesh.glb"
    p.write_bytes(_glb({"asset": {"version": "2.0"}, "meshes": [{"primitives": [
        {"attributes": {"POSITION": 0}}]}]}, b""))
    with pytest.raises(SceneFormatError, match="without a KHR_gaussian_splatting primitive"):
        read_scene(p)
