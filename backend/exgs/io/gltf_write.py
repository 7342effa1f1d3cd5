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
SPZ_EXT = "KHR_gaussian_splatting_compression_spz_2"
#: SH parity under (x, y) → (−x, −y) (180° about z), coefficients k = 1..15
SH_FLIP_XY = np.array([-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1], np.float32)
FRAMES = ("rdf", "luf", None)


def encode_glb(scene: GaussianScene, *, frame: str | None = "rdf", spz: bool = False) -> bytes:
    """Bytes of a GLB holding ``scene`` (see the module docstring). ``spz=True`` stores the
    Gaussians as one SPZ v3 stream (``KHR_gaussian_splatting_compression_spz_2``, ≈ 10× smaller;
    the attributes' accessors then have no bufferView, as that extension specifies)."""
    if frame not in FRAMES:
        raise ValueError("frame must be 'rdf', 'luf' or None")
    if spz:
        return _encode_spz_glb(scene, frame)
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
    return _glb(doc, bytes(blob))


def _encode_spz_glb(scene: GaussianScene, frame) -> bytes:
    """GLB whose primitive carries an SPZ payload. The extension packs the glTF-frame (LUF)
    data into SPZ's RUB: from an RDF scene that is SPZ's own RDF → RUB conversion
    (y, z negated); from LUF data, x and z negated (``encode_spz(raw=True)`` of the flipped
    scene)."""
    from .spz import encode_spz

    if frame == "rdf":
        payload = encode_spz(scene)
    else:
        luf = scene.copy()
        luf.means[:, [0, 2]] *= -1
        luf.quats[:, [1, 3]] *= -1
        if luf.sh.shape[1] > 1:
            from .gltf import SH_FLIP_XZ

            luf.sh[:, 1:] *= SH_FLIP_XZ[: luf.sh.shape[1] - 1, None]
        payload = encode_spz(luf, raw=True)
    n, k = len(scene), scene.sh.shape[1]
    names = ["POSITION", f"{EXT}:ROTATION", f"{EXT}:SCALE", f"{EXT}:OPACITY"]
    types = ["VEC3", "VEC4", "VEC3", "SCALAR"]
    for c in range(k):
        deg = int(np.floor(np.sqrt(c)))
        names.append(f"{EXT}:SH_DEGREE_{deg}_COEF_{c - deg * deg}")
        types.append("VEC3")
    doc = {
        "asset": {"version": "2.0", "generator": "exgs"},
        "extensionsUsed": [EXT, SPZ_EXT], "extensionsRequired": [EXT, SPZ_EXT],
        "buffers": [{"byteLength": len(payload)}],
        "bufferViews": [{"buffer": 0, "byteLength": len(payload)}],
        "accessors": [{"componentType": 5126, "count": n, "type": t} for t in types],
        "meshes": [{"primitives": [{"attributes": {nm: i for i, nm in enumerate(names)},
                                    "mode": 0, "extensions": {EXT: {
                                        "kernel": "ellipse", "colorSpace": "srgb_rec709_display",
                                        "extensions": {SPZ_EXT: {"bufferView": 0}}}}}]}],
        "nodes": [{"mesh": 0, "name": "gaussians"}], "scenes": [{"nodes": [0]}], "scene": 0,
    }
    return _glb(doc, payload)


def _glb(doc: dict, blob: bytes) -> bytes:
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob = blob + b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total),
                     struct.pack("<II", len(js), 0x4E4F534A), js,
                     struct.pack("<II", len(blob), 0x004E4942), blob])


def write_gltf(scene: GaussianScene, path: str | os.PathLike, **kw) -> None:
    """Write ``scene`` as a ``.glb`` with ``KHR_gaussian_splatting``, atomically."""
    scene.validate(path)
    write_bytes_atomic(path, encode_glb(scene, **kw))
