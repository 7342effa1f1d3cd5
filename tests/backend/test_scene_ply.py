import subprocess
import sys

import numpy as np
import pytest

from exgs.errors import SceneFormatError
from exgs.io import detect_format, read_scene
from exgs.io.ply import read_ply, write_ply
from exgs.scene import SH_C0, GaussianScene, sh_dc_to_rgb
from exgs.synth import demo_scene, random_scene


def test_activations_and_sh_constant():
    s = GaussianScene.from_activated(
        means=[[0, 0, 1]], quats=[[1, 0, 0, 0]], scales=[[0.1, 0.2, 0.3]],
        opacities=[0.25], colors=[[0.2, 0.5, 0.9]])
    np.testing.assert_allclose(s.scales, [[0.1, 0.2, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(s.opacities, [0.25], rtol=1e-5)
    np.testing.assert_allclose(s.base_colors, [[0.2, 0.5, 0.9]], atol=1e-6)
    np.testing.assert_allclose(s.sh[0, 0] * SH_C0 + 0.5, [0.2, 0.5, 0.9], atol=1e-6)
    assert sh_dc_to_rgb(np.array([10.0]))[0] == 1.0


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_roundtrip_every_degree(tmp_path, degree):
    s = random_scene(n=300, sh_degree=degree, seed=degree)
    p = tmp_path / "a.ply"
    write_ply(s, p)
    r = read_ply(p)
    assert r.sh_degree == degree and len(r) == 300
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(r, name), getattr(s, name))
    assert detect_format(p) == "ply"


def test_f_rest_is_channel_major(tmp_path):
    """f_rest_0..(K-2) are the red channel's higher coefficients (INRIA layout)."""
    s = random_scene(n=5, sh_degree=1)
    s.sh[:, 1:, 0] = 1.0  # red
    s.sh[:, 1:, 1] = 2.0
    s.sh[:, 1:, 2] = 3.0
    p = tmp_path / "a.ply"
    write_ply(s, p)
    import plyfile

    v = plyfile.PlyData.read(str(p))["vertex"]
    assert [float(v["f_rest_0"][0]), float(v["f_rest_3"][0]), float(v["f_rest_6"][0])] == [1, 2, 3]


def test_ascii_and_big_endian_read(tmp_path):
    import plyfile

    s = random_scene(n=20, sh_degree=1, seed=3)
    p = tmp_path / "bin.ply"
    write_ply(s, p)
    data = plyfile.PlyData.read(str(p))
    for text, order, name in ((True, "=", "ascii.ply"), (False, ">", "be.ply")):
        q = tmp_path / name
        plyfile.PlyData(data.elements, text=text, byte_order=order).write(str(q))
        r = read_ply(q)
        np.testing.assert_allclose(r.means, s.means, rtol=1e-6)
        np.testing.assert_allclose(r.sh, s.sh, rtol=1e-5, atol=1e-6)


def test_extra_properties_kept(tmp_path):
    import plyfile

    s = random_scene(n=10)
    p = tmp_path / "a.ply"
    write_ply(s, p)
    data = plyfile.PlyData.read(str(p))
    arr = data["vertex"].data
    import numpy.lib.recfunctions as rfn

    arr2 = rfn.append_fields(arr, "segment_id", np.arange(10, dtype=np.int32), usemask=False)
    plyfile.PlyData([plyfile.PlyElement.describe(arr2, "vertex")]).write(str(p))
    r = read_ply(p)
    np.testing.assert_array_equal(r.extras["segment_id"], np.arange(10))


def _ply_bytes(tmp_path, n=50):
    p = tmp_path / "ok.ply"
    write_ply(random_scene(n=n), p)
    return p.read_bytes()


@pytest.mark.parametrize("mutate,expect", [
    (lambda b: b[: len(b) // 2], "truncated"),
    (lambda b: b"", "empty"),
    (lambda b: b"hello world", "unknown scene format"),
    (lambda b: b.replace(b"element vertex 50", b"element vertex 5000"), "truncated"),
    (lambda b: b.replace(b"property float opacity\n", b""), None),
    (lambda b: b.replace(b"rot_3", b"rot_9"), "missing properties rot_3"),
])
def test_bad_ply_one_line_errors(tmp_path, mutate, expect):
    p = tmp_path / "bad.ply"
    p.write_bytes(mutate(_ply_bytes(tmp_path)))
    with pytest.raises(SceneFormatError) as ei:
        read_scene(p)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg
    if expect:
        assert expect.split()[0] in msg.lower() or expect in msg


def test_nan_rejected(tmp_path):
    s = random_scene(n=10)
    s.means[3, 1] = np.nan
    p = tmp_path / "nan.ply"
    write_ply(s, p)
    with pytest.raises(SceneFormatError, match="non-finite value .* means of Gaussian 3"):
        read_ply(p)


def test_demo_scene_properties():
    s = demo_scene(n=20_000)
    assert abs(len(s) - 20_000) < 200 and s.sh_degree == 3
    s.validate()
    lo, hi = s.bounds()
    assert hi[1] <= 0.5 and lo[1] < -2  # y-down: objects extend to negative y
    cols = s.base_colors
    assert cols.std(0).min() > 0.1  # colourful


def test_cli_info_and_errors(tmp_path):
    p = tmp_path / "s.ply"
    write_ply(random_scene(n=123, sh_degree=2), p)
    out = subprocess.run([sys.executable, "-m", "exgs.cli", "info", str(p)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "123" in out.stdout and "sh degree       2" in out.stdout
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nend_header\n")
    out = subprocess.run([sys.executable, "-m", "exgs.cli", "info", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and str(bad) in out.stderr and "Traceback" not in out.stderr


def test_written_files_get_normal_permissions(tmp_path):
    import os

    p = tmp_path / "perm.ply"
    write_ply(random_scene(n=3), p)
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)
