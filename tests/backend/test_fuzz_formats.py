"""Fuzz every scene reader: mutated valid files (bit flips, truncation, byte insertion and
deletion, overwritten runs, header field edits) must give either a clean one-line
SceneFormatError naming the file or a valid GaussianScene (finite values, consistent shapes),
never any other exception. Seeded; a few hundred cases per run, a few seconds in total."""

import gzip
import json
import os
import re
import shutil
import struct
import warnings
import zipfile
import zlib

import numpy as np
import plyfile
import pytest

from exgs.errors import SceneFormatError
from exgs.io import read_scene, write_scene
from exgs.io.compressed_ply import write_compressed_ply
from exgs.io.ply import write_ply
from exgs.io.sog import write_sog
from exgs.io.spz import encode_spz
from exgs.scene import GaussianScene
from exgs.synth import random_scene

#: mutations per source file; CI runs the default (≈3 s in all), EXGS_FUZZ_CASES=5000 for a long run
CASES = int(os.environ.get("EXGS_FUZZ_CASES", "120"))


def _scene(degree=1, n=40, seed=0):
    s = random_scene(n=n, sh_degree=degree, seed=seed)
    s.sh[:, 1:] = np.clip(s.sh[:, 1:], -0.9, 0.9)
    return s


def _v4(scene) -> bytes:
    import zstandard

    body = zlib.decompress(encode_spz(scene), 16 + zlib.MAX_WBITS)
    n, k = len(scene), scene.sh.shape[1] - 1
    streams, off = [], 16
    for sz in [n * 9, n, n * 3, n * 3, n * 4, n * 3 * k]:
        if sz:
            streams.append(body[off:off + sz])
        off += sz
    comp = [zstandard.ZstdCompressor().compress(x) for x in streams]
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, scene.sh_degree, 12, 0, len(comp), 32)
    return head + b"".join(struct.pack("<QQ", len(c), len(u)) for c, u in
                           zip(comp, streams)) + b"".join(comp)


def _make_source(kind, d):
    """Path of a valid file of ``kind`` in folder ``d``."""
    s = _scene(degree=2 if kind in ("ply", "spz3") else 1)
    if kind == "ply":
        p = d / "a.ply"
        write_ply(s, p)
    elif kind == "ply_ascii":
        p = d / "a.ply"
        write_ply(s, d / "bin.ply")
        data = plyfile.PlyData.read(str(d / "bin.ply"))
        plyfile.PlyData(data.elements, text=True).write(str(p))
    elif kind == "compressed_ply":
        p = d / "a.ply"
        write_compressed_ply(_scene(n=300), p)
    elif kind in ("spz2", "spz3"):
        p = d / "a.spz"
        p.write_bytes(encode_spz(s, version=int(kind[-1])))
    elif kind == "spz3_body":  # mutations applied inside the gzip (header fields, data)
        p = d / "a.spz"
        p.write_bytes(zlib.decompress(encode_spz(s), 16 + zlib.MAX_WBITS))
    elif kind == "spz4":
        p = d / "a.spz"
        p.write_bytes(_v4(s))
    elif kind == "sog_zip":
        p = d / "a.sog"
        write_sog(s, p, palette=16)
    elif kind == "splat":
        p = d / "a.splat"
        write_scene(s, p)
    elif kind in ("ksplat0", "ksplat2"):
        from test_formats_web import _ksplat_bytes

        p = d / "a.ksplat"
        p.write_bytes(_ksplat_bytes([_scene(n=20, seed=1), _scene(n=9, seed=2)],
                                    int(kind[-1]), 1))
    elif kind == "glb":
        p = d / "a.glb"
        write_scene(s, p)
    elif kind == "glb_spz":
        from test_formats_web import _glb, _gltf_doc

        doc, blob = _gltf_doc([], len(s), spz_view=encode_spz(s))
        doc["meshes"][0]["primitives"][0]["attributes"] = {"POSITION": 0}
        doc["accessors"] = [{"componentType": 5126, "count": len(s), "type": "VEC3"}]
        p = d / "a.glb"
        p.write_bytes(_glb(doc, blob))
    else:
        raise AssertionError(kind)
    return p


