"""Build .exgs files the way this project's earliest writer (2026-11-23, before the
zstd-compressed header and the per-band SH widths) wrote them, for compatibility tests:
flags 0 (plain JSON header), ``quant.sh_rest.bits`` a single number (8 bits for every
band), version 1, no sections. The chunk bytes are those of the current encoder run with
8-bit SH widths, which is what the old encoder produced (same quantizer, same layout)."""

from __future__ import annotations

import json
import struct
from unittest import mock


def legacy_exgs_bytes(scene, **kw) -> bytes:
    """``scene`` (significance order) encoded as an early .exgs file (see the module doc)."""
    from exgs.io.exgs import codec
    from exgs.io.exgs.container import DIGEST_BYTES, digest
    from exgs.io.exgs import decode_header

    with mock.patch.object(codec, "SH_REST_BITS", (8, 8, 8)):
        data = codec.encode_exgs(scene, **kw)
    h = decode_header(data)
    hlen = struct.unpack_from("<4sHHI", data, 0)[3]
    chunks = data[12 + hlen + DIGEST_BYTES:]
    h.pop("file_bytes", None)
    h["writer"] = "exgs 0.1.0"
    if "sh_rest" in h["quant"]:
        h["quant"]["sh_rest"]["bits"] = 8
    hjson = json.dumps(h).encode("utf-8")
    return (struct.pack("<4sHHI", b"EXGS", 1, 0, len(hjson)) + hjson
            + bytes.fromhex(digest(hjson)) + chunks)
