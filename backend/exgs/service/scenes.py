"""Scenes held by the service: uploaded files, files opened under ``--allow-dir`` and
compressed results. Each has a content id (sha256 hex of the file bytes; for a SOG folder,
of its relative file names and contents), so the same content uploaded twice is stored once.

Scenes are read once (``exgs.io.read_scene``) and kept in memory as
:class:`~exgs.scene.GaussianScene`; the file stays on disk for ``GET /v1/scenes/{id}/file``.
Their facts (kept fraction, painter delta: :class:`exgs.pipeline.SceneFacts`) are read once
with them — from a ``.exgs`` file's header and sections — and kept with the entry; a scene
uploaded in another form gets them from ``PUT /v1/scenes/{id}/facts``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExgsError
from ..io import sniff_format

log = logging.getLogger("exgs.service")

#: magic bytes → file suffix the format readers expect
_SUFFIX = {"ply": ".ply", "compressed_ply": ".ply", "spz": ".spz", "sog": ".sog",
           "exgs": ".exgs"}


class SceneError(ExgsError):
    """Problem with a client's scene (HTTP status in ``status``)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(" ".join(str(message).split()))
        self.status = status


@dataclass
class SceneEntry:
    id: str
    path: str                 # file (or SOG folder) holding the content
    format: str
    source: str               # "upload" | "open" | "compress"
    name: str
    file_bytes: int
    scene: object = None      # GaussianScene
    summary: dict = field(default_factory=dict)
    owned: bool = True        # path lives in the data dir (deleted with the scene)
    created: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)
    facts: object = None      # exgs.pipeline.SceneFacts (set by the store)

    def info(self) -> dict:
        d = {"id": self.id, "name": self.name, "format": self.format, "source": self.source,
             "file_bytes": self.file_bytes}
        d.update(self.summary)
        d.update(self.extra)
        if self.facts is not None:
            d["facts"] = self.facts.info()
        return d


def hash_path(path: str) -> tuple[str, int]:
    """(sha256 hex, total bytes) of a file, or of a folder's sorted (relative name, bytes)."""
    h = hashlib.sha256()
    total = 0
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                total += len(chunk)
    return h.hexdigest(), total


def read_any(path: str):
    """Read a scene; every failure becomes a one-line SceneError (400)."""
    from ..io import detect_format, read_scene

    try:
        fmt = detect_format(path)
        scene = read_scene(path)
    except ExgsError as e:
        raise SceneError(str(e).replace(str(path), os.path.basename(path)), 400) from None
    except MemoryError:
        raise SceneError(f"{os.path.basename(path)}: out of memory while reading", 413) from None
    except ImportError as e:
        raise SceneError(f"{os.path.basename(path)}: this format is not available in this "
                         f"build ({e})", 503) from None
    except Exception as e:  # a reader bug on hostile input: still the client's file
        log.exception("reading %s failed", path)
        raise SceneError(f"{os.path.basename(path)}: cannot read the scene "
                         f"({type(e).__name__}: {e})", 400) from None
    return fmt, scene


def read_facts(path: str, fmt: str):
    """The scene file's facts (:func:`exgs.pipeline.facts_of_file`), read once; file paths in
    messages are replaced by the file's name (clients never see server paths)."""
    from ..pipeline import SceneFacts, facts_of_file

    if fmt != "exgs":
        return SceneFacts()
    try:
        facts = facts_of_file(path)
    except ExgsError as e:  # the scene itself was read: a header problem is not expected
        raise SceneError(str(e).replace(str(path), os.path.basename(path)), 400) from None
    if facts.delta_error:
        from dataclasses import replace

        facts = replace(facts, delta_error=facts.delta_error.replace(
            str(path), os.path.basename(path)))
    return facts


