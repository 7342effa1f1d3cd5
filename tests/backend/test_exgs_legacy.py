"""Files written by the earliest .exgs writer (plain JSON header, one SH width) still read,
whole and as a progressive prefix, and equal the scene the writer encoded."""

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
