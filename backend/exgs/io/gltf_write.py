"""Write a GLB with ``KHR_gaussian_splatting`` (plain float accessors, no compression).

Attributes written (all float32, one bufferView each): ``POSITION`` (with min/max),
``KHR_gaussian_splatting:ROTATION`` (x, y, z, w, unit length), ``:SCALE`` (linear σ),
``:OPACITY`` (sigmoid applied), ``:SH_DEGREE_l_COEF_n`` for every SH coefficient the scene has.
The primitive is ``POINTS`` with ``{"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}``.

Frame: glTF is +Y up (Left-Up-Front). ``frame="rdf"`` (default; COLMAP/INRIA captures: x right,
y down, z forward) turns the data 180° about z into glTF's frame, as PlayCanvas
splat-transform does for its .glb output (checked: its GLB of a SOG equals the SOG's data with
positions (−x, −y, z), the same covariances and SH multiplied by their parity under
(x, y) → (−x, −y)): positions (−x, −y, z), quaternions (w, −x, −y, z), SH × parity.
``frame="luf"`` (or None) writes the data unchanged. No node transform is written, so every
reader (also those that ignore node matrices) sees the scene upright.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from ..fsutil import write_bytes_atomic
from ..scene import GaussianScene, sigmoid

EXT = "KHR_gaussian_splatting"
#: SH parity under (x, y) → (−x, −y) (180° about z), coefficients k = 1..15
SH_FLIP_XY = np.array([-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1], np.float32)
FRAMES = ("rdf", "luf", None)


def encode_glb(scene: GaussianScene, *, frame: str | None = "rdf") -> bytes:
    """Bytes of a GLB holding ``scene`` (see the module docstring)."""
    if frame not in FRAMES:
        raise ValueError("frame must be 'rdf', 'luf' or None")
    n = len(scene)
    q = scene.quats.astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    means, sh = scene.means, scene.sh
    if frame == "rdf":  # RDF → LUF: 180° about z
        means = means * np.float32([-1, -1, 1])
        q = q * [1.0, -1.0, -1.0, 1.0]
        sh = sh.copy()
        sh[:, 1:] *= SH_FLIP_XY[: sh.shape[1] - 1, None]
    columns = [("POSITION", means, "VEC3"),
               (f"{EXT}:ROTATION", q[:, [1, 2, 3, 0]], "VEC4"),
               (f"{EXT}:SCALE", np.exp(scene.log_scales.astype(np.float64)), "VEC3"),
               (f"{EXT}:OPACITY", sigmoid(scene.opacity_logits)[:, None], "SCALAR")]
    for k in range(sh.shape[1]):
        deg = int(np.floor(np.sqrt(k)))
        columns.append((f"{EXT}:SH_DEGREE_{deg}_COEF_{k - deg * deg}", sh[:, k], "VEC3"))
    blob, views, accessors, attributes = bytearray(), [], [], {}
    for name, values, typ in columns:
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        acc = {"bufferView": len(views) - 1, "componentType": 5126, "count": n, "type": typ}
        if name == "POSITION" and n:
            acc["min"] = [float(x) for x in means.min(0)]
            acc["max"] = [float(x) for x in means.max(0)]
        accessors.append(acc)
        attributes[name] = len(accessors) - 1
        blob += data + b"\0" * (-len(data) % 4)
    node = {"mesh": 0, "name": "gaussians"}
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
