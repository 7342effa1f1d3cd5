""""Set up backend" as the Preferences button runs it: the MODAL path (invoke → timer ticks →
finish), driven with a fake step list. The step runner itself is tested without bpy."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from exgs_blender.setup_job import SetupJob  # noqa: E402  (stdlib only)

PY = sys.executable


def test_steps_run_in_order_and_report_the_last_line(tmp_path):
    mark = tmp_path / "order.txt"
    steps = [[PY, "-c", f"open({str(mark)!r}, 'a').write('1'); print('one')"],
             [PY, "-c", f"open({str(mark)!r}, 'a').write('2'); print('two')"]]
    job = SetupJob(steps)
    seen = set()
    st = job.tick()
    while st.state == "running":
        seen.add(st.step)
        st = job.tick()
    assert st.state == "done" and seen == {0, 1} and mark.read_text() == "12"


def test_a_failing_step_stops_with_pip_s_error_line():
    steps = [[PY, "-c", "import sys; print('Collecting x'); print('ERROR: no matching "
                        "distribution for x'); sys.exit(1)"],
             [PY, "-c", "raise SystemExit('must not run')"]]
    st = SetupJob(steps).run(poll=0.02)
    assert st.state == "failed" and st.step == 0
    assert "ERROR: no matching distribution for x" in st.error and "\n" not in st.error


def test_missing_program_and_cancel():
    st = SetupJob([["/nonexistent/python", "-m", "venv", "x"]]).run(poll=0.02)
    assert st.state == "failed" and "/nonexistent/python" in st.error
    job = SetupJob([[PY, "-c", "import time; time.sleep(30)"]])
    job.tick()
    job.cancel()
    assert job.status().state == "cancelled" and job._proc.poll() is not None


MODAL = r'''
import time, types
from bl_ext.user_default.exgs.operators import backend_ops
Op = backend_ops.EXGS_OT_setup_backend

class WM:
    def __init__(self): self.calls = []
    def event_timer_add(self, t, window=None): self.calls.append("timer_add"); return "T"
    def event_timer_remove(self, t): self.calls.append("timer_remove")
    def modal_handler_add(self, op): self.calls.append("modal_handler_add")
    def progress_begin(self, a, b): self.calls.append(("progress_begin", a, b))
    def progress_update(self, v): self.calls.append(("progress_update", v))
    def progress_end(self): self.calls.append("progress_end")

class WS:
    def __init__(self): self.texts = []
    def status_text_set(self, t): self.texts.append(t)

def drive(steps, esc_after=None):
    """Run the operator's invoke/modal code with a fake window manager and timer events."""
    backend_ops.setup_steps = lambda: (steps, "/fake/venv")
    reports = []
    op = types.SimpleNamespace(report=lambda lvl, msg: reports.append((sorted(lvl)[0], msg)),
                               _timer=None, _job=None, _venv="")
    for name in ("_run", "_done", "_finish", "modal"):
        setattr(op, name, types.MethodType(getattr(Op, name), op))
    ctx = types.SimpleNamespace(window_manager=WM(), workspace=WS(), window=object())
    r = op._run(ctx, modal=True)
    out = [sorted(r)[0]]
    n = 0
    while ("RUNNING_MODAL" in r or "PASS_THROUGH" in r) and n < 2000:
        n += 1
        ev = types.SimpleNamespace(type="ESC" if esc_after is not None and n > esc_after
                                   else ("MOUSEMOVE" if n == 1 else "TIMER"))
        r = op.modal(ctx, ev)
        out.append(sorted(r)[0])
        time.sleep(0.02)
    return dict(results=out, reports=reports, wm=[str(c) for c in ctx.window_manager.calls],
                texts=[t for t in ctx.workspace.texts if t])
'''


def test_modal_setup_with_a_fake_step_list(run_bpy, tmp_path):
    mark = tmp_path / "ran.txt"
    res = run_bpy(f"""
        import time
        py = {PY!r}
        ok = drive([[py, "-c", "print('creating venv')"],
                    [py, "-c", "open({str(mark)!r}, 'w').write('pip'); print('Successfully installed exgs')"]])
        bad = drive([[py, "-c", "import sys; print('ERROR: could not build wheels'); sys.exit(1)"]])
        esc = drive([[py, "-c", "import time; time.sleep(60)"]], esc_after=3)
        RESULT = dict(ok=ok, bad=bad, esc=esc)
    """, helpers=MODAL, timeout=120)
    ok, bad, esc = res["ok"], res["bad"], res["esc"]
    assert ok["results"][0] == "RUNNING_MODAL" and ok["results"][-1] == "FINISHED", ok
    assert "PASS_THROUGH" in ok["results"]  # non-timer events pass through
    assert ok["reports"] == [["INFO", "ExGS: backend installed in /fake/venv"]]
    assert mark.read_text() == "pip"
    assert ok["wm"][:3] == ["timer_add", "modal_handler_add", "('progress_begin', 0, 2)"]
    assert ok["wm"][-2:] == ["timer_remove", "progress_end"]
    assert any(t.startswith("ExGS backend setup ") for t in ok["texts"])
    assert bad["results"][-1] == "CANCELLED" and bad["reports"][0][0] == "ERROR"
    assert "ERROR: could not build wheels" in bad["reports"][0][1]
    assert esc["results"][-1] == "CANCELLED" and esc["reports"] == [
        ["WARNING", "ExGS: backend setup cancelled"]]
