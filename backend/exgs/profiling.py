"""Per-stage wall time and memory of a run (``exgs compress --profile``).

Off by default (then :func:`stage` costs nothing). When :func:`enable`\\ d, each
``with stage(name):`` block adds its wall seconds, the process RSS after it and the peak RSS
*during* it (Linux: the VmHWM high-water mark is reset at the block's start by writing 5 to
``/proc/self/clear_refs``; elsewhere the peak since start) to a record; blocks of the same
name (e.g. the encodes of the byte-budget search) are merged: seconds summed, peak maxed,
``calls`` counted. Memory in GiB (2³⁰ bytes).
"""

from __future__ import annotations

import contextlib
import time

_records: dict[str, dict] | None = None
_stack: list[dict] = []


def enable() -> None:
    """Start recording (clears earlier records)."""
    global _records
    _records = {}
    _stack.clear()


def disable() -> None:
    """Stop recording (and forget the records)."""
    global _records
    _records = None
    _stack.clear()


def enabled() -> bool:
    return _records is not None


def _status(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


@contextlib.contextmanager
def stage(name: str):
    """Time the block as stage ``name`` (no-op unless :func:`enable` was called). Stages
    may nest: an outer stage's peak includes its inner stages' peaks."""
    if _records is None:
        yield
        return
    hwm = _status("VmHWM:")
    for f in _stack:  # the reset below must not lose the open stages' peaks so far
        f["peak"] = max(f["peak"], hwm)
    _reset_peak()
    frame = {"peak": 0.0}
    _stack.append(frame)
    t = time.perf_counter()
    try:
        yield
    finally:
        sec = time.perf_counter() - t
        _stack.pop()
        peak, rss = max(frame["peak"], _status("VmHWM:")), _status("VmRSS:")
        for f in _stack:
            f["peak"] = max(f["peak"], peak)
        r = _records.setdefault(name, {"stage": name, "seconds": 0.0, "calls": 0,
                                       "peak_rss_gib": 0.0, "rss_gib": 0.0})
        r["seconds"] += sec
        r["calls"] += 1
        r["peak_rss_gib"] = max(r["peak_rss_gib"], peak)
        r["rss_gib"] = rss


def records() -> list[dict]:
    """The stages recorded so far, in first-seen order (empty when not enabled)."""
    return [dict(r) for r in (_records or {}).values()]
