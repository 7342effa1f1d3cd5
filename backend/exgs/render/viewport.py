"""Interactive (viewport) rendering: resident prepared scenes, kernel warm-up, and frames of
several objects in Blender's conventions.

* :class:`PreparedCache` keeps each resident scene's projection inputs (activations,
  contiguous float32 arrays: :class:`exgs.render.cpu.PreparedScene`) and its bounding
  sphere, computed once per scene instead of once per request (≈ 60 ms for 500k Gaussians).
  Entries live as long as the scene object (weak references) within a byte budget.
* :func:`warm_up` compiles (or loads from numba's cache) every kernel of a frame by
  rendering a tiny scene, so the first real frame does not stall; the service runs it in a
  background thread at start.
* :func:`render_objects` renders every object of a view with its own camera (object
  transform folded into ``world_to_camera``), converts each layer to scene-linear
  premultiplied colour and depth-composites the layers per pixel front to back — the same
  as the add-on's F12 path (``exgs_blender.render_core.to_frame``), so the viewport shows
  what F12 gives.

Forward images are bit-identical to :func:`exgs.render.render` (same kernels, same inputs).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from ..errors import ExgsError


class Cancelled(ExgsError):
    """A viewport render was superseded or cancelled."""


@dataclass
class PreparedEntry:
    prep: object           # PreparedScene (cpu) or PreparedTorchScene (gsplat)
    center: np.ndarray     # [3] bounding-sphere centre of the means (scene frame)
    radius: float          # bounding-sphere radius (scene units)
    nbytes: int
    lods: dict = field(default_factory=dict)  # budget → prepared subset (see lod_prep)


def importance(scene) -> np.ndarray:
    """[N] how much of the image a Gaussian can cover: opacity × (σ₁σ₂σ₃)^(2/3) (an area
    proxy). Coarse viewport steps keep the most important Gaussians (:func:`lod_prep`)."""
    area = np.exp(scene.log_scales.astype(np.float64).sum(1) * (2.0 / 3.0))
    return scene.opacities.astype(np.float64) * area


def lod_prep(entry: PreparedEntry, scene, budget: int | None, backend: str = "cpu"):
    """The prepared scene, or — when ``budget`` < N — a prepared subset of its ``budget``
    most important Gaussians (computed once per budget, the two newest kept). A preview
    for the coarse step of a moving view: the cost of a frame grows with the Gaussian count,
    hardly with the pixel count (each Gaussian covers ≥ ~9 px after the 0.3 px² blur)."""
    if budget is None or budget >= len(scene):
        return entry.prep
    p = entry.lods.get(budget)
    if p is None:
        from . import prepare

        idx = np.sort(np.argpartition(-importance(scene), budget - 1)[:budget])
        p = prepare(scene.subset(idx), backend)
        entry.lods[budget] = p
        while len(entry.lods) > 2:
            entry.lods.pop(next(iter(entry.lods)))
    return p


def _budgets(counts: list[int], total: int | None) -> list:
    """Split a Gaussian budget over objects in proportion to their sizes (None = all)."""
    n = sum(counts)
    if total is None or n <= total:
        return [None] * len(counts)
    return [max(1, int(round(total * c / n))) for c in counts]


def _bounds(scene) -> tuple[np.ndarray, float]:
    m = np.asarray(scene.means, np.float64)
    if not len(m):
        return np.zeros(3), 0.0
    c = (m.min(0) + m.max(0)) / 2.0
    return c, float(np.sqrt(((m - c) ** 2).sum(1).max()))


class PreparedCache:
    """Prepared scenes keyed by the scene object (weakly), least recently used evicted
    once the prepared arrays exceed ``budget_bytes``. Thread-safe."""

    def __init__(self, budget_bytes: int = 4 << 30):
        self.budget = int(budget_bytes)
        self._lock = threading.Lock()
        self._items: dict[int, PreparedEntry] = {}
        self._order: list[int] = []
        self.hits = self.misses = 0

    def get(self, scene, backend: str = "cpu") -> PreparedEntry:
        key = (id(scene), backend)
        with self._lock:
            e = self._items.get(key)
            if e is not None:
                self.hits += 1
                self._order.remove(key)
                self._order.append(key)
                return e
        from . import prepare

        prep = prepare(scene, backend)
        c, r = _bounds(scene)
        nb = sum(a.nbytes for a in vars(prep).values() if isinstance(a, np.ndarray))
        e = PreparedEntry(prep, c, r, nb)
        with self._lock:
            self.misses += 1
            if key not in self._items:
                self._items[key] = e
                self._order.append(key)
                weakref.finalize(scene, self._drop, key)
            while sum(x.nbytes for x in self._items.values()) > self.budget and \
                    len(self._order) > 1:
                self._items.pop(self._order.pop(0), None)
        return e

    def _drop(self, key) -> None:
        with self._lock:
            if self._items.pop(key, None) is not None:
                self._order.remove(key)

    def __len__(self) -> int:
        return len(self._items)


#: The process-wide cache the service uses.
PREPARED = PreparedCache()

_WARM = {"done": False, "seconds": None, "error": None}


def warm_up() -> dict:
    """Compile / load every kernel a frame uses (projection, SH, sort, binning, packing,
    compositing, contributions) by rendering a tiny scene. Returns {"done", "seconds",
    "error"}; safe to call from several threads (numba serialises compilation)."""
    if _WARM["done"]:
        return dict(_WARM)
    t0 = time.perf_counter()
    try:
        from ..cameras import look_at
        from ..scene import GaussianScene
        from .cpu import PreparedScene, render_prepared

        rng = np.random.default_rng(0)
        n = 64
        scene = GaussianScene(rng.normal(0, 0.3, (n, 3)).astype(np.float32),
                              rng.normal(size=(n, 4)).astype(np.float32),
                              np.full((n, 3), -3.0, np.float32), np.zeros(n, np.float32),
                              rng.normal(0, 0.2, (n, 16, 3)).astype(np.float32))
        cam = look_at([0, 0, -3], [0, 0, 0], [0, -1, 0], 48, 32)
        prep = PreparedScene(scene)
        for contrib in (False, True):
            r = render_prepared(prep, cam, sh_degree=3, background=(0.0, 0.0, 0.0),
                                return_contrib=contrib)
        linear_premultiplied(r[0], r[1])
        _WARM.update(done=True, error=None)
    except Exception as e:  # reported by /v1/health; rendering then compiles on demand
        _WARM["error"] = f"{type(e).__name__}: {e}"
    _WARM["seconds"] = round(time.perf_counter() - t0, 3)
    return dict(_WARM)


def warm_up_in_background() -> threading.Thread:
    """Start :func:`warm_up` in a daemon thread (server start)."""
    t = threading.Thread(target=warm_up, name="exgs-warm-up", daemon=True)
    t.start()
    return t


def warm_state() -> dict:
    return dict(_WARM)


# --------------------------------------------------------------------------- colour
@nb.njit(parallel=True, cache=True)
def _linear_premultiplied(rgb, alpha, out):
    h, w = alpha.shape
    for i in nb.prange(h):
        for j in range(w):
            a = float(alpha[i, j])
            for c in range(3):
                v = 0.0
                if a > 1e-6:
                    v = min(max(float(rgb[i, j, c]) / a, 0.0), 1.0)
                    v = v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
                out[i, j, c] = v * a


def linear_premultiplied(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Renderer output (display sRGB composited over black = premultiplied, [H,W,3]; alpha
    [H,W]) → scene-linear premultiplied [H,W,3] float32: un-premultiply, decode sRGB
    (IEC 61966-2-1), re-premultiply — what Blender render passes hold (the add-on's F12
    path does the same in numpy: ``conventions.premult_srgb_to_linear``)."""
    a = np.ascontiguousarray(alpha, np.float32)
    out = np.empty(a.shape + (3,), np.float32)
    _linear_premultiplied(np.ascontiguousarray(rgb, np.float32), a, out)
    return out


