"""Start/stop/check the backend, and "Set up backend" (venv + pip install of the shipped
backend source, run as a modal operator with progress)."""

from __future__ import annotations

import os
import sys

import bpy

from .. import backend, errors
from ..setup_job import SetupJob

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
            STATUS.update(text=errors.describe(e), ok=False)
            self.report({"ERROR"}, f"ExGS: {errors.describe(e)}")
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


def base_python() -> str:
    """A Python ≥ 3.10 with venv to build the backend venv from (EXGS_BASE_PYTHON or
    Blender's own interpreter)."""
    return os.environ.get("EXGS_BASE_PYTHON") or sys.executable


def setup_steps() -> tuple[list[list[str]], str]:
    """(the commands of "Set up backend", the venv folder): ``python -m venv VENV`` with
    :func:`base_python`, then ``VENV/python -m pip install [-c constraints] backend_src``
    (``EXGS_SETUP_PIP_ARGS`` adds pip arguments, e.g. ``--no-deps`` in tests)."""
    from .. import preferences
    src = backend_source_dir()
    if not src:
        raise errors.BackendError("the backend source is not shipped with this add-on")
    venv = preferences._default_venv()
    py = preferences.venv_python(venv)
    constraints = os.path.join(src, "constraints.txt")
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    if os.path.exists(constraints):
        pip += ["-c", constraints]
    pip += os.environ.get("EXGS_SETUP_PIP_ARGS", "").split()
    return [[base_python(), "-m", "venv", venv], pip + [src]], venv


class EXGS_OT_setup_backend(bpy.types.Operator):
    """Create a venv and pip-install the backend shipped with the add-on (runs in the
    background; progress in the status bar, Esc cancels)"""

    bl_idname = "exgs.setup_backend"
    bl_label = "Set up backend"

    _timer = None
    _job: SetupJob | None = None
    _venv = ""

    def invoke(self, context, event):
        return self._run(context, modal=not bpy.app.background and context.window is not None)

    def execute(self, context):
        return self._run(context, modal=False)

    def _run(self, context, modal: bool):
        try:
            steps, self._venv = setup_steps()
        except errors.BackendError as e:
            self.report({"ERROR"}, f"ExGS: {e}")
            return {"CANCELLED"}
        self._job = SetupJob(steps)
        if not modal:  # background / scripts: run the steps to completion
            st = self._job.run()
            return self._done(st)
        self._job.tick()  # starts step 1
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, len(steps))
        return {"RUNNING_MODAL"}

    def _done(self, st) -> set:
        if st.state == "done":
            backend.reset()
            self.report({"INFO"}, f"ExGS: backend installed in {self._venv}")
            return {"FINISHED"}
        msg = "backend setup cancelled" if st.state == "cancelled" else f"setup failed: {st.error}"
        self.report({"WARNING" if st.state == "cancelled" else "ERROR"}, f"ExGS: {msg}")
        return {"CANCELLED"}

    def _finish(self, context, st) -> set:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace:
            context.workspace.status_text_set(None)
        return self._done(st)

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancel()
            return self._finish(context, self._job.status())
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        st = self._job.tick()
        if st.state != "running":
            return self._finish(context, st)
        if context.workspace:
            context.workspace.status_text_set(f"ExGS backend setup {st.step + 1}/{st.steps}: "
                                              f"{(st.line or 'working…')[:100]}  (Esc cancels)")
        context.window_manager.progress_update(st.step)
        return {"RUNNING_MODAL"}


classes = (EXGS_OT_backend_start, EXGS_OT_backend_stop, EXGS_OT_setup_backend)


def unregister():
    try:
        backend.stop_local()
    except Exception:
        pass
