"""Jobs of the ExGS service: compress and render (submit, follow, fetch frames, cancel) and a
scene's facts. Built on :class:`.transport.HttpClient`.

Polling requests are short (``POLL_SLACK`` seconds of silence over the server's long-poll
``wait``) and a silent poll is retried until ``timeout`` seconds pass without any answer, so a
``cancel`` is seen within about two seconds even when the backend hangs.
"""

from __future__ import annotations

import base64
import time

from .errors import BackendError, BackendUnavailable, ExgsClientError, JobCancelled, JobFailed
from .frames import decode_frame
from .local import LocalServer
from .transport import HttpClient, quote

__all__ = ["ExgsClient", "POLL_SLACK", "CANCEL_BUDGET"]

#: Seconds a poll request may stay silent (beyond its long-poll wait) before it is retried.
POLL_SLACK = 0.75
#: Seconds the add-on lets a cancel wait for the server's confirmation (``cancel_wait``);
#: library users get 30 s by default (JobCancelled then means the job really ended).
CANCEL_BUDGET = 1.0


def camera_dict(c) -> dict:
    if hasattr(c, "to_dict"):
        c = c.to_dict()
    if not isinstance(c, dict):
        raise TypeError(f"camera must be a dict or have to_dict(), got {type(c).__name__}")
    return c


