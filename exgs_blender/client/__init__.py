"""Client of the ExGS backend service (``exgs serve``) — Python standard library only.

Modules: :mod:`.errors` (exceptions), :mod:`.frames` (binary frame decoding),
:mod:`.local` (``exgs serve`` as a child process), :mod:`.transport` (HTTP, upload,
download), :mod:`.api` (jobs: compress, render, facts). Import from the package.

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
painter_delta=None, kept_fraction=None, temporal=False, warmup=0, progress=None,
cancel=None)`` (``painter_delta``: delta bytes to apply with ``restore``, instead of the
scene file's own; ``kept_fraction``: the painter's gate; both only for services without
``set_facts``; ``temporal`` + ``warmup``: stabilised restoration of the cameras after the
first ``warmup``, which are their history on the path and are not returned)
    → list of :class:`Frame` (``format="png"``: list of PNG ``bytes``). Cameras are dicts in
    either form: ``exgs.cameras.Camera.to_dict()`` (or any object with ``to_dict()``), or the
    raw Blender numbers (``camera_matrix_world``, ``lens``, ``sensor_width``, ...,
    ``object_matrix_world``) that ``exgs.cameras.camera_from_blender`` takes.
``set_facts(scene_id, kept_fraction=None, painter_delta=None, refined=False)``: store a
scene's facts once (``PUT /v1/scenes/{id}/facts``); restore renders then need none of them.
Lower level: ``submit_render(...)``/``submit_compress(...)`` → job dict, ``job(id, since,
wait)`` (long poll of the state), ``wait(job_id, progress, cancel, on_frame)``,
``frame(job_id, i, wait=0.0)`` (long poll of one frame), ``cancel_job(id)``, ``delete_job(id)``.
``Client`` is an alias of ``ExgsClient``; ``parse_ready_line`` and ``decode_frame`` are public.
A job's polls are short and retried while the server is silent, so ``cancel`` returns within
about two seconds even from a hung backend; replies over ``MAX_REPLY_BYTES`` are refused
before anything is allocated, and malformed replies raise :class:`BackendError`.

Callbacks: ``progress(fraction: float in 0..1, message: str)``; ``cancel`` is a
``threading.Event`` (anything with ``is_set()``) or a callable returning True to cancel.

Exceptions (all subclass :class:`ExgsClientError`):
:class:`BackendUnavailable` (connection refused, timeout, backend not installed or failed to
start), :class:`ServerGone` (a BackendUnavailable: the server died or vanished during a job),
:class:`AuthError` (401: missing/wrong token), :class:`BackendError` (any other error answer;
``.status``, ``.message`` (the server's one-line message), ``.detail``), :class:`JobFailed`
(a BackendError: the job failed; message from the server), :class:`JobCancelled`.

Binary frames: see :mod:`.frames` and docs/service.md.
"""

from __future__ import annotations

from .api import CANCEL_BUDGET, ExgsClient
from .errors import (AuthError, BackendError, BackendUnavailable, ExgsClientError, JobCancelled,
                     JobFailed, ServerGone)
from .frames import Frame, decode_frame
from .local import READY_PREFIX, LocalServer, parse_ready_line
from .transport import MAX_REPLY_BYTES

__all__ = ["ExgsClient", "Client", "Frame", "LocalServer", "ExgsClientError",
           "BackendUnavailable", "ServerGone", "AuthError", "BackendError", "JobFailed",
           "JobCancelled", "parse_ready_line", "decode_frame", "READY_PREFIX",
           "MAX_REPLY_BYTES", "CANCEL_BUDGET"]

#: Short alias (the add-on's backend module uses ``client.Client``).
Client = ExgsClient
