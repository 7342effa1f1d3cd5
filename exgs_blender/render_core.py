"""What the ExGS engine, the camera-path operator and the headless command share: gather the
splat objects + raw Blender camera numbers (main thread), send them to the backend (worker
thread), turn the backend frames into Blender pass buffers (numpy).

No camera math here: the backend converts the raw numbers with
``exgs.cameras.camera_from_blender``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from . import conventions, gaussians, plyio
from .errors import Cancelled, RenderError
from .paths import cache_dir
from .splat import SplatObject




def _mat(m) -> list:
    return [list(map(float, row)) for row in m]


def blender_camera(scene, cam_obj) -> dict:
    """Raw numbers of a Blender camera (keyword arguments of ``camera_from_blender``)."""
    if cam_obj is None:
        raise RenderError("the scene has no active camera")
    cam = cam_obj.data
    if getattr(cam, "type", "PERSP") != "PERSP":
        raise RenderError(f"camera {cam_obj.name!r} is {cam.type}: ExGS renders perspective "
                          "cameras only")
    r = scene.render
    return {
        "camera_matrix_world": _mat(cam_obj.matrix_world),
        "lens": float(cam.lens), "sensor_width": float(cam.sensor_width),
        "sensor_height": float(cam.sensor_height), "sensor_fit": cam.sensor_fit,
        "shift_x": float(cam.shift_x), "shift_y": float(cam.shift_y),
        "resolution_x": int(r.resolution_x), "resolution_y": int(r.resolution_y),
        "resolution_percentage": int(r.resolution_percentage),
        "pixel_aspect_x": float(r.pixel_aspect_x), "pixel_aspect_y": float(r.pixel_aspect_y),
        "clip_start": float(cam.clip_start), "clip_end": float(cam.clip_end),
        "name": cam_obj.name,
    }


SHOT_FRAMES = 16  #: frames of the shot a compression is fitted to (evenly spread)


def shot_frame_numbers(start: int, end: int, step: int = 1, count: int = SHOT_FRAMES) -> list:
    """At most ``count`` frame numbers of ``range(start, end + 1, step)``, evenly spread,
    first and last included."""
    frames = list(range(int(start), int(end) + 1, max(1, int(step))))
    if len(frames) <= count:
        return frames
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[int(i)] for i in idx]


def shot_cameras(scene, obj, count: int = SHOT_FRAMES) -> list[dict]:
    """The scene camera over the frame range as the backend's request cameras, each with
    ``obj``'s ``matrix_world`` at that frame (the compressed Gaussians are ``obj``'s mesh, in
    its own frame): the shot a compression is fitted to. Main thread; the current frame is
    restored. RenderError when the scene has no (perspective) camera."""
    blender_camera(scene, scene.camera)  # fail early: no camera, or not perspective
    current, sub = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for f in shot_frame_numbers(scene.frame_start, scene.frame_end, scene.frame_step, count):
            scene.frame_set(f)
            out.append(dict(blender_camera(scene, scene.camera),
                            object_matrix_world=_mat(obj.matrix_world)))
    finally:
        scene.frame_set(current, subframe=sub)
    return out


def output_size(scene) -> tuple[int, int]:
    r = scene.render
    return (max(1, r.resolution_x * r.resolution_percentage // 100),
            max(1, r.resolution_y * r.resolution_percentage // 100))


@dataclass
class SplatItem:
    """One splat object, ready for the backend (built on the main thread)."""

    name: str
    matrix_world: list
    ply_path: str
    digest: str
    count: int
    painter_delta: bytes | None = None  # per-scene painter delta (from a compress --adapt)
    kept_fraction: float | None = None  # of the original scene (compressed meshes): painter gate
    refined: bool = False  # refined after pruning (a refined .exgs): the painter's refined gate


_MESH_CACHE: dict = {}  # mesh name → (fingerprint, digest, path, count)


def _fingerprint(mesh) -> str:
    """Cheap change detector: all positions + every 97th value of each attribute."""
    import hashlib

    n = len(mesh.vertices)
    so = SplatObject(mesh)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{mesh.as_pointer()}|{n}|{so.layout_json}".encode())
    co = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    h.update(co.data)
    for name, _dt in so.layout:
        a = mesh.attributes.get(name)
        if a is None or name in ("x", "y", "z"):
            continue
        buf = np.empty(n, np.int32 if a.data_type == "INT" else np.float32)
        a.data.foreach_get("value", buf)
        h.update(np.ascontiguousarray(buf[::97]).data)
    return h.hexdigest()


def export_mesh_ply(mesh) -> tuple[str, str, int]:
    """Write the mesh's Gaussians to ``<cache>/<hash>.ply`` (skipped when it exists).

    Returns (path, content hash, count). The attributes saved in the .blend are the source
    of truth, so a render node needs no access to the original file. Within a session a
    cheap fingerprint avoids re-hashing unchanged meshes every frame.
    """
    fp = _fingerprint(mesh)
    hit = _MESH_CACHE.get(mesh.name)
    if hit and hit[0] == fp and os.path.exists(hit[2]):
        return hit[2], hit[1], hit[3]
    v = gaussians.read_struct(mesh)
    digest = plyio.content_hash(v)
    path = os.path.join(cache_dir(), f"{digest}.ply")
    if not os.path.exists(path):
        plyio.write_ply(path, v, comment=f"exgs blender export of {mesh.name}")
    _MESH_CACHE[mesh.name] = (fp, digest, path, len(v))
    return path, digest, len(v)


def splat_instances(depsgraph):
    """[(original object, item name, world matrix)] of every visible splat object of the
    evaluated scene, collection instances included (instance names: ``obj@k``)."""
    out = []
    seen = set()
    for inst in depsgraph.object_instances:
        ob = inst.instance_object if inst.is_instance else inst.object
        orig = ob.original
        if not gaussians.is_splat(orig) or (orig.hide_render and not inst.is_instance):
            continue
        mat = _mat(inst.matrix_world)
        key = (orig.name, tuple(map(tuple, mat)))
        if key in seen:  # one object can yield several geometry instances (mesh + points)
            continue
        seen.add(key)
        out.append((orig, orig.name if not inst.is_instance else f"{orig.name}@{len(out)}", mat))
    return out


def source_file(obj) -> tuple[str, str, int]:
    """(path, key, count) of the source file of a preview object (one holding only the
    most significant prefix of its .exgs): renders send the whole file, never the preview
    mesh. The key (path, size, mtime) names the file in the connection's scene cache; the
    service dedupes uploads by content."""
    import hashlib

    so = SplatObject(obj)
    path = so.source
    if not path or not os.path.isfile(path):
        raise RenderError(f"{so.preview_note()} and its source {path or '(none)'} is "
                          "missing: keep the file, or load full resolution before saving")
    st = os.stat(path)
    key = hashlib.blake2b(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode(),
                          digest_size=16).hexdigest()
    return path, f"file-{key}", so.full_count


def gather(depsgraph) -> list[SplatItem]:
    """A :class:`SplatItem` per visible splat object / instance (main thread only): the
    mesh written back as a PLY, or for a preview object its whole source file."""
    items = []
    for orig, name, mat in splat_instances(depsgraph):
        so = SplatObject(orig)
        path, digest, n = source_file(orig) if so.is_preview else export_mesh_ply(orig.data)
        if n:
            items.append(SplatItem(name, mat, path, digest, n, so.painter_delta,
                                   so.kept_fraction, so.refined))
    return items


@dataclass
class Frame:
    """Pass buffers in Blender conventions: scene-linear premultiplied RGB, alpha, depth
    (scene units, 1e10 empty); row 0 = top (flip with conventions.to_blender_*)."""

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


def to_frame(layers, linear: bool = False) -> Frame:
    """Backend outputs [(rgb premultiplied display sRGB — or scene-linear when ``linear`` —,
    alpha, depth)] → one Frame."""
    lin = [(rgb if linear else conventions.premult_srgb_to_linear(rgb, a), a, d)
           for rgb, a, d in layers]
    rgb, a, d = conventions.composite_layers(lin)
    return Frame(rgb, a, d)


#: Seconds a cancelled :class:`Worker` is waited for before control returns to Blender.
CANCEL_GRACE = 1.0


class Worker:
    """Run ``fn(progress, cancel_event)`` in a thread; the caller polls (UI never blocks)."""

    def __init__(self, fn):
        self.cancel = threading.Event()
        self.progress = 0.0
        self.message = ""
        self.result = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._t.start()

    def _progress(self, frac: float, msg: str = "") -> None:
        self.progress = float(frac)
        if msg:
            self.message = msg

    def _run(self, fn):
        try:
            self.result = fn(self._progress, self.cancel)
        except BaseException as e:  # reported by the caller
            self.error = e

    @property
    def done(self) -> bool:
        return not self._t.is_alive()

    def wait(self, test_break=None, on_progress=None, poll=0.05, grace=CANCEL_GRACE):
        """Block until the worker ends → its result (or its error, raised). Once cancelled
        (``test_break()`` or ``cancel``), wait at most ``grace`` seconds more, then raise
        :class:`Cancelled` and leave the thread (no bpy access) to finish on its own."""
        cancelled_at = None
        while not self.done:
            if test_break is not None and not self.cancel.is_set() and test_break():
                self.cancel.set()
            if self.cancel.is_set():
                cancelled_at = cancelled_at or time.monotonic()
                if time.monotonic() - cancelled_at > grace:
                    raise Cancelled("cancelled")
            if on_progress is not None:
                on_progress(self.progress, self.message)
            self._t.join(poll)
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class History:
    """A frame's earlier frames on the path (engine/sequence.py): ``entries`` [(camera dict,
    {item name: matrix_world})] oldest first; the last ``new_frames`` of them (counting the
    frame itself) are a second, newer stabiliser run whose result weighs ``blend``."""

    entries: list
    new_frames: int = 0
    blend: float = 0.0


def item_path(it: SplatItem, cam: dict, history) -> list[dict]:
    """The cameras of ``it``'s stabilised restore (see engine/sequence.py): ``history``
    [(camera dict, {item name: matrix_world})] oldest first, cut at the newest frame where
    the item is missing, then ``cam``; each with that frame's object matrix."""
    path = []
    for c, mats in reversed(history or []):
        if it.name not in mats:
            break
        path.append(dict(c, object_matrix_world=mats[it.name]))
    path.reverse()
    return path + [dict(cam, object_matrix_world=it.matrix_world)]


