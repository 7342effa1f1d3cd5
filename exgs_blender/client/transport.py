"""HTTP to one ExGS service (``http.client``, one connection per request, so thread-safe):
authentication, one-line errors, scene upload (streamed) and download (atomic), bounded
reply sizes. Job-level calls (compress, render, facts) are in :mod:`.api`."""

from __future__ import annotations

import http.client
import json
import os
import socket
import tempfile
import urllib.parse

from .errors import (AuthError, BackendError, BackendUnavailable, ExgsClientError, ServerGone,
                     one_line)

__all__ = ["HttpClient", "MAX_REPLY_BYTES"]

_CHUNK = 1 << 20
#: Largest reply body the client accepts (a 16384² frame of rgb+alpha+depth is 1.3 GiB);
#: a larger declared Content-Length is refused before any allocation.
MAX_REPLY_BYTES = 2 << 30


def json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"cannot send {type(o).__name__} to the backend")


def quote(part) -> str:
    return urllib.parse.quote(str(part), safe="")


def read_body(resp, limit: int = MAX_REPLY_BYTES) -> bytes | bytearray:
    """Whole response body; with a Content-Length, read straight into one bytearray (no
    join of chunks, and numpy can wrap it writable without another copy). A body larger
    than ``limit`` (declared or received) raises BackendError before it is kept."""
    n = resp.length
    if n is not None and n > limit:
        raise BackendError(0, f"the backend announced a reply of {n} bytes (limit {limit})")
    if n is None or resp.status >= 400:
        data = resp.read(limit + 1)
        if len(data) > limit:
            raise BackendError(0, f"the backend sent a reply over {limit} bytes")
        return data
    try:
        buf = bytearray(n)
    except MemoryError:
        raise BackendError(0, f"not enough memory for a reply of {n} bytes") from None
    view = memoryview(buf)
    got = 0
    while got < n:
        k = resp.readinto(view[got:])
        if not k:
            raise http.client.IncompleteRead(bytes(view[:got]), n - got)
        got += k
    return buf


def valid_client_id(value) -> str | None:
    """``value`` when it is a usable ``X-Exgs-Client`` id (1..64 printable ASCII characters,
    no spaces), else None (the service then uses the peer address)."""
    v = (value or "").strip()
    if v and len(v) <= 64 and all(33 <= ord(c) < 127 for c in v):
        return v
    return None


