"""Write a GLB with ``KHR_gaussian_splatting`` (plain float accessors, no compression).

Attributes written (all float32, one bufferView each): ``POSITION`` (with min/max),
``KHR_gaussian_splatting:ROTATION`` (x, y, z, w, unit length), ``:SCALE`` (linear σ),
``:OPACITY`` (sigmoid applied), ``:SH_DEGREE_l_COEF_n`` for every SH coefficient the scene has.
The primitive is ``POINTS`` with ``{"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}``.

Frame: the Gaussian data is written unchanged in the primitive's local frame (so reading the
file back returns the same numbers); the node carries the scene-frame → glTF change so that
glTF viewers (+Y up) show the scene upright. ``frame="rdf"`` (default, COLMAP/INRIA captures:
x right, y down, z forward) puts diag(−1, −1, 1) there (RDF → glTF's LUF, a 180° turn about
z); ``frame="luf"`` or ``None`` writes no node matrix.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from ..fsutil import write_bytes_atomic
from ..scene import GaussianScene, sigmoid

EXT = "KHR_gaussian_splatting"
_NODE = {"rdf": [-1.0, 0, 0, 0, 0, -1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0],
         "luf": None, None: None}


def encode_glb(scene: GaussianScene, *, frame: str | None = "rdf") -> bytes:
    """Bytes of a GLB holding ``scene`` (see the module docstring)."""
    if frame not in _NODE:
        raise ValueError(f"frame must be one of {sorted(k for k in _NODE if k)} or None")
    n = len(scene)
    q = scene.quats.astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    columns = [("POSITION", scene.means, "VEC3"),
               (f"{EXT}:ROTATION", q[:, [1, 2, 3, 0]], "VEC4"),
               (f"{EXT}:SCALE", np.exp(scene.log_scales.astype(np.float64)), "VEC3"),
               (f"{EXT}:OPACITY", sigmoid(scene.opacity_logits)[:, None], "SCALAR")]
    for k in range(scene.sh.shape[1]):
        deg = int(np.floor(np.sqrt(k)))
        columns.append((f"{EXT}:SH_DEGREE_{deg}_COEF_{k - deg * deg}", scene.sh[:, k], "VEC3"))
    blob, views, accessors, attributes = bytearray(), [], [], {}
    for name, values, typ in columns:
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        acc = {"bufferView": len(views) - 1, "componentType": 5126, "count": n, "type": typ}
        if name == "POSITION" and n:
            acc["min"] = [float(x) for x in scene.means.min(0)]
            acc["max"] = [float(x) for x in scene.means.max(0)]
        accessors.append(acc)
        attributes[name] = len(accessors) - 1
        blob += data + b"\0" * (-len(data) % 4)
    node = {"mesh": 0, "name": "gaussians"}
    if _NODE[frame] is not None:
        node["matrix"] = _NODE[frame]
    doc = {
        "asset": {"version": "2.0", "generator": "exgs"},
        "extensionsUsed": [EXT],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": views, "accessors": accessors,
        "meshes": [{"primitives": [{"attributes": attributes, "mode": 0, "extensions": {
            EXT: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}}}]}],
        "nodes": [node], "scenes": [{"nodes": [0]}], "scene": 0,
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total),
                     struct.pack("<II", len(js), 0x4E4F534A), js,
                     struct.pack("<II", len(blob), 0x004E4942), bytes(blob)])


def write_gltf(scene: GaussianScene, path: str | os.PathLike, **kw) -> None:
    """Write ``scene`` as a ``.glb`` with ``KHR_gaussian_splatting``, atomically."""
    scene.validate(path)
    write_bytes_atomic(path, encode_glb(scene, **kw))
