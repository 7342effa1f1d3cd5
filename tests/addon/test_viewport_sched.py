"""Viewport scheduler, resolution policy and frame cache (exgs_blender.viewport_sched, no bpy)."""

import os
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from exgs_blender.viewport_sched import (Cancelled, FrameCache, ResolutionPolicy,  # noqa: E402
                                         Scheduler)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def recorder(log):
    def render(req):
        log.append((req.key, req.scale, req.generation))
        return f"{req.key}@{req.scale}", 10

    return render


def test_policy_steps_and_sizes():
    p = ResolutionPolicy(steps=(0.25, 0.5, 1.0), settle_s=0.2)
    assert p.next_scale(None, 0.0) == 0.25          # moving: coarse
    assert p.next_scale(0.25, 0.05) is None         # still moving: no refinement yet
    assert p.next_scale(0.25, 0.3) == 0.5           # rests: next step
    assert p.next_scale(0.5, 0.3) == 1.0
    assert p.next_scale(1.0, 5.0) is None           # full: done
    assert p.next_scale(0.25, 0.3, heavy=True) == 1.0   # big scene: ½ would cost as much
    assert p.next_scale(None, 0.0, heavy=True) == 0.25
    assert p.size(640, 360, 0.25) == (160, 90)
    assert p.size(640, 360, 1.0) == (640, 360)
    assert p.size(40, 10, 0.25) == (16, 10)         # never below min_side (or the side)
    assert p.budget(0.25) == p.coarse_gaussians and p.budget(0.5) is None \
        and p.budget(1.0) is None                   # only the moving step is budgeted
    assert ResolutionPolicy(steps=(1.0,)).budget(1.0) is None
    with pytest.raises(ValueError):
        ResolutionPolicy(steps=(0.5, 0.25, 1.0))
    with pytest.raises(ValueError):
        ResolutionPolicy(steps=(0.25, 0.5))


def test_frame_cache_keeps_best_scale_and_evicts_lru():
    c = FrameCache(budget_bytes=100)
    assert c.put("a", 0.25, "a1", 40)
    assert c.put("a", 1.0, "a4", 40)
    assert not c.put("a", 0.5, "a2", 40)            # coarser than held: ignored
    assert c.best("a") == (1.0, "a4") and c.nbytes == 40
    assert c.put("b", 1.0, "b", 40)
    c.best("a")                                     # a is now the most recently used
    assert c.put("c", 1.0, "c", 40)                 # 120 > 100: evicts b (least recent)
    assert c.best("b") is None and c.best("a") == (1.0, "a4") and c.best("c") == (1.0, "c")
    assert c.nbytes == 80
    big = FrameCache(budget_bytes=10)
    big.put("x", 1.0, "x", 50)                      # larger than the budget: still kept
    assert big.best("x") == (1.0, "x")
    big.clear()
    assert len(big) == 0 and big.nbytes == 0


def test_progressive_steps_after_the_view_rests():
    clock, log, drawn = Clock(), [], []
    s = Scheduler(recorder(log), clock=clock, start_thread=False,
                  on_frame=lambda: drawn.append(1))
    s.update("v1")
    assert s.frame() is None                        # nothing yet; drawing does not wait
    assert s.step() and log[-1][:2] == ("v1", 0.25)
    assert s.frame() == ("v1", 0.25, "v1@0.25") and drawn == [1]
    assert not s.step()                             # still "moving" (0 s since the change)
    clock.t += 0.3
    assert s.step() and log[-1][:2] == ("v1", 0.5)
    assert s.step() and log[-1][:2] == ("v1", 1.0)
    assert not s.step() and not s.busy()            # full resolution: done
    assert s.frame() == ("v1", 1.0, "v1@1.0")
    gens = [g for _, _, g in log]
    assert gens == sorted(gens) and len(set(gens)) == 3


def test_heavy_views_go_from_coarse_straight_to_full():
    clock, log = Clock(), []
    s = Scheduler(recorder(log), clock=clock, start_thread=False, heavy=lambda k: k == "big")
    s.update("big")
    s.step()
    clock.t += 1.0
    while s.step():
        pass
    assert [sc for _, sc, _ in log] == [0.25, 1.0]
    s.update("small")
    s.step()
    clock.t += 1.0
    while s.step():
        pass
    assert [sc for k, sc, _ in log if k == "small"] == [0.25, 0.5, 1.0]


