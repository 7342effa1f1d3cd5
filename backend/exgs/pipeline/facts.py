"""The facts a scene carries besides its Gaussians: how much of the original scene it kept
(``kept_fraction``, which sets how far GaussPainter's gate opens), whether it was refined
after pruning (``refined``: the painter's refined gate table), its per-scene painter delta and
the compressor's stats. A ``.exgs`` file holds them (header and ``painter_delta``
section); they are read once, where the scene is opened, and travel with it from then on
(the service stores them with the scene; a scene uploaded in another form gets them with
``PUT /v1/scenes/{id}/facts``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ExgsError, UsageError


@dataclass(frozen=True)
class SceneFacts:
    """``kept_fraction``: kept / original Gaussians in (0, 1], None when unknown (a scene
    that was never compressed, or one whose file does not say). ``painter_delta``: the
    delta's bytes (validated, :mod:`exgs.painter.delta`) or None. ``delta_error``: one line
    when the file's delta section is corrupt (the scene itself is still usable; restoring
    with the delta is refused with this message). ``stats``: the compressor's figures.
    ``refined``: the Gaussians were refined after pruning (issue 10; the .exgs header says
    so, :func:`exgs.io.exgs.is_refined`); False when unknown or not (a PLY source)."""

    kept_fraction: float | None = None
    painter_delta: bytes | None = None
    delta_error: str | None = None
    stats: dict = field(default_factory=dict)
    refined: bool = False

    def info(self) -> dict:
        """JSON-able summary (the service's ``facts`` field)."""
        d = {"kept_fraction": self.kept_fraction, "refined": self.refined,
             "has_painter_delta": self.painter_delta is not None,
             "painter_delta_bytes": len(self.painter_delta) if self.painter_delta else 0}
        if self.delta_error:
            d["painter_delta_error"] = self.delta_error
        if self.stats:
            d["stats"] = self.stats
        return d


def check_kept_fraction(value) -> float | None:
    """``value`` as a kept fraction in (0, 1] (None stays None); UsageError otherwise."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"kept_fraction must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < v <= 1.0:
        raise UsageError(f"kept_fraction must be in (0, 1], got {value!r}")
    return v


def facts_of_file(path: str | os.PathLike, count: int | None = None) -> SceneFacts:
    """The facts of the scene file ``path``: for a ``.exgs``, whether it was refined, its
    kept fraction (of
    ``count`` Gaussians when only a prefix was decoded), its painter delta and its header
    stats, read once (the header and the delta section only); other formats have none.
    Raises SceneFormatError when the file itself is not readable; a corrupt delta section
    only sets ``delta_error``."""
    from ..io import detect_format

    if detect_format(path) != "exgs":
        return SceneFacts()
    from ..io.exgs import is_refined, kept_fraction, read_exgs_header

    header = read_exgs_header(path)
    delta, error = None, None
    if header.get("sections"):
        from ..painter.delta import file_delta

        try:
            delta = file_delta(path)
        except ExgsError as e:
            error = str(e)
    stats = header.get("stats") if isinstance(header.get("stats"), dict) else {}
    return SceneFacts(kept_fraction(header, count), delta, error, dict(stats),
                      is_refined(header))


def facts_of_bytes(data: bytes, stats: dict | None = None) -> SceneFacts:
    """The facts of .exgs ``data`` the pipeline just produced (``stats``: the compressor's
    figures, richer than the header's)."""
    from ..io.exgs import (DELTA_SECTION, decode_header, exgs_section_from_bytes, is_refined,
                           kept_fraction)

    header = decode_header(data)
    delta = exgs_section_from_bytes(data, DELTA_SECTION)
    return SceneFacts(kept_fraction(header), delta, None,
                      dict(stats if stats is not None else header.get("stats") or {}),
                      is_refined(header))
