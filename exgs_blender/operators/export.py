"""Export the active splat object: .ply (written here from the mesh attributes), .spz, .sog
(PlayCanvas SOG v2 zip, for web viewers such as SuperSplat), .splat (antimatter15, SH 0)
or .glb (glTF ``KHR_gaussian_splatting``), converted by the backend, or .exgs (the
compressed object's own file)."""

from __future__ import annotations

import os
import shutil

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from .. import backend, errors, gaussians, plyio, render_core
from ..splat import SplatObject


def export_object(obj, path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    so = SplatObject(obj)
    if so.is_preview and ext != ".exgs":
        raise errors.ImportFailed(f"{so.preview_note()}: load its full resolution first "
                                  "(ExGS sidebar)")
    if ext == ".ply":
        plyio.write_ply(path, gaussians.read_struct(obj.data), comment="exported by exgs blender")
    elif ext == ".exgs":
        so = SplatObject(obj)
        src = so.source
        if so.format != "exgs" or not os.path.exists(src):
            raise errors.BackendError(f"{obj.name}: compress the object first (Compress in "
                                       "the ExGS panel) to get an .exgs file")
        tmp = path + ".part"
        shutil.copyfile(src, tmp)
        os.replace(tmp, path)
    elif ext in CONVERTED:
        ply, _d, _n = render_core.export_mesh_ply(obj.data)
        backend.run_convert(ply, path)
    else:
        raise errors.BackendError(f"{path}: choose one of " + ", ".join(f for f, _ in FORMATS))


#: (suffix, label) of every format the exporter writes
FORMATS = [(".ply", "PLY (INRIA)"), (".spz", "SPZ"), (".sog", "SOG v2 (web: PlayCanvas, "
           "SuperSplat)"), (".splat", ".splat (web, SH 0)"), (".glb", "glTF KHR_gaussian_splatting"),
           (".exgs", "ExGS")]
#: formats written by the backend's ``exgs convert`` from the mesh's PLY
CONVERTED = (".spz", ".sog", ".splat", ".glb")


class EXGS_OT_export(bpy.types.Operator, ExportHelper):
    """Export the active Gaussian splat object (.ply / .spz / .sog / .splat / .glb / .exgs)"""

    bl_idname = "exgs.export_splats"
    bl_label = "Export Gaussian Splats"
    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply;*.spz;*.sog;*.splat;*.glb;*.exgs",
                                options={"HIDDEN"})
    format: EnumProperty(name="Format", items=[(f, label, "") for f, label in FORMATS],
                         default=".ply")

    @classmethod
    def poll(cls, context):
        return gaussians.is_splat(context.active_object)

    def check(self, context):
        root = os.path.splitext(self.filepath)[0]
        new = root + self.format
        changed = new != self.filepath
        self.filepath = new
        self.filename_ext = self.format
        return changed

    def execute(self, context):
        backend.prime()
        path = os.path.splitext(self.filepath)[0] + self.format
        try:
            export_object(context.active_object, path)
        except Exception as e:
            self.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"ExGS: wrote {path}")
        return {"FINISHED"}


classes = (EXGS_OT_export,)
