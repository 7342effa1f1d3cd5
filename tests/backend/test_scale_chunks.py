"""Issue 18 (scale): the chunked paths give bit-identical results to one chunk.

Every stage that walks all N Gaussians does it in bounded chunks (PLY read, validate, render
preparation, SH distillation, voxel ids, nearest survivors, amplification sums). Here each
is run with a tiny chunk size (many chunks, ragged last one) and with one chunk covering
everything, on small generated scenes, and the outputs must be equal bit for bit; so must a
whole ``compress`` (the .exgs bytes).
"""

from __future__ import annotations

import numpy as np
import pytest

from exgs.errors import SceneFormatError
from exgs.synth import demo_scene, random_scene


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def _same_scene(s, t):
    for nm in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        _same(getattr(s, nm), getattr(t, nm))


def test_ply_read_in_chunks_equals_one_chunk(tmp_path, monkeypatch):
    import exgs.io.ply as ply

    scene = random_scene(2345, sh_degree=2, seed=3)
    path = tmp_path / "s.ply"
    ply.write_ply(scene, path)
    monkeypatch.setattr(ply, "CHUNK_ROWS", 1 << 30)
    whole = ply.read_ply(path)
    monkeypatch.setattr(ply, "CHUNK_ROWS", 100)
    chunked = ply.read_ply(path)
    _same_scene(whole, chunked)
    _same_scene(whole, scene)  # and both are what was written


def test_ply_read_chunks_big_endian_fallback(tmp_path, monkeypatch):
    """A layout that is not native float32 goes through the generic per-field path."""
    import plyfile

    import exgs.io.ply as ply

    scene = random_scene(301, sh_degree=1, seed=4)
    path = tmp_path / "le.ply"
    ply.write_ply(scene, path)
    data = plyfile.PlyData.read(str(path))
    big = tmp_path / "be.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(np.asarray(data["vertex"].data), "vertex")],
                    byte_order=">").write(str(big))
    monkeypatch.setattr(ply, "CHUNK_ROWS", 64)
    _same_scene(ply.read_ply(big), scene)


def test_validate_in_chunks_names_the_gaussian(monkeypatch):
    import exgs.scene as sc

    monkeypatch.setattr(sc, "VALIDATE_ROWS", 10)
    s = random_scene(95, sh_degree=1, seed=1)
    s.sh[57, 2, 1] = np.nan
    with pytest.raises(SceneFormatError, match="in sh of Gaussian 57"):
        s.validate("x.ply")
    s = random_scene(95, sh_degree=1, seed=1)
    s.quats[83] = 0
    with pytest.raises(SceneFormatError, match="quaternion at Gaussian 83"):
        s.validate("x.ply")


def test_prepared_scene_in_chunks():
    from exgs.render.cpu import PreparedScene

    s = random_scene(5000, sh_degree=1, seed=2)
    s.quats *= np.random.default_rng(0).uniform(0.5, 3.0, (len(s), 1)).astype(np.float32)
    a, b = PreparedScene(s, rows=1 << 30), PreparedScene(s, rows=333)
    for nm in ("means", "quats", "scales", "opacities", "sh"):
        _same(getattr(a, nm), getattr(b, nm))


def test_distill_in_chunks():
    from exgs.ugc.sh import reduce_sh
    from exgs.ugc.significance import default_views

    s = random_scene(3001, sh_degree=3, seed=5)
    cams = default_views(s, 5, (64, 48))
    _same_scene(reduce_sh(s, 0, cams, rows=1 << 30), reduce_sh(s, 0, cams, rows=97))


def test_voxel_keys_in_chunks():
    from exgs.ugc.voxel import voxel_keys

    m = np.random.default_rng(1).normal(size=(4321, 3)).astype(np.float32)
    _same(voxel_keys(m, 0.1, rows=1 << 30), voxel_keys(m, 0.1, rows=100))
    # and the float64 reference formula
    g = np.floor((m.astype(np.float64) - m.astype(np.float64).min(0)) / 0.1).astype(np.int64)
    g -= g.min(0)
    d = g.max(0) + 1
    _same(voxel_keys(m, 0.1, rows=7), (g[:, 0] * d[1] + g[:, 1]) * d[2] + g[:, 2])


def test_scatter_add_is_bincount():
    from exgs.ugc.amplify import _scatter_add

    rng = np.random.default_rng(2)
    own = rng.integers(0, 50, 10_000)
    w = rng.normal(size=10_000) * 10.0 ** rng.uniform(-8, 8, 10_000)
    out = np.zeros((50, 2))
    for a in range(0, len(own), 333):  # chunked, as amplify walks the members
        _scatter_add(own[a:a + 333], w[a:a + 333], out, 1)
    _same(np.ascontiguousarray(out[:, 1]), np.bincount(own, w, minlength=50))