class HttpClient:
    """A connection to one ExGS service: URL, bearer token, per-request timeout (s).
    ``client_id`` (default ``$EXGS_CLIENT_ID``) is sent as ``X-Exgs-Client``: the service
    queues jobs round-robin across client ids (a farm worker's name); without one it uses
    the peer address."""

    def __init__(self, url: str, token: str, timeout: float = 60.0,
                 client_id: str | None = None):
        u = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        try:
            port = u.port
        except ValueError:
            port = -1
        if u.scheme not in ("http", "https") or not u.hostname or port == -1:
            raise BackendUnavailable(f"bad backend URL {url!r} (expected http://host:port)")
        self.url = f"{u.scheme}://{u.netloc}"
        self._scheme, self._host = u.scheme, u.hostname
        self._port = port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self.token = (token or "").strip()
        self.timeout = float(timeout)
        self.client_id = valid_client_id(client_id if client_id is not None
                                         else os.environ.get("EXGS_CLIENT_ID"))
        self.server = None  # a local.LocalServer this client owns (start_local)
        self._limits: dict | None = None

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the local server this client started (no-op for remote servers)."""
        if self.server is not None:
            self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ HTTP
    def _connection(self, timeout: float):
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _unavailable(self, e: BaseException, during_job: str | None) -> ExgsClientError:
        reason = one_line(getattr(e, "strerror", None) or e) or "connection lost"
        if isinstance(e, (socket.timeout, TimeoutError)):
            reason = "timed out"
        if during_job:
            extra = ""
            if self.server is not None and not self.server.alive:
                extra = f"; local backend {self.server.describe_exit()}"
            return ServerGone(f"the ExGS backend at {self.url} stopped responding during "
                              f"{during_job} ({reason}{extra})")
        return BackendUnavailable(f"cannot reach the ExGS backend at {self.url} ({reason})")

    def _request(self, method: str, path: str, *, body=None, json_body=None, query=None,
                 timeout: float | None = None, raw: bool = False, during_job: str | None = None,
                 headers: dict | None = None):
        """One HTTP exchange → parsed JSON (or (bytes, content type) when ``raw``)."""
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        hdrs = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if self.client_id:
            hdrs["X-Exgs-Client"] = self.client_id
        if json_body is not None:
            body = json.dumps(json_body, default=json_default).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            try:
                conn.request(method, url, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = read_body(resp)
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise self._unavailable(e, during_job) from None
            return self._answer(resp.status, resp.getheader("Content-Type", "") or "", data,
                                raw)
        finally:
            conn.close()

    @staticmethod
    def _answer(status: int, ctype: str, data, raw: bool):
        if status == 401:
            raise AuthError("the ExGS backend rejected the token (HTTP 401): check the token "
                            "or the token file")
        if status >= 400:
            msg, detail = None, None
            try:
                d = json.loads(bytes(data).decode("utf-8"))
                if isinstance(d, dict):
                    msg, detail = d.get("error"), d.get("detail")
            except ValueError:
                pass
            if not msg:
                msg = one_line(bytes(data[:300]).decode("utf-8", "replace")) or "error"
            raise BackendError(status, one_line(msg), detail)
        if raw:
            return data, ctype
        try:
            d = json.loads(bytes(data).decode("utf-8")) if data else {}
        except (ValueError, RecursionError):
            raise BackendError(status, "the backend sent an answer that is not JSON") from None
        if not isinstance(d, dict):
            raise BackendError(status, "the backend sent an answer that is not a JSON object")
        return d

    # ------------------------------------------------------------------ simple calls
    def health(self) -> dict:
        h = self._request("GET", "/v1/health")
        self._limits = h.get("limits") if isinstance(h.get("limits"), dict) else None
        return h

    def scenes(self) -> list:
        return self._request("GET", "/v1/scenes").get("scenes") or []

    def scene(self, scene_id: str) -> dict:
        return self._request("GET", f"/v1/scenes/{quote(scene_id)}")

    def delete(self, scene_id: str) -> dict:
        return self._request("DELETE", f"/v1/scenes/{quote(scene_id)}")

    def open_path(self, path: str) -> dict:
        """Open a file on the server's disk (server started with ``--allow-dir``)."""
        return self._request("POST", "/v1/scenes/open",
                             json_body={"path": os.path.abspath(os.fspath(path))})

    def upload(self, path, progress=None, filename: str | None = None,
               check_limit: bool = True) -> dict:
        """Stream a scene file to the server → scene dict (``id`` = sha256 of the content).
        ``progress(fraction, message)`` after each MiB."""
        path = os.fspath(path)
        try:
            total = os.path.getsize(path)
            f = open(path, "rb")
        except OSError as e:
            raise ExgsClientError(f"{path}: cannot read ({e.strerror or e})") from None
        name = filename or os.path.basename(path)
        with f:
            if check_limit:
                if self._limits is None:
                    self.health()
                lim = (self._limits or {}).get("max_upload_bytes")
                if lim and total > lim:
                    raise BackendError(413, f"{name} is {total} bytes; the backend accepts "
                                            f"uploads up to {lim} bytes")
            url = self._prefix + "/v1/scenes?" + urllib.parse.urlencode({"filename": name})
            conn = self._connection(max(self.timeout, 60.0))
            try:
                try:
                    resp, data = self._stream(conn, url, f, total, name, progress)
                except (OSError, http.client.HTTPException) as e:
                    raise self._unavailable(e, None) from None
                return self._answer(resp.status, resp.getheader("Content-Type", "") or "",
                                    data, False)
            finally:
                conn.close()

    def _stream(self, conn, url, f, total, name, progress):
        conn.putrequest("POST", url)
        conn.putheader("Authorization", f"Bearer {self.token}")
        if self.client_id:
            conn.putheader("X-Exgs-Client", self.client_id)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(total))
        conn.endheaders()
        sent, broken = 0, None
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            try:
                conn.send(chunk)
            except OSError as e:  # the server answered early (e.g. 413)
                broken = e
                break
            sent += len(chunk)
            if progress is not None:
                frac = sent / total if total else 1.0
                progress(frac, f"uploading {name}: {frac:.0%}")
        try:
            resp = conn.getresponse()
            return resp, read_body(resp)
        except (OSError, http.client.HTTPException):
            if broken is not None:
                raise broken from None
            raise

    def download(self, scene_id: str, dest=None):
        """The scene's file (.exgs for a compressed scene) → bytes, or written to ``dest``
        (atomically) and ``dest`` returned."""
        data, _ = self._request("GET", f"/v1/scenes/{quote(scene_id)}/file", raw=True,
                                headers={"Accept": "application/octet-stream"})
        if dest is None:
            return bytes(data)
        dest = os.fspath(dest)
        d = os.path.dirname(os.path.abspath(dest))
        fd, tmp = tempfile.mkstemp(prefix=".exgs-dl-", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return dest
