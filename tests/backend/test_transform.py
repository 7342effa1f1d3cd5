"""exgs.transform: affine maps of Gaussian scenes (centres, covariances, SH) — the glTF
reader applies node transforms with it."""

import numpy as np
import pytest

from exgs.cameras import look_at
from exgs.render import render
from exgs.render.sh import eval_sh
from exgs.synth import random_scene
from exgs.transform import quat_to_rotmat, transform_scene


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _affine(a, t):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, t
    return m


def _cov(scene):
    r = quat_to_rotmat(scene.quats)
    s2 = np.exp(2.0 * scene.log_scales.astype(np.float64))
    return r * s2[:, None, :] @ r.transpose(0, 2, 1)


@pytest.mark.parametrize("a", [_rot([1, 2, 3], 70), np.diag([-1.0, 1.0, 1.0]) @ _rot([0, 1, 0], 30),
                               2.5 * _rot([0, 0, 1], -110)])
def test_similarity_maps_centres_covariances_and_view_dependent_colour(a):
    s = random_scene(300, sh_degree=3, seed=1)
    t = np.array([0.5, -2.0, 3.0])
    out = transform_scene(s, _affine(a, t))
    np.testing.assert_allclose(out.means, s.means @ a.T + t, atol=1e-5)
    np.testing.assert_allclose(_cov(out), a @ _cov(s) @ a.T, atol=1e-5, rtol=1e-4)
    # the colour seen along d after the map = the colour seen along Q⁻¹d before
    q = a / np.cbrt(abs(np.linalg.det(a)))
    d = np.random.default_rng(2).normal(size=(len(s), 3))
    np.testing.assert_allclose(eval_sh(3, d, out.sh), eval_sh(3, d @ q, s.sh), atol=2e-5)
    np.testing.assert_array_equal(out.opacity_logits, s.opacity_logits)


def test_general_affine_refactors_the_covariance():
    s = random_scene(200, sh_degree=1, seed=3)
    a = np.array([[2.0, 0.3, 0.0], [0.0, 0.5, 0.1], [0.2, 0.0, 1.2]])
    out = transform_scene(s, _affine(a, [1, 2, 3]))
    np.testing.assert_allclose(_cov(out), a @ _cov(s) @ a.T, atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(out.quats, axis=1), 1.0, atol=1e-6)


def test_render_is_unchanged_when_camera_moves_with_the_scene():
    s = random_scene(2000, sh_degree=2, seed=4)
    a, t = 1.7 * _rot([1, -1, 2], 40), np.array([3.0, -1.0, 0.5])
    out = transform_scene(s, _affine(a, t))
    pos, target, up = np.array([0.0, -0.5, -3.0]), np.zeros(3), np.array([0.0, -1.0, 0.0])
    cam = look_at(pos, target, up, 96, 64)
    q = a / 1.7
    cam2 = look_at(a @ pos + t, a @ target + t, q @ up, 96, 64)
    r1, r2 = render(s, cam), render(out, cam2)
    assert r1.alpha.mean() > 0.1
    np.testing.assert_allclose(r2.rgb, r1.rgb, atol=2e-3)
    np.testing.assert_allclose(r2.alpha, r1.alpha, atol=2e-3)


def test_bad_matrix_is_refused():
    s = random_scene(10)
    with pytest.raises(ValueError, match="singular"):
        transform_scene(s, np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="4×4"):
        transform_scene(s, np.eye(3))


def _glb_with_nodes(tmp_path, scene, nodes, roots):
    """A .glb written by exgs whose node list is replaced by ``nodes`` (scene 0 = ``roots``)."""
    import json
    import struct

    from exgs.io import write_scene
    from test_formats_web import _glb

    src = tmp_path / "src.glb"
    write_scene(scene, src)
    raw = src.read_bytes()
    jlen = struct.unpack_from("<I", raw, 12)[0]
    doc = json.loads(raw[20:20 + jlen])
    blen = struct.unpack_from("<I", raw, 20 + jlen)[0]
    blob = raw[28 + jlen:28 + jlen + blen]
    doc["nodes"], doc["scenes"], doc["scene"] = nodes, [{"nodes": roots}], 0
    out = tmp_path / "nodes.glb"
    out.write_bytes(_glb(doc, blob))
    return out


def test_gltf_reader_applies_the_node_hierarchy(tmp_path):
    from exgs.errors import SceneFormatError
    from exgs.io import read_scene
    from exgs.io.gltf import read_gltf_header

    s = random_scene(50, sh_degree=2, seed=6)
    rot = _rot([0, 0, 1], 90)
    w, xyz = np.cos(np.radians(45)), np.sin(np.radians(45)) * np.array([0, 0, 1.0])
    parent = {"translation": [1.0, 2.0, 3.0], "rotation": [*xyz, w], "scale": [2.0, 2.0, 2.0],
              "children": [1]}
    child = {"mesh": 0, "matrix": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0.5, 0, 0, 1]}
    p = _glb_with_nodes(tmp_path, s, [parent, child, {"mesh": 0}], [0, 2])
    world = _affine(2.0 * rot, [1, 2, 3]) @ _affine(np.eye(3), [0.5, 0, 0])
    got = read_scene(p)
    base = read_scene(tmp_path / "src.glb")  # no node transform: the writer's LUF data
    assert len(got) == 2 * len(s)
    want = transform_scene(base, world)
    np.testing.assert_allclose(got.means[:50], want.means, atol=1e-4)
    np.testing.assert_allclose(got.sh[:50], want.sh, atol=1e-5)
    np.testing.assert_array_equal(got.means[50:], base.means)
    hdr = read_gltf_header(p)
    assert hdr["gaussians"] == 100
    np.testing.assert_allclose(hdr["node_matrix"], world, atol=1e-9)
    cyclic = _glb_with_nodes(tmp_path, s, [{"mesh": 0, "children": [1]}, {"children": [0]}], [0])
    with pytest.raises(SceneFormatError, match="cycle"):
        read_scene(cyclic)


def test_sh_basis_is_the_renderers():
    from exgs.transform import sh_basis

    d = np.random.default_rng(7).normal(size=(40, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sh = np.random.default_rng(8).normal(size=(40, 16, 3)).astype(np.float32)
    want = eval_sh(3, d, sh)
    got = np.einsum("nk,nkc->nc", sh_basis(d, 3), sh.astype(np.float64))
    np.testing.assert_allclose(got, want, atol=1e-5)