def cancel_requested(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class ExgsClient(HttpClient):
    """A connection to one ExGS service (thread-safe: one HTTP connection per request).
    ``cancel_wait``: seconds a cancel waits for the server to confirm the job ended."""

    cancel_wait: float = 30.0

    @classmethod
    def start_local(cls, python_executable: str | None = None, *, timeout: float = 60.0,
                    **kw) -> "ExgsClient":
        """Start ``exgs serve`` with ``python_executable`` and connect to it (see the package
        doc); ``kw`` go to :class:`.local.LocalServer`."""
        srv = LocalServer(python_executable, **kw)
        client = cls(srv.url, srv.token, timeout=timeout)
        client.server = srv
        return client

    # ------------------------------------------------------------------ jobs
    def _poll(self, method, path, wait: float, during_job, **kw):
        """A long-poll request, retried while the server stays silent (socket timeout) and
        ``cancel`` is not set, for at most ``self.timeout`` seconds of silence."""
        cancel = kw.pop("cancel", None)
        t0 = time.monotonic()
        while True:
            try:
                return self._request(method, path, timeout=wait + POLL_SLACK,
                                     during_job=during_job, **kw)
            except BackendUnavailable as e:
                if "timed out" not in str(e) or time.monotonic() - t0 > self.timeout:
                    raise
                if cancel_requested(cancel):
                    raise JobCancelled(f"{during_job} cancelled") from None

    def job(self, job_id: str, since: int = -1, wait: float = 0.0,
            during_job: str | None = None, cancel=None) -> dict:
        return self._poll("GET", f"/v1/jobs/{quote(job_id)}", wait, during_job,
                          query={"since": int(since), "wait": float(wait)}, cancel=cancel)

    def cancel_job(self, job_id: str) -> dict:
        return self._request("POST", f"/v1/jobs/{quote(job_id)}/cancel")

    def delete_job(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{quote(job_id)}")

    def frame(self, job_id: str, index: int, wait: float = 0.0,
              during_job: str | None = None, cancel=None):
        """Frame ``index`` of a render job → :class:`Frame` (or PNG bytes). With ``wait``
        the server holds the request up to that many seconds until the frame exists
        (otherwise BackendError 409, whose ``detail`` has the job's progress)."""
        data, ctype = self._poll("GET", f"/v1/jobs/{quote(job_id)}/frames/{int(index)}",
                                 wait, during_job, query={"wait": float(wait)} if wait else None,
                                 raw=True, headers={"Accept": "*/*"}, cancel=cancel)
        if ctype.startswith("image/png"):
            return bytes(data)
        return decode_frame(data)

    def wait(self, job_id: str, progress=None, cancel=None, on_frame=None,
             timeout: float | None = None, poll: float = 0.25) -> dict:
        """Follow a job until it ends → its final dict. Calls ``progress(fraction, message)``
        on every change and ``on_frame(i)`` once per newly finished frame (in order).
        Raises JobFailed, JobCancelled, ServerGone."""
        what = f"job {job_id}"
        since, seen_frames = -1, 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if cancel_requested(cancel):
                self._cancel_quickly(job_id, what)
                raise JobCancelled(f"{what} cancelled")
            if deadline is not None and time.monotonic() > deadline:
                raise BackendUnavailable(f"{what} did not finish within {timeout:.0f} s")
            try:
                info = self.job(job_id, since=since, wait=poll, during_job=what, cancel=cancel)
            except JobCancelled:
                self._cancel_quickly(job_id, what)
                raise
            since = _int(info.get("version"), since)
            if progress is not None:
                progress(_float(info.get("progress")), str(info.get("message") or ""))
            if on_frame is not None:
                ready = _int(info.get("frames_ready"), 0)
                while seen_frames < ready:
                    on_frame(seen_frames)
                    seen_frames += 1
            state = info.get("state")
            if state == "done":
                return info
            if state == "failed":
                raise JobFailed(0, str(info.get("error") or f"{what} failed"))
            if state == "cancelled":
                raise JobCancelled(f"{what} was cancelled")

    def _cancel_quickly(self, job_id: str, what: str) -> bool:
        """Tell the server to cancel and wait until it confirms, for at most
        ``self.cancel_wait`` seconds in all (a hung server costs no more than that).
        False when the server did not answer at all."""
        deadline = time.monotonic() + self.cancel_wait
        try:
            info = self._request("POST", f"/v1/jobs/{quote(job_id)}/cancel", during_job=what,
                                 timeout=max(0.2, min(self.timeout, self.cancel_wait)))
            while info.get("state") not in ("done", "failed", "cancelled"):
                left = deadline - time.monotonic()
                if left <= 0.05:
                    return
                wait = min(0.5, max(0.0, left - POLL_SLACK))
                info = self._request("GET", f"/v1/jobs/{quote(job_id)}",
                                     query={"since": _int(info.get("version"), -1),
                                            "wait": wait},
                                     timeout=max(0.05, left), during_job=what)
        except BackendUnavailable:
            return False
        except ExgsClientError:
            pass
        return True

    def _forget(self, job_id: str, timeout: float | None = None) -> None:
        try:
            self._request("DELETE", f"/v1/jobs/{quote(job_id)}",
                          timeout=min(self.timeout, 10.0) if timeout is None else timeout)
        except ExgsClientError:
            pass

    # ------------------------------------------------------------------ facts
    def set_facts(self, scene_id: str, *, kept_fraction=None, painter_delta=None,
                  refined: bool = False) -> dict:
        """Store a scene's facts once (``PUT /v1/scenes/{id}/facts``): the kept fraction of
        the original scene's Gaussians (GaussPainter's gate; None = unknown), the per-scene
        painter delta (bytes or None) and whether the Gaussians were refined after pruning
        (sent only when True: services from before session 7 do not know the field). Later
        restore renders use them."""
        body = {"kept_fraction": None if kept_fraction is None else float(kept_fraction),
                "painter_delta": None if painter_delta is None else
                base64.b64encode(bytes(painter_delta)).decode("ascii")}
        if refined:
            body["refined"] = True
        return self._request("PUT", f"/v1/scenes/{quote(scene_id)}/facts", json_body=body)

    # ------------------------------------------------------------------ compress
    def submit_compress(self, scene_id: str, *, ratio=None, keep=None, sh_degree: int = 0,
                        cameras=None, adapt=None, adapt_form=None,
                        adapt_min_gain=None, refine=None, shot=None) -> dict:
        """``keep``: the target (fraction of Gaussians to keep, or a count); ``refine``:
        seconds to distil the survivors against the full scene (no extra bytes); ``shot``:
        the cameras the file will be rendered from (scored, refined and judged on)."""
        body = {"sh_degree": int(sh_degree)}
        if refine is not None:
            body["refine"] = float(refine)
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
            body["cameras"] = [camera_dict(c) for c in cameras]
        if shot:
            body["shot"] = [camera_dict(c) for c in shot]
        return self._request("POST", f"/v1/scenes/{quote(scene_id)}/compress", json_body=body)

    def compress(self, scene_id: str, *, ratio=None, keep=None, sh_degree: int = 0,
                 cameras=None, adapt=None, adapt_form=None, adapt_min_gain=None,
                 refine=None, shot=None, progress=None, cancel=None) -> dict:
        """UGC compression in the backend → ``{"scene_id", "stats", "file_bytes", ...}``;
        the .exgs is ``download(result["scene_id"])``. ``adapt``: seconds to fine-tune a
        per-scene painter delta stored in the file."""
        job = self.submit_compress(scene_id, ratio=ratio, keep=keep, sh_degree=sh_degree,
                                   cameras=cameras, adapt=adapt, adapt_form=adapt_form,
                                   adapt_min_gain=adapt_min_gain, refine=refine, shot=shot)
        jid = _job_id(job)
        try:
            info = self.wait(jid, progress=progress, cancel=cancel)
        except JobCancelled:
            self._forget(jid, 0.5)  # wait() told the server; a hung one costs ≤ 0.5 s more
            raise
        except BackendUnavailable:
            raise
        except BaseException:
            self._forget(jid)
            raise
        self._forget(jid)
        res = info.get("result") or {}
        return res if isinstance(res, dict) else {}

    # ------------------------------------------------------------------ render
    def submit_render(self, scene_id: str, cameras, *, size=None, background=(0.0, 0.0, 0.0),
                      restore: bool = False, passes=("rgb", "alpha", "depth"),
                      format: str = "f32", sh_degree=None, use_delta: bool = True,
                      painter_delta=None, kept_fraction=None, temporal: bool = False,
                      warmup: int = 0, linear: bool = False, restart: int = 0,
                      blend: float = 0.0) -> dict:
        """``painter_delta`` / ``kept_fraction``: per-render facts for services without
        ``PUT /facts`` (sent as the body's ``painter_delta`` / ``keep``). ``temporal`` (with
        ``restore``): the cameras are a smooth path, stabilise; ``warmup``: the first
        ``warmup`` cameras are only the history of the others (not returned); ``linear``:
        rgb as premultiplied scene-linear (stabilised in that space)."""
        body = {"cameras": [camera_dict(c) for c in cameras],
                "background": [float(x) for x in background], "restore": bool(restore),
                "passes": list(passes), "format": format}
        if temporal:
            body["temporal"] = True
        if warmup:
            body["warmup"] = int(warmup)
        if linear:
            body["linear"] = True
        if restart:
            body["restart"], body["blend"] = int(restart), float(blend)
        if not use_delta:
            body["use_delta"] = False
        if painter_delta is not None:
            body["painter_delta"] = base64.b64encode(bytes(painter_delta)).decode("ascii")
        if kept_fraction is not None:
            body["keep"] = float(kept_fraction)
        if size is not None:
            body["size"] = [int(size[0]), int(size[1])]
        if sh_degree is not None:
            body["sh_degree"] = int(sh_degree)
        return self._request("POST", f"/v1/scenes/{quote(scene_id)}/render", json_body=body)

    def render(self, scene_id: str, cameras, *, size=None, background=(0.0, 0.0, 0.0),
               restore: bool = False, passes=("rgb", "alpha", "depth"), format: str = "f32",
               sh_degree=None, use_delta: bool = True, painter_delta=None, kept_fraction=None,
               temporal: bool = False, warmup: int = 0, linear: bool = False,
               restart: int = 0, blend: float = 0.0, progress=None, cancel=None) -> list:
        """Render ``cameras`` → one :class:`Frame` per camera after the first ``warmup``
        (PNG bytes for format="png"). Each frame is fetched (long poll) as soon as it is
        rendered, while later ones render; the job is deleted afterwards."""
        cameras = list(cameras)
        job = self.submit_render(scene_id, cameras, size=size, background=background,
                                 restore=restore, passes=passes, format=format,
                                 sh_degree=sh_degree, use_delta=use_delta,
                                 painter_delta=painter_delta, kept_fraction=kept_fraction,
                                 temporal=temporal, warmup=warmup, linear=linear,
                                 restart=restart, blend=blend)
        jid = _job_id(job)
        what = f"render job {jid}"
        n = len(cameras) - int(warmup)
        out: list = []
        forget = True
        try:
            while len(out) < n:  # long-poll each frame in turn: one request per frame
                if cancel_requested(cancel):
                    forget = self._cancel_quickly(jid, what)
                    raise JobCancelled(f"{what} cancelled")
                try:
                    out.append(self.frame(jid, len(out), wait=0.25, during_job=what,
                                          cancel=cancel))
                except JobCancelled:
                    forget = self._cancel_quickly(jid, what)
                    raise
                except BackendUnavailable:
                    forget = False  # gone or hung: nothing to tell it
                    raise
                except BackendError as e:
                    self._frame_not_ready(e, what, len(out), n, progress)
                    continue
                if progress is not None:
                    progress(len(out) / n, f"frame {len(out)}/{n}")
        finally:
            if forget:
                self._forget(jid, min(self.cancel_wait, 2.0))
        return out

    @staticmethod
    def _frame_not_ready(e: BackendError, what: str, done: int, n: int, progress) -> None:
        """409 (not rendered yet): report the job's progress; a failed/cancelled job raises."""
        d = e.detail if isinstance(e.detail, dict) else {}
        if e.status == 409:
            if progress is not None:
                progress(_float(d.get("progress"), done / n), str(d.get("message") or ""))
            return
        if e.status == 404 and d.get("state") == "failed":
            raise JobFailed(0, str(d.get("error") or f"{what} failed")) from None
        if e.status == 404 and d.get("state") == "cancelled":
            raise JobCancelled(f"{what} was cancelled") from None
        raise e


def _job_id(job) -> str:
    jid = job.get("id") if isinstance(job, dict) else None
    if not isinstance(jid, str) or not jid:
        raise BackendError(0, "the backend accepted the job but returned no job id")
    return jid


def _int(v, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return default


def _float(v, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return default
