"""The steps of "Set up backend" (create a venv, pip-install the shipped backend source) run
one after the other as child processes, polled without blocking (stdlib only, no bpy).

The operator's modal handler calls :meth:`SetupJob.tick` on every timer event; the blocking
path calls :meth:`SetupJob.run`. Both share the same code, so a test that drives ``tick``
with a fake step list exercises what the Preferences button runs.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass


def pip_error(text: str) -> str:
    """The most telling line of pip's output (its last ERROR line, or the last line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("ERROR") or "error:" in ln]
    return (errs or lines or ["unknown error"])[-1][:300]


@dataclass
class Status:
    state: str        # "running" | "done" | "failed" | "cancelled"
    step: int         # index of the current step (0-based)
    steps: int        # number of steps
    line: str         # last output line of the current step
    error: str = ""   # one line, when failed


class SetupJob:
    """Run ``steps`` (argument lists) in order; stdout+stderr of each step are collected."""

    def __init__(self, steps: list[list[str]]):
        self.steps = [list(map(str, s)) for s in steps]
        self.step = 0
        self.log: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._state = "running"
        self._error = ""

    def _start(self) -> None:
        self.log = []
        self._proc = subprocess.Popen(self.steps[self.step], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.log.append(line.rstrip())

    def _fail(self, msg: str) -> Status:
        self._state, self._error = "failed", msg
        return self.status()

    def status(self) -> Status:
        return Status(self._state, self.step, len(self.steps),
                      self.log[-1] if self.log else "", self._error)

    def tick(self) -> Status:
        """Advance without blocking: start the next step when the previous one succeeded."""
        if self._state != "running":
            return self.status()
        if not self.steps:
            self._state = "done"
            return self.status()
        try:
            if self._proc is None:
                self._start()
                return self.status()
            rc = self._proc.poll()
            if rc is None:
                return self.status()
            if self._reader is not None:
                self._reader.join(5.0)
            if rc != 0:
                what = " ".join(self.steps[self.step][:3])
                return self._fail(f"step {self.step + 1}/{len(self.steps)} ({what}) failed: "
                                  f"{pip_error(chr(10).join(self.log))}")
            self.step += 1
            self._proc = None
            if self.step >= len(self.steps):
                self._state = "done"
                return self.status()
            self._start()
        except OSError as e:
            return self._fail(f"cannot run {self.steps[self.step][0]}: {e.strerror or e}")
        return self.status()

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._state == "running":
            self._state = "cancelled"

    def run(self, poll: float = 0.1) -> Status:
        """Blocking: tick until the job ends."""
        st = self.tick()
        while st.state == "running":
            time.sleep(poll)
            st = self.tick()
        return st
