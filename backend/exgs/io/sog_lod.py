"""PlayCanvas streamed LOD SOG: a folder with ``lod-meta.json`` and one SOG v2 folder per chunk.

Implemented from the published description (PlayCanvas engine's octree LOD loader and the
files splat-transform writes)::

    lod-meta.json {"lodLevels": L,
                   "filenames": ["0_0/meta.json", "1_0/meta.json", ...],   chunk SOG scenes
                   "tree": {"bound": {"min": [3], "max": [3]},
                            "children": [ node, ... ]                      inner node, or
                            "lods": {"0": {"file": F, "offset": O, "count": C}, "1": ...}}}

Level ``l`` of the scene is the union over the tree's leaves of Gaussians ``O .. O+C−1`` of
chunk ``filenames[F]`` for ``lods[l]``; level 0 is the finest (most Gaussians). A leaf without
an entry for ``l`` contributes its nearest level (the finer one on a tie), so every level
covers the whole scene. Gaussians come out in tree order (depth first). Frame: the PLY frame,
as every SOG. Every chunk must resolve (symlinks followed) inside the LOD folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import SceneFormatError
from ..scene import GaussianScene
from .sog_common import MAX_META_BYTES, inside

META = "lod-meta.json"
MAX_NODES = 1 << 20


def _root(path: Path) -> tuple[Path, Path]:
    """(folder, lod-meta.json path) for a LOD folder or its lod-meta.json."""
    if path.is_dir():
        return path, path / META
    return path.parent, path


def _load(path: Path) -> tuple[Path, dict]:
    root, meta_path = _root(path)
    try:
        if not inside(root, meta_path):
            raise SceneFormatError(path, f"{META} is a link to a file outside {root}")
        if meta_path.stat().st_size > MAX_META_BYTES:
            raise SceneFormatError(path, f"{META} is too large")
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except SceneFormatError:
        raise
    except OSError as e:
        raise SceneFormatError(path, f"cannot read {META}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SceneFormatError(path, f"{META} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("filenames"), list) \
            or not isinstance(meta.get("tree"), dict):
        raise SceneFormatError(path, f"{META} must hold 'filenames' (a list) and 'tree'")
    levels = meta.get("lodLevels")
    if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= 64:
        raise SceneFormatError(path, f"{META}: lodLevels must be 1..64, got {levels!r}")
    for nm in meta["filenames"]:
        if not isinstance(nm, str) or not nm or nm.startswith("/") or "\\" in nm \
                or ".." in nm.split("/") or "\x00" in nm:
            raise SceneFormatError(path, f"{META}: bad chunk file name {nm!r}")
    return root, meta


def _ranges(path: Path, meta: dict, level: int) -> list[tuple[int, int, int]]:
    """(file, offset, count) per leaf, in depth-first order, for ``level``."""
    nfiles = len(meta["filenames"])
    out, stack, seen = [], [meta["tree"]], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES or not isinstance(node, dict):
            raise SceneFormatError(path, f"{META}: bad or oversized tree")
        lods = node.get("lods")
        if isinstance(lods, dict) and lods:
            try:
                have = sorted(int(k) for k in lods)
            except (TypeError, ValueError):
                raise SceneFormatError(path, f"{META}: lod keys must be integers") from None
            pick = min(have, key=lambda lv: (abs(lv - level), lv))
            e = lods[str(pick)] if str(pick) in lods else None
            vals = [e.get(k) if isinstance(e, dict) else None for k in ("file", "offset", "count")]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals) \
                    or vals[0] >= nfiles:
                raise SceneFormatError(path, f"{META}: bad lod entry {e!r}")
            out.append(tuple(vals))
        children = node.get("children")
        if isinstance(children, list):
            stack.extend(reversed(children))
    return out


def read_lod_header(path: str | os.PathLike, lod: int | None = None) -> dict:
    """Summary without decoding images: levels, chosen level, gaussians (declared by the
    tree, checked against the chunks' meta.json counts), sh_degree, chunks."""
    path = Path(path)
    root, meta = _load(path)
    level = _level(path, meta, lod)
    ranges, degree = _plan(path, root, meta, level)
    return {"lod_levels": meta["lodLevels"], "lod": level, "gaussians": sum(r[2] for r in ranges),
            "sh_degree": degree, "chunks": len({r[0] for r in ranges})}


def _plan(path, root, meta, level):
    """Ranges of ``level`` checked against the chunks' declared counts (before decoding):
    every range must fit its chunk and the ranges must not hold more Gaussians than the
    chunks do (overlapping ranges would let a tiny tree multiply a chunk)."""
    from .sog import read_sog_header

    ranges = _ranges(path, meta, level)
    by_file: dict[int, list[tuple[int, int]]] = {}
    for f, off, cnt in ranges:
        by_file.setdefault(f, []).append((off, cnt))
    total_stored, degree = 0, None
    for f, rs in by_file.items():
        hdr = read_sog_header(root / meta["filenames"][f], root=root)
        if max(o + c for o, c in rs) > hdr["gaussians"]:
            raise SceneFormatError(path, f"{META}: a range passes the end of "
                                         f"{meta['filenames'][f]} ({hdr['gaussians']} Gaussians)")
        total_stored += hdr["gaussians"]
        degree = hdr["sh_degree"] if degree is None else min(degree, hdr["sh_degree"])
    n = sum(r[2] for r in ranges)
    if n > total_stored:
        raise SceneFormatError(path, f"{META}: level {level} declares {n} Gaussians, more than "
                                     f"its chunks hold ({total_stored})")
    return ranges, degree or 0


def _level(path, meta, lod):
    level = 0 if lod is None else lod
    if not isinstance(level, int) or not 0 <= level < meta["lodLevels"]:
        raise SceneFormatError(path, f"level {lod!r} out of range: this LOD SOG has levels "
                                     f"0..{meta['lodLevels'] - 1}")
    return level


def read_sog_lod(path: str | os.PathLike, *, lod: int | None = None) -> GaussianScene:
    """Read level ``lod`` (default 0, the finest) of a streamed LOD SOG folder (or its
    lod-meta.json) as one scene in the PLY frame."""
    from .sog import read_sog

    path = Path(path)
    root, meta = _load(path)
    level = _level(path, meta, lod)
    ranges, _ = _plan(path, root, meta, level)
    by_file = {r[0] for r in ranges}
    parts, degree = {}, None
    for f in by_file:
        s = read_sog(root / meta["filenames"][f], root=root)
        parts[f] = s
        degree = s.sh_degree if degree is None else min(degree, s.sh_degree)
    if not ranges:
        return GaussianScene.empty(0)
    idx_parts = [(parts[f].with_sh_degree(degree) if parts[f].sh_degree != degree else parts[f],
                  off, cnt) for f, off, cnt in ranges]
    cat = lambda a: np.concatenate([getattr(s, a)[o:o + c] for s, o, c in idx_parts])  # noqa: E731
    scene = GaussianScene(cat("means"), cat("quats"), cat("log_scales"), cat("opacity_logits"),
                          cat("sh"))
    return scene.validate(path)
