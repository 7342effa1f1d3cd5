"""Where the add-on keeps its files (stdlib only, no bpy): the render cache, which is also the
folder the local backend may open by path (``--allow-dir``); and the size cap of its
converted scenes (``convert-*.ply``: :func:`evict_converted`)."""

from __future__ import annotations

import glob
import os
import tempfile
import time

_CACHE_DIR = None


def cache_dir() -> str:
    """``EXGS_CACHE_DIR`` or ``<tmp>/exgs-blender-<uid>`` (created on first use): write-back
    PLYs (``<content hash>.ply``), compressed ``.exgs`` files, converted scenes, frames."""
    global _CACHE_DIR
    if _CACHE_DIR is None:
        uid = os.getuid() if hasattr(os, "getuid") else "u"
        base = os.environ.get("EXGS_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                                f"exgs-blender-{uid}")
        os.makedirs(base, exist_ok=True)
        _CACHE_DIR = base
    return _CACHE_DIR


#: converted scenes (``backend.convert_plan``): the only cache files :func:`evict_converted`
#: removes (write-back PLYs are opened by path by the backend and are left alone)
CONVERTED_GLOB = "convert-*.ply"
#: files used (written or looked up) this recently are never evicted, seconds
EVICT_GRACE_S = 900.0


def cache_limit() -> int:
    """Byte cap of the converted scenes: ``EXGS_CACHE_MAX_GB`` (GiB, a number; 0 = no cap),
    default 20 GiB."""
    try:
        gb = float(os.environ.get("EXGS_CACHE_MAX_GB", "20"))
    except ValueError:
        gb = 20.0
    return max(0, int(gb * (1 << 30)))


def touch(path: str) -> None:
    """Mark a cache file as just used (its mtime is the LRU clock); missing files are ignored."""
    try:
        os.utime(path, None)
    except OSError:
        pass


def evict_converted(max_bytes: int | None = None, *, folder: str | None = None,
                    keep=(), grace_s: float = EVICT_GRACE_S) -> list[str]:
    """Remove the least recently used converted scenes (``convert-*.ply`` in the cache, by
    mtime — :func:`touch` on every use) until they total ≤ ``max_bytes`` (default
    :func:`cache_limit`; 0 = no cap). Returns the removed paths.

    Safe with readers and writers in this and other processes: a file in ``keep`` or used
    within ``grace_s`` seconds (a conversion still being written, an import that just looked
    it up) is never removed, and its mtime is checked again right before the unlink; a reader
    that already opened a removed file keeps reading it (POSIX unlink removes only the name;
    on Windows an open file cannot be removed and is skipped); a file another process removed
    first is skipped. A reader that finds the file gone converts again (a cache miss)."""
    cap = cache_limit() if max_bytes is None else int(max_bytes)
    if cap <= 0:
        return []
    folder = folder or cache_dir()
    keep = {os.path.abspath(p) for p in keep}
    files = []
    for p in glob.glob(os.path.join(folder, CONVERTED_GLOB)):
        try:
            st = os.stat(p)
        except OSError:
            continue
        files.append((st.st_mtime, st.st_size, p))
    total = sum(f[1] for f in files)
    removed = []
    now = time.time()
    for mtime, size, p in sorted(files):
        if total <= cap:
            break
        if os.path.abspath(p) in keep or now - mtime < grace_s:
            continue
        try:
            if os.stat(p).st_mtime != mtime:  # used since the listing
                continue
            os.unlink(p)
        except FileNotFoundError:  # another process evicted it: gone all the same
            total -= size
            continue
        except OSError:  # open on Windows, or not ours to remove: it stays
            continue
        total -= size
        removed.append(p)
    return removed
