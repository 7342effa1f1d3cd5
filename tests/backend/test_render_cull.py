"""Ellipse-culled tile binning (exgs.render.raster.bin_tiles_culled): the pairs it drops
would blend nothing, so the forward render is bit-identical to compositing every
(tile, Gaussian) box pair — images, depths, contributions and hit counts."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from exgs.cameras import look_at
from exgs.render import render
from exgs.render.cpu import PreparedScene, bin_tiles, depth_order
from exgs.render.project import project
from exgs.render.raster import bin_tiles_culled, new_records, pack_frame, raster_kernel
from exgs.scene import GaussianScene
from exgs.synth import random_scene


def _extreme_scene(n=3000, seed=5):
    """Random elongated, rotated splats, plus huge ones, needles and dots."""
    s = random_scene(n, sh_degree=1, seed=seed, max_scale=0.3)
    rng = np.random.default_rng(seed)
    ls = s.log_scales.copy()
    ls[:, 0] += rng.uniform(0, 3, n).astype(np.float32)  # needles
    ls[:20] = np.log(2.0)  # huge, close to the camera
    ls[20:40] = np.log(1e-4)  # sub-pixel dots
    op = s.opacity_logits.copy()
    op[40:60] = -5.4  # opacity just above 1/255
    return GaussianScene(s.means, s.quats, ls, op, s.sh)


def _unculled(scene, cam, return_contrib):
    """The same kernel fed every box pair (the binning before culling)."""
    proj = project(PreparedScene(scene), cam, scene.sh_degree)
    W, H, tile = cam.width, cam.height, 16
    tx, ty = (W + tile - 1) // tile, (H + tile - 1) // tile
    order = depth_order(proj)
    rec, rec64 = new_records(len(order))
    boxes = pack_frame(order, proj.xy, proj.conic, proj.opacities, proj.color, proj.depth,
                       proj.rect, rec, rec64)
    off, ids = bin_tiles(order, proj.rect, tx, tx * ty, 3)
    culled = bin_tiles_culled(rec, rec64, boxes, tx, tx * ty, 3, tile)
    rgb, a, d = (np.empty((H, W, 3), np.float32), np.empty((H, W), np.float32),
                 np.empty((H, W), np.float32))
    pc, ph = np.zeros(len(ids)), np.zeros(len(ids), np.int32)
    with nb.parallel_chunksize(4):
        raster_kernel(off, ids, rec, rec64, W, H, tile, tx, np.zeros(3), rgb, a, d, True, pc,
                      ph)
    contrib = np.zeros(len(proj.depth))
    hits = np.zeros(len(proj.depth), np.int32)
    np.add.at(contrib, order[ids], pc)
    np.add.at(hits, order[ids], ph)
    return (rgb, a, d, contrib.astype(np.float32), hits), (off, ids, ph), culled


@pytest.mark.parametrize("size,eye", [((96, 64), (0.0, 0.0, -1.0)), ((123, 77), (0.8, -0.5, 0.2))])
def test_culled_binning_is_bit_identical(size, eye):
    scene = _extreme_scene()
    cam = look_at(list(eye), [0, 0, 3], [0, -1, 0], *size, fov_x_deg=70)
    (rgb, a, d, contrib, hits), (off, ids, pair_hits), (coff, cids) = \
        _unculled(scene, cam, True)
    r = render(scene, cam, device="cpu", return_contrib=True)
    assert a.max() > 0.5
    np.testing.assert_array_equal(r.rgb, rgb)
    np.testing.assert_array_equal(r.alpha, a)
    np.testing.assert_array_equal(r.depth, d)
    np.testing.assert_array_equal(r.hits, hits)
    np.testing.assert_array_equal(r.contrib, contrib)
    # culling drops pairs, and never one that blended a pixel
    assert len(cids) < 0.95 * len(ids)
    n_tiles = len(off) - 1
    kept = {(t, int(k)) for t in range(n_tiles) for k in cids[coff[t]:coff[t + 1]]}
    used = {(t, int(ids[j])) for t in range(n_tiles) for j in range(off[t], off[t + 1])
            if pair_hits[j] > 0}
    assert used <= kept