def test_supersede_drops_waiting_views_and_cache_serves_returns():
    clock, log = Clock(), []
    s = Scheduler(recorder(log), clock=clock, start_thread=False)
    for k in ("v1", "v2", "v3"):                    # three views before the worker runs
        s.update(k)
    assert s.step() and [k for k, _, _ in log] == ["v3"]   # v1, v2 never sent
    assert s.stats["superseded"] == 2
    clock.t += 1.0
    while s.step():
        pass
    assert s.frame()[:2] == ("v3", 1.0)
    n = len(log)
    s.update("v4")
    s.step()
    assert s.frame()[:2] == ("v4", 0.25)
    s.update("v3")                                  # back to a view already at full res
    assert s.frame() == ("v3", 1.0, "v3@1.0")
    assert not s.step() and len(log) == n + 1       # no request for it


def test_stale_frame_shown_until_the_new_view_arrives():
    clock, log = Clock(), []
    s = Scheduler(recorder(log), clock=clock, start_thread=False)
    s.update("a")
    s.step()
    s.update("b")
    assert s.frame() == ("a", 0.25, "a@0.25")       # newest frame of any view
    s.step()
    assert s.frame() == ("b", 0.25, "b@0.25")


def test_errors_stop_retrying_until_the_view_changes():
    clock = Clock()
    calls = []

    def render(req):
        calls.append(req.key)
        raise RuntimeError("backend down")

    s = Scheduler(render, clock=clock, start_thread=False)
    s.update("a")
    assert s.step() and isinstance(s.last_error, RuntimeError)
    clock.t += 1.0
    assert not s.step() and calls == ["a"]          # no retry loop for the same view
    s.update("b")
    assert s.last_error is None and s.step() and calls == ["a", "b"]


def test_threaded_cancel_in_flight_and_supersede():
    started, release = threading.Event(), threading.Event()
    cancelled, log, frames = [], [], threading.Event()

    def render(req):
        log.append((req.key, req.scale))
        if req.key == "slow":
            started.set()
            release.wait(5)
            if req.cancel.is_set():
                raise Cancelled()
        return req.key, 1

    s = Scheduler(render, cancel=lambda r: cancelled.append(r.key),
                  policy=ResolutionPolicy(steps=(0.5, 1.0), settle_s=0.05),
                  on_frame=frames.set)
    try:
        s.update("slow")
        assert started.wait(5)
        s.update("x")                               # in flight becomes stale → cancelled
        s.update("y")                               # x was only waiting → superseded
        assert cancelled == ["slow"]
        release.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (s.frame() is None or s.frame()[:2] != ("y", 1.0)):
            time.sleep(0.01)
        assert s.frame()[:2] == ("y", 1.0)
        assert [k for k, _ in log] == ["slow", "y", "y"]    # x never sent, y refined
        assert s.stats["cancelled"] == 1 and s.stats["superseded"] >= 1
        assert s.cache.best("slow") is None         # the cancelled request left no frame
    finally:
        s.stop()


# ---------------------------------------------------------------- view state (viewport_view)
from exgs_blender.viewport_view import SplatRef, ViewError, ViewState, border_crop  # noqa: E402

EYE = ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1))
PROJ = ((1.5, 0, 0, 0), (0, 2.0, 0, 0), (0, 0, -1.002, -0.2002), (0, 0, -1, 0))


def test_border_crop_of_a_camera_frame():
    corners = [(80.5, 30.0), (560.5, 30.0), (560.5, 300.0), (80.5, 300.0)]
    assert border_crop(corners, (0.0, 1.0, 0.0, 1.0), 640, 360) == (80, 30, 561, 300)
    assert border_crop(corners, (0.25, 0.75, 0.5, 1.0), 640, 360) == (200, 165, 441, 300)
    # a camera frame larger than the region (zoomed in) is clamped to the region
    assert border_crop([(-100, -50), (800, 500)], (0, 1, 0, 1), 640, 360) == (0, 0, 640, 360)
    with pytest.raises(ViewError, match="outside"):
        border_crop([(700, 400), (900, 500)], (0, 1, 0, 1), 640, 360)


