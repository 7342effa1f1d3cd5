"""Size cap of the add-on's converted-scene cache (``exgs_blender.paths.evict_converted``,
stdlib only — no bpy needed): least recently used first, never a file in use (recent, kept,
or already opened by a reader), only ``convert-*.ply`` files, safe with concurrent evictors."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from conftest import ROOT

sys.path.insert(0, ROOT)
from exgs_blender import paths  # noqa: E402

KB = 1024


def _file(folder, name, size, age_s):
    p = folder / name
    p.write_bytes(bytes([len(name) % 251]) * size)
    t = time.time() - age_s
    os.utime(p, (t, t))
    return str(p)


def test_least_recently_used_go_first_until_under_the_cap(tmp_path):
    old = _file(tmp_path, "convert-a.ply", 40 * KB, 5000)
    mid = _file(tmp_path, "convert-b.ply", 40 * KB, 4000)
    new = _file(tmp_path, "convert-c.ply", 40 * KB, 3000)
    other = _file(tmp_path, "0123abcd.ply", 400 * KB, 9000)      # a write-back PLY
    exgs = _file(tmp_path, "x-ratio.exgs", 400 * KB, 9000)
    paths.touch(old)  # used just now: the most recent (and within the grace period)
    removed = paths.evict_converted(90 * KB, folder=str(tmp_path), grace_s=60)
    assert removed == [mid]
    assert all(os.path.exists(p) for p in (old, new, other, exgs))
    # over the cap but everything recent or kept: nothing goes
    assert paths.evict_converted(1, folder=str(tmp_path), grace_s=60, keep=[new]) == []
    assert paths.evict_converted(1, folder=str(tmp_path), grace_s=0, keep=[new]) == [old]
    assert paths.evict_converted(0, folder=str(tmp_path), grace_s=0) == []  # 0 = no cap
    assert os.path.exists(new) and os.path.exists(other)


def test_a_reader_that_opened_the_file_keeps_reading(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX unlink semantics")
    p = _file(tmp_path, "convert-r.ply", 64 * KB, 5000)
    with open(p, "rb") as f:
        head = f.read(KB)
        assert paths.evict_converted(KB, folder=str(tmp_path), grace_s=60) == [p]
        assert not os.path.exists(p)
        rest = f.read()
    assert len(head) + len(rest) == 64 * KB


def test_concurrent_evictors_remove_each_file_once(tmp_path):
    files = [_file(tmp_path, f"convert-{k:02d}.ply", 8 * KB, 5000 - k) for k in range(40)]
    out, errs = [], []

    def run():
        try:
            out.append(paths.evict_converted(80 * KB, folder=str(tmp_path), grace_s=60))
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errs.append(e)

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errs == []
    removed = [p for r in out for p in r]
    assert len(removed) == len(set(removed))  # no file counted twice
    left = sorted(p for p in files if os.path.exists(p))
    assert left == files[-10:]  # the 10 most recent stay: 80 kB
    assert sorted(removed) == sorted(set(files) - set(left))


def test_cache_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("EXGS_CACHE_MAX_GB", "0.5")
    assert paths.cache_limit() == 1 << 29
    monkeypatch.setenv("EXGS_CACHE_MAX_GB", "0")
    assert paths.cache_limit() == 0
    monkeypatch.setenv("EXGS_CACHE_MAX_GB", "lots")
    assert paths.cache_limit() == 20 << 30
