"""Interactive viewport of the ExGS engine (``view_update`` / ``view_draw``, Rendered mode).

Main thread (never waits for the backend):

* ``view_update`` — gathers the visible splat objects (as F12 does: written-back PLY,
  content digest, matrix_world, kept fraction, painter delta) and reads the preferences.
* ``view_draw`` — turns the region (``RegionView3D`` view/window matrices, size, render
  border) into a :class:`~exgs_blender.viewport_view.ViewState`, hands its key to the
  :class:`~exgs_blender.viewport_sched.Scheduler` and draws the best frame it has
  (:func:`draw_frame`, the only function that touches ``gpu``).

Worker thread (the scheduler's): connects (starting the local backend if needed), makes the
backend hold each scene (``open``/upload, once per content), then ``POST /v1/viewport``
through :class:`~exgs_blender.viewport_client.ViewportClient`. A newer view cancels the
request in flight (``/v1/viewport/cancel``, from a short-lived thread); frames arrive at ¼,
½ and full resolution; a main-thread timer calls ``tag_redraw`` when one arrives.

Colour: frames are scene-linear premultiplied RGBA (F12's Combined pass values) drawn
through ``bind_display_space_shader``, so the scene's view transform applies as in F12.
"""

from __future__ import annotations

import base64
import itertools
import os
import threading

from .. import render_core, viewport_sched, viewport_view
from ..viewport_client import ViewportClient, ViewportError

_IDS = itertools.count(1)
#: Seconds between checks for a new frame while requests are outstanding.
POLL_S = 1.0 / 30.0


def draw_frame(engine, scene, frame, rect, cache: dict) -> None:
    """Draw ``frame`` (scene-linear premultiplied float32 RGBA, bottom-up) over the region
    rectangle ``rect`` = (x, y, width, height) in the engine's display space. The texture is
    made once per frame (``cache``). The only ``gpu`` code of the add-on (unavailable in
    background mode)."""
    import gpu
    from gpu_extras.presets import draw_texture_2d

    tex = cache.get(id(frame))
    if tex is None:
        buf = gpu.types.Buffer("FLOAT", frame.width * frame.height * 4, frame.rgba)
        tex = gpu.types.GPUTexture((frame.width, frame.height), format="RGBA16F", data=buf)
        cache.clear()
        cache[id(frame)] = tex
    gpu.state.blend_set("ALPHA_PREMULT")
    engine.bind_display_space_shader(scene)
    draw_texture_2d(tex, (rect[0], rect[1]), rect[2], rect[3])
    engine.unbind_display_space_shader()
    gpu.state.blend_set("NONE")


def _splat_refs(depsgraph) -> tuple:
    refs = []
    for it in render_core.gather(depsgraph):
        delta = base64.b64encode(it.painter_delta).decode("ascii") if it.painter_delta else None
        refs.append(viewport_view.SplatRef(it.name, it.digest, it.ply_path,
                                           tuple(tuple(float(v) for v in r)
                                                 for r in it.matrix_world),
                                           kept_fraction=it.kept_fraction, painter_delta_b64=delta,
                                           count=int(it.count), refined=it.refined))
    return tuple(refs)


