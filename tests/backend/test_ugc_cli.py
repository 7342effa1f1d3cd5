"""``exgs compress / decompress / eval``: outputs, ratios, and errors (exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from exgs.cli import main
from exgs.io.exgs_format import read_exgs_header, read_exgs_scene
from exgs.io.ply import read_ply, write_ply
from exgs.synth import demo_scene


@pytest.fixture(scope="module")
def ply(tmp_path_factory):
    d = tmp_path_factory.mktemp("ugc_cli")
    p = d / "scene.ply"
    write_ply(demo_scene(n=2500, sh_degree=2, seed=11), p)
    return p


FAST = ["--views", "4", "--view-size", "64x48"]


def _listing(d):
    return sorted(os.listdir(d))


def test_compress_ratio_decompress_eval(ply, tmp_path, capsys):
    out = tmp_path / "s.exgs"
    assert main(["compress", str(ply), "-o", str(out), "--ratio", "40", *FAST]) == 0
    text = capsys.readouterr().out
    assert "kept" in text and "ratio" in text and "B/Gaussian" in text
    size = out.stat().st_size
    assert size <= ply.stat().st_size / 40
    h = read_exgs_header(out)
    assert h["source"]["bytes"] == ply.stat().st_size and h["sh_degree"] == 0
    assert h["settings"]["score_views"] == 4
    # decompress a prefix
    dec = tmp_path / "half.ply"
    assert main(["decompress", str(out), "-o", str(dec), "--keep", "0.5"]) == 0
    assert len(read_ply(dec)) == round(h["count"] * 0.5)
    # eval --json
    capsys.readouterr()
    assert main(["eval", str(ply), str(out), "--views", "2", "--size", "64x64", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["views"] == 2 and 5 < res["psnr"] < 60 and 0 < res["ssim"] <= 1
    assert res["size_ratio"] == pytest.approx(ply.stat().st_size / size)
    # the reference against itself is perfect
    assert main(["eval", str(ply), str(ply), "--views", "1", "--size", "32x32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ssim"] == pytest.approx(1.0)


def test_compress_keep_count_and_sh(ply, tmp_path, capsys):
    out = tmp_path / "k.exgs"
    assert main(["compress", str(ply), "-o", str(out), "--keep", "300", "--sh-degree", "1",
                 "--no-amplify", "--json", *FAST]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["kept"] == 300 and st["sh_degree"] == 1
    s = read_exgs_scene(out)
    assert len(s) == 300 and s.sh_degree == 1


@pytest.mark.parametrize("args,needle", [
    (["--ratio", "1e12"], "unreachable"),
    (["--keep", "999999"], "exceeds"),
    (["--sh-degree", "3", "--keep", "0.1"], "exceeds"),
    (["--keep", "0.1", "--views", "0"], "views"),
    (["--keep", "0.1", "--cameras", "nope.json"], "nope.json"),
    (["--keep", "0.1", "--voxel-mass-share", "2"], "voxel_mass_share"),
])
def test_compress_errors_exit_2_nothing_written(ply, tmp_path, capsys, args, needle):
    out = tmp_path / "o.exgs"
    before = _listing(tmp_path)
    assert main(["compress", str(ply), "-o", str(out), *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exgs: error:") and needle in err and err.count("\n") == 1
    assert _listing(tmp_path) == before


def test_compress_refuses_bad_paths(ply, tmp_path, capsys):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat nonsense\n")
    cases = [
        [str(bad), "-o", str(tmp_path / "x.exgs"), "--keep", "0.1"],          # bad input
        [str(ply), "-o", str(tmp_path / "x.ply"), "--keep", "0.1"],           # wrong suffix
        [str(ply), "-o", str(tmp_path), "--keep", "0.1"],                     # folder
    ]
    for c in cases:
        before = _listing(tmp_path)
        assert main(["compress", *c, *FAST]) == 2
        assert capsys.readouterr().err.startswith("exgs: error:")
        assert _listing(tmp_path) == before
    # existing output is not overwritten without --force; the input never is
    existing = tmp_path / "keep.exgs"
    existing.write_bytes(b"precious")
    assert main(["compress", str(ply), "-o", str(existing), "--keep", "0.1", *FAST]) == 2
    assert existing.read_bytes() == b"precious"
    inp = tmp_path / "in.exgs"
    assert main(["compress", str(ply), "-o", str(inp), "--keep", "0.2", *FAST]) == 0
    data = inp.read_bytes()
    assert main(["compress", str(inp), "-o", str(inp), "--keep", "0.5", "--force", *FAST]) == 2
    assert inp.read_bytes() == data
    # argparse errors: both --ratio and --keep, bad values
    for c in (["--ratio", "10", "--keep", "0.1"], ["--keep", "1.5"], ["--ratio", "0.5"]):
        with pytest.raises(SystemExit) as ei:
            main(["compress", str(ply), "-o", str(tmp_path / "y.exgs"), *c])
        assert ei.value.code == 2
    assert not (tmp_path / "y.exgs").exists()


def test_decompress_and_eval_errors(ply, tmp_path, capsys):
    bad = tmp_path / "bad.exgs"
    bad.write_bytes(b"EXGS" + b"\0" * 40)
    assert main(["decompress", str(bad), "-o", str(tmp_path / "o.ply")]) == 2
    assert "bad.exgs" in capsys.readouterr().err
    assert not (tmp_path / "o.ply").exists()
    assert main(["decompress", str(ply), "-o", str(tmp_path / "o.ply")]) == 2
    assert "not a .exgs" in capsys.readouterr().err
    assert main(["eval", str(ply), str(bad), "--views", "1", "--size", "16x16"]) == 2
    assert "bad.exgs" in capsys.readouterr().err
    assert main(["eval", str(ply), str(ply), "--views", "0"]) == 2


def test_eval_restore_without_painter(ply, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "exgs.painter", None)  # import raises ImportError
    assert main(["eval", str(ply), str(ply), "--views", "1", "--size", "16x16",
                 "--restore"]) == 2
    assert "GaussPainter" in capsys.readouterr().err


def test_compress_with_training_cameras(ply, tmp_path, capsys):
    from exgs.cameras import orbit_for_scene, write_cameras_json

    cams = orbit_for_scene(read_ply(ply), 3, 1280, 960, seed=5)  # scored at 320x240
    cj = tmp_path / "cameras.json"
    write_cameras_json(cams, cj)
    out = tmp_path / "c.exgs"
    assert main(["compress", str(ply), "-o", str(out), "--keep", "0.2", "--cameras", str(cj),
                 "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["score_views"] == 3 and st["kept"] == 500
    assert read_exgs_header(out)["settings"]["score_views"] == 3
