"""Issue 19 for the scene readers and ``exgs info`` / ``convert``: tiny files declaring ~20M
Gaussians in every format are refused before anything large is allocated (and ``exgs info``
stays far under 1 GiB on all of them), SOG/glTF members cannot escape their folder, bad
cameras.json sizes and failed writes are one-line errors with exit code 2."""

import errno
import gzip
import json
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from exgs.cli import main as cli_main
from exgs.errors import SceneFormatError
from exgs.io import read_header, read_scene, write_scene
from exgs.io.ply import write_ply
from exgs.io.sog import write_sog
from exgs.scene import GaussianScene
from exgs.synth import random_scene

BOMB_N = 20_000_000


def _bomb_files(d):
    """name → path of a small file declaring BOMB_N Gaussians, for every format."""
    from test_formats_web import _glb, _ksplat_bytes

    out = {}
    spz = struct.pack("<IIIBBBB", 0x5053474E, 3, BOMB_N, 3, 12, 0, 0) + b"\0" * 4096
    out["spz_gzip"] = d / "a.spz"
    out["spz_gzip"].write_bytes(gzip.compress(spz))
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, BOMB_N, 0, 12, 0, 5, 32)
    sizes = [BOMB_N * 9, BOMB_N, BOMB_N * 3, BOMB_N * 3, BOMB_N * 4]
    out["spz_v4"] = d / "b.spz"
    out["spz_v4"].write_bytes(head + b"".join(struct.pack("<QQ", 2000, s) for s in sizes)
                              + b"\x28\xb5\x2f\xfd" * 2500)
    # SOG v2 zip: meta.json says 20M, the images are 4x4
    write_sog(random_scene(10, 1), d / "small.sog", palette=8)
    out["sog_v2"] = d / "c.sog"
    with zipfile.ZipFile(d / "small.sog") as zs, zipfile.ZipFile(out["sog_v2"], "w") as zb:
        for nm in zs.namelist():
            data = zs.read(nm)
            if nm == "meta.json":
                meta = json.loads(data)
                meta["count"] = BOMB_N
                data = json.dumps(meta).encode()
            zb.writestr(nm, data)
    from test_formats_sog import _write_v1

    _write_v1(d / "v1", 40, 3, np.random.default_rng(0))
    meta = json.loads((d / "v1" / "meta.json").read_text())
    meta["means"]["shape"] = [BOMB_N, 3]
    (d / "v1" / "meta.json").write_text(json.dumps(meta))
    out["sog_v1"] = d / "v1"
    ks = bytearray(_ksplat_bytes([random_scene(8, 0)], 0, 0))
    struct.pack_into("<2I", ks, 12, BOMB_N, BOMB_N)
    struct.pack_into("<2I", ks, 4096, BOMB_N, BOMB_N)
    out["ksplat"] = d / "e.ksplat"
    out["ksplat"].write_bytes(bytes(ks))
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 16}],
           "bufferViews": [{"buffer": 0, "byteLength": 16}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": BOMB_N,
                          "type": "VEC3"}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 0,
                                       "extensions": {"KHR_gaussian_splatting": {}}}]}]}
    out["glb"] = d / "f.glb"
    out["glb"].write_bytes(_glb(doc, b"\0" * 16))
    sp = gzip.compress(spz)
    doc = dict(doc, buffers=[{"byteLength": len(sp)}],
               bufferViews=[{"buffer": 0, "byteLength": len(sp)}])
    doc["meshes"] = [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 0, "extensions": {
        "KHR_gaussian_splatting": {"extensions": {
            "KHR_gaussian_splatting_compression_spz_2": {"bufferView": 0}}}}}]}]
    out["glb_spz"] = d / "g.glb"
    out["glb_spz"].write_bytes(_glb(doc, sp))
    from test_formats_sog import _lod_folder

    _lod_folder(d / "lod", [random_scene(20, 0)], {"children": [
        {"lods": {"0": {"file": 0, "offset": 0, "count": 20}}}] * 50_000}, levels=1)
    out["lod_sog"] = d / "lod"
    out["ply"] = d / "h.ply"
    out["ply"].write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 20000000\n"
                           + b"".join(f"property float {p}\n".encode() for p in
                                      ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                                       "scale_0", "scale_1", "scale_2", "rot_0", "rot_1",
                                       "rot_2", "rot_3"]) + b"end_header\n" + b"\0" * 4096)
    return out


def test_declared_count_bombs_are_refused(tmp_path):
    files = _bomb_files(tmp_path)
    for name, p in files.items():
        assert p.is_dir() or p.stat().st_size < 200_000, name
        with pytest.raises(SceneFormatError) as e:
            read_scene(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value), name
        if name != "ply":  # headers are read without decoding, and refuse the same
            with pytest.raises(SceneFormatError):
                read_header(p)


