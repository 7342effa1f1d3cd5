"""Golden outputs: the CLI and the service keep producing byte-identical ``.exgs`` files and
bit-identical frames for the same inputs (issue 12: the orchestration was moved into
``exgs.pipeline`` without changing what comes out).

The digests live in ``golden_digests.json``, one entry per CPU (:func:`machine`), each
saying the commit it was recorded from: the Intel (emeraldrapids) entry from the code
*before* that refactor (commit 04c33cf on main), the AMD (znver4) entry from d912379. The
painter changed on purpose in session 5 (new weights, a faster inference path), so the Intel
entry keeps only the outputs that do not go through torch (compression without a delta,
renders): those were identical on AMD before and after session 5's renderer and compressor
work. Print this checkout's digests, or store them for this
CPU (naming the outputs that changed on purpose, which are then dropped from the other
CPUs' entries since they cannot be re-recorded here)::

    .venv/bin/python tests/backend/test_golden_outputs.py digests.json
    .venv/bin/python tests/backend/test_golden_outputs.py --record "COMMIT: why" [NAME ...]

What is covered (a 3,000-Gaussian SH-2 demo scene generated in code, tiny views):

* ``exgs compress`` with ``--ratio`` (byte-budget search), ``--keep`` as a fraction and as a
  count, ``--sh-degree 1`` (SH distillation);
* compression with a per-scene painter delta (digests of its scene part and of the delta's
  weights; the delta's informative stats hold wall-clock seconds). ``--adapt`` on the command line is
  *time*-budgeted (how many views are rendered and how many steps run depends on the
  machine), so it is not deterministic; the same code path is run through the Python API
  with a fixed step count (``AdaptConfig.steps``) and a huge time budget, which is;
* ``exgs render`` PNGs of a PLY and of a ``.exgs``, with ``--restore`` (generic painter with
  the file's kept fraction; and the file's painter delta);
* the service through FastAPI's TestClient: upload, compress job (ratio), the ``.exgs`` it
  registers, render jobs (f32 frames with and without restore; PNG frames over a
  background) of the compressed scene, of an uploaded ``.exgs`` carrying a delta, and of a
  PLY with the deprecated ``keep``/``painter_delta`` request fields.

Determinism, checked before relying on it: repeated runs in the same environment give the
same digests. Everything that goes through numba only (compression without a delta,
renders) is the same at 1 and 2 numba threads. What goes through torch (the painter: restored
frames, the adapted delta and its held-out figures) changes with the OpenMP/MKL thread layout,
so the digests are generated in a fresh process with one OpenMP/MKL thread (:data:`ENV`).
They also depend on the CPU (numba compiles for the host, torch picks kernels by CPU
capability): on a CPU with no entry the test skips and says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from pathlib import Path


#: per CPU (:func:`machine`): {"recorded_from": commit and why, "digests": name → SHA-256}.
#: An entry may hold a subset of the names (see :func:`record`); every name it holds is checked.
DIGESTS_FILE = Path(__file__).with_name("golden_digests.json")
GOLDEN_BY_MACHINE: dict[str, dict] = json.loads(DIGESTS_FILE.read_text())

TOKEN = "g" * 32
ADAPT = dict(form="last", seconds=1e6, steps=12, views=6, holdout=2, size=64, crop=32,
             min_gain_db=-100.0, threads=1)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cli(*argv) -> None:
    from exgs.cli import main

    rc = main([str(a) for a in argv])
    assert rc == 0, f"exgs {' '.join(map(str, argv))} exited with {rc}"


def _adapted_exgs(scene, src_bytes: int) -> bytes:
    """Compression with a per-scene painter delta, ratio 12, fixed step count."""
    try:
        from exgs.pipeline import AdaptOptions, CompressOptions, compress_scene
    except ImportError:  # the code before issue 12 (used to record the digests)
        from exgs.painter.adapt import AdaptConfig, compress_adapted

        res = compress_adapted(scene, ratio=12.0, adapt_config=AdaptConfig(**ADAPT),
                               source_bytes=src_bytes, views=4, view_size=(64, 48))
        return res.data
    res = compress_scene(scene, CompressOptions(ratio=12.0, source_bytes=src_bytes, views=4,
                                                view_size=(64, 48)), AdaptOptions(**ADAPT))
    return res.data


def _adapted_digests(data: bytes) -> dict[str, str]:
    """Digests of a file with a painter delta: the file without the delta section (scene,
    header) and the delta's descriptor and tensors. Not the whole file: the delta's
    informative ``stats`` hold wall-clock training seconds, which differ run to run."""
    from exgs.io.exgs_format import attach_sections, exgs_section_from_bytes
    from exgs.painter.delta import decode_delta

    blob = exgs_section_from_bytes(data, "painter_delta")
    assert blob is not None, "the adapted file must carry a painter delta"
    desc, tensors = decode_delta(blob)
    desc = {k: v for k, v in desc.items() if k != "stats"}
    h = hashlib.sha256(json.dumps(desc, sort_keys=True).encode())
    for _, arr in tensors:
        h.update(arr.tobytes())
    return {"api.compress_adapted_r12.scene_part.exgs":
            _sha(attach_sections(data, {"painter_delta": None})),
            "api.compress_adapted_r12.delta": h.hexdigest()}


def _wait(tc, hdr, job: dict) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        job = tc.get(f"/v1/jobs/{job['id']}?wait=5", headers=hdr).json()
        if job["state"] in ("done", "failed", "cancelled"):
            assert job["state"] == "done", job
            return job
    raise AssertionError(f"job {job['id']} did not finish")


def _service(tmp: Path, ply: Path, adapted: Path, cams: list[dict], delta: bytes,
             out: dict) -> None:
    from fastapi.testclient import TestClient

    from exgs.service.app import create_app
    from exgs.service.config import ServiceConfig

    app = create_app(ServiceConfig(token=TOKEN, device="cpu", data_dir=str(tmp / "svc")))
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(app) as tc:
            def upload(path: Path) -> str:
                r = tc.post(f"/v1/scenes?filename={path.name}", content=path.read_bytes(),
                            headers=hdr)
                assert r.status_code in (200, 201), r.text
                return r.json()["id"]

            def frames(sid: str, body: dict) -> list[bytes]:
                r = tc.post(f"/v1/scenes/{sid}/render", json=body, headers=hdr)
                assert r.status_code == 202, r.text
                job = _wait(tc, hdr, r.json())
                return [tc.get(f"/v1/jobs/{job['id']}/frames/{i}", headers=hdr).content
                        for i in range(job["result"]["frames"])]

            sid = upload(ply)
            r = tc.post(f"/v1/scenes/{sid}/compress", json={"ratio": 25.0}, headers=hdr)
            assert r.status_code == 202, r.text
            job = _wait(tc, hdr, r.json())
            cid = job["result"]["scene_id"]
            out["service.compress_r25.exgs"] = _sha(
                tc.get(f"/v1/scenes/{cid}/file", headers=hdr).content)
            for i, f in enumerate(frames(cid, {"cameras": cams, "passes": ["rgb", "alpha",
                                                                             "depth"]})):
                out[f"service.render_exgs.{i}.f32"] = _sha(f)
            for i, f in enumerate(frames(cid, {"cameras": cams, "restore": True,
                                               "passes": ["rgb", "alpha"]})):
                out[f"service.restore_exgs.{i}.f32"] = _sha(f)
            for i, f in enumerate(frames(cid, {"cameras": cams, "format": "png",
                                               "background": [0.2, 0.3, 0.4],
                                               "passes": ["rgb", "alpha"]})):
                out[f"service.render_exgs_bg.{i}.png"] = _sha(f)
            aid = upload(adapted)
            for i, f in enumerate(frames(aid, {"cameras": cams, "restore": True,
                                               "passes": ["rgb"]})):
                out[f"service.restore_adapted.{i}.f32"] = _sha(f)
            # the deprecated per-request overrides (a PLY has no facts of its own)
            for i, f in enumerate(frames(sid, {"cameras": cams, "restore": True,
                                               "passes": ["rgb"], "keep": 0.05,
                                               "painter_delta":
                                                   base64.b64encode(delta).decode()})):
                out[f"service.restore_ply_override.{i}.f32"] = _sha(f)
    finally:
        app.state.jobs.shutdown()


def generate(tmp: Path) -> dict[str, str]:
    """Run every covered path in ``tmp`` → {name: sha256 hex} (torch at one thread: the
    painter's float results depend on the thread count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _generate(Path(tmp))
    finally:
        torch.set_num_threads(threads)


def _generate(tmp: Path) -> dict[str, str]:
    from exgs.cameras import orbit_for_scene
    from exgs.io.ply import write_ply
    from exgs.synth import demo_scene

    scene = demo_scene(3000, sh_degree=2, seed=11)
    ply = tmp / "scene.ply"
    write_ply(scene, ply)
    out: dict[str, str] = {"scene.ply": _sha(ply.read_bytes())}
    small = ["--views", "4", "--view-size", "64x48"]
    runs = {"ratio30": ["--ratio", "30"], "keep0.2": ["--keep", "0.2"],
            "keep700_sh1": ["--keep", "700", "--sh-degree", "1"]}
    for name, extra in runs.items():
        dst = tmp / f"{name}.exgs"
        _cli("compress", ply, "-o", dst, *small, *extra)
        out[f"cli.compress_{name}.exgs"] = _sha(dst.read_bytes())
    adapted = tmp / "adapted.exgs"
    adapted.write_bytes(_adapted_exgs(scene, ply.stat().st_size))
    out.update(_adapted_digests(adapted.read_bytes()))

    renders = {"ply": (ply, []), "exgs": (tmp / "ratio30.exgs", []),
               "exgs_restore": (tmp / "ratio30.exgs", ["--restore"]),
               "adapted_restore": (adapted, ["--restore"]),
               "adapted_restore_nodelta": (adapted, ["--restore", "--no-delta"]),
               "exgs_alpha_depth": (tmp / "keep0.2.exgs", ["--alpha", "--depth", "npy"])}
    for name, (src, extra) in renders.items():
        d = tmp / f"frames_{name}"
        _cli("render", src, "--orbit", "2", "--size", "64x48", "--out", d, *extra)
        for f in sorted(d.iterdir()):
            out[f"cli.render_{name}.{f.name}"] = _sha(f.read_bytes())

    cams = [c.to_dict() for c in orbit_for_scene(scene, 2, 64, 48, up="-y", seed=5,
                                                  azimuth_offset_deg=30.0)]
    from exgs.io.exgs_format import read_exgs_section

    delta = read_exgs_section(adapted, "painter_delta")
    assert delta is not None, "the adapted file must carry a painter delta"
    _service(tmp, ply, adapted, cams, delta, out)
    return out


#: environment of the generating process: one OpenMP/MKL thread (torch's float results
#: depend on the thread layout; with it fixed, repeated runs give the same digests)
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def machine() -> str:
    """The CPU the digests depend on: numba compiles for the host CPU (fast-math reductions
    may vectorize differently elsewhere) and torch picks its kernels by CPU capability."""
    import llvmlite.binding as llvm
    import torch

    import os

    return (f"{llvm.get_host_cpu_name()}/{torch.backends.cpu.get_cpu_capability()}/"
            f"{os.cpu_count()} cpus")


def run_generate(out: Path) -> dict[str, str]:
    """:func:`generate` in a fresh process with :data:`ENV` → the digests."""
    import os
    import subprocess

    env = dict(os.environ, **ENV)
    r = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True,
                       text=True, cwd=str(out.parent))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


