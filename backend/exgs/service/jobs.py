"""Heavy work (compress, render) as jobs run by one worker thread per device, fairly across
clients.

Fairness (issue 18, farms; :mod:`.farm`): every job belongs to a *client*; each device's
queue (:class:`~.farm.FairQueue`) takes jobs round-robin across clients, in submission order
within a client. One client may hold at most ``max_open - max_open // 8`` open jobs. A job
function may be a *generator*: each ``yield`` (the render job yields after every frame) ends
its turn — the worker then serves the next client's job and comes back to it later, at the
head of its client's queue — so one job of 500 frames does not hold the device either.

A job goes ``queued → running → done | failed | cancelled``. Its function receives a
:class:`JobContext`: ``ctx.progress(fraction, message)`` reports progress (0..1) and raises
:class:`Cancelled` once a cancel was requested, ``ctx.check()`` only checks, and
``ctx.add_frame(bytes | LazyFrame, media_type)`` stores a finished frame (in memory up to a
budget shared by all jobs, on disk beyond it) so it can be fetched while later frames are
still rendering. A :class:`LazyFrame` is encoded when first fetched (in the HTTP thread pool),
which takes the encoding off the worker's critical path.

Every state change bumps ``job.version``; ``JobManager.wait(job, since, timeout)`` blocks
until the version passes ``since`` (long polling).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ExgsError
from .farm import ANONYMOUS, MAX_SERVED_CLIENTS, FairQueue, client_of  # noqa: F401 (re-export)

log = logging.getLogger("exgs.service")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class Cancelled(Exception):
    """Raised inside a job function when its cancel flag is set."""


class JobLimitError(ExgsError):
    """Too many open jobs (HTTP 429)."""


@dataclass
class Job:
    id: str
    kind: str
    device: str
    dir: Path
    client: str = ANONYMOUS
    total_frames: int = 0
    state: str = QUEUED
    progress: float = 0.0
    message: str = "queued"
    error: str | None = None
    result: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)   # [(bytes | LazyFrame | path, media_type)]
    frame_mem: int = 0                           # bytes of frames held in memory
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    version: int = 0
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    fn: Callable | None = None
    gen: object = None                           # a generator job between its turns
    waiters: set = field(default_factory=set)    # callables run on every change

    def info(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "device": self.device,
            "client": self.client,
            "progress": round(float(self.progress), 6), "message": self.message,
            "error": self.error, "result": self.result, "frames_ready": len(self.frames),
            "frames_total": self.total_frames, "version": self.version,
            "created": self.created, "started": self.started, "finished": self.finished,
        }


class LazyFrame:
    """Frame bytes produced on first use by ``encode()`` (then kept); ``nbytes`` is their
    size (or an upper estimate), used for the memory budget."""

    def __init__(self, encode: Callable[[], bytes], nbytes: int):
        self._encode, self.nbytes = encode, int(nbytes)
        self._data = None
        self._lock = threading.Lock()

    def tobytes(self):
        with self._lock:
            if self._data is None:
                self._data = self._encode()
                self._encode = None
            return self._data

    def __len__(self) -> int:
        return self.nbytes


class JobContext:
    """Handed to a job function: progress, cancel checks and frame output."""

    def __init__(self, manager: "JobManager", job: Job):
        self._m, self.job = manager, job

    @property
    def cancelled(self) -> bool:
        return self.job.cancel_flag.is_set()

    def check(self) -> None:
        if self.job.cancel_flag.is_set():
            raise Cancelled()

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        self.check()
        with self._m._cond:
            if fraction is not None:
                f = float(fraction)
                if f == f:  # not NaN
                    self.job.progress = min(max(f, 0.0), 1.0)
            if message:
                self.job.message = " ".join(str(message).split())[:300]
            self._m._bump(self.job)

    def add_frame(self, data, media_type: str, fraction: float | None = None,
                  message: str | None = None) -> int:
        """Store frame bytes (and optionally report progress in the same change)."""
        i = len(self.job.frames)
        m = self._m
        with m._cond:
            in_memory = m.frame_mem + len(data) <= m.frame_budget
            if in_memory:
                m.frame_mem += len(data)
                self.job.frame_mem += len(data)
        if in_memory:
            item = data
        else:
            if hasattr(data, "tobytes"):  # LazyFrame, frames.ArrayFrame
                data = data.tobytes()
            path = self.job.dir / f"frame_{i:06d}"
            tmp = path.with_suffix(".part")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            item = str(path)
        with m._cond:
            self.job.frames.append((item, media_type))
            if fraction is not None:
                self.job.progress = min(max(float(fraction), 0.0), 1.0)
            if message:
                self.job.message = message
            m._bump(self.job)
        return i


class JobManager:
    """Job registry + one worker thread per device (jobs of a device run one at a time,
    taken from its :class:`FairQueue`)."""

    def __init__(self, data_dir: str, devices: list[str], max_open: int = 32,
                 max_finished: int = 256, frame_budget: int = 1 << 30):
        self.dir = Path(data_dir) / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.rglob("*.part"):  # frames half-written when a server was killed
            stale.unlink(missing_ok=True)
        self.max_open, self.max_finished = int(max_open), int(max_finished)
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queues = {d: FairQueue() for d in devices}
        self.frame_budget, self.frame_mem = int(frame_budget), 0
        self._stop = False
        self._served: OrderedDict[str, dict] = OrderedDict()  # client → finished job counts
        self._seq = itertools.count()
        self._threads = []
        for d in devices:
            t = threading.Thread(target=self._worker, args=(d,), name=f"exgs-worker-{d}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    # ------------------------------------------------------------------ internals
    def _bump(self, job: Job) -> None:
        job.version += 1
        self._cond.notify_all()
        for w in list(job.waiters):
            try:
                w()
            except Exception:  # a closed event loop at shutdown
                job.waiters.discard(w)

    def add_waiter(self, job: Job, fn: Callable[[], None]) -> None:
        """Call ``fn()`` (from the worker thread, lock held: keep it tiny) on every change."""
        with self._cond:
            job.waiters.add(fn)

    def remove_waiter(self, job: Job, fn: Callable[[], None]) -> None:
        with self._cond:
            job.waiters.discard(fn)

    def _served_count(self, job: Job) -> None:
        """Count a job that just ended for its client (lock held); the 1024 most recently
        served clients are kept."""
        c = self._served.pop(job.client, None) or {DONE: 0, FAILED: 0, CANCELLED: 0,
                                                    "frames": 0}
        c[job.state] += 1
        c["frames"] += len(job.frames)
        self._served[job.client] = c
        while len(self._served) > MAX_SERVED_CLIENTS:
            self._served.popitem(last=False)

    def _finish(self, job: Job, state: str, message: str, error: str | None = None) -> None:
        with self._cond:
            job.state, job.message, job.error = state, message, error
            self._served_count(job)
            job.finished = time.time()
            if state == DONE:
                job.progress = 1.0
            job.fn = job.gen = None
            self._bump(job)
            self._trim()

    def _release(self, job: Job) -> None:
        """Drop a job's frames (memory and disk); call with the lock held."""
        self.frame_mem -= job.frame_mem
        job.frame_mem = 0
        job.frames = []
        shutil.rmtree(job.dir, ignore_errors=True)

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINISHED]
        for j in finished[: max(0, len(finished) - self.max_finished)]:
            self._jobs.pop(j.id, None)
            self._release(j)

    def _next(self, device: str) -> Job | None:
        """Block until a queued job of ``device`` is due (its client's turn) → it, now
        RUNNING; None once shut down."""
        q = self._queues[device]
        with self._cond:
            while True:
                if self._stop:
                    return None
                job = q.pop()
                if job is None:
                    self._cond.wait()
                    continue
                if job.state == RUNNING and job.gen is not None:  # a generator job's next turn
                    return job
                if job.state != QUEUED:  # cancelled while queued
                    continue
                job.state, job.started, job.message = RUNNING, time.time(), "running"
                self._bump(job)
                return job

    def _turn(self, job: Job) -> bool:
        """Run ``job`` for one turn: to its end, or (a generator job) to its next ``yield``.
        True when it yielded (it is queued again, first of its client's jobs)."""
        if job.gen is None:
            out = job.fn(JobContext(self, job))
            if not inspect.isgenerator(out):
                return False
            job.gen = out
        if job.cancel_flag.is_set():
            job.gen.close()
            raise Cancelled()
        try:
            next(job.gen)
        except StopIteration:
            return False
        with self._cond:
            if not self._stop:
                self._queues[job.device].put(job.client, job, first=True)
                self._cond.notify_all()
        return True

    def _worker(self, device: str) -> None:
        while True:
            job = self._next(device)
            if job is None:
                return
            try:
                if self._turn(job):
                    continue
            except Cancelled:
                self._finish(job, CANCELLED, "cancelled")
            except ExgsError as e:
                self._finish(job, FAILED, "failed", str(e))
            except MemoryError:
                self._finish(job, FAILED, "failed", "out of memory")
            except BaseException as e:  # a bug: log it here, only one line to the client
                log.exception("job %s (%s) crashed", job.id, job.kind)
                self._finish(job, FAILED, "failed",
                             f"internal error in the {job.kind} job ({type(e).__name__}); "
                             "see the server log")
            else:
                if job.cancel_flag.is_set():
                    self._finish(job, CANCELLED, "cancelled")
                else:
                    self._finish(job, DONE, "done")

    # ------------------------------------------------------------------ API
    def open_count(self) -> int:
        with self._cond:
            return sum(j.state in (QUEUED, RUNNING) for j in self._jobs.values())

    def load(self) -> dict:
        """Queued and running jobs in total and per client, and what each client was served
        since the start (for ``/v1/health``): ``{"queued", "running", "clients": {client:
        {"queued", "running"}}, "served": {client: {"done", "failed", "cancelled",
        "frames"}}}``."""
        out = {"queued": 0, "running": 0, "clients": {}}
        with self._cond:
            out["served"] = {k: dict(v) for k, v in self._served.items()}
            for j in self._jobs.values():
                if j.state in (QUEUED, RUNNING):
                    c = out["clients"].setdefault(j.client, {"queued": 0, "running": 0})
                    c[j.state] += 1
                    out[j.state] += 1
        return out

    def per_client_limit(self) -> int:
        """Most open jobs one client may hold (the rest stays for other clients)."""
        return max(1, self.max_open - self.max_open // 8)

    def submit(self, kind: str, device: str, fn: Callable[[JobContext], None],
               total_frames: int = 0, client: str = ANONYMOUS) -> Job:
        with self._cond:
            if self.open_count() >= self.max_open:
                raise JobLimitError(f"too many open jobs ({self.max_open}); wait for some to "
                                    "finish or cancel them")
            mine = sum(j.client == client and j.state in (QUEUED, RUNNING)
                       for j in self._jobs.values())
            if mine >= self.per_client_limit():
                raise JobLimitError(f"client {client!r} has {mine} open jobs, the most one "
                                    "client may hold; wait for some to finish")
            jid = f"{next(self._seq):06d}-{secrets.token_hex(6)}"
            d = self.dir / jid
            d.mkdir(parents=True)
            job = Job(jid, kind, device, d, client=client, total_frames=total_frames, fn=fn)
            self._jobs[jid] = job
            self._queues[device].put(client, job)
            self._bump(job)
        return job

    def get(self, jid: str) -> Job | None:
        with self._cond:
            return self._jobs.get(jid)

    def list(self) -> list[Job]:
        with self._cond:
            return list(self._jobs.values())

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancel_flag.set()
            if job.state == QUEUED:
                job.state, job.message, job.finished = CANCELLED, "cancelled", time.time()
                job.fn = None
                self._served_count(job)
            elif job.state == RUNNING:
                job.message = "cancelling"
            self._bump(job)

    def delete(self, job: Job) -> None:
        self.cancel(job)
        with self._cond:
            self._jobs.pop(job.id, None)
            if job.state in FINISHED:
                self._release(job)
        if job.state not in FINISHED:  # the worker stops at its next check; clean up then
            threading.Thread(target=self._cleanup_later, args=(job,), daemon=True).start()

    def _cleanup_later(self, job: Job) -> None:
        with self._cond:
            self._cond.wait_for(lambda: job.state in FINISHED or self._stop, timeout=3600)
            self._release(job)

    def wait(self, job: Job, since: int, timeout: float) -> None:
        """Block until ``job.version > since`` or it is finished or ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: job.version > since or job.state in FINISHED
                                or self._stop, timeout=max(0.0, timeout))

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            for j in self._jobs.values():
                j.cancel_flag.set()
            self._cond.notify_all()
