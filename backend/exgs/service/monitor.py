"""Watching jobs from the HTTP side: the long poll (:func:`wait_for_change`, on the event
loop, woken by the job manager) and ``/v1/health``'s load figures (:func:`load_info`)."""

from __future__ import annotations

import os
from typing import Callable

from .jobs import Job, JobManager


def process_memory() -> dict:
    """This process's resident memory now and at its peak, bytes (Linux ``/proc``; the
    peak from ``getrusage`` elsewhere, ``rss_bytes`` then None)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024
    rss = None
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return {"rss_bytes": rss, "peak_rss_bytes": int(peak)}


def load_info(manager: JobManager, scenes: list) -> dict:
    """``/v1/health``'s ``load``: jobs queued/running (total and per client), scenes held
    and the bytes of their decoded arrays (scenes evicted from memory count 0), and this
    process's memory."""
    held = [getattr(e, "scene", None) for e in scenes]
    return {**manager.load(), "scenes": len(scenes),
            "scene_bytes": int(sum(getattr(s, "nbytes", 0) or 0 for s in held if s is not None)),
            **process_memory()}


async def wait_for_change(manager: JobManager, job: Job, done: Callable[[], bool],
                          timeout: float) -> None:
    """Wait (on the event loop, without busy looping) until ``done()`` is true or
    ``timeout`` seconds passed; the job's state changes wake it."""
    import asyncio

    if done():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    changed = asyncio.Event()

    def wake():
        loop.call_soon_threadsafe(changed.set)

    manager.add_waiter(job, wake)
    try:
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                break
            changed.clear()
            if done():
                break
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                break
    finally:
        manager.remove_waiter(job, wake)