def test_outputs_match_the_recorded_digests(tmp_path):
    import pytest

    here = machine()
    entry = GOLDEN_BY_MACHINE.get(here)
    if entry is None:
        pytest.skip(f"no golden digests recorded on a {here} CPU (recorded on: "
                    f"{', '.join(GOLDEN_BY_MACHINE)}): float results may legitimately differ")
    golden = entry["digests"]
    assert golden, f"empty golden entry for {here}"
    got = run_generate(tmp_path / "digests.json")
    assert got.pop("machine") == here
    missing = sorted(set(golden) - set(got))
    assert not missing, f"outputs no longer produced: {missing}"
    differ = sorted(k for k in golden if got[k] != golden[k])
    assert not differ, (f"outputs differ from those recorded at {entry['recorded_from']}: "
                        f"{differ}")


def record(path: Path, recorded_from: str, only: set[str] | None = None) -> None:
    """Write this checkout's digests on this CPU into ``path`` (the JSON of
    :data:`GOLDEN_BY_MACHINE`). ``only``: the names to drop from *other* CPUs' entries
    because they changed deliberately (e.g. new painter weights) and cannot be re-recorded
    here — those CPUs then keep checking the rest."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = run_generate(Path(d) / "digests.json")  # fresh process with ENV
    res.pop("machine")
    table = json.loads(path.read_text()) if path.exists() else {}
    table[machine()] = {"recorded_from": recorded_from, "digests": dict(sorted(res.items()))}
    for cpu, entry in table.items():
        if cpu != machine() and only:
            entry["digests"] = {k: v for k, v in entry["digests"].items() if k not in only}
    path.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    # `... test_golden_outputs.py OUT.json`: write this checkout's digests to OUT.json;
    # `... test_golden_outputs.py --record "COMMIT why" [NAME ...]`: store them for this CPU
    # in golden_digests.json, dropping NAMEs (deliberate changes) from other CPUs' entries.
    import tempfile

    if sys.argv[1] == "--record":
        record(DIGESTS_FILE, sys.argv[2], set(sys.argv[3:]))
    else:
        with tempfile.TemporaryDirectory() as d:
            res = generate(Path(d))
        res["machine"] = machine()
        Path(sys.argv[1]).write_text(json.dumps(res, indent=4, sort_keys=True) + "\n")
