"""N farm workers uploading the same scene at once end up with ONE scene, read once
(issue 18): the store serializes adoption per content digest."""

from __future__ import annotations

import hashlib
import threading

from exgs.service import scenes as scenes_mod
from exgs.service.scenes import SceneStore


def test_concurrent_same_content_uploads_read_once(tmp_path, monkeypatch):
    from exgs.io.ply import write_ply
    from exgs.synth import random_scene

    src = tmp_path / "s.ply"
    write_ply(random_scene(200, sh_degree=0, seed=1), src)
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    store = SceneStore(str(tmp_path / "data"))
    reads = []
    real_read = scenes_mod.read_any

    def slow_read(path):  # widen the race window: every upload is in flight at once
        reads.append(path)
        threading.Event().wait(0.2)
        return real_read(path)

    monkeypatch.setattr(scenes_mod, "read_any", slow_read)
    n, out, start = 6, [], threading.Barrier(6)

    def upload(k):
        tmp = store.dir / f".incoming-test-{k}"
        tmp.write_bytes(data)
        start.wait()
        out.append(store.add_uploaded(str(tmp), digest, len(data), "s.ply"))

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == n and len(reads) == 1
    assert sorted(d for _, d in out) == [False] + [True] * (n - 1)
    assert len({id(e) for e, _ in out}) == 1 and [e.id for e in store.list()] == [digest]
    assert not list(store.dir.glob(".incoming-*"))      # every duplicate copy dropped
    assert (store.dir / digest).is_dir() and store._adding == {}
