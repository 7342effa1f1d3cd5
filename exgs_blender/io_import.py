"""File ▸ Import ▸ 3D Gaussian Splatting (.ply, compressed .ply, .spz, .sog, .exgs, .splat,
.ksplat, glTF/GLB ``KHR_gaussian_splatting``, SOG v1 and streamed LOD SOG folders).

Binary INRIA PLYs are memory-mapped and put into the mesh with ``foreach_set`` (no per-point
Python). Other formats are converted to an INRIA PLY by the backend (``exgs convert``) first.
"""

from __future__ import annotations

import os
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import errors, gaussians, meshfill, plyio
from .splat import SplatObject, register_handlers

AXIS_ITEMS = [
    ("AUTO", "Automatic", "glTF/GLB files are y up (glTF's frame); every other format is taken "
     "as a y-down capture (COLMAP / 3DGS)"),
    ("Y_DOWN", "Y down (COLMAP / 3DGS)", "Capture is x right, y down, z forward: rotate −90° "
     "about X so capture up (−y) becomes Blender +Z"),
    ("Y_UP", "Y up (OpenGL)", "Capture is y up, z backward: rotate +90° about X"),
    ("Z_UP", "Z up (Blender)", "No axis change"),
]


#: suffixes whose Gaussians are in glTF's frame (+Y up, right-handed)
GLTF_SUFFIXES = (".glb", ".gltf")


def resolve_axis(axis: str, path: str) -> str:
    """``AUTO`` → ``Y_UP`` for glTF files, ``Y_DOWN`` otherwise; other values unchanged."""
    if axis != "AUTO":
        return axis
    return "Y_UP" if os.path.splitext(path)[1].lower() in GLTF_SUFFIXES else "Y_DOWN"


def resolve_ply(path: str) -> tuple[str, str]:
    """(binary INRIA PLY holding the Gaussians of ``path``, format name): ``path`` itself
    for a binary INRIA PLY, else a PLY converted by the backend into the cache."""
    fmt = "ply"
    try:
        plyio.vertex_layout(path)
        return path, fmt
    except plyio.NeedsConversion as e:
        fmt = "compressed ply" if "compressed" in str(e) else "ply"
    except plyio.PlyError as e:
        if _magic(path, 3) == b"ply":
            raise errors.ImportFailed(f"{path}: {e}") from None
        fmt = os.path.splitext(path)[1].lstrip(".").lower() or "scene"
    if os.path.basename(path) == "lod-meta.json" or (
            os.path.isdir(path) and os.path.exists(os.path.join(path, "lod-meta.json"))):
        fmt = "lod sog"
    elif os.path.isdir(path) or os.path.basename(path) == "meta.json":
        fmt = "sog"
    from . import backend
    return _checked(path, backend.convert_to_ply(path)), fmt


def _checked(path: str, ply: str) -> str:
    try:
        plyio.vertex_layout(ply)
    except plyio.PlyError as e:
        raise errors.ImportFailed(f"{path}: converted file unreadable: {e}") from None
    return ply


def _magic(path: str, n: int) -> bytes:
    if os.path.isdir(path):
        return b""
    with open(path, "rb") as f:
        return f.read(n)


def load_vertices(path: str, report=None):
    """Structured vertex array (memory-mapped) for any supported file + format name."""
    ply, fmt = resolve_ply(path)
    return plyio.read_vertices(ply), fmt


def import_file(context, path: str, *, axis: str = "AUTO", preview: bool = True,
                name: str | None = None, report=None, preview_count: int = 0):
    """Import one scene file as a splat object; returns (object, seconds). A .exgs file's
    kept fraction and painter delta go onto the mesh (restore renders use them);
    ``report(level, message)`` gets a warning when its delta cannot be read.

    ``preview_count`` > 0: a .exgs file holding more Gaussians than that is imported as its
    ``preview_count`` most significant ones (a progressive preview, marked
    ``SplatObject.full_count``; :mod:`.progressive` loads the rest; renders use the file).
    The mesh is filled from the PLY attribute group by attribute group
    (:mod:`.meshfill`: memory ≈ the mesh + a bounded buffer); nothing is left behind when
    the file turns out bad."""
    t0 = time.perf_counter()
    path = os.path.abspath(bpy.path.abspath(path))
    if not os.path.exists(path):
        raise errors.ImportFailed(f"{path}: no such file")
    extra, full = None, 0
    if _magic(path, 4) == b"EXGS":  # what GaussPainter needs, like `exgs render --restore`
        from . import backend
        extra = backend.exgs_file_extras(path)
        total = int(extra.get("count") or 0)
        if preview_count and total > preview_count:
            ply, fmt, full = _checked(path, backend.convert_to_ply(path, keep=preview_count)), \
                "exgs", total
    if not full:
        ply, fmt = resolve_ply(path)
    if plyio.vertex_layout(ply)[2] == 0:
        raise errors.ImportFailed(f"{path}: the file holds no Gaussians")
    base = name or os.path.splitext(os.path.basename(path.rstrip("/\\")))[0]
    try:
        mesh = meshfill.new_mesh_from_file(base, ply, preview=preview)
    except plyio.PlyError as e:
        raise errors.ImportFailed(f"{path}: {e}") from None
    finally:
        if full:  # the prefix PLY is cheap to redo: keep no second copy of it on disk
            _unlink(ply)
    obj = gaussians.create_object(context, base, None, axis=resolve_axis(axis, path),
                                  preview=preview, mesh=mesh)
    so = SplatObject(obj)
    size = _size(path)
    so.source, so.format = path, fmt
    so.source_bytes = so.original_bytes = size
    so.full_count = full
    if extra is not None:
        if extra.get("kept_fraction"):
            so.kept_fraction = float(extra["kept_fraction"])
        so.refined = bool(extra.get("refined"))
        if extra.get("painter_delta_b64"):
            so.set_painter_delta_b64(extra["painter_delta_b64"])
        if extra.get("warning") and report is not None:
            report({"WARNING"}, f"{os.path.basename(path)}: {extra['warning']}")
    return obj, time.perf_counter() - t0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


