"""SOG v1 and streamed LOD SOG reading, and SOG v2 *writing* checked by an independent decoder
written here from the published layout (zip → meta.json → lossless WebP → values), including
a render comparison (≥ 35 dB). Also: folder members that are links escaping the folder."""

import io
import json
import math
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from exgs.cameras import orbit_for_scene
from exgs.errors import SceneFormatError
from exgs.io import detect_format, read_header, read_scene
from exgs.io.sog import read_sog, write_sog
from exgs.metrics import psnr
from exgs.render import render
from exgs.scene import GaussianScene
from exgs.synth import demo_scene, random_scene

from test_formats import quat_angle_err


def _webp(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="WEBP", lossless=True, exact=True)
    return buf.getvalue()


def _unwebp(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")).reshape(-1, 4)


# ----------------------------------------------------------------------------- SOG v1
def _write_v1(d, n, k, rng):
    """A SOG v1 folder with random bytes; returns the values a spec decoder must produce."""
    side = int(math.ceil(math.sqrt(n)))  # v1 images are square
    img = lambda: rng.integers(0, 256, (side, side, 4), dtype=np.uint8)  # noqa: E731
    ml, mu, sc, q, c0 = img(), img(), img(), img(), img()
    q[..., 3] = 252 + rng.integers(0, 4, (side, side))
    pal = 70
    cent = rng.integers(0, 256, (2, 64 * k, 4), dtype=np.uint8)  # 128 palette entries
    lab = np.zeros((side, side, 4), np.uint8)
    labels = rng.integers(0, pal, side * side)
    lab[..., 0], lab[..., 1] = (labels & 255).reshape(side, side), (labels >> 8).reshape(side, side)
    meta = {"means": {"shape": [n, 3], "dtype": "float32", "mins": [-1.0, -2.0, 0.5],
                      "maxs": [1.0, 0.5, 2.0], "files": ["means_l.webp", "means_u.webp"]},
            "scales": {"shape": [n, 3], "dtype": "float32", "mins": [-6.0, -5.0, -7.0],
                       "maxs": [-1.0, 0.0, -2.0], "files": ["scales.webp"]},
            "quats": {"shape": [n, 4], "dtype": "uint8", "encoding": "quaternion_packed",
                      "files": ["quats.webp"]},
            "sh0": {"shape": [n, 1, 4], "dtype": "float32", "mins": [-2.0, -1.5, -1.0, -4.0],
                    "maxs": [2.0, 1.5, 3.0, 6.0], "files": ["sh0.webp"]},
            "shN": {"shape": [n, 3 * k], "dtype": "float32", "mins": -0.6, "maxs": 0.8,
                    "quantization": 8, "files": ["shN_centroids.webp", "shN_labels.webp"]}}
    d.mkdir()
    for name, a in [("means_l", ml), ("means_u", mu), ("scales", sc), ("quats", q),
                    ("sh0", c0), ("shN_centroids", cent), ("shN_labels", lab)]:
        (d / f"{name}.webp").write_bytes(_webp(a))
    (d / "meta.json").write_text(json.dumps(meta))
    f = lambda a: a.reshape(-1, 4)[:n].astype(np.float64)  # noqa: E731
    lin = lambda lo, hi, b: np.asarray(lo) + (np.asarray(hi) - np.asarray(lo)) * b / 255  # noqa: E731
    u = (f(ml)[:, :3] + 256 * f(mu)[:, :3]) / 65535
    v = np.array(meta["means"]["mins"]) + (np.array(meta["means"]["maxs"]) -
                                           np.array(meta["means"]["mins"])) * u
    means = np.sign(v) * (np.exp(np.abs(v)) - 1)
    qq = f(q)
    c = (qq[:, :3] / 255 - 0.5) * math.sqrt(2)
    big = (qq[:, 3] - 252).astype(int)
    quats = np.zeros((n, 4))
    for i in range(n):
        rest = [j for j in range(4) if j != big[i]]
        quats[i, rest] = c[i]
        quats[i, big[i]] = math.sqrt(max(0.0, 1 - (c[i] ** 2).sum()))
    lab_n = labels[:n]
    cf = cent.reshape(-1, 4).astype(np.float64)
    rest = np.stack([cf[(lab_n // 64) * 64 * k + (lab_n % 64) * k + j, :3] for j in range(k)], 1)
    return dict(means=means, quats=quats, log_scales=lin(meta["scales"]["mins"],
                meta["scales"]["maxs"], f(sc)[:, :3]),
                dc=lin(meta["sh0"]["mins"][:3], meta["sh0"]["maxs"][:3], f(c0)[:, :3]),
                logit=lin(-4.0, 6.0, f(c0)[:, 3]), rest=lin(-0.6, 0.8, rest))


@pytest.mark.parametrize("k,degree", [(3, 1), (15, 3)])
def test_sog_v1_folder(tmp_path, k, degree):
    d = tmp_path / "v1"
    want = _write_v1(d, 90, k, np.random.default_rng(k))
    (d / "meta.json").rename(d / "scene_meta.json")  # found by its JSON keys, not its name
    p = d / "scene_meta.json"
    assert detect_format(p) == "sog"
    assert read_header(p) == {"format": "sog", "version": 1, "gaussians": 90, "sh_degree": degree}
    r = read_scene(p)
    assert len(r) == 90 and r.sh_degree == degree
    np.testing.assert_allclose(r.means, want["means"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.log_scales, want["log_scales"], atol=1e-5)
    np.testing.assert_allclose(r.sh[:, 0], want["dc"], atol=1e-5)
    np.testing.assert_allclose(r.opacity_logits, want["logit"], atol=1e-5)
    np.testing.assert_allclose(r.sh[:, 1:], want["rest"], atol=1e-5)
    assert quat_angle_err(r.quats, want["quats"]) < 1e-5


# ----------------------------------------------------------------------------- LOD SOG
def _lod_folder(root, chunks, tree, levels=2):
    root.mkdir()
    names = []
    for i, s in enumerate(chunks):
        write_sog(s, root / f"c{i}", palette=64)
        names.append(f"c{i}/meta.json")
    (root / "lod-meta.json").write_text(json.dumps(
        {"lodLevels": levels, "filenames": names, "tree": tree}))


def _cat(parts):
    return GaussianScene(*(np.concatenate([getattr(s, k)[o:o + c] for s, o, c in parts]) for k in
                           ("means", "quats", "log_scales", "opacity_logits", "sh")))


def test_lod_sog_levels(tmp_path):
    fine, coarse = random_scene(125, 1, seed=1), random_scene(40, 1, seed=2)
    leaf = lambda f0, o0, c0, f1, o1, c1: {"lods": {  # noqa: E731
        "0": {"file": f0, "offset": o0, "count": c0}, "1": {"file": f1, "offset": o1, "count": c1}}}
    tree = {"bound": {}, "children": [
        leaf(0, 0, 70, 1, 0, 25),
        {"children": [leaf(0, 70, 50, 1, 25, 15),
                      {"lods": {"0": {"file": 0, "offset": 120, "count": 5}}}]}]}  # no level 1
    root = tmp_path / "scene.lod"
    _lod_folder(root, [fine, coarse], tree)
    assert detect_format(root) == "sog_lod" and detect_format(root / "lod-meta.json") == "sog_lod"
    f, c = read_sog(root / "c0"), read_sog(root / "c1")
    r0 = read_scene(root)
    assert read_header(root)["gaussians"] == 125 == len(r0)
    np.testing.assert_array_equal(r0.means, _cat([(f, 0, 70), (f, 70, 50), (f, 120, 5)]).means)
    r1 = read_scene(root, lod=1)  # the third leaf has no level 1: its level 0 is used
    np.testing.assert_array_equal(r1.sh, _cat([(c, 0, 25), (c, 25, 15), (f, 120, 5)]).sh)
    with pytest.raises(SceneFormatError, match="level 2 out of range"):
        read_scene(root, lod=2)
    with pytest.raises(SceneFormatError, match="single level"):
        read_scene(root / "c0", lod=1)


def test_lod_sog_bad_trees(tmp_path):
    s = random_scene(30, 0, seed=3)
    bad = {"children": [{"lods": {"0": {"file": 0, "offset": 20, "count": 20}}}]}
    _lod_folder(tmp_path / "a", [s], bad, levels=1)
    with pytest.raises(SceneFormatError, match="passes the end"):
        read_scene(tmp_path / "a")
    # overlapping ranges: the same Gaussians many times (a bomb made of a tiny tree)
    bomb = {"children": [{"lods": {"0": {"file": 0, "offset": 0, "count": 30}}}] * 1000}
    _lod_folder(tmp_path / "b", [s], bomb, levels=1)
    with pytest.raises(SceneFormatError, match="more than its chunks hold"):
        read_scene(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "lod-meta.json").write_text(json.dumps(
        {"lodLevels": 1, "filenames": ["../a/c0/meta.json"], "tree": {}}))
    with pytest.raises(SceneFormatError, match="bad chunk file name"):
        read_scene(tmp_path / "c")


# ----------------------------------------------------------------------------- symlinks
def test_sog_members_may_not_escape_the_folder(tmp_path):
    s = random_scene(40, 0, seed=4)
    write_sog(s, tmp_path / "outside", palette=16)
    d = tmp_path / "scene"
    write_sog(s, d, palette=16)
    (d / "quats.webp").unlink()
    os.symlink(tmp_path / "outside" / "quats.webp", d / "quats.webp")
    with pytest.raises(SceneFormatError, match="quats.webp is a link to a file outside"):
        read_scene(d)
    # a link that stays inside the folder is fine
    (d / "quats.webp").unlink()
    (d / "q2.webp").write_bytes((tmp_path / "outside" / "quats.webp").read_bytes())
    os.symlink("q2.webp", d / "quats.webp")
    assert len(read_scene(d)) == 40
    # LOD: a chunk folder that is a link to a SOG elsewhere
    lod = tmp_path / "lod"
    lod.mkdir()
    os.symlink(tmp_path / "outside", lod / "c0")
    (lod / "lod-meta.json").write_text(json.dumps({"lodLevels": 1, "filenames": [
        "c0/meta.json"], "tree": {"lods": {"0": {"file": 0, "offset": 0, "count": 40}}}}))
    with pytest.raises(SceneFormatError, match="outside"):
        read_scene(lod)


# ----------------------------------------------------------------------------- v2 writer
def independent_sog_v2(path) -> GaussianScene:
    """Decode a SOG v2 zip from the published layout, without exgs.io."""
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
        img = {nm: _unwebp(z.read(nm)) for nm in z.namelist() if nm.endswith(".webp")}
    assert meta["version"] == 2
    n = meta["count"]
    lo, hi = (img[f][:n, :3].astype(np.float64) for f in meta["means"]["files"])
    v = np.array(meta["means"]["mins"]) + (np.array(meta["means"]["maxs"]) -
                                           np.array(meta["means"]["mins"])) * (lo + 256 * hi) / 65535
    means = np.sign(v) * np.expm1(np.abs(v))
    q = img[meta["quats"]["files"][0]][:n].astype(np.float64)
    c = (q[:, :3] / 255 - 0.5) * math.sqrt(2)
    quats = np.zeros((n, 4))
    for i in range(n):
        big = int(q[i, 3]) - 252
        quats[i, [j for j in range(4) if j != big]] = c[i]
        quats[i, big] = math.sqrt(max(0.0, 1 - (c[i] ** 2).sum()))
    scb, ccb = np.array(meta["scales"]["codebook"]), np.array(meta["sh0"]["codebook"])
    log_scales = scb[img[meta["scales"]["files"][0]][:n, :3]]
    s0 = img[meta["sh0"]["files"][0]][:n]
    sh = [ccb[s0[:, :3]][:, None, :]]
    if "shN" in meta:
        k = {1: 3, 2: 8, 3: 15}[meta["shN"]["bands"]]
        cent, lab = (img[f] for f in meta["shN"]["files"])
        labels = lab[:n, 0].astype(int) + 256 * lab[:n, 1].astype(int)
        ncb = np.array(meta["shN"]["codebook"])
        idx = (labels // 64)[:, None] * 64 * k + (labels % 64)[:, None] * k + np.arange(k)
        sh.append(ncb[cent[idx][..., :3]])
    a = s0[:, 3] / 255.0
    return GaussianScene(means, quats, log_scales, np.log(a / (1 - a) + 1e-30),
                         np.concatenate(sh, 1))


def test_sog_writer_opens_in_independent_decoder_and_renders_the_same(tmp_path):
    s = demo_scene(n=4000, sh_degree=2, seed=11)
    s.opacity_logits = np.clip(s.opacity_logits, -6, 6)  # keeps the test decode's logit finite
    p = tmp_path / "pub.sog"
    write_sog(s, p, sort=True)  # Morton order, as `exgs convert` publishes
    r = independent_sog_v2(p)
    assert len(r) == len(s) and r.sh_degree == 2
    cams = orbit_for_scene(s, 3, 160, 120, seed=1)
    for cam in cams:
        a = render(s, cam, device="cpu").rgb
        b = render(r, cam, device="cpu").rgb
        assert psnr(a, b) >= 35.0


@pytest.mark.parametrize("key,sub,val", [("scales", "maxs", [1e308] * 3),
                                         ("sh0", "maxs", [1e308] * 4),
                                         ("means", "maxs", [1e308] * 3), ("shN", "maxs", 1e308)])
def test_sog_v1_absurd_ranges_one_line_no_numpy_warning(tmp_path, key, sub, val):
    import warnings

    d = tmp_path / "v1"
    _write_v1(d, 30, 3, np.random.default_rng(0))
    meta = json.loads((d / "meta.json").read_text())
    meta[key][sub] = val
    if key == "scales":
        meta["scales"]["mins"] = [-1e308] * 3
    (d / "meta.json").write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(SceneFormatError, match="non-finite value"):
            read_scene(d)