def test_view_key_ignores_float_noise_and_tracks_what_changes_the_image():
    obj = SplatRef("a", "d1", "/x.ply", EYE, count=7)
    v1 = ViewState.make(EYE, PROJ, 640, 360, [obj, obj])
    assert v1.gaussians == 14
    v1 = ViewState.make(EYE, PROJ, 640, 360, [obj])
    noisy = tuple(tuple(x + 1e-9 for x in r) for r in EYE)
    assert ViewState.make(noisy, PROJ, 640, 360, [obj]).key == v1.key
    moved = SplatRef("a", "d1", "/x.ply", ((1, 0, 0, 0.5),) + EYE[1:])
    others = [ViewState.make(EYE, PROJ, 641, 360, [obj]),
              ViewState.make(EYE, PROJ, 640, 360, [obj], crop=(0, 0, 10, 10)),
              ViewState.make(EYE, PROJ, 640, 360, [obj], restore=True),
              ViewState.make(EYE, PROJ, 640, 360, [obj], background=(0.1, 0.1, 0.1)),
              ViewState.make(EYE, PROJ, 640, 360, [moved]),
              ViewState.make(EYE, PROJ, 640, 360, [SplatRef("a", "d2", "/x.ply", EYE)]),
              ViewState.make(EYE, PROJ, 640, 360, [])]
    assert len({v1.key} | {o.key for o in others}) == 1 + len(others)
    with pytest.raises(ViewError):
        ViewState.make(EYE, PROJ, 0, 360)


def test_payload_and_rect():
    objs = [SplatRef("a", "d1", "/a.ply", EYE, kept_fraction=0.1, painter_delta_b64="QUJD"),
            SplatRef("b", "d2", "/b.ply", EYE)]
    v = ViewState.make(EYE, PROJ, 640, 360, objs, crop=(10, 20, 110, 220), restore=True)
    p = v.payload(["s1", "s2"], scale=1.0, session="S", generation=7, depth=True)
    assert [o["scene_id"] for o in p["objects"]] == ["s1", "s2"]
    assert p["objects"][0]["kept_fraction"] == 0.1 and p["objects"][0]["painter_delta"] == "QUJD"
    assert "kept_fraction" not in p["objects"][1]
    assert (p["scale"], p["session"], p["generation"], p["crop"]) == (1.0, "S", 7, [10, 20, 110,
                                                                                    220])
    assert p["width"] == 640 and p["restore"] is True and p["depth"] is True
    assert v.rect == (10, 20, 100, 200)
    coarse = v.payload(["s1", "s2"], scale=0.25, session="S", generation=8)
    assert coarse["restore"] is False and "kept_fraction" not in coarse["objects"][0]
    plain = ViewState.make(EYE, PROJ, 640, 360, objs)
    q = plain.payload(["s1", "s2"], scale=1.0, session="S", generation=8)
    assert "kept_fraction" not in q["objects"][0] and "crop" not in q and plain.rect == (0, 0, 640, 360)
    assert "max_gaussians" not in q and "background" not in q
    # a refined object (its .exgs was refined after pruning) says so with restore only
    ref = (SplatRef("a", "d1", "/a.ply", EYE, kept_fraction=0.1, refined=True),)
    r = ViewState.make(EYE, PROJ, 640, 360, ref, restore=True)
    assert r.payload(["s1"], scale=1.0, session="S", generation=9)["objects"][0]["refined"] is True
    assert "refined" not in p["objects"][0] and "refined" not in q["objects"][0]
    assert "refined" not in r.payload(["s1"], scale=0.25, session="S", generation=9)["objects"][0]
    assert r.key != ViewState.make(EYE, PROJ, 640, 360, (objs[0],), restore=True).key
    opaque = ViewState.make(EYE, PROJ, 640, 360, objs, background=(0.05, 0.1, 0.2))
    assert opaque.payload(["s1", "s2"], scale=1.0, session="S", generation=1)["background"] \
        == [0.05, 0.1, 0.2]
    assert plain.payload(["s1", "s2"], scale=0.25, session="S", generation=9,
                         max_gaussians=1000)["max_gaussians"] == 1000
