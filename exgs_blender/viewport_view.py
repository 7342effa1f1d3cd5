"""What the viewport engine sends and keys on, from plain numbers (no bpy: tested headless).

* :func:`border_crop` — the render border (camera view: fractions of the camera frame whose
  corners Blender projects into the region; free view: fractions of the region) as a pixel
  rectangle ``(x0, y0, x1, y1)``, y from the bottom (region coordinates), x1/y1 exclusive.
* :class:`ViewState` — one viewport state: region matrices and size, crop, the splat
  objects (content digest + matrix_world) and the settings that change the image.
  ``key`` is hashable (what the scheduler and the frame cache key on; matrices rounded to
  1e-6 so float noise does not defeat the cache); :meth:`ViewState.payload` is the body of
  ``POST /v1/viewport`` once the backend's scene ids are known.

No camera math here: the backend converts the matrices (``exgs.viewport_camera``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class ViewError(Exception):
    """A viewport state that cannot be rendered (one line for the user)."""


def _flat4(m) -> tuple:
    rows = [tuple(float(v) for v in row) for row in m]
    if len(rows) != 4 or any(len(r) != 4 for r in rows):
        raise ViewError("expected a 4x4 matrix")
    return tuple(rows)


def _rounded(m: tuple) -> tuple:
    return tuple(tuple(round(v, 6) for v in row) for row in m)


def border_crop(corners, border, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel crop of ``border`` = (min_x, max_x, min_y, max_y) fractions of the frame whose
    corners are ``corners`` [(x, y), ...] in region pixels, clamped to the region
    (``width`` × ``height``). ViewError when nothing of it is inside the region."""
    xs = [float(c[0]) for c in corners]
    ys = [float(c[1]) for c in corners]
    fx0, fx1, fy0, fy1 = min(xs), max(xs), min(ys), max(ys)
    bx0, bx1, by0, by1 = (float(b) for b in border)
    x0 = max(0, math.floor(fx0 + bx0 * (fx1 - fx0)))
    x1 = min(int(width), math.ceil(fx0 + bx1 * (fx1 - fx0)))
    y0 = max(0, math.floor(fy0 + by0 * (fy1 - fy0)))
    y1 = min(int(height), math.ceil(fy0 + by1 * (fy1 - fy0)))
    if x1 <= x0 or y1 <= y0:
        raise ViewError("the render border is outside the view")
    return int(x0), int(y0), int(x1), int(y1)


@dataclass(frozen=True)
class SplatRef:
    """A splat object as the viewport sees it: content ``digest`` (of its written-back PLY),
    ``ply_path``, world ``matrix`` (4×4 rows), and the restore inputs (kept fraction,
    refined, painter delta as base64) that F12 would send."""

    name: str
    digest: str
    ply_path: str
    matrix: tuple
    kept_fraction: float | None = None
    count: int = 0
    painter_delta_b64: str | None = field(default=None, compare=False)
    refined: bool = False  # refined after pruning: the painter's refined gate table


@dataclass(frozen=True)
class ViewState:
    """One 3D-view state. ``view_matrix``/``window_matrix`` are ``RegionView3D``'s (rows),
    ``width``/``height`` the region's pixels, ``crop`` the border rectangle or None."""

    view_matrix: tuple
    window_matrix: tuple
    width: int
    height: int
    objects: tuple = ()
    crop: tuple | None = None
    restore: bool = False
    sh_degree: int | None = None
    background: tuple | None = None  # scene-linear RGB behind the splats (opaque film)

    @classmethod
    def make(cls, view_matrix, window_matrix, width, height, objects=(), crop=None,
             restore=False, sh_degree=None, background=None) -> "ViewState":
        if int(width) < 1 or int(height) < 1:
            raise ViewError(f"the viewport is {width}x{height} pixels")
        return cls(_flat4(view_matrix), _flat4(window_matrix), int(width), int(height),
                   tuple(objects), None if crop is None else tuple(int(v) for v in crop),
                   bool(restore), sh_degree,
                   None if background is None else tuple(float(c) for c in background))

    @property
    def key(self) -> tuple:
        return (_rounded(self.view_matrix), _rounded(self.window_matrix), self.width,
                self.height, self.crop, self.restore, self.sh_degree,
                None if self.background is None else tuple(round(c, 6) for c in self.background),
                tuple((o.digest, _rounded(o.matrix), o.kept_fraction, o.refined)
                      for o in self.objects))

    @property
    def gaussians(self) -> int:
        return sum(o.count for o in self.objects)

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) in region pixels where the frame is drawn (y from the
        bottom): the crop, or the whole region."""
        if self.crop is None:
            return 0, 0, self.width, self.height
        x0, y0, x1, y1 = self.crop
        return x0, y0, x1 - x0, y1 - y0

    def payload(self, scene_ids: list, *, scale: float, session: str, generation: int,
                depth: bool = False, max_gaussians: int | None = None) -> dict:
        """JSON body of ``POST /v1/viewport`` (``scene_ids`` in ``objects`` order). Restore
        (GaussPainter, slow) applies to the full-resolution step only."""
        restore = self.restore and scale >= 1.0
        objs = []
        for o, sid in zip(self.objects, scene_ids):
            d = {"scene_id": sid, "matrix_world": [list(r) for r in o.matrix]}
            if restore and o.kept_fraction is not None:
                d["kept_fraction"] = float(o.kept_fraction)
            if restore and o.refined:
                d["refined"] = True
            if restore and o.painter_delta_b64:
                d["painter_delta"] = o.painter_delta_b64
            objs.append(d)
        body = {"objects": objs, "view_matrix": [list(r) for r in self.view_matrix],
                "window_matrix": [list(r) for r in self.window_matrix],
                "width": self.width, "height": self.height, "scale": float(scale),
                "restore": restore, "depth": bool(depth), "session": session,
                "generation": int(generation) & 0xFFFFFFFF}
        if self.crop is not None:
            body["crop"] = list(self.crop)
        if self.sh_degree is not None:
            body["sh_degree"] = int(self.sh_degree)
        if max_gaussians is not None:
            body["max_gaussians"] = int(max_gaussians)
        if self.background is not None:
            body["background"] = list(self.background)
        return body


__all__ = ["ViewError", "border_crop", "SplatRef", "ViewState"]
