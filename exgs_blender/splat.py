"""One place for the ``exgs_*`` custom properties of a splat object (no other module reads or
writes them by name).

A splat object is a mesh object whose mesh carries ``exgs_layout``. The facts live on the
*mesh* (they describe its Gaussians, travel with it when the mesh is shared or swapped, and
are saved in the .blend); only the capture axis preset is on the object.

Mesh properties (``SplatObject`` attribute → custom property):

=====================  ==========================  ======================================
``layout``             ``exgs_layout``             [[PLY property, numpy dtype str]] in order
``count``              (``len(mesh.vertices)``)    also stored as ``exgs_count`` (see below)
``sh_degree``          ``exgs_sh_degree``          int
``source``             ``exgs_source``             file imported / compressed .exgs
``format``             ``exgs_format``             "ply", "spz", "sog", "exgs", ...
``source_bytes``       ``exgs_source_bytes``       size of ``source`` on disk
``original_bytes``     ``exgs_original_bytes``     size of the uncompressed original
``compressed_from``    ``exgs_compressed_from``    name of the object it was compressed from
``original_mesh``      ``exgs_original_mesh``      the replaced mesh (kept, fake user)
``kept_fraction``      ``exgs_kept_fraction``      kept / original Gaussians in (0, 1], or None
``refined``            ``exgs_refined``            the Gaussians were refined after pruning
                                                   (GaussPainter's refined gate table); bool
``painter_delta``      ``exgs_painter_delta``      per-scene painter delta (bytes; base64 stored)
``stats``              ``exgs_stats``              the compress job's other figures (dict)
``full_count``         ``exgs_full_count``         Gaussians in ``source`` while the mesh
                                                   holds only its most significant prefix
                                                   (a progressive preview); absent = complete
=====================  ==========================  ======================================

Object property: ``axis`` → ``exgs_axis`` (capture axes preset, see conventions).

``count`` is always computed from the mesh (so it is right after Edit-Mode edits);
``exgs_count`` is kept equal to it by :func:`sync_counts` (a depsgraph handler) for
drivers and other tools that read the property. Files written before the kept fraction had
one name (``exgs_stat_kept_fraction``) are read too.
"""

from __future__ import annotations

import base64
import binascii
import json

_LEGACY_KEPT = "exgs_stat_kept_fraction"
#: Mesh properties that describe the Gaussians (copied when a mesh is rebuilt).
MESH_KEYS = ("exgs_layout", "exgs_count", "exgs_sh_degree", "exgs_source", "exgs_format",
             "exgs_source_bytes", "exgs_original_bytes", "exgs_compressed_from",
             "exgs_kept_fraction", "exgs_painter_delta", "exgs_stats", "exgs_original_mesh",
             "exgs_full_count", "exgs_refined")


def is_splat(obj) -> bool:
    """A mesh object whose mesh has a Gaussian layout."""
    return (obj is not None and getattr(obj, "type", None) == "MESH"
            and obj.data is not None and "exgs_layout" in obj.data)


def _str_prop(key: str, doc: str):
    def get(self):
        v = self.mesh.get(key)
        return v if isinstance(v, str) else ""

    def set_(self, v):
        self.mesh[key] = str(v)
    return property(get, set_, doc=doc)


def _int_prop(key: str, doc: str):
    def get(self):
        try:
            return int(self.mesh.get(key, 0) or 0)
        except (TypeError, ValueError):
            return 0

    def set_(self, v):
        self.mesh[key] = int(v)
    return property(get, set_, doc=doc)


