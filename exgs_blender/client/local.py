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
        try:
            d["url"] = f"http://{d.get('host', '127.0.0.1')}:{int(d['port'])}"
        except (TypeError, ValueError, OverflowError):
            return None
    return d if isinstance(d["url"], str) else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


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
                 extra_args=(), env: dict | None = None, startup_timeout: float = 120.0,
                 silent_timeout: float = 20.0, cancel=None):
        """``startup_timeout``: seconds to wait for the ready line; ``silent_timeout``: give
        up earlier when the process is alive but has written nothing and used no CPU for
        that long (a hung interpreter); ``cancel``: an Event (or callable) that aborts the
        wait. On failure the log is kept and its path is in the message."""
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
        self.ready = self._wait_ready(startup_timeout, silent_timeout, cancel)
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

    def _activity(self) -> tuple:
        """What changes while the child makes progress: its log size and CPU time."""
        try:
            size = os.path.getsize(self.log_path)
        except OSError:
            size = -1
        return size, cpu_seconds(self.process.pid)

    def _give_up(self, why: str) -> BackendUnavailable:
        self.stop(keep_log=True)
        return BackendUnavailable(f"the backend ({self.python}) {why}; log: {self.log_path}")

    def _wait_ready(self, timeout: float, silent_timeout: float = 20.0, cancel=None) -> dict:
        t0 = time.monotonic()
        deadline = t0 + timeout
        last, last_change = self._activity(), t0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise self._give_up(f"did not report ready within {timeout:.0f} s")
            if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set")
                                       else cancel()):
                raise self._give_up("start was cancelled")
            act = self._activity()
            if act != last:
                last, last_change = act, now
            elif act[1] is not None and now - last_change > silent_timeout:
                raise self._give_up(f"is running but silent (no output, no CPU time) for "
                                    f"{silent_timeout:.0f} s")
            try:
                line = self._lines.get(timeout=min(deadline - now, 0.25))
            except queue.Empty:
                continue
            last_change = time.monotonic()
            if line is None:  # stdout closed: the process ended
                raise self._ended()
            d = parse_ready_line(line)
            if d is not None:
                return d

    def _ended(self) -> BackendUnavailable:
        try:
            rc = self.process.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        self._log.flush()
        tail = _tail(self.log_path)
        if "No module named" in tail and "exgs" in tail:
            self.stop()
            return BackendUnavailable(
                f"the ExGS backend is not installed in {self.python} ({tail}); "
                f"install it there with: {self.python} -m pip install <exgs backend>")
        self.stop(keep_log=bool(tail))
        return BackendUnavailable(f"the backend ({self.python}) exited with code {rc}"
                                  f"{': ' + tail if tail else ''}"
                                  f"{'; log: ' + self.log_path if tail else ''}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def describe_exit(self) -> str:
        rc = self.process.poll()
        if rc is None:
            return "still running"
        tail = _tail(self.log_path)
        return f"exit code {rc}{': ' + tail if tail else ''}"

    def stop(self, timeout: float = 5.0, keep_log: bool = False) -> None:
        """Stop the process and remove its folder (token, data); with ``keep_log`` the log
        is first moved to ``<tmp>/exgs-serve-<pid>.log`` (``log_path`` follows it)."""
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
        if keep_log and os.path.exists(self.log_path):
            kept = os.path.join(tempfile.gettempdir(), f"exgs-serve-{self.process.pid}.log")
            try:
                os.replace(self.log_path, kept)
                self.log_path = kept
            except OSError:
                pass
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)  # token + data of this server