class SceneStore:
    """Thread-safe registry of scenes (id → :class:`SceneEntry`)."""

    def __init__(self, data_dir: str):
        self.dir = Path(data_dir) / "scenes"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._scenes: dict[str, SceneEntry] = {}
        self._adding: dict[str, list] = {}  # digest → [lock, users]: one reader per content

    # ------------------------------------------------------------------ queries
    def get(self, sid: str) -> SceneEntry:
        with self._lock:
            e = self._scenes.get(sid)
        if e is None:
            raise SceneError(f"no scene with id {sid!r}", 404)
        return e

    def list(self) -> list[SceneEntry]:
        with self._lock:
            return list(self._scenes.values())

    def delete(self, sid: str) -> SceneEntry:
        with self._lock:
            e = self._scenes.pop(sid, None)
        if e is None:
            raise SceneError(f"no scene with id {sid!r}", 404)
        if e.owned:
            shutil.rmtree(Path(e.path).parent, ignore_errors=True)
        return e

    # ------------------------------------------------------------------ adding
    def _register(self, entry: SceneEntry) -> tuple[SceneEntry, bool]:
        with self._lock:
            old = self._scenes.get(entry.id)
            if old is not None:
                return old, True
            self._scenes[entry.id] = entry
            return entry, False

    def known(self, sid: str) -> SceneEntry | None:
        with self._lock:
            return self._scenes.get(sid)

    def add_uploaded(self, tmp_path: str, digest: str, size: int, name: str,
                     extra: dict | None = None, source: str = "upload") -> tuple[SceneEntry, bool]:
        """Adopt a fully received file (``tmp_path``, in the data dir) under its content id.
        Returns (entry, deduplicated). Concurrent uploads of one content (N farm workers
        sending the same scene at once) are serialized per digest: the first reads and
        registers it, the others then find it held (deduplicated) and drop their copy."""
        with self._lock:
            slot = self._adding.setdefault(digest, [threading.Lock(), 0])
            slot[1] += 1
        try:
            with slot[0]:
                return self._adopt(tmp_path, digest, size, name, extra, source)
        finally:
            with self._lock:
                slot[1] -= 1
                if slot[1] == 0:
                    self._adding.pop(digest, None)

    def _adopt(self, tmp_path: str, digest: str, size: int, name: str, extra: dict | None,
               source: str) -> tuple[SceneEntry, bool]:
        old = self.known(digest)
        if old is not None:
            os.unlink(tmp_path)
            return old, True
        with open(tmp_path, "rb") as f:
            head = f.read(4096)
        fmt = sniff_format(head)
        suffix = _SUFFIX.get(fmt) or Path(name).suffix.lower()[:8] or ".bin"
        folder = self.dir / digest
        folder.mkdir(parents=True, exist_ok=True)
        stem = _safe_stem(name)
        path = folder / f"{stem}{suffix}"
        os.replace(tmp_path, path)
        try:
            fmt, scene = read_any(str(path))
            facts = read_facts(str(path), fmt)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        entry = SceneEntry(digest, str(path), fmt, source, name or path.name, size, scene,
                           scene.summary(), True, extra=dict(extra or {}), facts=facts)
        return self._register(entry)

    def add_path(self, real_path: str) -> tuple[SceneEntry, bool]:
        """A file or SOG folder on the server's disk (already checked against --allow-dir)."""
        try:
            digest, size = hash_path(real_path)
        except OSError as e:
            raise SceneError(f"{os.path.basename(real_path)}: cannot read "
                             f"({e.strerror or e})", 400) from None
        old = self.known(digest)
        if old is not None:
            return old, True
        fmt, scene = read_any(real_path)
        facts = read_facts(real_path, fmt)
        entry = SceneEntry(digest, real_path, fmt, "open", os.path.basename(real_path), size,
                           scene, scene.summary(), owned=False, facts=facts)
        return self._register(entry)

    def set_facts(self, sid: str, facts) -> SceneEntry:
        """Replace the facts of scene ``sid`` (404 when unknown)."""
        with self._lock:
            e = self._scenes.get(sid)
            if e is None:
                raise SceneError(f"no scene with id {sid!r}", 404)
            e.facts = facts
        return e

    def add_bytes(self, data: bytes, name: str, source: str, extra: dict | None = None
                  ) -> tuple[SceneEntry, bool]:
        """Register file bytes produced by the service itself (e.g. a .exgs)."""
        digest = hashlib.sha256(data).hexdigest()
        old = self.known(digest)
        if old is not None:
            return old, True
        tmp = self.dir / f".incoming-{digest}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
        return self.add_uploaded(str(tmp), digest, len(data), name, extra, source)


def _safe_stem(name: str) -> str:
    stem = Path(name or "scene").stem
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:64].strip("._")
    return stem or "scene"