class SplatObject:
    """The ExGS view of a splat object (or of a bare splat mesh: ``SplatObject(mesh)``,
    then ``obj`` is None and object-level properties are not available)."""

    __slots__ = ("obj", "mesh")

    def __init__(self, obj_or_mesh):
        if getattr(obj_or_mesh, "type", None) == "MESH" and hasattr(obj_or_mesh, "data"):
            self.obj, self.mesh = obj_or_mesh, obj_or_mesh.data
        else:
            self.obj, self.mesh = None, obj_or_mesh

    # ------------------------------------------------------------------ Gaussians
    @property
    def layout(self) -> list:
        """[[property, dtype]] in the PLY's order (``x y z`` are the vertex positions)."""
        return json.loads(self.mesh["exgs_layout"])

    def init(self, layout: list, sh_degree: int) -> None:
        """Mark the mesh as a splat mesh (after its vertices and attributes were filled)."""
        self.mesh["exgs_layout"] = json.dumps(layout)
        self.mesh["exgs_sh_degree"] = int(sh_degree)
        self.mesh["exgs_count"] = len(self.mesh.vertices)

    @property
    def layout_json(self) -> str:
        return str(self.mesh["exgs_layout"])

    @property
    def count(self) -> int:
        """Number of Gaussians (vertices), always current."""
        return len(self.mesh.vertices)

    def sync_count(self) -> bool:
        """Store ``count`` as ``exgs_count`` if it changed; True when it was written."""
        n = len(self.mesh.vertices)
        if self.mesh.get("exgs_count") == n:
            return False
        self.mesh["exgs_count"] = n
        return True

    sh_degree = _int_prop("exgs_sh_degree", "SH degree of the stored colours")
    source = _str_prop("exgs_source", "file the Gaussians came from (absolute path)")
    format = _str_prop("exgs_format", "format of ``source``")
    source_bytes = _int_prop("exgs_source_bytes", "size of ``source`` in bytes")
    original_bytes = _int_prop("exgs_original_bytes", "size of the uncompressed original")
    compressed_from = _str_prop("exgs_compressed_from", "object this one was compressed from")
    original_mesh = _str_prop("exgs_original_mesh", "mesh replaced by this one (kept)")

    @property
    def full_count(self) -> int:
        """Gaussians in the source file while the mesh holds a preview prefix of it, else 0."""
        try:
            v = int(self.mesh.get("exgs_full_count", 0) or 0)
        except (TypeError, ValueError):
            return 0
        return v if v > 0 else 0

    @full_count.setter
    def full_count(self, v) -> None:
        if v:
            self.mesh["exgs_full_count"] = int(v)
        else:
            self.mesh.pop("exgs_full_count", None)

    @property
    def is_preview(self) -> bool:
        """The mesh holds only a prefix of ``source`` (renders use the file: render_core)."""
        return self.full_count > 0

    def preview_note(self) -> str:
        """"NAME holds a preview (N of M Gaussians)" — for refusals of preview objects."""
        name = self.obj.name if self.obj is not None else self.mesh.name
        return f"{name} holds a preview ({self.count:,} of {self.full_count:,} Gaussians)"

    # ------------------------------------------------------------------ facts
    @property
    def kept_fraction(self) -> float | None:
        """Kept fraction of the original scene's Gaussians (GaussPainter's gate), or None."""
        v = self.mesh.get("exgs_kept_fraction", self.mesh.get(_LEGACY_KEPT))
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return v if 0.0 < v <= 1.0 else None

    @kept_fraction.setter
    def kept_fraction(self, v) -> None:
        if v is None:
            self.mesh.pop("exgs_kept_fraction", None)
        else:
            self.mesh["exgs_kept_fraction"] = float(v)
        self.mesh.pop(_LEGACY_KEPT, None)

    @property
    def refined(self) -> bool:
        """The Gaussians were refined after pruning (a refined .exgs file; GaussPainter then
        uses its refined gate table). False when unknown."""
        return bool(self.mesh.get("exgs_refined", False))

    @refined.setter
    def refined(self, v) -> None:
        if v:
            self.mesh["exgs_refined"] = True
        else:
            self.mesh.pop("exgs_refined", None)

    @property
    def painter_delta(self) -> bytes | None:
        """The per-scene painter delta (bytes), or None (missing or not valid base64)."""
        b64 = self.mesh.get("exgs_painter_delta")
        if not b64 or not isinstance(b64, str):
            return None
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            return None

    def set_painter_delta_b64(self, b64: str | None) -> None:
        """Store a delta as the backend sends it (base64 text); None removes it."""
        if b64:
            base64.b64decode(b64, validate=True)  # refuse garbage early
            self.mesh["exgs_painter_delta"] = str(b64)
        else:
            self.mesh.pop("exgs_painter_delta", None)

    @property
    def stats(self) -> dict:
        """The compress job's figures (numbers and strings only)."""
        v = self.mesh.get("exgs_stats")
        return v.to_dict() if hasattr(v, "to_dict") else {}

    def set_stats(self, stats: dict) -> None:
        """Keep the compress job's scalar figures; the kept fraction goes to its own slot,
        and so does whether the file was refined (its ``refine`` report, not switched off)."""
        stats = dict(stats or {})
        if "kept_fraction" in stats:
            self.kept_fraction = stats.pop("kept_fraction")
        rep = stats.get("refine")
        self.refined = bool(stats.pop("refined", False)) or (
            isinstance(rep, dict) and rep.get("switched_off") is False)
        self.mesh["exgs_stats"] = {k: v for k, v in stats.items()
                                   if isinstance(v, (int, float, str)) and not
                                   isinstance(v, bool)}

    # ------------------------------------------------------------------ object level
    @property
    def axis(self) -> str:
        v = self.obj.get("exgs_axis") if self.obj is not None else None
        return v if isinstance(v, str) else "Y_DOWN"

    @axis.setter
    def axis(self, v: str) -> None:
        self.obj["exgs_axis"] = str(v)

    # ------------------------------------------------------------------ summaries
    def raw_bytes(self) -> int:
        """Bytes of the Gaussians as an uncompressed PLY body (count × record size)."""
        import numpy as np
        return self.count * sum(np.dtype(dt).itemsize for _, dt in self.layout)

    def summary(self) -> dict:
        """What the sidebar shows: count, SH degree, sizes, ratio, source and format."""
        src, orig = self.source_bytes, self.original_bytes
        return {"count": self.count, "sh_degree": self.sh_degree, "ply_bytes": self.raw_bytes(),
                "source_bytes": src, "original_bytes": orig,
                "ratio": (orig / src) if (orig and src) else None,
                "source": self.source, "format": self.format,
                "kept_fraction": self.kept_fraction, "refined": self.refined,
                "full_count": self.full_count}

    def copy_facts_from(self, other: "SplatObject") -> None:
        """Every ``exgs_*`` mesh property of ``other`` (e.g. when a mesh is rebuilt)."""
        for k in MESH_KEYS:
            if k in other.mesh:
                v = other.mesh[k]
                self.mesh[k] = v.to_dict() if hasattr(v, "to_dict") else v


