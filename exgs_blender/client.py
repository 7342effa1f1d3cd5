"""Client of the ExGS backend service (``exgs serve``) — Python standard library only.

Blender imports this module without torch or the backend installed; numpy is used when it
can be imported (frames become ``numpy.ndarray``), otherwise frames are ``array.array('f')``
in row-major order. Nothing here does camera math: the add-on sends the raw Blender camera
numbers and the backend converts them.

Quick use::

    from exgs_blender.client import ExgsClient, BackendUnavailable

    cl = ExgsClient.start_local("/path/to/venv/bin/python")   # or ExgsClient(url, token)
    info = cl.health()                         # {"version", "device", "gsplat", "painter", ...}
    sc = cl.upload("scene.ply", progress=lambda f, msg: print(f, msg))   # → {"id", ...}
    res = cl.compress(sc["id"], ratio=100, sh_degree=0, progress=cb)    # → {"scene_id", "stats"}
    data = cl.download(res["scene_id"])        # the .exgs bytes (or download(id, "out.exgs"))
    frames = cl.render(res["scene_id"], [blender_cam_dict], passes=("rgb", "alpha", "depth"),
                       progress=cb, cancel=threading_event)
    rgb, alpha, depth = frames[0]              # [H,W,3], [H,W], [H,W] float32, row 0 = top
    cl.close()                                 # stops the local server if start_local made it

API (every method raises one of the exceptions below, never a bare socket error):

``ExgsClient(url, token, timeout=60.0)``
    ``url`` like ``http://127.0.0.1:40123``; ``timeout`` seconds per HTTP request.
``ExgsClient.start_local(python_executable=None, *, host="127.0.0.1", device="auto",
allow_dir=None, token_file=None, data_dir=None, extra_args=(), env=None,
startup_timeout=120.0, timeout=60.0)``
    Spawns ``python -m exgs.cli serve --port 0 ...`` and reads its ready line; the returned
    client owns the process (``client.server``: ``.process``, ``.url``, ``.log_path``,
    ``.alive``, ``.stop()``). ``close()`` / ``with`` stop it.
``health()``, ``scenes()``, ``scene(id)``, ``delete(id)``
``upload(path, progress=None, filename=None)`` → scene dict (``"deduplicated"`` tells reuse)
``open_path(path)`` → scene dict (server started with ``--allow-dir``; 403 otherwise)
``download(scene_id, dest=None)`` → bytes, or ``dest`` after writing it atomically
``compress(scene_id, *, ratio=None, keep=None, sh_degree=0, cameras=None, adapt=None,
adapt_form=None, adapt_min_gain=None, progress=None, cancel=None)`` → job result ``{"scene_id", "stats",
"file_bytes", ...}`` (with ``adapt`` seconds: + ``"painter_delta"``: the adaptation's
figures and, when a delta was stored, its bytes as base64 ``data_b64``)
``render(scene_id, cameras, *, size=None, background=(0,0,0), restore=False,
passes=("rgb","alpha","depth"), format="f32", sh_degree=None, use_delta=True,
painter_delta=None, progress=None, cancel=None)`` (``painter_delta``: delta bytes to apply
with ``restore``, instead of the scene file's own)
    → list of :class:`Frame` (``format="png"``: list of PNG ``bytes``). Cameras are dicts in
    either form: ``exgs.cameras.Camera.to_dict()`` (or any object with ``to_dict()``), or the
    raw Blender numbers (``camera_matrix_world``, ``lens``, ``sensor_width``, ...,
    ``object_matrix_world``) that ``exgs.cameras.camera_from_blender`` takes.
Lower level: ``submit_render(...)``/``submit_compress(...)`` → job dict, ``job(id, since,
wait)`` (long poll of the state), ``wait(job_id, progress, cancel, on_frame)``,
``frame(job_id, i, wait=0.0)`` (long poll of one frame), ``cancel_job(id)``, ``delete_job(id)``.
``Client`` is an alias of ``ExgsClient``; ``parse_ready_line`` and ``decode_frame`` are public.

Callbacks: ``progress(fraction: float in 0..1, message: str)``; ``cancel`` is a
``threading.Event`` (anything with ``is_set()``) or a callable returning True to cancel.

Exceptions (all subclass :class:`ExgsClientError`):
:class:`BackendUnavailable` (connection refused, timeout, backend not installed or failed to
start), :class:`ServerGone` (a BackendUnavailable: the server died or vanished during a job),
:class:`AuthError` (401: missing/wrong token), :class:`BackendError` (any other error answer;
``.status``, ``.message`` (the server's one-line message), ``.detail``), :class:`JobFailed`
(a BackendError: the job failed; message from the server), :class:`JobCancelled`.

Binary frames (``GET /v1/jobs/{id}/frames/{i}``, see docs/service.md): little-endian header
``b"EXGF"``, u16 version (1), u16 pass count P, u32 width, u32 height, then P × (8-byte NUL
padded name, u32 channels), then each pass as H·W·C float32, row 0 = top.
"""