def camera_frame_corners(scene, region, rv3d) -> list:
    """Region pixels of the active camera's frame corners (camera view)."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    cam = scene.camera
    pts = [location_3d_to_region_2d(region, rv3d, cam.matrix_world @ v)
           for v in cam.data.view_frame(scene=scene)]
    if any(p is None for p in pts):
        raise viewport_view.ViewError("the camera frame is not in view")
    return [(p.x, p.y) for p in pts]


def view_state(scene, region, rv3d, space, objects, *, restore=False):
    """The :class:`ViewState` of a 3D-view region. Camera view honours the scene's render
    border (fractions of the camera frame); other views the viewport's own render region
    (``View3D.use_render_border``, fractions of the region). Behind the splats: the world
    colour unless the film is transparent, as in F12 (:func:`.film.world_background`)."""
    from . import film

    w, h = int(region.width), int(region.height)
    crop = None
    if rv3d.view_perspective == "CAMERA" and scene.camera is not None:
        r = scene.render
        if r.use_border:
            crop = viewport_view.border_crop(
                camera_frame_corners(scene, region, rv3d),
                (r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y), w, h)
    elif space is not None and getattr(space, "use_render_border", False):
        crop = viewport_view.border_crop(
            [(0, 0), (w, h)], (space.render_border_min_x, space.render_border_max_x,
                               space.render_border_min_y, space.render_border_max_y), w, h)
    return viewport_view.ViewState.make([list(row) for row in rv3d.view_matrix],
                                        [list(row) for row in rv3d.window_matrix], w, h,
                                        objects, crop, restore,
                                        background=film.world_background(scene)[0])


class ViewportSession:
    """Per engine instance (one per 3D view in Rendered mode): objects, scheduler, client."""

    def __init__(self):
        self.session = f"{os.getpid()}-{next(_IDS)}"
        self.objects: tuple = ()
        self.error: str | None = None
        self._states: dict = {}          # view key → ViewState (the few newest)
        self._arrived = threading.Event()
        self._timer = None
        self._tex_cache: dict = {}
        self._client = None
        self._client_for = None
        self.scheduler = viewport_sched.Scheduler(self._render, cancel=self._cancel,
                                                  on_frame=self._arrived.set,
                                                  heavy=self._heavy)

    # ------------------------------------------------------------------ main thread
    def update(self, depsgraph) -> None:
        from .. import backend

        try:
            backend.prime()
            self.objects = _splat_refs(depsgraph)
            self.error = None
        except Exception as e:  # one line in the viewport header
            self.error = backend.describe(e)

    def draw(self, engine, context, depsgraph) -> None:
        scene = depsgraph.scene
        settings = getattr(scene, "exgs_render", None)
        restore = bool(settings is not None and getattr(settings, "viewport_restore", False))
        try:
            state = view_state(scene, context.region, context.region_data, context.space_data,
                               self.objects, restore=restore)
        except viewport_view.ViewError as e:
            engine.update_stats("ExGS", str(e))
            return
        if not state.objects:
            engine.update_stats("ExGS", self.error and f"error: {self.error}"
                                or "no splat objects to show")
            return
        key = state.key
        self._states[key] = state
        while len(self._states) > 8:
            self._states.pop(next(iter(self._states)))
        self.scheduler.update(key)
        got = self.scheduler.frame()
        if got is not None:
            k, scale, frame = got
            shown = self._states.get(k, state)
            draw_frame(engine, scene, frame, shown.rect, self._tex_cache)
        engine.update_stats("ExGS", self._status(state, got))
        if self.scheduler.busy():
            self._start_timer(engine)

    def _status(self, state, got) -> str:
        err = self.error or (self.scheduler.last_error and
                             _describe(self.scheduler.last_error))
        if err:
            return f"error: {err}"
        if got is None:
            return "rendering…"
        _, scale, frame = got
        busy = " (refining)" if self.scheduler.busy() else ""
        return f"{frame.width}x{frame.height} ({scale:g}×), {frame.round_trip_ms:.0f} ms{busy}"

    def _start_timer(self, engine) -> None:
        if self._timer is not None:
            return
        import bpy

        def tick():
            try:
                if self._arrived.is_set():
                    self._arrived.clear()
                    engine.tag_redraw()
                if self.scheduler.busy() or self._arrived.is_set():
                    return POLL_S
            except ReferenceError:  # the engine was freed (viewport left Rendered mode)
                self.stop()
            self._timer = None
            return None

        self._timer = tick
        bpy.app.timers.register(tick, first_interval=POLL_S)

    def stop(self) -> None:
        self.scheduler.stop()
        if self._client is not None:
            self._client.close()

    # ------------------------------------------------------------------ worker thread
    def _heavy(self, key) -> bool:
        st = self._states.get(key)
        budget = self.scheduler.policy.coarse_gaussians if hasattr(self, "scheduler") else None
        return bool(st is not None and budget and st.gaussians > budget)

    def _connection(self):
        from .. import backend

        conn = backend.connection()
        if self._client is None or self._client_for is not conn:
            self._client = ViewportClient(conn.url, conn.api.token, timeout=conn.api.timeout)
            self._client_for = conn
        return conn

    def _render(self, req):
        state = self._states.get(req.key)
        if state is None:
            raise viewport_sched.Cancelled("view gone")
        conn = self._connection()
        for attempt in (0, 1):
            sids = [conn.scene_for(o.ply_path, o.digest) for o in state.objects]
            if req.cancel.is_set():
                raise viewport_sched.Cancelled("newer view")
            try:
                frame = self._client.render(state.payload(
                    sids, scale=req.scale, session=self.session, generation=req.generation,
                    max_gaussians=self.scheduler.policy.budget(req.scale)))
                return frame, frame.nbytes
            except ViewportError as e:  # the service forgot a scene (restart): re-send once
                if attempt or "no longer holds a scene" not in str(e):
                    raise
                for o in state.objects:
                    conn.forget(o.digest)

    def _cancel(self, req) -> None:
        client = self._client
        if client is not None:
            threading.Thread(target=client.cancel, args=(self.session, req.generation),
                             daemon=True).start()


def _describe(e: BaseException) -> str:
    from .. import backend

    return backend.describe(e)


def session_of(engine) -> ViewportSession:
    s = getattr(engine, "_exgs_viewport", None)
    if s is None:
        s = ViewportSession()
        engine._exgs_viewport = s
    return s


def view_update(engine, context, depsgraph) -> None:
    session_of(engine).update(depsgraph)


def view_draw(engine, context, depsgraph) -> None:
    session_of(engine).draw(engine, context, depsgraph)


def release(engine) -> None:
    s = getattr(engine, "_exgs_viewport", None)
    if s is not None:
        s.stop()
