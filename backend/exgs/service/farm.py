"""What a service shared by a render farm needs (issue 18): the job queue that is fair
across clients, client ids, and the load report of ``/v1/health``.

Every job belongs to a *client* — the ``X-Exgs-Client`` header of the request that submitted
it, else the peer address (:func:`client_of`). Each device's queue (:class:`FairQueue`)
takes jobs round-robin across clients and in submission order within a client, so a farm
worker that queued 500 jobs cannot starve one that queued 5: they alternate. The
:class:`~exgs.service.jobs.JobManager` uses it and caps one client's open jobs at
``max_open - max_open // 8``; a multi-frame render job yields its turn between frames.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque

ANONYMOUS = "anonymous"
MAX_SERVED_CLIENTS = 1024
#: longest client id kept (``X-Exgs-Client``); longer or unprintable ones fall back to the peer
MAX_CLIENT_ID = 64


def client_of(header: str | None, peer: str | None) -> str:
    """The client a request belongs to: its ``X-Exgs-Client`` header when that is 1..64
    printable ASCII characters, else ``peer`` (the peer's address), else ``anonymous``."""
    h = (header or "").strip()
    if h and len(h) <= MAX_CLIENT_ID and all(33 <= ord(c) < 127 for c in h):
        return h
    return peer or ANONYMOUS


class FairQueue:
    """Round-robin across clients, FIFO within a client. Not thread-safe by itself (the
    :class:`JobManager` holds its lock around every call).

    ``put(client, item)`` appends; ``pop()`` takes the oldest item of the client whose turn
    it is and moves that client to the end of the rotation (a new client joins at the end);
    ``None`` when empty."""

    def __init__(self):
        self._by_client: OrderedDict[str, deque] = OrderedDict()

    def put(self, client: str, item, first: bool = False) -> None:
        """Queue ``item`` last of ``client``'s items (``first``: before them — a job
        resuming after its turn)."""
        q = self._by_client.get(client)
        if q is None:
            q = self._by_client[client] = deque()
        if first:
            q.appendleft(item)
        else:
            q.append(item)

    def pop(self):
        if not self._by_client:
            return None
        client, q = next(iter(self._by_client.items()))
        item = q.popleft()
        if q:
            self._by_client.move_to_end(client)
        else:
            del self._by_client[client]
        return item

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_client.values())


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


def load_info(manager, scenes: list) -> dict:
    """``/v1/health``'s ``load``: jobs queued/running (total and per client), scenes held
    and the bytes of their decoded arrays (scenes evicted from memory count 0), and this
    process's memory."""
    held = [getattr(e, "scene", None) for e in scenes]
    return {**manager.load(), "scenes": len(scenes),
            "scene_bytes": int(sum(getattr(s, "nbytes", 0) or 0 for s in held if s is not None)),
            **process_memory()}