from __future__ import annotations

import array
import http.client
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

try:  # numpy is optional (Blender ships it, but the client must not require it)
    import numpy as _np
except Exception:  # pragma: no cover - exercised only without numpy
    _np = None

__all__ = ["ExgsClient", "Client", "Frame", "LocalServer", "ExgsClientError",
           "BackendUnavailable", "ServerGone", "AuthError", "BackendError", "JobFailed",
           "JobCancelled", "parse_ready_line", "decode_frame", "READY_PREFIX"]

READY_PREFIX = "EXGS_SERVER_READY"
FRAME_MAGIC = b"EXGF"
_HEADER = struct.Struct("<4sHHII")
_PASS = struct.Struct("<8sI")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- exceptions
class ExgsClientError(Exception):
    """Base of every error this client raises; ``str(e)`` is one line for the user."""


class BackendUnavailable(ExgsClientError):
    """The backend cannot be reached (refused, timed out) or could not be started."""


class ServerGone(BackendUnavailable):
    """The backend stopped answering while a job was running (killed, crashed, network)."""


class AuthError(ExgsClientError):
    """The backend rejected the bearer token (HTTP 401)."""


class BackendError(ExgsClientError):
    """The backend answered with an error; ``message`` is its one-line explanation."""

    def __init__(self, status: int, message: str, detail=None):
        self.status, self.message, self.detail = int(status), message, detail
        super().__init__(f"{message} (HTTP {status})" if status else message)


class JobFailed(BackendError):
    """A job ended in state ``failed``; ``message`` is the server's error."""


class JobCancelled(ExgsClientError):
    """The job was cancelled (by this client's ``cancel`` or by someone else)."""


# --------------------------------------------------------------------------- frames
class Frame:
    """One rendered frame. ``rgb`` [H,W,3], ``alpha`` [H,W], ``depth`` [H,W] (None when the
    pass was not requested); numpy float32 arrays when numpy is available, else flat
    ``array.array('f')`` (row-major, row 0 = top). ``passes`` maps every pass name to its
    array. Unpacks as ``rgb, alpha, depth = frame``."""

    __slots__ = ("width", "height", "passes")

    def __init__(self, width: int, height: int, passes: dict):
        self.width, self.height, self.passes = width, height, passes

    rgb = property(lambda self: self.passes.get("rgb"))
    alpha = property(lambda self: self.passes.get("alpha"))
    depth = property(lambda self: self.passes.get("depth"))

    def __iter__(self):
        return iter((self.rgb, self.alpha, self.depth))

    def __repr__(self):
        return f"Frame({self.width}x{self.height}, passes={list(self.passes)})"


def decode_frame(data) -> Frame:
    """Binary float32 frame (``bytes`` or ``bytearray``) → :class:`Frame` (see the module
    docstring). With a ``bytearray`` the numpy arrays are writable views of it (no copy)."""
    if len(data) < _HEADER.size:
        raise BackendError(0, "frame data is truncated")
    magic, version, p, w, h = _HEADER.unpack_from(data, 0)
    if magic != FRAME_MAGIC or version != 1:
        raise BackendError(0, "not an ExGS frame (bad magic or version)")
    off = _HEADER.size
    table = []
    for _ in range(p):
        name, c = _PASS.unpack_from(data, off)
        table.append((name.rstrip(b"\0").decode("ascii"), c))
        off += _PASS.size
    need = off + 4 * w * h * sum(c for _, c in table)
    if len(data) != need:
        raise BackendError(0, f"frame data has {len(data)} bytes, expected {need}")
    passes = {}
    for name, c in table:
        n = w * h * c
        if _np is not None:
            a = _np.frombuffer(data, "<f4", n, off)
            if not isinstance(data, bytearray):  # bytes: read-only → own copy
                a = a.copy()
            a = a.astype(_np.float32, copy=False)  # native order on big-endian hosts
            passes[name] = a.reshape(h, w, c) if c > 1 else a.reshape(h, w)
        else:
            a = array.array("f")
            a.frombytes(data[off:off + 4 * n])
            if sys.byteorder != "little":
                a.byteswap()
            passes[name] = a
        off += 4 * n
    return Frame(w, h, passes)


