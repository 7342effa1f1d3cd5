"""The engine's viewport requests to the backend (``POST /v1/viewport``): standard library +
numpy, no bpy, so it runs in the scheduler's worker thread and in tests/benchmarks.

A :class:`ViewportClient` keeps one HTTP/1.1 keep-alive connection (a request costs no TCP
handshake) for the worker thread, and opens a short-lived one for cancels (sent from the
main thread while a render is in flight). Answers are decoded into what ``gpu`` textures
take: a flat float32 RGBA buffer, **row 0 = bottom** (Blender's texture order), scene-linear
premultiplied colour.

Wire format (see ``exgs.service.viewport_codec``): header ``<4sHHIIIf`` = magic ``EXVF``,
version 1, flags (1 = depth follows, 2 = orthographic), width, height, generation, backend
ms; then RGBA float16 [H,W,4] row 0 = top; then depth float32 [H,W] with flag 1.
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass

import numpy as np

from .viewport_sched import Cancelled

_HEADER = struct.Struct("<4sHHIIIf")
MEDIA_TYPE = "application/x-exgs-viewport"


class ViewportError(Exception):
    """A failed viewport request, phrased for the user (one line)."""


@dataclass
class ViewFrame:
    """A decoded viewport frame: ``rgba`` flat float32 (W·H·4, row 0 = bottom, linear
    premultiplied), ``depth`` [H,W] float32 row 0 = bottom (+inf empty) or None, timings in
    ms (``backend``: server side; ``round_trip``: request sent → frame decoded)."""

    width: int
    height: int
    rgba: np.ndarray
    depth: np.ndarray | None
    generation: int
    ortho: bool
    backend_ms: float
    round_trip_ms: float = 0.0

    @property
    def nbytes(self) -> int:
        return int(self.rgba.nbytes + (self.depth.nbytes if self.depth is not None else 0))


def decode(data) -> ViewFrame:
    """Frame bytes → :class:`ViewFrame` (rows flipped to Blender's bottom-up order)."""
    if len(data) < _HEADER.size:
        raise ViewportError("the backend sent a truncated viewport frame")
    magic, version, flags, w, h, gen, ms = _HEADER.unpack_from(data, 0)
    need = _HEADER.size + 8 * w * h + (4 * w * h if flags & 1 else 0)
    if magic != b"EXVF" or version != 1 or len(data) != need:
        raise ViewportError("the backend sent a malformed viewport frame")
    half = np.frombuffer(data, "<f2", 4 * w * h, _HEADER.size).reshape(h, w, 4)
    rgba = half[::-1].astype(np.float32).reshape(-1)  # flip + widen in one pass
    depth = None
    if flags & 1:
        d = np.frombuffer(data, "<f4", w * h, _HEADER.size + 8 * w * h).reshape(h, w)
        depth = np.ascontiguousarray(d[::-1])
    return ViewFrame(w, h, rgba, depth, gen, bool(flags & 2), float(ms))


class ViewportClient:
    """``render(payload)`` → :class:`ViewFrame`; ``cancel(session, generation)``.

    ``payload`` is the JSON body of ``POST /v1/viewport`` (objects, view/window matrices,
    size, crop, scale, session, generation, ...). A 409 answer (superseded by a newer view)
    raises :class:`~exgs_blender.viewport_sched.Cancelled`; other failures raise
    :class:`ViewportError` with the server's one-line message.
    """

    def __init__(self, url: str, token: str, timeout: float = 60.0):
        u = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        self._https = u.scheme == "https"
        self._host, self._port = u.hostname, u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {(token or '').strip()}",
                         "Content-Type": "application/json"}
        self.timeout = float(timeout)
        self._conn = None
        self._lock = threading.Lock()  # one request at a time on the kept connection

    def _new(self, timeout):
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _exchange(self, conn, path: str, body: bytes):
        conn.request("POST", self._prefix + path, body=body, headers=self._headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def render(self, payload: dict) -> ViewFrame:
        body = json.dumps(payload).encode("utf-8")
        t0 = time.perf_counter()
        with self._lock:
            for attempt in (0, 1):  # a kept connection the server closed: reconnect once
                if self._conn is None:
                    self._conn = self._new(self.timeout)
                try:
                    status, data = self._exchange(self._conn, "/v1/viewport", body)
                    break
                except (OSError, http.client.HTTPException) as e:
                    self._conn.close()
                    self._conn = None
                    if attempt:
                        raise ViewportError(f"cannot reach the ExGS backend for the viewport "
                                            f"({e or type(e).__name__})") from None
        if status == 409:
            raise Cancelled("superseded")
        if status != 200:
            raise ViewportError(_message(status, data))
        frame = decode(data)
        frame.round_trip_ms = 1e3 * (time.perf_counter() - t0)
        return frame

    def cancel(self, session: str, generation: int) -> None:
        """Tell the backend to drop ``session``'s requests up to ``generation`` (own
        connection: the kept one is busy with the render being cancelled)."""
        conn = self._new(min(self.timeout, 5.0))
        try:
            self._exchange(conn, "/v1/viewport/cancel",
                           json.dumps({"session": session, "generation": int(generation)})
                           .encode("utf-8"))
        except (OSError, http.client.HTTPException):
            pass  # a lost cancel only costs time
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _message(status: int, data: bytes) -> str:
    try:
        msg = json.loads(data.decode("utf-8")).get("error")
    except (ValueError, AttributeError):
        msg = None
    if status == 401:
        return "the ExGS backend rejected the token (HTTP 401)"
    if status == 404 and msg and "no scene" in msg:
        return f"the backend no longer holds a scene ({msg})"
    text = " ".join(str(msg or data[:200].decode("utf-8", "replace")).split())
    return f"viewport render failed (HTTP {status}): {text}"


__all__ = ["ViewportClient", "ViewFrame", "ViewportError", "decode", "MEDIA_TYPE"]
