"""Start/stop/check the backend, and "Set up backend" (venv + pip install of the shipped
backend source, run as a modal operator with progress)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import bpy

from .. import backend

STATUS = {"text": "not connected", "device": "", "ok": False}


def _health_text(h: dict) -> str:
    dev = h.get("device") or h.get("devices") or ""
    if isinstance(dev, dict):
        dev = ", ".join(k for k, v in dev.items() if v)
    return f"{h.get('version', '?')} on {dev or '?'}"


class EXGS_OT_backend_start(bpy.types.Operator):
    """Connect to the backend (starting the local server if needed) and check it"""

    bl_idname = "exgs.backend_start"
    bl_label = "Connect Backend"

    def execute(self, context):
        backend.reset()
        backend.prime()
        try:
            h = backend.connection().health()
        except Exception as e:
            STATUS.update(text=backend.describe(e), ok=False)
            self.report({"ERROR"}, f"ExGS: {backend.describe(e)}")
            return {"CANCELLED"}
        STATUS.update(text=_health_text(h), ok=True, device=str(h.get("device", "")))
        self.report({"INFO"}, f"ExGS backend: {STATUS['text']}")
        return {"FINISHED"}


class EXGS_OT_backend_stop(bpy.types.Operator):
    """Stop the local backend server started by Blender"""

    bl_idname = "exgs.backend_stop"
    bl_label = "Stop Backend"

    def execute(self, context):
        backend.stop_local()
        backend.reset()
        STATUS.update(text="stopped", ok=False)
        return {"FINISHED"}


def backend_source_dir() -> str:
    """backend_src/ shipped in the extension zip (or the repository's backend/)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cand in (os.path.join(here, "backend_src"), os.path.join(os.path.dirname(here), "backend")):
        if os.path.exists(os.path.join(cand, "pyproject.toml")):
            return cand
    return ""


def _pip_error(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("ERROR") or "error:" in ln]
    return (errs or lines or ["unknown error"])[-1][:300]


def base_python() -> str:
    """A Python ≥ 3.10 with venv to build the backend venv from (EXGS_BASE_PYTHON or
    Blender's own interpreter)."""
    return os.environ.get("EXGS_BASE_PYTHON") or sys.executable


class EXGS_OT_setup_backend(bpy.types.Operator):
    """Create a venv and pip-install the backend shipped with the add-on (runs in the
    background; progress in the status bar, Esc cancels)"""

    bl_idname = "exgs.setup_backend"
    bl_label = "Set up backend"

    _timer = None
    _proc = None
    _steps = None
    _log: list

    def invoke(self, context, event):
        return self._run(context, modal=not bpy.app.background)

    def execute(self, context):
        return self._run(context, modal=False)

    def _run(self, context, modal: bool):
        from .. import preferences
        src = backend_source_dir()
        if not src:
            self.report({"ERROR"}, "ExGS: the backend source is not shipped with this add-on")
            return {"CANCELLED"}
        venv = preferences._default_venv()
        py = preferences.venv_python(venv)
        constraints = os.path.join(src, "constraints.txt")
        pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        if os.path.exists(constraints):
            pip += ["-c", constraints]
        pip += os.environ.get("EXGS_SETUP_PIP_ARGS", "").split()  # e.g. --no-deps (tests)
        self._steps = [[base_python(), "-m", "venv", venv], pip + [src]]
        self._log = []
        self._step = 0
        self._venv = venv
        if not modal:  # background / scripts: run the steps to completion
            for step in self._steps:
                try:
                    r = subprocess.run(step, capture_output=True, text=True,
                                       stdin=subprocess.DEVNULL)
                except OSError as e:
                    self.report({"ERROR"}, f"ExGS: setup failed: {e}")
                    return {"CANCELLED"}
                if r.returncode != 0:
                    self.report({"ERROR"}, f"ExGS: setup failed: {_pip_error(r.stdout + r.stderr)}")
                    return {"CANCELLED"}
            backend.reset()
            self.report({"INFO"}, f"ExGS: backend installed in {venv}")
            return {"FINISHED"}
        self._start_step()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, len(self._steps))
        return {"RUNNING_MODAL"}

    def _start_step(self):
        self._proc = subprocess.Popen(  # noqa: S603self._steps[self._step], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            self._log.append(line.rstrip())

    def _finish(self, context, ok: bool, msg: str):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace:
            context.workspace.status_text_set(None)
        self.report({"INFO" if ok else "ERROR"}, f"ExGS: {msg}")
        return {"FINISHED"} if ok else {"CANCELLED"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._proc.terminate()
            return self._finish(context, False, "backend setup cancelled")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        last = self._log[-1] if self._log else "working…"
        if context.workspace:
            context.workspace.status_text_set(f"ExGS backend setup {self._step + 1}/"
                                              f"{len(self._steps)}: {last[:100]}")
        context.window_manager.progress_update(self._step)
        rc = self._proc.poll()
        if rc is None:
            return {"RUNNING_MODAL"}
        if rc != 0:
            return self._finish(context, False, f"setup failed: {_pip_error(chr(10).join(self._log))}")
        self._step += 1
        if self._step < len(self._steps):
            self._start_step()
            return {"RUNNING_MODAL"}
        backend.reset()
        return self._finish(context, True, f"backend installed in {self._venv}")


classes = (EXGS_OT_backend_start, EXGS_OT_backend_stop, EXGS_OT_setup_backend)


def unregister():
    try:
        backend.stop_local()
    except Exception:
        pass
