"""``exgs render``: numbered PNGs (RGB / straight-alpha RGBA), depth, errors (one line, exit 2)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from exgs.cameras import orbit_for_scene, write_cameras_json
from exgs.cli import main
from exgs.io.ply import write_ply
from exgs.render import render
from exgs.synth import demo_scene


@pytest.fixture(scope="module")
def scene_ply(tmp_path_factory):
    d = tmp_path_factory.mktemp("render_cli")
    s = demo_scene(n=2000, sh_degree=1, seed=3)
    p = d / "scene.ply"
    write_ply(s, p)
    return s, p


def test_orbit_pngs_depth(scene_ply, tmp_path, capsys):
    s, ply = scene_ply
    out = tmp_path / "frames"
    rc = main(["render", str(ply), "--orbit", "2", "--size", "48x32", "--out", str(out),
               "--depth", "npy", "--device", "cpu", "--background", "1,1,1"])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["0000.depth.npy", "0000.png", "0001.depth.npy", "0001.png"]
    img = np.asarray(Image.open(out / "0000.png"))
    assert img.shape == (32, 48, 3) and img.dtype == np.uint8
    # same pixels as the API (white background), to 8-bit rounding
    cam = orbit_for_scene(s, 2, 48, 32, up="-y")[0]
    r = render(s, cam, device="cpu", background=(1, 1, 1))
    assert np.abs(img.astype(int) - np.round(r.rgb * 255).astype(int)).max() <= 1
    d = np.load(out / "0000.depth.npy")
    assert d.shape == (32, 48) and d.dtype == np.float32
    np.testing.assert_array_equal(np.isinf(d), r.alpha < 1e-6)
    assert "2 frame(s) 48x32" in capsys.readouterr().out


def test_cameras_json_and_straight_alpha(scene_ply, tmp_path):
    s, ply = scene_ply
    cams = orbit_for_scene(s, 1, 40, 30, up="-y", seed=5)
    cj = tmp_path / "cameras.json"
    write_cameras_json(cams, cj)
    out = tmp_path / "rgba"
    assert main(["render", str(ply), "--cameras", str(cj), "--out", str(out), "--alpha",
                 "--device", "cpu"]) == 0
    img = np.asarray(Image.open(out / "0000.png")).astype(np.float64) / 255
    assert img.shape == (30, 40, 4)
    r = render(s, cams[0], device="cpu")
    np.testing.assert_allclose(img[..., 3], r.alpha, atol=1 / 255)
    # straight alpha: colour × alpha gives back the premultiplied render
    # (where the straight colour is not clipped at 1: SH colours may exceed 1, as in gsplat)
    m = (r.alpha > 0.2) & ((r.rgb / np.maximum(r.alpha, 1e-6)[..., None]).max(-1) < 0.99)
    assert m.sum() > 20
    np.testing.assert_allclose((img[..., :3] * img[..., 3:])[m], r.rgb[m], atol=3 / 255)


def test_size_override_with_cameras(scene_ply, tmp_path):
    s, ply = scene_ply
    cj = tmp_path / "cameras.json"
    write_cameras_json(orbit_for_scene(s, 1, 80, 60), cj)
    out = tmp_path / "o"
    assert main(["render", str(ply), "--cameras", str(cj), "--size", "20x15", "--out",
                 str(out), "--device", "cpu"]) == 0
    assert Image.open(out / "0000.png").size == (20, 15)


@pytest.mark.parametrize("argv,msg", [
    (["--background", "2,0,0"], "background must be"),
    (["--alpha", "--background", "1,1,1"], "straight alpha"),
    (["--device", "cuda"], "no CUDA device"),
    (["--orbit", "0"], "--orbit must be"),
    (["--sh-degree", "3"], "more than the scene's"),
])
def test_bad_options_one_line(scene_ply, tmp_path, capsys, argv, msg):
    _, ply = scene_ply
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) if msg == "background must be" else _noraise():
        rc = main(["render", str(ply), "--out", str(out), "--size", "16x16", *argv])
        assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not out.exists() or not os.listdir(out)


def test_bad_scene_file(tmp_path, capsys):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nend_header\n")
    rc = main(["render", str(bad), "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.ply" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_restore_without_painter(scene_ply, tmp_path, capsys, monkeypatch):
    """The painter's network (torch, diffusers: exgs.painter.infer) cannot be imported."""
    import sys

    _, ply = scene_ply
    monkeypatch.setitem(sys.modules, "exgs.painter.infer", None)
    rc = main(["render", str(ply), "--out", str(tmp_path / "o"), "--orbit", "1", "--size",
               "16x16", "--restore", "--device", "cpu"])
    assert rc == 2 and "GaussPainter is not available" in capsys.readouterr().err


