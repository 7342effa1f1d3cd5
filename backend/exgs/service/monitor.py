"""Watching jobs from the HTTP side: the long poll (:func:`wait_for_change`, on the event
loop, woken by the job manager). ``/v1/health``'s load figures are
:func:`exgs.service.farm.load_info`."""

from __future__ import annotations

from typing import Callable

from .jobs import Job, JobManager


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
