"""``exgs serve`` as a child process on loopback: started with ``--port 0``, its ready line
(``EXGS_SERVER_READY {json}``) read from stdout, its token from a 0600 file, its stderr kept in
a log file (whose last line explains a failed start)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

from .errors import BackendUnavailable

__all__ = ["LocalServer", "parse_ready_line", "READY_PREFIX"]

READY_PREFIX = "EXGS_SERVER_READY"


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
