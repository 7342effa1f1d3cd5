"""``exgs serve``: the job service the Blender add-on (and render farms) talk to.

Binds loopback by default on a port the OS picks (``--port 0``). When it accepts
connections it prints exactly one line to stdout and flushes it::

    EXGS_SERVER_READY {"host": "127.0.0.1", "port": 40123, "url": "http://127.0.0.1:40123",
                       "token_file": "/tmp/.../token", "pid": 4242, "version": "0.1.0",
                       "device": "cpu"}

(on one line). Every request needs ``Authorization: Bearer <token>``; the token is read from
``--token-file`` when that file holds one, otherwise generated and written there (0600).
Logs go to stderr. See docs/service.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import logging
import os
import shutil
import socket
import sys
import tempfile


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP job service (for the Blender add-on)",
                       description="Run the ExGS job service (FastAPI + uvicorn).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 serves other machines)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    p.add_argument("--token-file", default=None,
                   help="file holding the bearer token; created (0600) with a new token when "
                        "missing or empty (default: a private temporary file)")
    p.add_argument("--allow-dir", default=None,
                   help="allow POST /v1/scenes/open for files inside this folder")
    p.add_argument("--device", default=os.environ.get("EXGS_DEVICE", "auto"),
                   choices=["auto", "cpu", "cuda"],
                   help="render/restore device (default: $EXGS_DEVICE or auto)")
    p.add_argument("--data-dir", default=None,
                   help="folder for uploads, .exgs results and frames (default: a temporary "
                        "folder removed at exit)")
    p.add_argument("--painter-weights", default=os.environ.get("EXGS_PAINTER_WEIGHTS"),
                   help="GaussPainter weights folder (default: $EXGS_PAINTER_WEIGHTS or the "
                        "shipped weights)")
    p.add_argument("--max-upload-mb", type=float, default=4096.0,
                   help="largest accepted upload, MiB (default 4096)")
    p.add_argument("--max-image-side", type=int, default=8192,
                   help="largest rendered width/height, pixels (default 8192)")
    p.add_argument("--max-frames", type=int, default=10_000,
                   help="most cameras in one render request (default 10000)")
    p.add_argument("--max-jobs", type=int, default=32,
                   help="most open (queued + running) jobs (default 32)")
    p.add_argument("--max-gaussians", type=int, default=50_000_000, metavar="N",
                   help="most Gaussians per scene, checked from its header (default 50M)")
    p.add_argument("--max-scene-memory-mb", type=float, default=None, metavar="MB",
                   help="decoded scenes held at once; least recently used ones are evicted "
                        "(default: half of the machine's memory)")
    p.add_argument("--restore-memo-mb", type=float, default=512.0, metavar="MB",
                   help="recent frames' renders + restorations kept for stabilised (temporal) "
                        "renders (default 512 ≈ 20 frames of 1280×720); a sequential Blender "
                        "render restores each frame once while about 10 frames fit")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="close a connection whose request headers take longer (default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                   help="408 when a request body stalls this long (default 30)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def _bind(host: str, port: int) -> socket.socket:
    from ..errors import UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not in 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: {e.strerror}") from None
    last = None
    for family, stype, proto, _, addr in infos:
        sock = socket.socket(family, stype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(128)
            sock.set_inheritable(True)
            return sock
        except OSError as e:
            last = e
            sock.close()
    raise UsageError(f"cannot listen on {host}:{port}: {getattr(last, 'strerror', last)}")


def _scene_memory(mb: float | None) -> int:
    """Bytes of decoded scenes the server holds: ``mb`` MiB, or half of physical memory."""
    if mb is not None:
        return int(mb * (1 << 20))
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 8 << 30


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    import uvicorn

    from .. import __version__
    from ..errors import UsageError
    from ..pipeline import resolve_device
    from ..service.app import create_app
    from ..service.protocol import timed_protocol
    from ..service.auth import load_or_create_token
    from ..service.config import Limits, ServiceConfig

    # OpenMP worker threads (numba's and torch's) busy-wait after each parallel region by
    # default; in a server that must also answer HTTP (and on shared machines) that only
    # burns the cores the request handling needs. Must be set before torch/numba load.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    allow = None
    if args.allow_dir:
        allow = os.path.realpath(os.path.expanduser(args.allow_dir))
        if not os.path.isdir(allow):
            raise UsageError(f"--allow-dir {args.allow_dir}: not a folder")
    for name, v in (("--max-upload-mb", args.max_upload_mb), ("--max-image-side",
                    args.max_image_side), ("--max-frames", args.max_frames),
                    ("--max-jobs", args.max_jobs), ("--header-timeout", args.header_timeout),
                    ("--max-gaussians", args.max_gaussians),
                    ("--max-scene-memory-mb", args.max_scene_memory_mb or 1.0),
                    ("--restore-memo-mb", args.restore_memo_mb),
                    ("--body-timeout", args.body_timeout)):
        if not (v > 0 and math.isfinite(v)):
            raise UsageError(f"{name} must be a positive finite number, got {v}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not in 0..65535")
    device = resolve_device(args.device)  # fails early when cuda is asked for but missing
    token, token_file = load_or_create_token(args.token_file)
    own_data = args.data_dir is None
    data_dir = tempfile.mkdtemp(prefix="exgs-serve-data-") if own_data else args.data_dir
    side = int(args.max_image_side)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * (1 << 20)), max_image_side=side,
                    max_pixels=side * side, max_frames=int(args.max_frames),
                    max_open_jobs=int(args.max_jobs), header_timeout_s=args.header_timeout,
                    max_gaussians=int(args.max_gaussians),
                    max_scene_memory=_scene_memory(args.max_scene_memory_mb),
                    body_timeout_s=args.body_timeout,
                    restore_memo_bytes=int(args.restore_memo_mb * (1 << 20)))
    config = ServiceConfig(token=token, token_file=token_file, allow_dir=allow, device=device,
                           data_dir=os.path.abspath(data_dir), painter_weights=args.painter_weights,
                           limits=limits)
    app = None

    def cleanup():
        if app is not None:
            app.state.jobs.shutdown()
        if own_data:
            shutil.rmtree(data_dir, ignore_errors=True)
        if args.token_file is None:  # our private temporary token folder
            shutil.rmtree(os.path.dirname(token_file), ignore_errors=True)

    try:
        app = create_app(config)
        if not os.environ.get("EXGS_NO_WARMUP"):  # kernels compiled/loaded now, not on frame 1
            from ..render.viewport import tune_allocator, warm_up_in_background

            tune_allocator()  # per-frame arrays stay in the heap (no page faults per frame)
            warm_up_in_background()
        sock = _bind(args.host, args.port)
        host, port = sock.getsockname()[:2]
        if not _is_loopback(args.host):
            print(f"exgs serve: listening on {args.host}:{port} for other machines; keep the "
                  f"token in {token_file} secret (traffic is plain HTTP)", file=sys.stderr)
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"
        ready = {"host": host, "port": port, "url": url, "token_file": token_file,
                 "pid": os.getpid(), "version": __version__, "device": device}

        class _Server(uvicorn.Server):
            async def startup(self, sockets=None):
                await super().startup(sockets)
                if not self.should_exit:
                    sys.stdout.write("EXGS_SERVER_READY " + json.dumps(ready) + "\n")
                    sys.stdout.flush()

            @contextlib.contextmanager
            def capture_signals(self):
                # uvicorn re-raises SIGTERM/SIGINT when leaving this context, which ends the
                # process: clean up inside it
                with super().capture_signals():
                    try:
                        yield
                    finally:
                        cleanup()

        uconfig = uvicorn.Config(app, log_level=args.log_level, access_log=False,
                                 lifespan="off", timeout_graceful_shutdown=3,
                                 server_header=False,
                                 http=timed_protocol(limits.header_timeout_s))
        server = _Server(uconfig)
        server.run(sockets=[sock])
    finally:
        cleanup()
    return 0
