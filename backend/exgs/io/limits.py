"""Plausibility limits checked *before* a reader allocates anything (issue 19, item 2).

A tiny file must not be able to declare millions of Gaussians and make a reader allocate
gigabytes. Every reader compares the count its header (or meta.json) declares with the
number of bytes the file really has: no real scene format stores a Gaussian in less than
:data:`MIN_BYTES_PER_GAUSSIAN` bytes (the most compact real files, SOG and SPZ, need 10–30 B),
so a count above ``max(FREE_GAUSSIANS, file_bytes / MIN_BYTES_PER_GAUSSIAN)`` is refused as
corrupt or a decompression bomb. Scenes of up to :data:`FREE_GAUSSIANS` Gaussians (a few MB
once decoded) are always decoded, whatever the file size.
"""

from __future__ import annotations

import os

from ..errors import SceneFormatError
from ..scene import MAX_GAUSSIANS

#: Smallest plausible compressed size of one Gaussian (bytes); real formats need ≥ 10.
MIN_BYTES_PER_GAUSSIAN = 0.25
#: Counts up to this are always accepted (decoding them costs at most a few tens of MB).
FREE_GAUSSIANS = 65536


def check_declared_count(path: str | os.PathLike | None, n: int, file_bytes: int,
                         what: str = "header", *, min_bytes: float = MIN_BYTES_PER_GAUSSIAN
                         ) -> None:
    """Raise :class:`SceneFormatError` if ``n`` Gaussians cannot plausibly be stored in
    ``file_bytes`` bytes (or exceed the global limit). ``what`` names the declaring part."""
    if not isinstance(n, int) or n < 0:
        raise SceneFormatError(path, f"{what} declares {n!r} Gaussians")
    if n > MAX_GAUSSIANS:
        raise SceneFormatError(path, f"{what} declares {n} Gaussians (limit {MAX_GAUSSIANS})")
    if n > FREE_GAUSSIANS and n * min_bytes > file_bytes:
        raise SceneFormatError(path, f"{what} declares {n} Gaussians but the file has only "
                                     f"{file_bytes} bytes (< {min_bytes:g} B per Gaussian): "
                                     f"corrupt, or a decompression bomb")


def tree_bytes(paths) -> int:
    """Total size of existing regular files among ``paths`` (missing ones count 0)."""
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total
