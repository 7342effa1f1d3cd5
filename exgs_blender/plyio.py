"""INRIA 3DGS PLY read/write with numpy only (no bpy; memory-mapped, no per-point loops).

Reading returns the vertex element as a structured array whose fields are the PLY's own
properties (``x y z [nx ny nz] f_dc_* f_rest_* opacity scale_* rot_*`` + anything else), in
file order, pre-activation (see ``exgs.scene``). Files with other elements (PlayCanvas
compressed PLY: ``chunk``) or ASCII bodies are not handled here: the add-on converts them with
the backend (``exgs convert``).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
          "u4": "uint", "f4": "float", "f8": "double"}
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


class PlyError(Exception):
    """Not a plain binary INRIA PLY (message is one line)."""


class NeedsConversion(PlyError):
    """A PLY this module does not parse (compressed / ASCII): use the backend converter."""


def read_header(path: str) -> tuple[int, str, list, int]:
    """(header bytes, format, [(element, count, [(prop, dtype-str)])], vertex count)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if not head.startswith(b"ply"):
        raise PlyError("not a PLY file (missing 'ply' magic)")
    end = head.find(b"end_header")
    if end < 0:
        raise PlyError("PLY header has no end_header (or is larger than 64 KiB)")
    nl = head.find(b"\n", end)
    hlen = nl + 1
    fmt = None
    elements: list = []
    for raw in head[:end].decode("ascii", "replace").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property":
            if not elements:
                raise PlyError("property before any element")
            if tok[1] == "list":
                elements[-1][2].append((tok[-1], None))
            else:
                if tok[1] not in _TYPES:
                    raise PlyError(f"unknown property type {tok[1]!r}")
                elements[-1][2].append((tok[2], _TYPES[tok[1]]))
    if fmt is None:
        raise PlyError("PLY header has no format line")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise PlyError("no 'vertex' element")
    nvert = elements[names.index("vertex")][1]
    return hlen, fmt, elements, nvert


def vertex_layout(path: str) -> tuple[int, np.dtype, int]:
    """(byte offset of the vertex data, structured record dtype, count) of a binary INRIA
    PLY, checked against the file size (nothing is read beyond the header)."""
    path = os.fspath(path)
    hlen, fmt, elements, n = read_header(path)
    if any(e[0] == "chunk" for e in elements):
        raise NeedsConversion("compressed PLY (PlayCanvas chunks)")
    if fmt == "ascii":
        raise NeedsConversion("ASCII PLY")
    endian = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    if endian is None:
        raise PlyError(f"unknown PLY format {fmt!r}")
    offset = hlen
    for name, count, props in elements:
        if any(t is None for _, t in props):
            raise NeedsConversion(f"list property in element {name!r}")
        dtype = np.dtype([(p, endian + t) for p, t in props])
        if name == "vertex":
            break
        offset += count * dtype.itemsize
    names = [p for p, _ in props]
    missing = [r for r in REQUIRED if r not in names]
    if missing:
        raise PlyError(f"not a 3DGS PLY: missing properties {', '.join(missing)}")
    need = offset + n * dtype.itemsize
    size = os.path.getsize(path)
    if size < need:
        raise PlyError(f"truncated: {size} bytes, header says at least {need}")
    return offset, dtype, n


def read_vertices(path: str) -> np.ndarray:
    """Memory-mapped structured array [N] of the vertex element of a binary INRIA PLY."""
    offset, dtype, n = vertex_layout(path)
    if n == 0:
        return np.zeros(0, dtype)
    return np.memmap(os.fspath(path), dtype=dtype, mode="r", offset=offset, shape=(n,))


#: bytes read per block by :func:`scan_blocks` (the reader's only buffer)
BLOCK_BYTES = 8 << 20


def scan_blocks(path: str, fn, block_bytes: int = BLOCK_BYTES) -> int:
    """Call ``fn(start, records)`` for consecutive blocks of the vertex records (structured
    array views of one reused buffer of ``block_bytes``: copy what you keep). Plain reads,
    no memory map, so the file's pages never count in this process's memory. → N."""
    offset, dtype, n = vertex_layout(path)
    rows = max(1, block_bytes // dtype.itemsize)
    buf = np.empty(min(rows, max(n, 1)), dtype)
    raw = memoryview(buf.view(np.uint8).reshape(-1))
    with open(os.fspath(path), "rb", buffering=0) as f:
        f.seek(offset)
        done = 0
        while done < n:
            k = min(len(buf), n - done)
            want, got = k * dtype.itemsize, 0
            while got < want:
                r = f.readinto(raw[got:want])
                if not r:
                    raise PlyError(f"truncated: the vertex data ends after {done} records")
                got += r
            fn(done, buf[:k])
            done += k
    return n


def sh_degree_of(names) -> int:
    """SH degree from the number of ``f_rest_*`` properties (0, 9, 24, 45 → 0..3)."""
    rest = sum(1 for n in names if n.startswith("f_rest_"))
    return {0: 0, 9: 1, 24: 2, 45: 3}.get(rest, 0)


def header_bytes(dtype: np.dtype, n: int, comment: str = "") -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    if comment:
        lines.append(f"comment {comment}")
    lines.append(f"element vertex {n}")
    for name in dtype.names:
        lines.append(f"property {_NAMES[dtype[name].str[1:]]} {name}")
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def to_le(arr: np.ndarray) -> np.ndarray:
    """Structured array → little-endian packed copy (no-op when already so)."""
    dt = np.dtype([(n, "<" + arr.dtype[n].str[1:]) for n in arr.dtype.names])
    return arr if arr.dtype == dt else arr.astype(dt)


def content_hash(arr: np.ndarray) -> str:
    """blake2b-128 of the vertex bytes and the field layout (cache key)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(arr.dtype.descr).encode())
    h.update(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def write_ply(path: str, arr: np.ndarray, comment: str = "") -> None:
    """Write a structured vertex array as binary little-endian PLY, atomically."""
    arr = to_le(np.ascontiguousarray(arr))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(header_bytes(arr.dtype, len(arr), comment))
            arr.tofile(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
