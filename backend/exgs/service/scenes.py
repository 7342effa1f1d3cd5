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
    last_used: float = field(default_factory=time.monotonic)

    def info(self) -> dict:
        d = {"id": self.id, "name": self.name, "format": self.format, "source": self.source,
             "file_bytes": self.file_bytes}
        d.update(self.summary)
        d.update(self.extra)
        if self.facts is not None:
            d["facts"] = self.facts.info()
        d["in_memory"] = self.scene is not None
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


def scene_bytes(n: int, sh_degree: int) -> int:
    """Bytes of the float32 arrays of a decoded scene of ``n`` Gaussians."""
    return 4 * int(n) * (3 + 4 + 3 + 1 + 3 * (int(sh_degree) + 1) ** 2)


def declared_size(path: str, fmt: str) -> tuple[int, int] | None:
    """(Gaussians, SH degree) a scene file declares, read from its header without decoding
    it, or None when the format's header cannot tell (the decoded scene is checked then)."""
    try:
        if fmt == "exgs":
            from ..io.exgs import read_exgs_header

            h = read_exgs_header(path)
            return int(h["count"]), int(h["sh_degree"])
        from .. import io

        read_header = getattr(io, "read_header", None)  # the format registry's, when it has one
        if read_header is not None:
            h = read_header(path)
            if h and h.get("gaussians") is not None:
                return int(h["gaussians"]), int(h.get("sh_degree") or 0)
        if fmt == "ply":
            return _ply_declared(path)
    except ExgsError as e:
        raise SceneError(str(e).replace(str(path), os.path.basename(path)), 400) from None
    return None


def _ply_declared(path: str) -> tuple[int, int] | None:
    import re

    with open(path, "rb") as f:
        head = f.read(64 << 10)
    end = head.find(b"end_header")
    if end < 0:
        return None
    m = re.search(rb"element\s+vertex\s+(\d+)", head[:end])
    if m is None:
        return None
    rest = len(re.findall(rb"property\s+\S+\s+f_rest_\d+", head[:end]))
    deg = {0: 0, 9: 1, 24: 2, 45: 3}.get(rest, 3)
    return int(m.group(1)), deg


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
    """Thread-safe registry of scenes (id → :class:`SceneEntry`).

    Limits, checked *before* a scene is decoded (from its header's declared count, issue 19:
    a 13 kB file declaring 20M Gaussians must not take gigabytes): at most ``max_gaussians``
    per scene (413), and at most ``max_memory`` bytes of decoded scenes held at once — to
    make room, the least recently used scenes are evicted from memory (their entry and file
    stay; they are read again when next used); 507 when even that is not enough."""

    def __init__(self, data_dir: str, max_gaussians: int = 1 << 62,
                 max_memory: int = 1 << 62):
        self.max_gaussians, self.max_memory = int(max_gaussians), int(max_memory)
        self.dir = Path(data_dir) / "scenes"
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".incoming-*"):  # left by a killed server
            stale.unlink(missing_ok=True)
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
            self._admit(str(path), fmt, name or path.name)
            fmt, scene = self._read(str(path), name or path.name)
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
        name = os.path.basename(real_path)
        from ..io import detect_format

        try:
            self._admit(real_path, detect_format(real_path), name)
        except ExgsError as e:
            if isinstance(e, SceneError):
                raise
            raise SceneError(str(e).replace(str(real_path), name), 400) from None
        fmt, scene = self._read(real_path, name)
        facts = read_facts(real_path, fmt)
        entry = SceneEntry(digest, real_path, fmt, "open", os.path.basename(real_path), size,
                           scene, scene.summary(), owned=False, facts=facts)
        return self._register(entry)

    # ------------------------------------------------------------------ memory
    def _admit(self, path: str, fmt: str | None, name: str, exclude: str | None = None):
        """Refuse a scene whose header declares too many Gaussians; make room for it."""
        size = declared_size(path, fmt) if fmt else None
        if size is None:
            return
        n, deg = size
        if n > self.max_gaussians:
            raise SceneError(f"{name}: declares {n:,} Gaussians, more than this server's "
                             f"limit of {self.max_gaussians:,} (--max-gaussians)", 413)
        self._make_room(scene_bytes(n, deg), name, exclude)

    def _make_room(self, need: int, name: str, exclude: str | None = None) -> None:
        with self._lock:
            held = [e for e in self._scenes.values() if e.scene is not None and e.id != exclude]
            total = sum(e.scene.nbytes for e in held)
            for e in sorted(held, key=lambda e: e.last_used):
                if total + need <= self.max_memory:
                    break
                total -= e.scene.nbytes
                e.scene = None  # evicted: read again from its file when next used
                log.info("scene %s evicted from memory", e.id)
            if total + need > self.max_memory:
                raise SceneError(f"{name}: needs about {need / 2**20:.0f} MiB of memory, more "
                                 f"than this server holds for scenes ({self.max_memory / 2**20:.0f}"
                                 f" MiB, --max-scene-memory-mb)", 507)

    def _read(self, path: str, name: str):
        fmt, scene = read_any(path)
        if len(scene) > self.max_gaussians:
            raise SceneError(f"{name}: {len(scene):,} Gaussians, more than this server's "
                             f"limit of {self.max_gaussians:,} (--max-gaussians)", 413)
        self._make_room(scene.nbytes, name)
        return fmt, scene

    def load(self, e: SceneEntry):
        """The entry's GaussianScene, read again from its file if it was evicted."""
        with self._lock:
            e.last_used = time.monotonic()
            scene = e.scene
        if scene is not None:
            return scene
        self._admit(e.path, e.format, e.name, exclude=e.id)
        _, scene = self._read(e.path, e.name)
        with self._lock:
            if e.scene is None:
                e.scene = scene
            e.last_used = time.monotonic()
            return e.scene

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
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            return self.add_uploaded(str(tmp), digest, len(data), name, extra, source)
        finally:  # a full disk or a refused scene leaves nothing behind
            tmp.unlink(missing_ok=True)


def _safe_stem(name: str) -> str:
    stem = Path(name or "scene").stem
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:64].strip("._")
    return stem or "scene"
