"""Connection to the ExGS backend service: a local ``exgs serve`` process started on demand,
or a remote service (URL + token). Wraps the stdlib client (``client.py``, owned by the
service) with what the add-on needs and turns every failure into a one-line message.

Thread safety: :func:`connection` may be called from worker threads (no bpy access after
the settings have been read once on the main thread — see :func:`prime`).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import subprocess
import threading
import urllib.parse


from .errors import BackendError, Cancelled, describe, is_cancel  # noqa: F401  (callers' names)


_LOCK = threading.RLock()
_SERVER = None  # LocalServer
_CONN = None
_SETTINGS = None


def _read_settings():
    from . import preferences
    return preferences.settings()


def prime():
    """Read the settings on the main thread (bpy) so worker threads can connect."""
    global _SETTINGS
    _SETTINGS = _read_settings()
    return _SETTINGS


def settings():
    if _SETTINGS is None:
        return prime()
    return _SETTINGS


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def online_allowed() -> bool:
    try:
        import bpy
        return bool(getattr(bpy.app, "online_access", True))
    except Exception:
        return True


# --------------------------------------------------------------------------- local process
def parse_ready_line(text: str) -> str | None:
    """The service's ready line (``EXGS_SERVER_READY {json}``, or a bare JSON / URL line)
    → base URL."""
    from . import client

    d = client.parse_ready_line(text)
    if d:
        return str(d["url"]).rstrip("/")
    text = text.strip()
    if text.startswith("{"):
        import json
        try:
            d = json.loads(text)
        except ValueError:
            d = {}
        if d.get("url"):
            return str(d["url"]).rstrip("/")
        if d.get("port"):
            return f"http://{d.get('host', '127.0.0.1')}:{int(d['port'])}"
    m = re.search(r"(https?://[\w.\-\[\]:]+:\d+)", text)
    if m:
        return m.group(1)
    return None


class LocalServer:
    """``python -m exgs.cli serve`` on loopback (the client's LocalServer: port chosen by the
    OS, token in a 0600 file, ``--allow-dir`` = the add-on's render cache)."""

    def __init__(self, python: str, device: str = "auto", painter_weights: str = ""):
        from . import client
        from .paths import cache_dir

        if not python or not os.path.exists(python):
            raise BackendError(f"backend Python not found: {python or '(not set)'} — set it in "
                               "the add-on preferences, run 'Set up backend', or set EXGS_PYTHON")
        extra = ["--painter-weights", painter_weights] if painter_weights else []
        try:
            self.srv = client.LocalServer(python, device=device or "auto", allow_dir=cache_dir(),
                                          extra_args=extra)
        except client.ExgsClientError as e:
            raise BackendError(str(e)) from None
        self.python, self.url, self.token = python, self.srv.url, self.srv.token

    @property
    def alive(self) -> bool:
        return self.srv.alive

    def stop(self):
        self.srv.stop()


def local_server():
    return _SERVER


def start_local():
    """Start (or reuse) the local server; returns it."""
    global _SERVER, _CONN
    s = settings()
    with _LOCK:
        if _SERVER is not None and _SERVER.alive:
            return _SERVER
        _SERVER = LocalServer(s.python, s.device, s.painter_weights)
        _CONN = None
        return _SERVER


@atexit.register
def _stop_at_exit():
    try:
        stop_local()
    except Exception:
        pass


def stop_local():
    global _SERVER, _CONN
    with _LOCK:
        if _SERVER is not None:
            _SERVER.stop()
        _SERVER = None
        _CONN = None


# --------------------------------------------------------------------------- connection
class Connection:
    """The add-on's view of the service (every method may raise BackendError/Cancelled)."""

    def __init__(self, url: str, token: str, local: bool, timeout: float = 600.0):
        self.url, self.local = url, local
        from . import client

        self.api = client.Client(url, token, timeout=timeout)
        self.api.cancel_wait = client.CANCEL_BUDGET  # Esc / test_break return within ~2 s
        self._scenes: dict = {}  # content digest → scene id
        self._facts_api = False  # the service keeps a scene's facts (PUT .../facts)
        self._facts: dict = {}   # scene id → (kept_fraction, delta digest, refined) stored

    def health(self) -> dict:
        return self.api.health()

    def scene_for(self, ply_path: str, digest: str) -> str:
        sid = self._scenes.get(digest)
        if sid is not None:
            return sid
        if self.local:
            try:
                sid = self.api.open_path(ply_path)
            except Exception:  # e.g. 403 outside --allow-dir: fall back to uploading
                sid = None
        if sid is None:
            sid = self.api.upload(ply_path)
        if isinstance(sid, dict):  # a service that keeps facts lists them with the scene
            self._facts_api = self._facts_api or "facts" in sid
            sid = sid.get("id")
        if not isinstance(sid, str) or not sid:
            raise BackendError(f"the backend accepted {os.path.basename(ply_path)} but sent no "
                               "scene id")
        self._scenes[digest] = sid
        return sid

    def forget(self, digest: str) -> None:
        sid = self._scenes.pop(digest, None)
        self._facts.pop(sid, None)

    def _store_facts(self, sid, kept_fraction, painter_delta, refined=False) -> None:
        """Set the scene's facts once (again only when they change: one mesh content can
        be shared by objects with other facts)."""
        import hashlib
        want = (None if kept_fraction is None else float(kept_fraction),
                hashlib.sha256(painter_delta).hexdigest() if painter_delta else None,
                bool(refined))
        if self._facts.get(sid) != want:
            self.api.set_facts(sid, kept_fraction=want[0], painter_delta=painter_delta or None,
                               refined=want[2])
            self._facts[sid] = want

    def render(self, sid, cameras, *, restore=False, painter_delta=None, kept_fraction=None,
               refined=False, warmup=None, restart=0, blend=0.0, progress=None, cancel=None):
        """cameras: raw Blender numbers (+ object_matrix_world) → [(rgb, alpha, depth)]
        (premultiplied rgb [H,W,3], alpha [H,W], camera z [H,W]; row 0 = top).
        ``painter_delta``: bytes of a per-scene painter delta to restore with;
        ``kept_fraction``: the scene's kept fraction (GaussPainter's gate), None = unknown;
        ``refined``: its Gaussians were refined after pruning (the painter's refined gate
        table; only services with the facts route learn it). A service with ``PUT /v1/scenes/{id}/facts`` gets them once per scene; an older one
        with every restore render (``keep`` / ``painter_delta`` in the body).
        ``warmup`` (with ``restore``; None = off): stabilised restoration over the path, the
        first ``warmup`` cameras being the history of the last ones (only those returned);
        its rgb comes back premultiplied scene-linear (stabilised in the values Blender
        gets), the others' premultiplied display sRGB; ``restart``/``blend``: cross-fade to
        a second run starting at that camera."""
        kw = {}
        if restore and warmup is not None:
            kw.update(temporal=True, warmup=int(warmup), linear=True)
            if restart:
                kw.update(restart=int(restart), blend=float(blend))
        if restore and self._facts_api:
            self._store_facts(sid, kept_fraction, painter_delta, refined)
        elif restore:
            if painter_delta:
                kw["painter_delta"] = painter_delta
            if kept_fraction is not None:
                kw["kept_fraction"] = float(kept_fraction)
        frames = self.api.render(sid, cameras, restore=restore,
                                 passes=("rgb", "alpha", "depth"), progress=progress,
                                 cancel=cancel, **kw)
        out = []
        for f in frames:
            if any(getattr(f, k, None) is None for k in ("rgb", "alpha", "depth")):
                raise BackendError("the backend sent a frame without its rgb, alpha and depth "
                                   "passes")
            out.append((f.rgb, f.alpha, f.depth))
        return out

    def compress(self, sid, *, ratio=None, keep=None, sh_degree=0, adapt=None,
                 adapt_min_gain=None, refine=None, shot=None, progress=None, cancel=None):
        """UGC in the backend → (.exgs bytes, stats dict, compressed scene id). With
        ``adapt`` seconds the stats hold ``painter_delta`` (figures, and ``data_b64`` when
        a delta was stored in the file)."""
        kw = {"adapt": float(adapt)} if adapt else {}
        if refine:
            kw["refine"] = float(refine)
        if adapt and adapt_min_gain is not None:
            kw["adapt_min_gain"] = float(adapt_min_gain)
        if shot:
            kw["shot"] = list(shot)
        res = self.api.compress(sid, ratio=ratio, keep=keep, sh_degree=sh_degree,
                                progress=progress, cancel=cancel, **kw)
        new = res.get("scene_id")
        if not new:
            raise BackendError("the backend's compress job returned no scene")
        stats = dict(res.get("stats") or {})
        if res.get("painter_delta") is not None:
            stats["painter_delta"] = res["painter_delta"]
        return self.api.download(new), stats, new


def connection() -> Connection:
    """The current connection (starting the local server when needed)."""
    global _CONN
    s = settings()
    with _LOCK:
        if _CONN is not None and (not _CONN.local or (_SERVER is not None and _SERVER.alive)):
            return _CONN
        if s.mode == "REMOTE":
            if not s.url:
                raise BackendError("no backend URL set (preferences or EXGS_BACKEND_URL)")
            if not is_loopback(s.url) and not online_allowed():
                raise BackendError(f"online access is disabled in Blender (Preferences ▸ System "
                                   f"▸ Network); cannot reach {s.url}")
            _CONN = Connection(s.url, s.token, local=False, timeout=s.timeout)
        else:
            srv = start_local()
            _CONN = Connection(srv.url, srv.token, local=True, timeout=s.timeout)
        return _CONN


def reset():
    """Forget the connection (settings changed); does not stop the local server."""
    global _CONN, _SETTINGS
    with _LOCK:
        _CONN, _SETTINGS = None, None


# --------------------------------------------------------------------------- conversion
def convert_plan(path: str, keep: int | None = None) -> tuple[list, str, dict]:
    """(argv, output PLY in the cache, environment) of the backend's ``exgs convert`` of
    ``path`` (``keep``: only the first ``keep`` Gaussians of a .exgs, its progressive
    prefix). The output name depends on the file's path, size, mtime and ``keep``."""
    from .paths import cache_dir
    py = settings().python
    if not py or not os.path.exists(py):
        raise BackendError(f"{path}: reading this format needs the backend (set its Python in "
                           "the preferences, run 'Set up backend' or set EXGS_PYTHON)")
    st = os.stat(path)
    import hashlib
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    part = f"-k{int(keep)}" if keep else ""
    out = os.path.join(cache_dir(), f"convert-{key}{part}.ply")
    cmd = [py, "-m", "exgs.cli", "convert", path, out] + (["--keep", str(int(keep))]
                                                           if keep else [])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return cmd, out, env


def convert_error(returncode: int, text: str) -> BackendError:
    """The one-line error of a failed ``exgs convert`` (its last output line)."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else f"exit code {returncode}"
    return BackendError(msg.replace("exgs: error: ", ""))


def convert_to_ply(path: str, keep: int | None = None) -> str:
    """Any supported scene file → INRIA PLY in the cache, with the backend's ``exgs convert``
    run by the local backend Python (``keep``: a .exgs prefix, see :func:`convert_plan`)."""
    from .paths import evict_converted, touch
    cmd, out, env = convert_plan(path, keep)
    if os.path.exists(out):
        touch(out)
        return out
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not os.path.exists(out):
        raise convert_error(r.returncode, r.stderr or r.stdout)
    evict_converted(keep=(out,))  # the cache's size cap (least recently used first)
    return out


#: Run by path with the backend Python (see its docstring); not imported by the add-on.
FACTS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_scripts",
                            "exgs_facts.py")


def exgs_file_extras(path: str) -> dict:
    """What a .exgs file holds besides its Gaussians, read by the backend Python (format
    code only, no ML imports):
    ``{"kept_fraction": float | None, "refined": bool, "painter_delta_b64": str | None,
    "warning": str | None, "count": int}`` (``refined``: the header records refinement after
    pruning; ``count``: the file's Gaussians, absent when it could not be read; a
    corrupt delta section gives a warning and no delta; the scene itself still imports)."""
    import json
    s = settings()
    py = s.python
    if not py or not os.path.exists(py):
        return {"kept_fraction": None, "painter_delta_b64": None,
                "warning": "no backend Python: painter delta and kept fraction not read"}
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, FACTS_SCRIPT, path], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        lines = [ln for ln in (r.stderr or "").strip().splitlines() if ln.strip()]
        return {"kept_fraction": None, "painter_delta_b64": None,
                "warning": lines[-1] if lines else f"exit code {r.returncode}"}


def compress(ply_path: str, digest: str, *, ratio=None, keep=None, sh_degree=0,
             adapt=None, adapt_min_gain=None, refine=None, shot=None, progress=None,
             cancel=None) -> tuple[bytes, dict, str]:
    """Compress a scene in the backend → (.exgs bytes, stats, compressed scene id);
    ``adapt``: seconds to fine-tune a per-scene painter delta (stored in the .exgs);
    ``refine``: seconds to distil the survivors against the full scene (no extra bytes);
    ``shot``: request cameras of the frames the file will be rendered from
    (:func:`.render_core.shot_cameras`)."""
    conn = connection()
    sid = conn.scene_for(ply_path, digest)
    return conn.compress(sid, ratio=ratio, keep=keep, sh_degree=sh_degree, adapt=adapt,
                         adapt_min_gain=adapt_min_gain, refine=refine, shot=shot,
                         progress=progress, cancel=cancel)


def run_convert(src: str, dst: str) -> None:
    """``exgs convert SRC DST`` with the local backend Python (format from DST's suffix)."""
    s = settings()
    py = s.python
    if not py or not os.path.exists(py):
        raise BackendError(f"{dst}: writing this format needs the local backend (set its Python)")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, "-m", "exgs.cli", "convert", src, dst], capture_output=True,
                       text=True, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
        raise BackendError((lines[-1] if lines else f"exit code {r.returncode}")
                           .replace("exgs: error: ", ""))