def test_nearest_and_amplify_in_chunks(monkeypatch):
    import exgs.ugc.amplify as amp

    s = random_scene(6000, sh_degree=0, seed=6)
    rng = np.random.default_rng(3)
    keep = np.sort(rng.choice(len(s), 700, replace=False))
    pts = s.means[keep]
    a = amp.nearest_in_grid(s.means, pts, 0.05, rows=1 << 30)
    b = amp.nearest_in_grid(s.means, pts, 0.05, rows=111)
    _same(a[0], b[0])
    _same(a[1], b[1])
    monkeypatch.setattr(amp, "ROWS", 1 << 30)
    one, info1 = amp.amplify(s, keep, strength=0.8, colour_strength=0.5)
    monkeypatch.setattr(amp, "ROWS", 257)
    many, info2 = amp.amplify(s, keep, strength=0.8, colour_strength=0.5)
    _same_scene(one, many)
    assert info1 == info2 and info1["absorbed"] > 0


def test_compress_bytes_do_not_depend_on_chunk_sizes(monkeypatch):
    import exgs.render.cpu as cpu
    import exgs.scene as sc
    import exgs.ugc.amplify as amp
    import exgs.ugc.sh as sh
    import exgs.ugc.voxel as vox
    from exgs.ugc import compress

    s = demo_scene(4000, sh_degree=2, seed=3)
    kw = dict(budget_bytes=4000 * 248 / 30, views=4, view_size=(64, 48), device="cpu")
    ref = compress(s, **kw)
    for mod, name, v in ((cpu, "PREPARE_ROWS", 301), (sc, "VALIDATE_ROWS", 77),
                         (sh, "DISTILL_ROWS", 123), (vox, "KEY_ROWS", 99), (amp, "ROWS", 211)):
        monkeypatch.setattr(mod, name, v)
    got = compress(s, **kw)
    assert got.data == ref.data
    _same(got.score, ref.score)


def test_parallel_radix_sort_is_the_stable_sort():
    """Any chunk count gives the permutation of one sequential stable sort (np.argsort)."""
    from exgs.render.cpu import _radix_argsort, radix_argsort_f32

    rng = np.random.default_rng(4)
    for n in (0, 1, 7, 5000, 70_001):
        x = np.round(rng.normal(size=n) * 50).astype(np.float32) + np.float32(0.0)  # ties;
        # (+ 0 turns −0.0 into +0.0: the radix sort orders −0.0 before +0.0, argsort not)
        if n > 10:
            x[3], x[5], x[6] = np.inf, -np.inf, 1e-30
        ref = np.argsort(x, kind="stable").astype(np.int32)
        _same(radix_argsort_f32(x), ref)
        for chunks in (1, 3, 8):
            _same(_radix_argsort(x, chunks), ref)


def test_compress_profile_reports_every_stage(tmp_path, capsys):
    """``exgs compress --profile --json``: time and peak RSS of each stage, same file bytes
    as without ``--profile``."""
    import json

    from exgs import profiling
    from exgs.cli import main
    from exgs.io.ply import write_ply

    ply = tmp_path / "s.ply"
    write_ply(demo_scene(3000, sh_degree=1, seed=2), ply)
    args = ["--ratio", "20", "--views", "2", "--view-size", "48x32", "--device", "cpu"]
    assert main(["compress", str(ply), "-o", str(tmp_path / "a.exgs"), *args]) == 0
    capsys.readouterr()
    assert main(["compress", str(ply), "-o", str(tmp_path / "b.exgs"), *args,
                 "--profile", "--json"]) == 0
    prof = {r["stage"]: r for r in json.loads(capsys.readouterr().out)["profile"]}
    for name in ("read", "score", "reduce_sh", "select", "amplify", "encode", "write",
                 "painter_verdict"):
        assert prof[name]["calls"] >= 1 and prof[name]["seconds"] >= 0
        assert prof[name]["peak_rss_gib"] > 0
    # one per scoring view (nested in "score") + the verdict's held-out views (full and file)
    assert prof["project"]["calls"] > 2 and prof["painter_verdict"]["calls"] == 1
    assert prof["raster"]["calls"] >= prof["project"]["calls"]  # (the verdict renders too)
    assert (tmp_path / "a.exgs").read_bytes() == (tmp_path / "b.exgs").read_bytes()
    profiling.disable()  # leave profiling off for the other tests


def test_depth_order_serial_and_parallel_paths_agree(monkeypatch):
    """The fused serial depth order (small scenes) and the parallel radix sort (big ones)
    give the same permutation, ties included."""
    from exgs.cameras import look_at
    from exgs.render import cpu, prepare
    from exgs.render.project import project
    from exgs.synth import random_scene

    s = random_scene(6000, sh_degree=0, seed=11)
    s.means[:500] = s.means[500:1000]  # equal depths: stability matters
    proj = project(prepare(s, "cpu"), look_at([0, 0, -3.0], [0, 0, 0], [0, -1, 0], 64, 48), 0)
    serial = cpu.depth_order(proj)
    monkeypatch.setattr(cpu, "PARALLEL_SORT_MIN", 0)
    np.testing.assert_array_equal(cpu.depth_order(proj), serial)
    assert len(serial) > 1000