def sync_counts(objects) -> int:
    """Refresh ``exgs_count`` of every splat mesh among ``objects`` (outside Edit Mode);
    returns how many changed."""
    n, seen = 0, set()
    for ob in objects:
        if not is_splat(ob) or ob.mode == "EDIT" or ob.data.name in seen:
            continue
        seen.add(ob.data.name)
        n += SplatObject(ob).sync_count()
    return n


def on_save(*_args) -> None:
    """``save_pre`` handler: the saved ``exgs_count`` always matches the mesh (this also
    covers background Blender, where depsgraph update handlers do not run)."""
    import bpy
    try:
        sync_counts(bpy.data.objects)
    except (AttributeError, RuntimeError, ReferenceError):
        pass


HANDLERS = (("depsgraph_update_post", "on_depsgraph_update"), ("save_pre", "on_save"))


def register_handlers(add: bool = True) -> None:
    """Add (or remove) the count handlers in ``bpy.app.handlers``."""
    import bpy
    for lst, fn in HANDLERS:
        handlers, fn = getattr(bpy.app.handlers, lst), globals()[fn]
        if add and fn not in handlers:
            handlers.append(bpy.app.handlers.persistent(fn))  # survive loading a file
        elif not add and fn in handlers:
            handlers.remove(fn)


def on_depsgraph_update(scene, depsgraph) -> None:
    """``depsgraph_update_post`` handler: keep ``exgs_count`` fresh after geometry edits."""
    objs = [u.id.original for u in depsgraph.updates
            if u.is_updated_geometry and getattr(u.id, "type", None) == "MESH"
            and hasattr(u.id, "original")]
    if objs:
        try:
            sync_counts(objs)
        except (AttributeError, RuntimeError, ReferenceError):  # read-only context, removed
            pass