def composite(layers):
    """Per-pixel front-to-back "over" of premultiplied layers [(rgb [H,W,3], alpha [H,W],
    depth [H,W] with +inf where empty)] → (rgb, alpha, depth = front-most hit, +inf where
    none). Ties keep the layers' order."""
    if len(layers) == 1:
        return layers[0]
    dep = np.stack([np.where(np.isfinite(l[2]), l[2], np.inf) for l in layers])
    order = np.argsort(dep, axis=0, kind="stable")
    rgb = np.take_along_axis(np.stack([l[0] for l in layers]), order[..., None], 0)
    alp = np.take_along_axis(np.stack([l[1] for l in layers]), order, 0)
    trans = np.cumprod(np.concatenate([np.ones_like(alp[:1]), 1.0 - alp[:-1]]), 0)
    return ((trans[..., None] * rgb).sum(0).astype(np.float32),
            (trans * alp).sum(0).astype(np.float32), dep.min(0).astype(np.float32))


# --------------------------------------------------------------------------- frames
@dataclass
class ViewFrame:
    """A viewport frame: ``rgb`` scene-linear premultiplied [H,W,3], ``alpha`` [H,W],
    ``depth`` [H,W] camera z in Blender world units (+inf where empty); row 0 = top.
    ``timings`` in ms."""

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    ortho: bool
    timings: dict