def test_restore_calls_painter(scene_ply, tmp_path, monkeypatch):
    _, ply = scene_ply
    import exgs.painter as painter

    calls = []

    class Fake:
        def restore(self, rgb, alpha, kept_fraction=None, refined=False, return_alpha=False):
            calls.append((rgb.shape, alpha.shape, kept_fraction))
            out = np.full_like(rgb, 0.5)
            return (out, np.ones_like(alpha)) if return_alpha else out

    monkeypatch.setattr(painter, "load_painter", lambda path=None, device="cpu": Fake())
    out = tmp_path / "o"
    assert main(["render", str(ply), "--out", str(out), "--orbit", "1", "--size", "16x12",
                 "--restore", "--device", "cpu"]) == 0
    assert calls == [((12, 16, 3), (12, 16), None)]  # a PLY: kept fraction unknown
    assert (np.asarray(Image.open(out / "0000.png")) == 128).all()


class _noraise:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _exgs(*argv):
    """Run the real command line in a subprocess → (returncode, stdout, stderr)."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "exgs.cli", *map(str, argv)],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("case,msg", [
    ("missing", "no such file"),
    ("size", "size must look like 1280x720"),
    ("cameras_json", "cameras.json"),
    ("both", "not allowed with argument"),
    ("distance", "must be a positive number"),
])
def test_bad_input_subprocess_one_line(scene_ply, tmp_path, case, msg):
    _, ply = scene_ply
    out = tmp_path / "o"
    args = {
        "missing": [tmp_path / "nope.ply", "--orbit", "1"],
        "size": [ply, "--size", "640by480"],
        "cameras_json": [ply, "--cameras", tmp_path / "cameras.json"],
        "both": [ply, "--cameras", tmp_path / "cameras.json", "--orbit", "2"],
        "distance": [ply, "--orbit", "1", "--distance", "-1"],
    }[case]
    (tmp_path / "cameras.json").write_text('[{"id": 0, "width": 10}]')
    rc, _, err = _exgs("render", *args, "--out", out, "--device", "cpu")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("exgs: error:") and msg in err.lower() and "Traceback" not in err
    assert not out.exists()


def test_subprocess_orbit_distance_and_input_kept(scene_ply, tmp_path):
    """The real command writes frames; a closer orbit (--distance) covers more of the image;
    an output that would replace the input scene is refused before anything is written."""
    s, ply = scene_ply
    out = tmp_path / "near"
    rc, so, err = _exgs("render", ply, "--orbit", "1", "--size", "32x24", "--distance", "0.5",
                        "--out", out, "--device", "cpu")
    assert rc == 0, err
    assert sorted(os.listdir(out)) == ["0000.png"]
    near = np.asarray(Image.open(out / "0000.png")).astype(float)
    cam = orbit_for_scene(s, 1, 32, 24, up="-y", distance=1.0)[0]
    far = render(s, cam, device="cpu").alpha
    assert (near.max(-1) > 5).mean() > (far > 0.02).mean()
    # input named like an output frame, output folder = its folder: refused, untouched
    victim = tmp_path / "0000.png"
    victim.write_bytes(ply.read_bytes())
    before = victim.read_bytes()
    rc, _, err = _exgs("render", victim, "--orbit", "1", "--size", "8x8", "--out", tmp_path,
                       "--device", "cpu")
    assert rc == 2 and "refusing to overwrite" in err
    assert victim.read_bytes() == before


def test_restore_of_exgs_passes_the_files_kept_fraction(tmp_path, monkeypatch):
    """`exgs render X.exgs --restore` opens the painter's gate by the file's kept fraction
    (stored count / source count from the .exgs header)."""
    import exgs.painter as painter
    from exgs.synth import random_scene
    from exgs.ugc import compress

    scene = random_scene(2000, seed=3)
    res = compress(scene, keep_target=0.05, zstd_level=1, device="cpu", views=4, view_size=(64, 48))
    path = tmp_path / "s.exgs"
    path.write_bytes(res.data)
    keeps = []

    class Fake:
        def restore(self, rgb, alpha, kept_fraction=None, refined=False, return_alpha=False):
            keeps.append(kept_fraction)
            return (rgb, alpha) if return_alpha else rgb

    monkeypatch.setattr(painter, "load_painter", lambda path=None, device="cpu": Fake())
    assert main(["render", str(path), "--out", str(tmp_path / "o"), "--orbit", "2", "--size",
                 "16x12", "--restore", "--device", "cpu"]) == 0
    assert len(keeps) == 2 and all(abs(k - len(res.scene) / len(scene)) < 1e-9 for k in keeps)