def test_info_stays_small_on_every_bomb(tmp_path):
    """One process runs ``exgs info`` on every bomb; its peak RSS must stay far under 1 GiB."""
    files = _bomb_files(tmp_path)
    code = ("import resource, sys, io, contextlib\n"
            "from exgs.cli import main\n"
            "codes = []\n"
            "for f in sys.argv[1:]:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        codes.append((main(['info', f]), err.getvalue().count(chr(10))))\n"
            # VmHWM: this process image's own peak (ru_maxrss also counts the parent's
            # pages when the child was forked from a big pytest process)
            "try:\n"
            "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
            "    kb = int(hwm[0].split()[1])\n"
            "except (OSError, IndexError):\n"
            "    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(codes, kb)\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, files.values())],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    codes, rss_kb = out.stdout.strip().rsplit(" ", 1)
    assert codes == str([(2, 1)] * len(files)), codes  # each: exit 2, one line
    assert int(rss_kb) < 1 << 20, f"peak RSS {int(rss_kb) / 1024:.0f} MiB"  # < 1 GiB


# ----------------------------------------------------------------------------- info
def test_info_header_only_and_budget(tmp_path, capsys):
    s = random_scene(300, 1, seed=2)
    p = tmp_path / "a.sog"
    write_sog(s, p, palette=64)
    assert cli_main(["info", str(p), "--header", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gaussians"] == 300 and info["decoded"] is False and "bounds_min" not in info
    from exgs.commands.info import describe

    assert describe(p, budget=10)["decoded"] is False  # over the decode budget: header only
    assert describe(p)["bounds_min"] == [float(x) for x in read_scene(p).means.min(0)]
    write_ply(s, tmp_path / "a.ply")
    assert cli_main(["info", str(tmp_path / "a.ply"), "--header"]) == 2
    assert "no header" in capsys.readouterr().err


# ----------------------------------------------------------------------------- convert
@pytest.mark.parametrize("out", ["o.sog", "o.splat", "o.glb", "o.spz", "o.ply", "dir/meta.json"])
def test_convert_to_every_output(tmp_path, capsys, out):
    s = random_scene(64, 2, seed=3)
    s.sh[:, 1:] = np.clip(s.sh[:, 1:], -0.9, 0.9)
    write_ply(s, tmp_path / "in.ply")
    assert cli_main(["convert", str(tmp_path / "in.ply"), str(tmp_path / out)]) == 0
    r = read_scene(tmp_path / out.replace("/meta.json", ""))
    assert len(r) == 64  # SOG is stored in Morton order: compare as sets of positions
    a, b = np.sort(r.means[:, 2]), np.sort(s.means[:, 2])  # z: the same in .glb's frame too
    assert np.abs(a - b).max() < 2e-3
    assert ".part" not in " ".join(x.name for x in tmp_path.rglob("*"))


def test_convert_refuses_empty_scene_and_reports_write_errors(tmp_path, capsys, monkeypatch):
    write_ply(GaussianScene.empty(1), tmp_path / "empty.ply")
    assert cli_main(["convert", str(tmp_path / "empty.ply"), str(tmp_path / "o.sog")]) == 2
    err = capsys.readouterr().err
    assert "no Gaussians" in err and err.count("\n") == 1
    src = tmp_path / "in.ply"
    write_ply(random_scene(50, 0), src)
    (tmp_path / "file.txt").write_text("x")
    assert cli_main(["convert", str(src), str(tmp_path / "file.txt" / "o.ply")]) == 2
    err = capsys.readouterr().err
    assert "cannot write (a parent is not a folder)" in err and err.count("\n") == 1
    import exgs.fsutil

    for code, words in [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                        (errno.EACCES, "permission denied")]:
        def fail(*a, _code=code, **k):
            raise OSError(_code, "simulated")
        monkeypatch.setattr(exgs.fsutil.os, "replace", fail)
        for out in ("o.ply", "o.sog", "o.splat", "o.glb"):
            assert cli_main(["convert", str(src), str(tmp_path / out)]) == 2
            err = capsys.readouterr().err
            assert words in err and err.count("\n") == 1 and err.startswith("exgs: error:")
        monkeypatch.undo()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["empty.ply", "file.txt", "in.ply"]


# ----------------------------------------------------------------------------- cameras.json
@pytest.mark.parametrize("width,match", [("1e400", "width must be a whole number, got inf"),
                                         ("20000", "width 20000 out of range"),
                                         ("64.5", "whole number"), ("true", "whole number")])
def test_cameras_json_sizes(tmp_path, capsys, width, match):
    from exgs.cameras import read_cameras_json

    p = tmp_path / "cameras.json"
    p.write_text('[{"id": 0, "width": %s, "height": 48, "position": [0, 0, -3], '
                 '"rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "fx": 50, "fy": 50}]' % width)
    with pytest.raises(SceneFormatError, match=match):
        read_cameras_json(p)
    write_ply(random_scene(30, 0), tmp_path / "s.ply")
    rc = cli_main(["render", str(tmp_path / "s.ply"), "--cameras", str(p), "--out",
                   str(tmp_path / "frames")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cameras.json" in err


def test_cameras_json_deep_nesting(tmp_path):
    from exgs.cameras import read_cameras_json

    p = tmp_path / "c.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SceneFormatError, match="nested too deeply"):
        read_cameras_json(p)


def test_info_exgs_reads_the_header_first(tmp_path, capsys):
    from exgs.commands.info import describe
    from exgs.io.exgs_format import encode_exgs

    p = tmp_path / "a.exgs"
    p.write_bytes(encode_exgs(random_scene(500, 0, seed=5)))
    info = describe(p, budget=10)  # over the budget: the header's count, no decode
    assert info["format"] == "exgs" and info["gaussians"] == 500 and info["decoded"] is False
    assert describe(p)["decoded"] is True
    assert cli_main(["convert", str(p), str(tmp_path / "a.sog")]) == 0
    assert len(read_scene(tmp_path / "a.sog")) == 500