def focus_sphere(entries_and_matrices) -> tuple[np.ndarray, float]:
    """World bounding sphere (centre, radius) of objects [(PreparedEntry, matrix_world)]."""
    cs, rs = [], []
    for e, m in entries_and_matrices:
        m = np.asarray(m, np.float64).reshape(4, 4)
        cs.append(m[:3, :3] @ e.center + m[:3, 3])
        rs.append(e.radius * float(np.linalg.norm(m[:3, :3], 2)))
    if not cs:
        return np.zeros(3), 1.0
    cs = np.array(cs)
    lo = (cs - np.array(rs)[:, None]).min(0)
    hi = (cs + np.array(rs)[:, None]).max(0)
    c = (lo + hi) / 2.0
    return c, max(float(max(np.linalg.norm(cs - c, axis=1) + rs)), 1e-6)


_BUFFERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # prep → {(w, h): Projected}
_BUFFERS_LOCK = threading.Lock()


def _project_into(prep, cam, deg: int):
    """:func:`exgs.render.project.project` into per-(scene, size) buffers kept between
    frames: a fresh [N]-sized projection (≈ 36 MB for 500k Gaussians, zeroed) costs 20–45 ms
    of CPU per frame in page faults and zeroing. Entries of culled Gaussians keep stale
    values, which nothing reads (consumers use the visible ones: radii > 0)."""
    from .project import TILE, EPS2D, Projected, project_kernel

    sizes = _BUFFERS.setdefault(prep, {})
    key = (cam.width, cam.height)
    out = sizes.get(key)
    if out is None:
        out = sizes[key] = Projected(prep.n, cam.width, cam.height, TILE, prep.opacities)
        while len(sizes) > 3:
            sizes.pop(next(iter(sizes)))
    vm = np.ascontiguousarray(cam.world_to_camera, np.float64)
    campos = np.ascontiguousarray(np.linalg.inv(vm)[:3, 3], np.float64)
    if prep.n:
        project_kernel(prep.means, prep.quats, prep.scales, prep.opacities, prep.sh, int(deg),
                       vm, campos, float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy),
                       int(cam.width), int(cam.height), float(cam.near), float(cam.far),
                       float(EPS2D), int(TILE), out.xy, out.conic, out.depth, out.color,
                       out.radii, out.rect, out.cov2d)
    return out


def _render_one(prep, backend: str, cam, deg: int, check):
    """(rgb, alpha, depth) over black, bit-identical to :func:`exgs.render.render`; on the
    CPU ``check()`` also runs between projection and compositing (the two halves of a
    frame)."""
    if backend != "cpu":
        from . import _render_prepared

        r = _render_prepared(prep, backend, cam, deg, (0.0, 0.0, 0.0), False)
        return r.rgb, r.alpha, r.depth
    from .cpu import rasterize

    with _BUFFERS_LOCK:  # the buffers are in use until rasterize returns
        proj = _project_into(prep, cam, deg)
        check()
        rgb, alpha, depth, _, _ = rasterize(proj)
    return rgb, alpha, depth


