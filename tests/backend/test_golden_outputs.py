"""Golden outputs: the CLI and the service keep producing byte-identical ``.exgs`` files and
bit-identical frames for the same inputs (issue 12: the orchestration was moved into
``exgs.pipeline`` without changing what comes out).

The digests in :data:`GOLDEN` were recorded from the code *before* that refactor (commit
04c33cf on main, "bench: 500k UGC compress re-measured ...") by running this file as a
script::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0 \\
        .venv/bin/python tests/backend/test_golden_outputs.py digests.json

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
capability): on another CPU than :data:`RECORDED_ON` the test skips and says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from pathlib import Path


#: name → SHA-256 of the output, recorded from commit 04c33cf (before the refactor)
GOLDEN: dict[str, str] = {
    "api.compress_adapted_r12.delta":
        "d99adf66d8f01256cedd0385928907b1963d15635b127f1ef34988e035713869",
    "api.compress_adapted_r12.scene_part.exgs":
        "eac8f22ad1a4b674f389b5e129fc2ab11d517df7fa15a4345c3d843756155d7b",
    "cli.compress_keep0.2.exgs":
        "8bf28d0d6b5d700c4e6ae0ac6a2d90035245a8ebe49b6c96326f11bf42da278b",
    "cli.compress_keep700_sh1.exgs":
        "2ca86c8e503e954ede240143c2eec5a4ac01d1bce38b3d5ff5c62c9362333f1a",
    "cli.compress_ratio30.exgs":
        "eee54ec27d92e5f37bf6765da7345513a7fdc0854d2692737f28d18317e8d255",
    "cli.render_adapted_restore.0000.png":
        "14a7eacb217ab932fe3b4cb31b8e6ebfd564faad23176bfe6d60f1d4ed19e14e",
    "cli.render_adapted_restore.0001.png":
        "477ccb86c99cd6b3dc419cdeb7c53447292a1f080db5227a6b30bbc65e6a4d17",
    "cli.render_adapted_restore_nodelta.0000.png":
        "14a7eacb217ab932fe3b4cb31b8e6ebfd564faad23176bfe6d60f1d4ed19e14e",
    "cli.render_adapted_restore_nodelta.0001.png":
        "477ccb86c99cd6b3dc419cdeb7c53447292a1f080db5227a6b30bbc65e6a4d17",
    "cli.render_exgs.0000.png":
        "c14c0827ce59b5ed2d1efb0153c2047ec10fcf4db9834ec0fa00a12fde8db17d",
    "cli.render_exgs.0001.png":
        "8c5181d59de29a803bcc9cc3c39816b0f5edb7210430a3dbe057869630582c5b",
    "cli.render_exgs_alpha_depth.0000.depth.npy":
        "4f37fa15ba77ffed9b6714c60739cc04ee4a36308e4c0e94301561f4798c9731",
    "cli.render_exgs_alpha_depth.0000.png":
        "841c58012767e72c984a1116142a642bbd5d18bc2d8792d16e32e667eac41d58",
    "cli.render_exgs_alpha_depth.0001.depth.npy":
        "e53d7913386ba0518b42db601f82ac70c4f36b455cff159d66970a738718ed7d",
    "cli.render_exgs_alpha_depth.0001.png":
        "d4d15b83e6430aedeea0a7d873d47cae4138169b393da41f7aa20f65845847bf",
    "cli.render_exgs_restore.0000.png":
        "48f06aaa1222dd26b0a8c7bf817928c192b5fd8178efb8a1195cdf7f20131098",
    "cli.render_exgs_restore.0001.png":
        "36b5ef8a465d062a07e8d79c7c045df3b42570de20d88faa9a989b78361587bd",
    "cli.render_ply.0000.png":
        "846289093c64b273524d35e9f4a890a234e2d1801e358165ab710464b13e3dc8",
    "cli.render_ply.0001.png":
        "235457391f169aece79fa617f15bff447b23e6e6e031632bcf6be7f5910bb771",
    "scene.ply":
        "95aa7a96f408b5b777a3bf472424d4e91e7d521457e39f8116cd7d4488b56ab1",
    "service.compress_r25.exgs":
        "7d672d6739d34c1293b836e56ad4ba6f0ab359752bf7b8cc09cb23aaae7cf1aa",
    "service.render_exgs.0.f32":
        "f57e7bc954f7030767480c711d68a09e19067b48f2187d1a386d91aa38f89df0",
    "service.render_exgs.1.f32":
        "f16c26dbf9f926ff670e712935f51fdb633807c46f5545b1a53714212b572101",
    "service.render_exgs_bg.0.png":
        "db0acdbc512be1cf99f36904986a37dd761821b9dadea790ea1dd0af787bb3fb",
    "service.render_exgs_bg.1.png":
        "3a621755e70a5ad607e9923346bb755d4492a48b891324f341cd453b45b46f26",
    "service.restore_adapted.0.f32":
        "59377bcfbb577a6f5b2dc73e3df8b1716bc3aef7b24a816c1701f4b2ce904601",
    "service.restore_adapted.1.f32":
        "6f9dd6bf268d524b61b4b7c0892fde400d6239854294e56d1397aa4d65862da3",
    "service.restore_exgs.0.f32":
        "0589f5f6bd93a0c23c55ad695e508dba8dcb26477c560d139d33d514608d37a7",
    "service.restore_exgs.1.f32":
        "71d947ded8c8aa9b525919bf0b7c5a3e18b346c71fee57f23bd4fe6eaeae78f5",
    "service.restore_ply_override.0.f32":
        "2a5e06e3bf38c88237baae8521c72819b0862b47ee7bd993dc339a7c9be6337f",
    "service.restore_ply_override.1.f32":
        "11cfd836a4d654249c831ea2efc9896c45ef4be637908a1ed60103a6cc5b7bc4",
}
#: :func:`machine` where they were recorded
RECORDED_ON = "emeraldrapids/AVX512/2 cpus"

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


def test_outputs_match_the_pre_refactor_code(tmp_path):
    import pytest

    assert GOLDEN and RECORDED_ON, "no golden digests recorded"
    if machine() != RECORDED_ON:
        pytest.skip(f"golden digests were recorded on a {RECORDED_ON} CPU, this is "
                    f"{machine()}: float results may legitimately differ")
    got = run_generate(tmp_path / "digests.json")
    assert got.pop("machine") == RECORDED_ON
    assert set(got) == set(GOLDEN)
    differ = sorted(k for k in GOLDEN if got[k] != GOLDEN[k])
    assert not differ, f"outputs differ from the pre-refactor code: {differ}"


if __name__ == "__main__":  # write the digests of this checkout to argv[1]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = generate(Path(d))
    res["machine"] = machine()
    Path(sys.argv[1]).write_text(json.dumps(res, indent=4, sort_keys=True) + "\n")