class EXGS_OT_import(bpy.types.Operator, ImportHelper):
    """Import a 3D Gaussian Splatting scene (every attribute kept on the mesh points)"""

    bl_idname = "exgs.import_splats"
    bl_label = "Import 3D Gaussian Splatting"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filter_glob: StringProperty(default="*.ply;*.spz;*.sog;*.exgs;*.splat;*.ksplat;*.glb;*.gltf;"
                                        "meta.json;lod-meta.json", options={"HIDDEN"})
    axis: EnumProperty(name="Capture axes", items=AXIS_ITEMS, default="AUTO")
    preview: BoolProperty(name="Viewport preview", default=True,
                          description="Show coloured points (Geometry Nodes + material)")
    preview_count: IntProperty(
        name="Preview Gaussians", default=1_000_000, min=0, soft_max=10_000_000,
        description="A .exgs file holding more Gaussians is imported as its most significant "
                    "ones first (a coarser, complete-looking scene); the rest loads after. "
                    "0 = everything at once. Renders always use the whole file; background "
                    "Blender always loads everything")
    load_full: BoolProperty(
        name="Then load full resolution", default=True,
        description="After a preview import, load the whole file in the background "
                    "(the sidebar shows the progress; 'Load Full Resolution' does it later)")

    def invoke(self, context, event):
        if self.filepath and os.path.exists(self.filepath):  # drag and drop: no file browser
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        try:
            count = 0 if bpy.app.background else self.preview_count
            obj, secs = import_file(context, self.filepath, axis=self.axis, preview=self.preview,
                                    report=self.report, preview_count=count)
        except Exception as e:  # one line, naming the file once, no class name
            msg = errors.describe(e)
            name = os.path.basename(self.filepath.rstrip("/\\"))
            self.report({"ERROR"}, msg if name and name in msg else f"{self.filepath}: {msg}")
            return {"CANCELLED"}
        for o in context.selected_objects:
            o.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        so = SplatObject(obj)
        of = f" of {so.full_count:,}" if so.is_preview else ""
        msg = f"Imported {so.count:,}{of} Gaussians in {secs:.2f} s"
        if self.preview:
            from . import preview as pv
            if pv.use_attribute_colours(context):
                msg += " (Solid shading colour set to Attribute: splat colours)"
        self.report({"INFO"}, msg)
        if so.is_preview and self.load_full:
            from . import progressive
            try:
                progressive.load_full(obj)
            except Exception as e:  # the preview stays; the sidebar offers a retry
                self.report({"WARNING"}, errors.describe(e))
        return {"FINISHED"}


class EXGS_FH_import(bpy.types.FileHandler):
    """Drag and drop of splat files into the 3D Viewport."""

    bl_idname = "EXGS_FH_import"
    bl_label = "3D Gaussian Splatting"
    bl_import_operator = "exgs.import_splats"
    bl_file_extensions = ".ply;.spz;.sog;.exgs;.splat;.ksplat;.glb;.gltf"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


def menu_import(self, context):
    self.layout.operator(EXGS_OT_import.bl_idname, text="3D Gaussian Splatting (.ply/.spz/.sog/.splat/.glb/.exgs)")


classes = (EXGS_OT_import,) + ((EXGS_FH_import,) if hasattr(bpy.types, "FileHandler") else ())


def register():
    from . import progressive
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    register_handlers(True)
    progressive.register()


def unregister():
    from . import progressive
    progressive.unregister()
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    register_handlers(False)