def _mutate_bytes(b: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(b)
    op = rng.integers(0, 6)
    if op == 0:  # bit flips
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif op == 1:  # truncation
        b = b[: rng.integers(0, len(b))]
    elif op == 2:  # insertion
        i = rng.integers(0, len(b) + 1)
        b[i:i] = rng.integers(0, 256, rng.integers(1, 17), dtype=np.uint8).tobytes()
    elif op == 3:  # deletion
        i = rng.integers(0, len(b))
        del b[i:i + int(rng.integers(1, 17))]
    elif op == 4:  # overwrite a run (often in the header: low offsets weighted)
        i = int(min(rng.exponential(64), len(b) - 1))
        val = rng.choice([0x00, 0xFF, 0x7F, 0x80]) if rng.random() < 0.5 else rng.integers(0, 256)
        b[i:i + int(rng.integers(1, 9))] = bytes([int(val)]) * int(rng.integers(1, 9))
    else:  # header integer edits: a 32-bit field near the start set to an extreme value
        i = int(rng.integers(0, max(1, min(len(b) - 4, 48))))
        val = int(rng.choice([0, 1, 2, 3, 4, 5, 255, 2 ** 31 - 1, 2 ** 32 - 1, 10 ** 9, 7]))
        b[i:i + 4] = struct.pack("<I", val)
    return bytes(b)


def _mutate_ply_header(b: bytes, rng) -> bytes:
    """Edit the PLY header text: counts, types, property names, format line."""
    end = b.find(b"end_header\n")
    head, body = b[:end].decode("ascii", "replace"), b[end:]
    lines = head.split("\n")
    i = int(rng.integers(0, len(lines)))
    choice = rng.integers(0, 6)
    if choice == 0:
        lines[i] = re.sub(r"\d+", str(int(rng.choice([0, 1, 2, 39, 41, 10 ** 12, 2 ** 31]))),
                          lines[i])
    elif choice == 1:
        lines[i] = lines[i].replace("float", str(rng.choice(["double", "uchar", "int", "list uchar float", "char"])))
    elif choice == 2:
        del lines[i]
    elif choice == 3:
        lines.insert(i, str(rng.choice(["property float extra", "element face 3",
                                        "comment hi", "obj_info x"])))
    elif choice == 4:
        lines[i] = lines[i][::-1]
    else:
        lines = [ln.replace("binary_little_endian", str(rng.choice(["binary_big_endian", "ascii"])))
                 for ln in lines]
    return "\n".join(lines).encode() + body


def _check(path, fmt_hint):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", RuntimeWarning)  # numpy warnings must not leak
            s = read_scene(path)
    except SceneFormatError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert str(path) in msg or path.name in msg, msg
        return "error"
    assert isinstance(s, GaussianScene)
    n = len(s)
    assert s.means.shape == (n, 3) and s.quats.shape == (n, 4)
    assert s.log_scales.shape == (n, 3) and s.opacity_logits.shape == (n,)
    assert s.sh.ndim == 3 and s.sh.shape[0] == n and s.sh.shape[2] == 3
    for a in (s.means, s.quats, s.log_scales, s.opacity_logits, s.sh):
        assert a.dtype == np.float32 and np.isfinite(a).all()
    return "scene"


KINDS = ["ply", "ply_ascii", "compressed_ply", "spz2", "spz3", "spz3_body", "spz4", "sog_zip",
         "splat", "ksplat0", "ksplat2", "glb", "glb_spz"]


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_reader(tmp_path, kind):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = _make_source(kind, src_dir)
    original = src.read_bytes()
    rng = np.random.default_rng(KINDS.index(kind) + 1)
    outcomes = {"error": 0, "scene": 0}
    for case in range(CASES):
        if kind.startswith("ply") or kind == "compressed_ply":
            data = _mutate_ply_header(original, rng) if rng.random() < 0.35 else \
                _mutate_bytes(original, rng)
        else:
            data = _mutate_bytes(original, rng)
        if kind == "spz3_body":
            data = gzip.compress(data, mtime=0)
        p = tmp_path / f"case{case}{src.suffix}"
        p.write_bytes(data)
        try:
            outcomes[_check(p, kind)] += 1
        except Exception as e:  # report which case broke, then fail
            raise AssertionError(f"{kind} case {case}: {type(e).__name__}: {e}") from e
    assert outcomes["error"] > 0  # the mutations do reach the checks
    assert sum(outcomes.values()) == CASES


def _sog_meta_edits(meta: dict, rng) -> dict:
    """Structural edits of meta.json: wrong types, counts, lengths, missing keys."""
    m = json.loads(json.dumps(meta))
    paths = [("count",), ("version",), ("means", "mins"), ("means", "maxs"), ("means", "files"),
             ("scales", "codebook"), ("quats", "files"), ("sh0", "codebook"), ("shN", "count"),
             ("shN", "bands"), ("shN", "codebook"), ("shN", "files"), ("shN",), ("scales",)]
    key = paths[rng.integers(0, len(paths))]
    parent = m
    for k in key[:-1]:
        parent = parent.get(k, {}) if isinstance(parent, dict) else {}
    if not isinstance(parent, dict):
        return m
    values = [None, 0, -1, 1, 3, 2 ** 40, 1.5, "x", [], [1], [float("nan")] * 3,
              [1e308, -1e308, 0], {"a": 1}, True, ["../../etc/passwd"], ["meta.json"]]
    if rng.random() < 0.2:
        parent.pop(key[-1], None)
    else:
        parent[key[-1]] = values[rng.integers(0, len(values))]
    return m


def test_fuzz_sog_folder(tmp_path):
    src = tmp_path / "src"
    write_sog(_scene(degree=2, n=60), src, palette=16)
    meta = json.loads((src / "meta.json").read_text())
    names = sorted(x.name for x in src.iterdir())
    rng = np.random.default_rng(99)
    outcomes = {"error": 0, "scene": 0}
    for case in range(CASES):
        d = tmp_path / f"case{case}"
        shutil.copytree(src, d)
        r = rng.random()
        if r < 0.4:
            text = json.dumps(_sog_meta_edits(meta, rng), allow_nan=True)
            (d / "meta.json").write_text(text)
        elif r < 0.55:
            raw = (d / "meta.json").read_bytes()
            (d / "meta.json").write_bytes(_mutate_bytes(raw, rng))
        elif r < 0.65:
            (d / names[rng.integers(0, len(names))]).unlink()
        else:
            f = d / names[rng.integers(0, len(names))]
            f.write_bytes(_mutate_bytes(f.read_bytes(), rng))
        try:
            outcomes[_check(d, "sog")] += 1
        except Exception as e:
            raise AssertionError(f"sog folder case {case}: {type(e).__name__}: {e}") from e
    assert outcomes["error"] > 0 and sum(outcomes.values()) == CASES


def test_fuzz_sog_zip_members(tmp_path):
    """Valid zip containers with a corrupted member (zip-level CRC left consistent)."""
    src = tmp_path / "a.sog"
    write_sog(_scene(degree=1, n=60), src, palette=16)
    with zipfile.ZipFile(src) as z:
        members = {nm: z.read(nm) for nm in z.namelist()}
    rng = np.random.default_rng(7)
    for case in range(30):
        name = sorted(members)[rng.integers(0, len(members))]
        p = tmp_path / f"case{case}.sog"
        with zipfile.ZipFile(p, "w") as z:
            for nm, data in members.items():
                z.writestr(nm, _mutate_bytes(data, rng) if nm == name else data)
        try:
            _check(p, "sog")
        except Exception as e:
            raise AssertionError(f"sog zip case {case} ({name}): {type(e).__name__}: {e}") from e


def _json_edits(doc, rng, values):
    """Set a random (nested) key of a JSON object to a hostile value, or delete it."""
    m = json.loads(json.dumps(doc))
    node, keys = m, []
    while isinstance(node, dict) and node and rng.random() < 0.7:
        k = list(node)[rng.integers(0, len(node))]
        keys.append(k)
        if not isinstance(node[k], (dict, list)) or rng.random() < 0.4:
            break
        node = node[k] if isinstance(node[k], dict) else (node[k][0] if node[k] and
                                                          isinstance(node[k][0], dict) else node)
    if isinstance(node, dict) and node:
        k = keys[-1] if keys and keys[-1] in node else list(node)[0]
        if rng.random() < 0.2:
            node.pop(k)
        else:
            node[k] = values[rng.integers(0, len(values))]
    return m


def test_fuzz_sog_v1_and_lod_meta(tmp_path):
    """SOG v1 meta.json and lod-meta.json structure edits, plus mutated members."""
    from test_formats_sog import _lod_folder, _write_v1

    v1 = tmp_path / "v1"
    _write_v1(v1, 50, 3, np.random.default_rng(1))
    lod = tmp_path / "lod"
    tree = {"children": [{"lods": {"0": {"file": 0, "offset": 0, "count": 30},
                                   "1": {"file": 1, "offset": 0, "count": 10}}}]}
    _lod_folder(lod, [_scene(n=30), _scene(n=10, seed=1)], tree)
    values = [None, 0, -1, 1, 2 ** 40, 20_000_000, 1.5, "x", [], [1], [20_000_000, 3],
              [float("nan")] * 4, {"a": 1}, True, ["../../etc/passwd"], ["meta.json"],
              [1e308, -1e308, 0], [-1e308, 1e308, 1e308, -1e308], 1e308]
    rng = np.random.default_rng(5)
    outcomes = {"error": 0, "scene": 0}
    for case in range(CASES):
        src, meta_name = (v1, "meta.json") if case % 2 else (lod, "lod-meta.json")
        d = tmp_path / f"case{case}"
        shutil.copytree(src, d, symlinks=True)
        meta = json.loads((d / meta_name).read_text())
        r = rng.random()
        if r < 0.6:
            (d / meta_name).write_text(json.dumps(_json_edits(meta, rng, values), allow_nan=True))
        elif r < 0.75:
            (d / meta_name).write_bytes(_mutate_bytes((d / meta_name).read_bytes(), rng))
        else:
            members = sorted(x for x in d.rglob("*.webp"))
            f = members[rng.integers(0, len(members))]
            f.write_bytes(_mutate_bytes(f.read_bytes(), rng))
        try:
            outcomes[_check(d, "sog")] += 1
        except Exception as e:
            raise AssertionError(f"{src.name} case {case}: {type(e).__name__}: {e}") from e
    assert outcomes["error"] > 0 and outcomes["scene"] > 0
