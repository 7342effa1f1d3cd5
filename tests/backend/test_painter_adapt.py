"""Scene-adaptive painter delta: training on a tiny scene, the .exgs ``painter_delta``
section (round trip, corruption), ``--ratio`` with the delta, CLI errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exgs.cli import main
from exgs.errors import SceneFormatError
from exgs.io import exgs as X
from exgs.io.exgs.codec import check_header
from exgs.io.exgs.container import PREFIX, parse_header
from exgs.io.ply import write_ply
from exgs.synth import demo_scene

pytest.importorskip("diffusers")

from exgs.painter.adapt import AdaptConfig, adapt, targets  # noqa: E402
from exgs.painter.delta import (DeltaError, DeltaMismatch, apply_delta,  # noqa: E402
                                decode_delta, file_delta)
from exgs.pipeline import CompressOptions, compress_scene, restorer_for  # noqa: E402
from exgs.painter.infer import Painter, load_net  # noqa: E402

FAST = dict(views=4, view_size=(64, 48))


def tiny_cfg(form="head", **kw):
    d = dict(form=form, views=5, holdout=2, size=64, crop=32, batch=2, steps=4,
             seconds=600, min_gain_db=-math.inf)
    d.update(kw)
    return AdaptConfig(**d)


@pytest.fixture(scope="module")
def net():
    return load_net()


@pytest.fixture(scope="module")
def scene():
    return demo_scene(n=800, sh_degree=1, seed=3)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, net, scene):
    """A .exgs (10 % kept) with a head delta, written to disk."""
    from exgs.ugc import compress

    res = compress(scene, keep_target=0.1, device="cpu", **FAST)
    out = adapt(scene, res.scene, net=net, config=tiny_cfg())
    assert out.delta is not None and out.stats["steps"] == 4
    data = X.attach_sections(res.data, {X.DELTA_SECTION: out.delta})
    p = tmp_path_factory.mktemp("adapt") / "a.exgs"
    p.write_bytes(data)
    return p, res, out.delta


def _frame(scene, size=64):
    from exgs.cameras import orbit_for_scene
    from exgs.render import render

    cam = orbit_for_scene(scene, 1, size, size, seed=7)[0]
    r = render(scene, cam, device="cpu")
    return r.rgb, r.alpha


def test_delta_round_trips_bit_exactly_and_restores_identically(adapted, net):
    path, res, delta = adapted
    assert file_delta(path) == delta
    h = X.read_exgs_header(path)
    assert h["version"] == X.VERSION_SECTIONS and h["sections"][0]["name"] == "painter_delta"
    # the scene part is untouched by the section
    a, b = X.read_exgs_scene(path), X.decode_exgs(res.data)
    assert np.array_equal(a.means, b.means) and np.array_equal(a.sh, b.sh)
    rgb, alpha = _frame(a)
    before = Painter(apply_delta(net, delta)).restore(rgb, alpha)
    r = restorer_for(path)
    after = r.painter.restore(rgb, alpha)
    assert r.delta["applied"] and r.delta["form"] == "head" and r.delta["bytes"] == len(delta)
    assert np.array_equal(before, after)
    # the base net is not modified by applying a delta, and the delta changes the output
    generic = Painter(net).restore(rgb, alpha)
    assert np.array_equal(generic, Painter(load_net()).restore(rgb, alpha))
    # removing the section gives back the original bytes (version 1)
    assert X.attach_sections(path.read_bytes(), {X.DELTA_SECTION: None}) == res.data


@pytest.mark.parametrize("form", ["last", "lora", "bias"])
def test_other_forms_encode_and_apply(net, scene, form):
    from exgs.ugc import compress

    res = compress(scene, keep_target=0.2, device="cpu", **FAST)
    out = adapt(scene, res.scene, net=net, config=tiny_cfg(form, steps=2))
    desc, tensors = decode_delta(out.delta)
    assert desc["form"] == form and desc["dtype"] == "int8"
    names = {e["name"] for e, _ in tensors}
    assert names == {n for n, _ in targets(net, form)}
    if form == "lora":
        assert {e["kind"] for e, _ in tensors} == {"lora_a", "lora_b", "diff"}
    m1, m2 = apply_delta(net, out.delta), apply_delta(net, out.delta)
    for (k, v), (_, w) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch_equal(v, w), k


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a, b))


def test_file_without_delta_still_renders_and_restores(tmp_path, scene, capsys):
    from exgs.ugc import compress

    res = compress(scene, keep_target=0.2, device="cpu", **FAST)
    p = tmp_path / "plain.exgs"
    p.write_bytes(res.data)
    assert X.read_exgs_header(p)["version"] == 1 and file_delta(p) is None
    r = restorer_for(p)
    painter = r.painter
    assert not r.delta["applied"]
    rgb, alpha = _frame(X.read_exgs_scene(p))
    assert painter.restore(rgb, alpha).shape == rgb.shape
    assert main(["render", str(p), "--orbit", "1", "--size", "48x48", "--out",
                 str(tmp_path / "r"), "--restore", "--device", "cpu"]) == 0
    assert (tmp_path / "r" / "0000.png").exists()


def _corrupt_section(data: bytes, fn) -> bytes:
    h, start = parse_header(memoryview(data), len(data), check_header)
    sec = h["sections"][0]
    b = bytearray(data)
    i0 = start + sec["offset"]
    fn(b, i0, sec["length"])
    return bytes(b)


def test_corrupt_delta_gives_clean_error_scene_still_reads(adapted, tmp_path, capsys):
    path, res, delta = adapted
    good = path.read_bytes()
    bad = tmp_path / "bad.exgs"

    def flip(b, i0, n):
        b[i0 + n // 2] ^= 0x5A

    bad.write_bytes(_corrupt_section(good, flip))
    # the scene is unaffected
    assert len(X.read_exgs_scene(bad)) == len(res.scene)
    with pytest.raises(SceneFormatError) as ei:
        file_delta(bad)
    msg = str(ei.value)
    assert "bad.exgs" in msg and "painter_delta" in msg and "\n" not in msg
    # render --restore: exit 2, one line naming the file; --no-delta restores generically
    out = tmp_path / "r"
    assert main(["render", str(bad), "--orbit", "1", "--size", "32x32", "--out", str(out),
                 "--restore", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exgs: error:") and "bad.exgs" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["render", str(bad), "--orbit", "1", "--size", "32x32", "--out", str(out),
                 "--restore", "--no-delta", "--device", "cpu"]) == 0
    # a section whose checksum is valid but whose content is not a delta
    junk = b"EXPD\x01" + b"\x00" * 20
    forged = tmp_path / "forged.exgs"
    forged.write_bytes(X.attach_sections(good, {X.DELTA_SECTION: junk}))
    with pytest.raises(SceneFormatError, match="forged.exgs.*painter delta"):
        file_delta(forged)
    # truncation inside the section: the file as a whole is refused, in one line
    trunc = tmp_path / "trunc.exgs"
    trunc.write_bytes(good[:-3])
    for fn in (X.read_exgs_scene, file_delta):
        with pytest.raises(SceneFormatError) as ei:
            fn(trunc)
        assert "trunc.exgs" in str(ei.value) and "\n" not in str(ei.value)


def _raw_file(h: dict, body: bytes) -> bytes:
    """A file with header ``h`` (valid digest, no schema checks) and data ``body``."""
    import hashlib
    import json

    import zstandard

    hj = zstandard.compress(json.dumps(h).encode())
    return (PREFIX.pack(b"EXGS", 2, 1, len(hj)) + hj
            + hashlib.blake2b(hj, digest_size=8).digest() + body)


def test_forged_section_tables_rejected(adapted, tmp_path):
    path, _, _ = adapted
    good = path.read_bytes()
    h, start = parse_header(memoryview(good), len(good), check_header)
    body = good[start:]
    cases = [
        lambda h: h["sections"][0].update(offset=h["sections"][0]["offset"] + 1),
        lambda h: h["sections"][0].update(name="Bad Name"),
        lambda h: h["sections"].append(dict(h["sections"][0])),
        lambda h: h.update(sections=[]),
        lambda h: h["sections"][0].update(length=-1),
        lambda h: h.update(version=1),
    ]
    import copy

    for i, edit in enumerate(cases):
        hh = copy.deepcopy(h)
        edit(hh)
        data = _raw_file(hh, body)
        p = tmp_path / f"f{i}.exgs"
        p.write_bytes(data)
        with pytest.raises(SceneFormatError) as ei:
            X.read_exgs_scene(p)
        assert f"f{i}.exgs" in str(ei.value)


def test_delta_for_other_weights_is_skipped_with_a_warning(adapted, net):
    path, _, delta = adapted
    import copy

    import torch

    other = copy.deepcopy(net)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(DeltaMismatch):
        apply_delta(other, delta)
    with pytest.raises(DeltaError):
        apply_delta(net, delta[:-1])


def test_compress_ratio_with_adapt_meets_the_ratio(scene):
    from exgs.ugc import inria_ply_bytes

    src = inria_ply_bytes(len(scene), 3)
    ratio = 20.0
    opts = CompressOptions(ratio=ratio, source_bytes=src, device="cpu", **FAST)
    generic = compress_scene(scene, opts)
    res = compress_scene(scene, opts, tiny_cfg())
    pd = res.stats["painter_delta"]
    assert pd["enabled"]
    delta = X.exgs_section_from_bytes(res.data, X.DELTA_SECTION)
    assert delta is not None and len(res.data) <= src / ratio
    assert res.stats["file_bytes"] == len(res.data)
    assert len(res.scene) < len(generic.scene)  # room was made for the delta
    # switched off (impossible margin): the generic file, without a section
    off = compress_scene(scene, opts, tiny_cfg(min_gain_db=math.inf))
    assert not off.stats["painter_delta"]["enabled"]
    assert X.exgs_section_from_bytes(off.data, X.DELTA_SECTION) is None
    assert off.data == generic.data


@pytest.mark.parametrize("args,needle", [
    (["--adapt", "0"], "--adapt"),
    (["--adapt", "abc"], "--adapt"),
    (["--adapt", "nan"], "--adapt"),
    (["--adapt", "inf"], "--adapt"),
    (["--adapt", "-5"], "--adapt"),
    (["--adapt", "5", "--adapt-form", "nope"], "form"),
    (["--adapt", "5", "--adapt-threads", "0"], "threads"),
    (["--adapt-min-gain", "1"], "need --adapt"),
])
def test_cli_bad_adapt_values_exit_2_one_line(tmp_path, scene, capsys, args, needle):
    ply = tmp_path / "s.ply"
    write_ply(scene, ply)
    out = tmp_path / "o.exgs"
    assert main(["compress", str(ply), "-o", str(out), "--keep", "0.1", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exgs: error:") and needle in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_no_delta_needs_restore(tmp_path, adapted, capsys):
    path, _, _ = adapted
    assert main(["render", str(path), "--out", str(tmp_path / "r"), "--no-delta"]) == 2
    assert "--no-delta needs --restore" in capsys.readouterr().err


def test_few_training_cameras_are_topped_up_with_orbits(net, scene):
    from exgs.cameras import orbit_for_scene
    from exgs.painter.adapt import adaptation_cameras

    cams = orbit_for_scene(scene, 2, 320, 240, seed=3)
    cfg = tiny_cfg(steps=1)
    got = adaptation_cameras(scene, cfg, cams)
    assert len(got) == cfg.views and max(got[0].width, got[0].height) == cfg.size
    assert sum(c.name.startswith("orbit") and c.width == cfg.size for c in got) >= 3


def test_fuzzed_files_with_a_delta_never_crash(adapted, tmp_path):
    """Random truncations / byte flips / splices of a file with a delta: reading the scene or
    the delta either gives the right answer or one-line SceneFormatError; a corrupted delta
    is never returned as valid."""
    path, res, delta = adapted
    good = path.read_bytes()
    want = X.decode_exgs(res.data)
    rng = np.random.default_rng(99)
    p = tmp_path / "fz.exgs"
    for case in range(120):
        b = bytearray(good)
        kind = case % 3
        if kind == 0:
            b = b[:int(rng.integers(0, len(good)))]
        elif kind == 1:
            for _ in range(int(rng.integers(1, 5))):
                i = int(rng.integers(0, len(b)))
                b[i] ^= int(rng.integers(1, 256))
        else:
            i = int(rng.integers(len(good) - len(delta), len(good)))  # inside the delta
            b[i:i + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        if bytes(b) == good:
            continue
        p.write_bytes(bytes(b))
        for fn in (X.read_exgs_scene, file_delta):
            try:
                out = fn(p)
            except SceneFormatError as e:
                assert "fz.exgs" in str(e) and "\n" not in str(e)
                continue
            if fn is file_delta:
                assert out == delta
            else:
                assert np.array_equal(out.means, want.means)


@pytest.mark.parametrize("form", ["last", "head"])
def test_adaptation_trains_the_gate_inference_uses(form):
    """The adaptation's frozen-activation path (``_Tail``) is the painter's own forward pass
    for the scene's kept fraction: same keep channel, bias and covered cap (before, the gate
    head saw the default keep while inference passed the file's)."""
    import torch

    from exgs.painter.adapt import _Tail, gate_bias_for

    shipped = load_net()
    rng = np.random.default_rng(5)
    rgb = torch.from_numpy(rng.random((1, 3, 64, 64), np.float32))
    alpha = torch.from_numpy((rng.random((1, 1, 64, 64)) > 0.3).astype(np.float32))
    for keep in (0.01, 0.2):
        tail = _Tail(shipped, form, gate_bias_for(shipped, keep), keep)
        with torch.no_grad():
            got = tail.forward(tail.cache_view(rgb, alpha, rgb))
            want = shipped(rgb, alpha, kept_fraction=keep)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_render_pairs_shares_full_scene_renders_through_the_cache(monkeypatch):
    """One compression renders the same views of the (expensive) full scene for its verdict
    and every delta candidate: with a shared cache each view of the full scene is rendered
    once, and the pairs are identical to uncached ones."""
    import exgs.render as R
    from exgs.cameras import orbit_for_scene
    from exgs.painter.adapt_views import render_pairs
    from exgs.synth import demo_scene

    full = demo_scene(n=600, sh_degree=1, seed=8)
    pruned = full.subset(np.arange(0, 600, 7))
    cams = orbit_for_scene(full, 3, 48, 32, seed=1)
    plain = render_pairs(full, pruned, cams)
    calls = []
    real = R.render

    def counting(scene, cam, **kw):
        calls.append(scene is full)
        return real(scene, cam, **kw)
    monkeypatch.setattr(R, "render", counting)
    cache = {}
    a = render_pairs(full, pruned, cams, clean_cache=cache)
    b = render_pairs(full, pruned, cams[1:], clean_cache=cache)  # a second candidate
    assert sum(calls) == len(cams) and len(cache) == len(cams)
    assert len(calls) == len(cams) * 2 + 2  # the pruned scene is rendered every time
    for x, y in zip(plain, a):
        assert all(np.array_equal(x[k], y[k]) for k in x)
    assert all(np.array_equal(plain[1][k], b[0][k]) for k in plain[1])
