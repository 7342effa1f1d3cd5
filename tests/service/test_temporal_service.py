"""Temporal render jobs against a real ``exgs serve``: a request's warm-up frames make its
output a pure function of the request (the service's memo only saves time), and bad
warm-up requests are refused with one line."""

from __future__ import annotations

import numpy as np
import pytest

from svc_helpers import C, require


def _path(n, w=64, h=48):
    from exgs.cameras import look_at

    return [look_at([0.8 * np.sin(0.04 * k), 0.3, -3.0], [0, 0, 0], [0, -1, 0], w, h,
                    name=f"p{k}") for k in range(n)]


def test_temporal_render_with_warmup(server, small_scene):
    require("exgs.render")
    if not server.health()["painter"]["available"]:
        pytest.skip("painter weights not shipped")
    from exgs.pipeline import RestoreOptions, render_stable, restorer_for

    scene, path = small_scene
    sid = server.upload(path)["id"]
    cams = _path(5)
    local = list(render_stable(scene, cams, warmup=4,
                               restorer=restorer_for(None, RestoreOptions())))[0]
    (cold,) = server.render(sid, cams, restore=True, temporal=True, warmup=4)
    np.testing.assert_allclose(cold.rgb, local.rgb, atol=1e-4)
    np.testing.assert_array_equal(cold.alpha, local.alpha)
    # frame by frame in path order (the memo resumes), then the last one again: identical
    for f in range(1, 5):
        (got,) = server.render(sid, cams[:f + 1], restore=True, temporal=True, warmup=f)
    np.testing.assert_array_equal(got.rgb, cold.rgb)
    (again,) = server.render(sid, cams, restore=True, temporal=True, warmup=4)
    np.testing.assert_array_equal(again.rgb, cold.rgb)
    # two frames returned after two warm-up frames
    two = server.render(sid, cams[:4], restore=True, temporal=True, warmup=2)
    assert len(two) == 2


def test_warmup_needs_temporal_restore_and_a_frame_to_return(server, small_scene):
    require("exgs.render")
    _, path = small_scene
    sid = server.upload(path)["id"]
    cams = _path(3)
    for kw in (dict(warmup=1), dict(restore=True, warmup=1),
               dict(restore=True, temporal=True, warmup=3)):
        with pytest.raises(C.BackendError) as ei:
            server.render(sid, cams, **kw)
        assert ei.value.status == 422, kw