def tune_allocator() -> bool:
    """Keep freed large blocks in the heap (glibc ``mallopt``: mmap threshold 1 GiB, trim
    threshold 2 GiB) so that per-frame work arrays are reused instead of being returned to
    the OS and page-faulted in again (≈ 13,000 faults, 25–30 ms of system time per 500k
    frame measured here). For long-running servers; a no-op (False) where there is no
    glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-1, 1 << 31))
    except (OSError, AttributeError):
        return False


def render_objects(objects, view_matrix, window_matrix, width: int, height: int, *,
                   scale: float = 1.0, crop=None, sh_degree=None, backend: str = "cpu",
                   check=None, post=None, max_gaussians: int | None = None, background=None,
                   cache: PreparedCache | None = None) -> ViewFrame:
    """Render ``objects`` [(GaussianScene, object_matrix_world 4×4)] as the viewport region
    (``width`` × ``height`` px, ``crop`` in region pixels, y from the bottom) shows them,
    at ``scale`` × the crop's size. ``check()`` is called between stages and may raise
    :class:`Cancelled`. ``background`` (scene-linear RGB) makes an opaque frame with that
    colour behind the splats (Blender's film when not transparent); None = transparent.
    ``max_gaussians`` (coarse steps) renders only that many of the
    most important Gaussians, split over the objects (:func:`lod_prep`); None = all.
    ``post(i, rgb, alpha) -> rgb | (rgb, alpha)`` may replace object i's display-sRGB
    layer before it is linearised (GaussPainter restore). See :mod:`exgs.viewport_camera`
    for the camera conventions."""
    from ..viewport_camera import camera_from_view

    cache = cache or PREPARED
    check = check or (lambda: None)
    t0 = time.perf_counter()
    entries = [(cache.get(s, backend), m) for s, m in objects]
    center, radius = focus_sphere(entries)
    t1 = time.perf_counter()
    layers, ortho, t_render = [], False, 0.0
    budgets = _budgets([len(s) for s, _ in objects], max_gaussians)
    for i, ((entry, m), (scene, _)) in enumerate(zip(entries, objects)):
        check()
        vc = camera_from_view(view_matrix, window_matrix, width, height,
                              object_matrix_world=m, crop=crop, focus_center=center,
                              focus_radius=radius)
        cam = vc.camera
        w = max(1, int(round(cam.width * scale)))
        h = max(1, int(round(cam.height * scale)))
        if (w, h) != (cam.width, cam.height):
            cam = cam.resized(w, h)
        deg = scene.sh_degree if sh_degree is None else min(int(sh_degree), scene.sh_degree)
        tr = time.perf_counter()
        prep = lod_prep(entry, scene, budgets[i], backend)
        rgb, alpha, depth = _render_one(prep, backend, cam, deg, check)
        t_render += time.perf_counter() - tr
        if vc.depth_offset:
            depth = depth - np.float32(vc.depth_offset)
        if post is not None:
            out = post(i, rgb, alpha)
            if isinstance(out, tuple):  # (rgb, alpha): a restorer's painted holes covered
                rgb, alpha = (np.asarray(v, np.float32) for v in out)
            else:
                rgb = np.asarray(out, np.float32)
        layers.append((linear_premultiplied(rgb, alpha), alpha, depth))
        ortho = vc.ortho
    check()
    t2 = time.perf_counter()
    if not layers:  # nothing to show: a transparent frame of the requested size
        cam = camera_from_view(view_matrix, window_matrix, width, height, crop=crop).camera
        w, h = max(1, int(round(cam.width * scale))), max(1, int(round(cam.height * scale)))
        layers = [(np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32),
                   np.full((h, w), np.inf, np.float32))]
    rgb, alpha, depth = composite(layers)
    if background is not None:  # an opaque film: the colour behind the splats
        bg = np.asarray(background, np.float32).reshape(1, 1, 3)
        rgb = (rgb + (1.0 - alpha)[..., None] * bg).astype(np.float32)
        alpha = np.ones_like(alpha)
    t3 = time.perf_counter()
    return ViewFrame(rgb, alpha, depth, ortho,
                     {"prepare_ms": 1e3 * (t1 - t0), "render_ms": 1e3 * t_render,
                      "colour_ms": 1e3 * (t2 - t1 - t_render), "composite_ms": 1e3 * (t3 - t2)})


__all__ = ["Cancelled", "PreparedCache", "PREPARED", "importance", "lod_prep", "tune_allocator", "warm_up", "warm_up_in_background",
           "warm_state", "linear_premultiplied", "composite", "ViewFrame", "render_objects",
           "focus_sphere"]
