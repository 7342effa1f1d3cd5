"""Files written by the earliest .exgs writer (plain JSON header, one SH width) still read,
whole and as a progressive prefix, and equal the scene the writer encoded; ``exgs convert
--keep`` writes a .exgs prefix (issue 18: the Blender add-on's preview import)."""

from __future__ import annotations

import numpy as np
import pytest

from exgs_legacy import legacy_exgs_bytes


@pytest.mark.parametrize("deg", [0, 1, 3])
def test_legacy_file_reads_whole_and_prefix(tmp_path, deg):
    from exgs.io.exgs import codec
    from exgs.io.exgs_format import read_exgs_header, read_exgs_scene
    from exgs.synth import random_scene

    scene = random_scene(9000, sh_degree=deg, seed=5)
    # positions on a unit lattice: every decoded Gaussian is identified by its rounded centre
    lattice = np.stack(np.meshgrid(np.arange(30), np.arange(30), np.arange(10)), -1)
    scene.means = np.random.default_rng(1).permutation(lattice.reshape(-1, 3)).astype(np.float32)
    p = tmp_path / "old.exgs"
    p.write_bytes(legacy_exgs_bytes(scene))
    assert p.read_bytes()[6:8] == b"\0\0"  # flags 0: the plain JSON header of old files
    h = read_exgs_header(p)
    assert h["count"] == 9000 and h["sh_degree"] == deg
    full = read_exgs_scene(p)
    pre = read_exgs_scene(p, keep=5000)
    assert len(full) == 9000 and len(pre) == 5000
    for a, b in ((full.means, pre.means), (full.sh, pre.sh), (full.quats, pre.quats)):
        np.testing.assert_array_equal(a[:5000], b)
    if deg:  # 8-bit SH rest: within half a step of the encoded values
        amax = np.asarray(h["quant"]["sh_rest"]["absmax"])
        assert h["quant"]["sh_rest"]["bits"] == [8] * deg
        # the file re-orders Gaussians inside chunks: match them by their lattice point
        order = np.lexsort(scene.means.T)
        back = np.lexsort(np.round(full.means).T)
        np.testing.assert_array_equal(np.round(full.means[back]), scene.means[order])
        err = np.abs(full.sh[back, 1:4] - np.clip(scene.sh[order, 1:4], -amax[0], amax[0]))
        assert float(err.max()) <= amax[0] / 255 + 1e-6
    cur = tmp_path / "new.exgs"
    cur.write_bytes(codec.encode_exgs(scene))
    np.testing.assert_array_equal(read_exgs_scene(cur).means, full.means)


def test_convert_keep_writes_the_prefix(tmp_path, capsys):
    """``exgs convert X.exgs OUT.ply --keep K``: the K most significant Gaussians (what the
    add-on's preview import reads); ``--keep`` on another format is a usage error."""
    from exgs.cli import main as cli_main
    from exgs.io.exgs_format import encode_exgs, read_exgs_scene
    from exgs.io.ply import read_ply, write_ply
    from exgs.synth import random_scene

    scene = random_scene(9000, sh_degree=1, seed=2)
    src = tmp_path / "s.exgs"
    src.write_bytes(encode_exgs(scene))
    assert cli_main(["convert", str(src), str(tmp_path / "p.ply"), "--keep", "5000"]) == 0
    assert "5,000 of 9,000 Gaussians" in capsys.readouterr().out
    got, want = read_ply(tmp_path / "p.ply"), read_exgs_scene(src, keep=5000)
    assert len(got) == 5000
    np.testing.assert_array_equal(got.means, want.means)
    np.testing.assert_array_equal(got.sh, want.sh)
    assert cli_main(["convert", str(src), str(tmp_path / "h.ply"), "--keep", "0.5"]) == 0
    assert len(read_ply(tmp_path / "h.ply")) == 4500
    write_ply(scene, tmp_path / "s.ply")
    assert cli_main(["convert", str(tmp_path / "s.ply"), str(tmp_path / "x.spz"),
                     "--keep", "10"]) == 2
    err = capsys.readouterr().err
    assert "s.ply" in err and "--keep needs a .exgs input" in err and err.count("\n") == 1
    assert not (tmp_path / "x.spz").exists()
