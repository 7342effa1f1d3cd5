"""Fairness in a real `exgs serve` (issue 18): render jobs of three clients queued at once
take turns frame by frame (a job yields the device after each frame), and every frame is
still bit-identical to the renderer's own output for its camera."""

from __future__ import annotations

import numpy as np

from svc_helpers import C, require


def _cams(ks, w=96, h=72):
    from exgs.cameras import look_at

    return [look_at([0.6 * np.sin(k), 0.3, -3.0], [0, 0, 0], [0, -1, 0], w, h, name=f"c{k}")
            for k in ks]


def test_clients_take_turns_frame_by_frame(server, small_scene):
    render = require("exgs.render")
    scene, path = small_scene
    sid = server.upload(path)["id"]
    clients = {c: C.ExgsClient(server.url, server.token, client_id=c) for c in "ZAB"}
    cams = {"Z": _cams(range(0, 24)), "A": _cams(range(30, 34)), "B": _cams(range(40, 44))}
    # Z's long job first; A and B submit while it runs
    jobs = {c: clients[c].submit_render(sid, cams[c])["id"] for c in "ZAB"}
    info = {c: clients[c].wait(jobs[c]) for c in "ZAB"}
    assert all(info[c]["state"] == "done" and info[c]["client"] == c for c in "ZAB"), info
    z, a, b = info["Z"], info["A"], info["B"]
    assert a["created"] < z["finished"] and b["created"] < z["finished"], "Z ended too soon"
    # A and B did not wait for the whole of Z: they started, and ended, while Z still ran
    assert a["started"] < z["finished"] and b["started"] < z["finished"]
    assert a["finished"] < z["finished"] and b["finished"] < z["finished"]
    for c in "ZAB":
        ref = list(render.render_many(scene, cams[c]))
        for i, r in enumerate(ref):
            f = clients[c].frame(jobs[c], i)
            np.testing.assert_array_equal(f.rgb, r.rgb)
            np.testing.assert_array_equal(f.alpha, r.alpha)
            np.testing.assert_array_equal(f.depth, r.depth)