def parse_ready_line(line) -> dict | None:
    """``EXGS_SERVER_READY {json}`` → the dict (with ``url``), else None."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith(READY_PREFIX):
        return None
    try:
        d = json.loads(line[len(READY_PREFIX):].strip())
    except ValueError:
        return None
    if not isinstance(d, dict) or "port" not in d:
        return None
    if not d.get("url"):
        d["url"] = f"http://{d.get('host', '127.0.0.1')}:{int(d['port'])}"
    return d


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"cannot send {type(o).__name__} to the backend")


def _camera_dict(c) -> dict:
    if hasattr(c, "to_dict"):
        c = c.to_dict()
    if not isinstance(c, dict):
        raise TypeError(f"camera must be a dict or have to_dict(), got {type(c).__name__}")
    return c


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _tail(path: str, limit: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8000))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:limit] if lines else ""


# --------------------------------------------------------------------------- local server
class LocalServer:
    """An ``exgs serve`` child process on loopback (started by :meth:`ExgsClient.start_local`)."""

    def __init__(self, python_executable: str | None = None, *, host: str = "127.0.0.1",
                 device: str = "auto", allow_dir: str | None = None,
                 token_file: str | None = None, data_dir: str | None = None,
                 extra_args=(), env: dict | None = None, startup_timeout: float = 120.0):
        self.python = python_executable or sys.executable
        if not self.python or not os.path.exists(self.python):
            raise BackendUnavailable(f"backend Python not found: {self.python or '(not set)'}")
        self.dir = tempfile.mkdtemp(prefix="exgs-client-")
        self.token_file = token_file or os.path.join(self.dir, "token")
        self.log_path = os.path.join(self.dir, "serve.log")
        args = [self.python, "-m", "exgs.cli", "serve", "--host", host, "--port", "0",
                "--token-file", self.token_file, "--device", device]
        if allow_dir:
            args += ["--allow-dir", allow_dir]
        # default: inside our own temp folder, so stop() removes it even after a crash/kill
        args += ["--data-dir", data_dir or os.path.join(self.dir, "data")]
        args += [str(a) for a in extra_args]
        run_env = dict(os.environ if env is None else env)
        for k in ("PYTHONPATH", "PYTHONHOME"):  # Blender's own must not leak into the backend
            if env is None:
                run_env.pop(k, None)
        run_env.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(self.log_path, "wb")
        kw = {}
        if os.name == "nt":  # pragma: no cover
            kw["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=self._log,
                                            env=run_env, **kw)
        except OSError as e:
            self._log.close()
            raise BackendUnavailable(f"cannot start the backend with {self.python}: "
                                     f"{e.strerror or e}") from None
        self._lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self.ready = self._wait_ready(startup_timeout)
        self.url = self.ready["url"]
        try:
            with open(self.token_file, encoding="ascii") as f:
                self.token = f.read().strip()
        except OSError as e:
            self.stop()
            raise BackendUnavailable(f"backend started but its token file "
                                     f"{self.token_file} cannot be read: {e}") from None

    def _read_stdout(self):
        for line in iter(self.process.stdout.readline, b""):
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise BackendUnavailable(f"the backend ({self.python}) did not report ready "
                                         f"within {timeout:.0f} s; log: {self.log_path}")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the process ended
                try:
                    rc = self.process.wait(10)
                except subprocess.TimeoutExpired:
                    rc = None
                self._log.flush()
                tail = _tail(self.log_path)
                self.stop()
                if "No module named" in tail and "exgs" in tail:
                    raise BackendUnavailable(
                        f"the ExGS backend is not installed in {self.python} ({tail}); "
                        f"install it there with: {self.python} -m pip install <exgs backend>")
                raise BackendUnavailable(f"the backend ({self.python}) exited with code {rc}"
                                         f"{': ' + tail if tail else ''}")
            d = parse_ready_line(line)
            if d is not None:
                return d

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def describe_exit(self) -> str:
        rc = self.process.poll()
        if rc is None:
            return "still running"
        tail = _tail(self.log_path)
        return f"exit code {rc}{': ' + tail if tail else ''}"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        try:
            self._log.close()
        except Exception:
            pass
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)  # token + log of this server


# --------------------------------------------------------------------------- the client
class ExgsClient:
    """A connection to one ExGS service (thread-safe: one HTTP connection per request)."""

    def __init__(self, url: str, token: str, timeout: float = 60.0):
        u = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise BackendUnavailable(f"bad backend URL {url!r} (expected http://host:port)")
        self.url = f"{u.scheme}://{u.netloc}"
        self._scheme, self._host = u.scheme, u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self.token = (token or "").strip()
        self.timeout = float(timeout)
        self.server: LocalServer | None = None
        self._limits: dict | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start_local(cls, python_executable: str | None = None, *, timeout: float = 60.0,
                    **kw) -> "ExgsClient":
        """Start ``exgs serve`` with ``python_executable`` and connect to it (see module doc)."""
        srv = LocalServer(python_executable, **kw)
        client = cls(srv.url, srv.token, timeout=timeout)
        client.server = srv
        return client

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
        reason = _one_line(getattr(e, "strerror", None) or e) or type(e).__name__
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
        if json_body is not None:
            body = json.dumps(json_body, default=_json_default).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            try:
                conn.request(method, url, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = _read_body(resp) if raw else resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise self._unavailable(e, during_job) from None
            return self._answer(resp.status, resp.getheader("Content-Type", ""), data, raw)
        finally:
            conn.close()

    @staticmethod
    def _answer(status: int, ctype: str, data: bytes, raw: bool):
        if status == 401:
            raise AuthError("the ExGS backend rejected the token (HTTP 401): check the token "
                            "or the token file")
        if status >= 400:
            msg, detail = None, None
            try:
                d = json.loads(data.decode("utf-8"))
                if isinstance(d, dict):
                    msg, detail = d.get("error"), d.get("detail")
            except ValueError:
                pass
            if not msg:
                msg = _one_line(data[:300].decode("utf-8", "replace")) or "error"
            raise BackendError(status, _one_line(msg), detail)
        if raw:
            return data, ctype
        try:
            return json.loads(data.decode("utf-8")) if data else {}
        except ValueError:
            raise BackendError(status, "the backend sent an answer that is not JSON") from None

    # ------------------------------------------------------------------ simple calls
    def health(self) -> dict:
        h = self._request("GET", "/v1/health")
        self._limits = h.get("limits")
        return h

    def scenes(self) -> list:
        return self._request("GET", "/v1/scenes")["scenes"]

    def scene(self, scene_id: str) -> dict:
        return self._request("GET", f"/v1/scenes/{_q(scene_id)}")

    def delete(self, scene_id: str) -> dict:
        return self._request("DELETE", f"/v1/scenes/{_q(scene_id)}")

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
                    conn.putrequest("POST", url)
                    conn.putheader("Authorization", f"Bearer {self.token}")
                    conn.putheader("Content-Type", "application/octet-stream")
                    conn.putheader("Content-Length", str(total))
                    conn.endheaders()
                    sent = 0
                    broken = None
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
                            progress(sent / total if total else 1.0,
                                     f"uploading {name}: {sent / total if total else 1.0:.0%}")
                    try:
                        resp = conn.getresponse()
                        data = resp.read()
                    except (OSError, http.client.HTTPException):
                        if broken is not None:
                            raise broken from None
                        raise
                except (OSError, http.client.HTTPException) as e:
                    raise self._unavailable(e, None) from None
                return self._answer(resp.status, resp.getheader("Content-Type", ""), data,
                                    False)
            finally:
                conn.close()

    def download(self, scene_id: str, dest=None):
        """The scene's file (.exgs for a compressed scene) → bytes, or written to ``dest``
        (atomically) and ``dest`` returned."""
        data, _ = self._request("GET", f"/v1/scenes/{_q(scene_id)}/file", raw=True,
                                headers={"Accept": "application/octet-stream"})
        if dest is None:
            return data
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

    # ------------------------------------------------------------------ jobs
    def job(self, job_id: str, since: int = -1, wait: float = 0.0,
            during_job: str | None = None) -> dict:
        return self._request("GET", f"/v1/jobs/{_q(job_id)}",
                             query={"since": int(since), "wait": float(wait)},
                             timeout=self.timeout + wait, during_job=during_job)

    def cancel_job(self, job_id: str) -> dict:
        return self._request("POST", f"/v1/jobs/{_q(job_id)}/cancel")

    def delete_job(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{_q(job_id)}")

    def frame(self, job_id: str, index: int, wait: float = 0.0,
              during_job: str | None = None):
        """Frame ``index`` of a render job → :class:`Frame` (or PNG bytes). With ``wait``
        the server holds the request up to that many seconds until the frame exists
        (otherwise BackendError 409, whose ``detail`` has the job's progress)."""
        data, ctype = self._request("GET", f"/v1/jobs/{_q(job_id)}/frames/{int(index)}",
                                    query={"wait": float(wait)} if wait else None,
                                    timeout=self.timeout + wait, raw=True,
                                    during_job=during_job, headers={"Accept": "*/*"})
        if ctype.startswith("image/png"):
            return data
        return decode_frame(data)

    @staticmethod
    def _cancel_requested(cancel) -> bool:
        if cancel is None:
            return False
        if hasattr(cancel, "is_set"):
            return bool(cancel.is_set())
        return bool(cancel())

    def wait(self, job_id: str, progress=None, cancel=None, on_frame=None,
             timeout: float | None = None, poll: float = 0.25) -> dict:
        """Follow a job until it ends → its final dict. Calls ``progress(fraction, message)``
        on every change and ``on_frame(i)`` once per newly finished frame (in order).
        Raises JobFailed, JobCancelled, ServerGone."""
        what = f"job {job_id}"
        since, seen_frames = -1, 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._cancel_requested(cancel):
                self._cancel_and_wait(job_id, what)
                raise JobCancelled(f"{what} cancelled")
            if deadline is not None and time.monotonic() > deadline:
                raise BackendUnavailable(f"{what} did not finish within {timeout:.0f} s")
            info = self.job(job_id, since=since, wait=poll, during_job=what)
            since = int(info.get("version", since))
            if progress is not None:
                progress(float(info.get("progress", 0.0)), info.get("message") or "")
            if on_frame is not None:
                ready = int(info.get("frames_ready", 0))
                while seen_frames < ready:
                    on_frame(seen_frames)
                    seen_frames += 1
            state = info.get("state")
            if state == "done":
                return info
            if state == "failed":
                raise JobFailed(0, info.get("error") or f"{what} failed")
            if state == "cancelled":
                raise JobCancelled(f"{what} was cancelled")

    def _cancel_and_wait(self, job_id: str, what: str, limit: float = 30.0) -> None:
        try:
            info = self._request("POST", f"/v1/jobs/{_q(job_id)}/cancel", during_job=what)
            t0 = time.monotonic()
            while info.get("state") not in ("done", "failed", "cancelled") and \
                    time.monotonic() - t0 < limit:
                info = self.job(job_id, since=int(info.get("version", -1)), wait=0.5,
                                during_job=what)
        except BackendError:
            pass

    # ------------------------------------------------------------------ compress
    def submit_compress(self, scene_id: str, *, ratio=None, keep=None, sh_degree: int = 0,
                        cameras=None, adapt=None, adapt_form=None,
                        adapt_min_gain=None) -> dict:
        body = {"sh_degree": int(sh_degree)}
        if adapt_min_gain is not None:
            body["adapt_min_gain"] = float(adapt_min_gain)
        if adapt is not None:
            body["adapt"] = float(adapt)
        if adapt_form is not None:
            body["adapt_form"] = str(adapt_form)
        if ratio is not None:
            body["ratio"] = float(ratio)
        if keep is not None:
            body["keep"] = keep
        if cameras:
            body["cameras"] = [_camera_dict(c) for c in cameras]
        return self._request("POST", f"/v1/scenes/{_q(scene_id)}/compress", json_body=body)

    def compress(self, scene_id: str, *, ratio=None, keep=None, sh_degree: int = 0,
                 cameras=None, adapt=None, adapt_form=None, adapt_min_gain=None,
                 progress=None, cancel=None) -> dict:
        """UGC compression in the backend → ``{"scene_id", "stats", "file_bytes", ...}``;
        the .exgs is ``download(result["scene_id"])``. ``adapt``: seconds to fine-tune a
        per-scene painter delta stored in the file."""
        job = self.submit_compress(scene_id, ratio=ratio, keep=keep, sh_degree=sh_degree,
                                   cameras=cameras, adapt=adapt, adapt_form=adapt_form,
                                   adapt_min_gain=adapt_min_gain)
        try:
            info = self.wait(job["id"], progress=progress, cancel=cancel)
        finally:
            self._forget(job["id"])
        return info.get("result") or {}

    # ------------------------------------------------------------------ render
    def submit_render(self, scene_id: str, cameras, *, size=None, background=(0.0, 0.0, 0.0),
                      restore: bool = False, passes=("rgb", "alpha", "depth"),
                      format: str = "f32", sh_degree=None, use_delta: bool = True,
                      painter_delta=None, keep=None) -> dict:
        body = {"cameras": [_camera_dict(c) for c in cameras],
                "background": [float(x) for x in background], "restore": bool(restore),
                "passes": list(passes), "format": format}
        if not use_delta:
            body["use_delta"] = False
        if painter_delta is not None:
            import base64
            body["painter_delta"] = base64.b64encode(bytes(painter_delta)).decode("ascii")
        if keep is not None:
            body["keep"] = float(keep)
        if size is not None:
            body["size"] = [int(size[0]), int(size[1])]
        if sh_degree is not None:
            body["sh_degree"] = int(sh_degree)
        return self._request("POST", f"/v1/scenes/{_q(scene_id)}/render", json_body=body)

    def render(self, scene_id: str, cameras, *, size=None, background=(0.0, 0.0, 0.0),
               restore: bool = False, passes=("rgb", "alpha", "depth"), format: str = "f32",
               sh_degree=None, use_delta: bool = True, painter_delta=None, keep=None,
               progress=None, cancel=None) -> list:
        """Render ``cameras`` → one :class:`Frame` per camera (PNG bytes for format="png").
        Each frame is fetched (long poll) as soon as it is rendered, while later ones render;
        the job is deleted afterwards."""
        cameras = list(cameras)
        job = self.submit_render(scene_id, cameras, size=size, background=background,
                                 restore=restore, passes=passes, format=format,
                                 sh_degree=sh_degree, use_delta=use_delta,
                                 painter_delta=painter_delta, keep=keep)
        jid = job["id"]
        what = f"render job {jid}"
        n = len(cameras)
        out = []
        try:
            # long-poll each frame in turn: one request per frame while the job runs
            while len(out) < n:
                if self._cancel_requested(cancel):
                    self._cancel_and_wait(jid, what)
                    raise JobCancelled(f"{what} cancelled")
                try:
                    out.append(self.frame(jid, len(out), wait=0.25, during_job=what))
                except BackendError as e:
                    d = e.detail if isinstance(e.detail, dict) else {}
                    if e.status == 409:  # not rendered yet: report the job's own progress
                        if progress is not None:
                            progress(float(d.get("progress", len(out) / n)),
                                     d.get("message") or "")
                        continue
                    if e.status == 404 and d.get("state") == "failed":
                        raise JobFailed(0, d.get("error") or f"{what} failed") from None
                    if e.status == 404 and d.get("state") == "cancelled":
                        raise JobCancelled(f"{what} was cancelled") from None
                    raise
                if progress is not None:
                    progress(len(out) / n, f"frame {len(out)}/{n}")
        finally:
            self._forget(jid)
        return out

    def _forget(self, job_id: str) -> None:
        try:
            self.delete_job(job_id)
        except ExgsClientError:
            pass


def _read_body(resp) -> bytes | bytearray:
    """Whole response body; with a Content-Length, read straight into one bytearray (no
    join of chunks, and numpy can wrap it writable without another copy)."""
    n = resp.length
    if n is None or resp.status >= 400:
        return resp.read()
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = resp.readinto(view[got:])
        if not k:
            raise http.client.IncompleteRead(bytes(view[:got]), n - got)
        got += k
    return buf


def _q(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


#: Short alias (the add-on's backend module uses ``client.Client``).
Client = ExgsClient