def render_cameras(items: list[SplatItem], cams: list[dict], *, restore: bool = False,
                   history=None, progress=None, cancel=None) -> list[Frame]:
    """Backend render of every item from each camera (worker thread safe: no bpy).
    ``history`` (with ``restore``, one camera; None = off): the earlier frames of the path
    as [(camera dict, {item name: matrix_world})], oldest first — each item is restored
    stabilised over its part of them (:func:`item_path`), only ``cams[0]`` is returned."""
    from . import backend

    if not items:
        raise RenderError("no ExGS splat objects to render (import a .ply first)")
    conn = backend.connection()
    frames_layers: list[list] = [[] for _ in cams]
    total = len(items)
    for i, it in enumerate(items):
        if cancel is not None and cancel.is_set():
            raise Cancelled("render cancelled")
        sid = conn.scene_for(it.ply_path, it.digest)

        def sub(frac, msg="", i=i):
            if progress:
                progress((i + frac) / total, msg or f"{it.name}: rendering")

        cam_list = [dict(c, object_matrix_world=it.matrix_world) for c in cams]
        kw = dict(painter_delta=it.painter_delta, kept_fraction=it.kept_fraction,
                  refined=it.refined)  # restore
        if restore and history is not None:
            if len(cams) != 1:
                raise RenderError("a stabilised restore renders one frame at a time")
            h = history if isinstance(history, History) else History(list(history))
            cam_list = item_path(it, cams[0], h.entries)
            kw["warmup"] = len(cam_list) - 1
            if h.new_frames and len(cam_list) > h.new_frames:  # a cross-fade between runs
                kw["restart"], kw["blend"] = len(cam_list) - h.new_frames, float(h.blend)
        try:
            outs = conn.render(sid, cam_list, restore=restore, progress=sub, cancel=cancel,
                               **kw)
        except Exception as e:  # the service forgot the scene (restart, eviction): re-send once
            if getattr(e, "status", 0) == 422 and "warmup" in str(e) and "warmup" in kw:
                raise RenderError("the ExGS backend is older than this add-on and cannot "
                                  "stabilise restored animations: update it, or turn off "
                                  "Render ▸ ExGS ▸ Stable animation") from None
            if getattr(e, "status", 0) != 404:
                raise
            conn.forget(it.digest)
            sid = conn.scene_for(it.ply_path, it.digest)
            outs = conn.render(sid, cam_list, restore=restore, progress=sub, cancel=cancel,
                               **kw)
        for k, o in enumerate(outs):
            frames_layers[k].append(o)
    if progress:
        progress(1.0, "done")
    return [to_frame(ls, linear=restore and history is not None) for ls in frames_layers]
