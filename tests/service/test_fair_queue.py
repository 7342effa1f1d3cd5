"""The job queue is fair across clients (issue 18, farms): round-robin by client, FIFO
within a client, a per-client cap on open jobs, and the load report of /v1/health."""

from __future__ import annotations

import threading

import pytest

from exgs.service.farm import ANONYMOUS, FairQueue, client_of
from exgs.service.jobs import DONE, JobLimitError, JobManager


def test_fair_queue_round_robin_order():
    q = FairQueue()
    for i in range(5):
        q.put("big", f"big{i}")
    q.put("small", "small0")
    q.put("small", "small1")
    q.put("late", "late0")
    order = []
    while (item := q.pop()) is not None:
        order.append(item)
        if item == "big1":  # a client that joins later enters the rotation at its end
            q.put("new", "new0")
    # after big1 the rotation is [small, big]; "new" joins behind big
    assert order == ["big0", "small0", "late0", "big1", "small1", "big2", "new0", "big3",
                     "big4"]
    assert len(q) == 0


def _manager(tmp_path, **kw):
    return JobManager(str(tmp_path), ["cpu"], **kw)


def _wait_done(m, jobs, timeout=10.0):
    for j in jobs:
        m.wait(j, -1, 0)
    with m._cond:
        m._cond.wait_for(lambda: all(j.state == DONE for j in jobs), timeout=timeout)
    assert [j.state for j in jobs] == [DONE] * len(jobs)


def test_manager_runs_clients_in_turn(tmp_path):
    """While one job runs, worker A queues 6 jobs and worker B 2: B's jobs run 2nd and 4th,
    not after all of A's (FIFO would make B wait for the whole of A)."""
    m = _manager(tmp_path)
    gate, order = threading.Event(), []
    try:
        first = m.submit("render", "cpu", lambda ctx: gate.wait(10), client="other")
        with m._cond:
            assert m._cond.wait_for(lambda: first.state == "running", timeout=10)
        jobs = [m.submit("render", "cpu", lambda ctx, k=f"A{i}": order.append(k), client="A")
                for i in range(6)]
        jobs += [m.submit("render", "cpu", lambda ctx, k=f"B{i}": order.append(k), client="B")
                 for i in range(2)]
        load = m.load()
        assert load["clients"]["A"] == {"queued": 6, "running": 0}
        assert load["clients"]["B"] == {"queued": 2, "running": 0}
        assert load["clients"]["other"]["running"] == 1
        assert (load["queued"], load["running"]) == (8, 1)
        gate.set()
        _wait_done(m, [first] + jobs)
        assert order == ["A0", "B0", "A1", "B1", "A2", "A3", "A4", "A5"]
        assert [j.info()["client"] for j in jobs] == ["A"] * 6 + ["B"] * 2
        load = m.load()
        assert (load["queued"], load["running"], load["clients"]) == (0, 0, {})
        assert load["served"]["A"] == {"done": 6, "failed": 0, "cancelled": 0, "frames": 0}
        assert load["served"]["B"]["done"] == 2 and load["served"]["other"]["done"] == 1
    finally:
        gate.set()
        m.shutdown()


def test_generator_job_yields_its_turn_between_frames(tmp_path):
    """A job function that is a generator gives the device up at each ``yield``: client A's
    3-frame job and client B's two 1-frame jobs interleave; a cancel between turns ends it."""
    m = _manager(tmp_path)
    gate, order = threading.Event(), []

    def frames(ctx, name, n):
        for i in range(n):
            ctx.check()
            order.append(f"{name}{i}")
            if i + 1 < n:
                yield

    try:
        first = m.submit("render", "cpu", lambda ctx: gate.wait(10), client="other")
        with m._cond:
            assert m._cond.wait_for(lambda: first.state == "running", timeout=10)
        a = m.submit("render", "cpu", lambda ctx: frames(ctx, "a", 3), client="A")
        a2 = m.submit("render", "cpu", lambda ctx: frames(ctx, "A", 1), client="A")
        bs = [m.submit("render", "cpu", lambda ctx, k=k: frames(ctx, f"b{k}-", 1), client="B")
              for k in range(2)]
        gate.set()
        _wait_done(m, [first, a, a2] + bs)
        # A's own later job waits for A's first job (FIFO within a client)
        assert order == ["a0", "b0-0", "a1", "b1-0", "a2", "A0"]
        assert a.gen is None and m.load()["served"]["A"]["done"] == 2

        gate.clear()
        order.clear()
        first = m.submit("render", "cpu", lambda ctx: gate.wait(10), client="other")
        with m._cond:
            assert m._cond.wait_for(lambda: first.state == "running", timeout=10)
        c = m.submit("render", "cpu", lambda ctx: frames(ctx, "c", 5), client="C")
        d = m.submit("render", "cpu", lambda ctx: (m.cancel(c), order.append("d")), client="D")
        gate.set()
        with m._cond:
            assert m._cond.wait_for(lambda: c.state == "cancelled" and d.state == DONE,
                                    timeout=10)
        assert order == ["c0", "d"] and c.gen is None
    finally:
        gate.set()
        m.shutdown()


def test_cancelled_queued_job_is_skipped(tmp_path):
    m = _manager(tmp_path)
    gate, order = threading.Event(), []
    try:
        first = m.submit("render", "cpu", lambda ctx: gate.wait(10), client="A")
        a = m.submit("render", "cpu", lambda ctx: order.append("a"), client="A")
        b = m.submit("render", "cpu", lambda ctx: order.append("b"), client="B")
        m.cancel(a)
        gate.set()
        _wait_done(m, [first, b])
        assert order == ["b"] and a.state == "cancelled"
        assert m.load()["served"]["A"] == {"done": 1, "failed": 0, "cancelled": 1, "frames": 0}
    finally:
        gate.set()
        m.shutdown()


def test_one_client_cannot_fill_the_service(tmp_path):
    m = _manager(tmp_path, max_open=8)
    gate = threading.Event()
    try:
        assert m.per_client_limit() == 7
        for _ in range(7):
            m.submit("render", "cpu", lambda ctx: gate.wait(10), client="A")
        with pytest.raises(JobLimitError, match="client 'A' has 7 open jobs"):
            m.submit("render", "cpu", lambda ctx: None, client="A")
        m.submit("render", "cpu", lambda ctx: None, client="B")  # room kept for others
        with pytest.raises(JobLimitError, match="too many open jobs"):
            m.submit("render", "cpu", lambda ctx: None, client="C")
    finally:
        gate.set()
        m.shutdown()
    assert _manager(tmp_path / "one", max_open=1).per_client_limit() == 1


def test_client_of_header_then_peer():
    assert client_of("render-node-07", "10.0.0.5") == "render-node-07"
    assert client_of("  node 1 ", "10.0.0.5") == "10.0.0.5"      # a space: not an id
    assert client_of("x" * 65, "10.0.0.5") == "10.0.0.5"         # too long
    assert client_of("nœud", "10.0.0.5") == "10.0.0.5"           # not ASCII
    assert client_of(None, None) == ANONYMOUS
