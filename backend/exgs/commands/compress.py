"""``exgs compress IN -o OUT.exgs (--ratio R | --keep F)``: UGC compression into a .exgs file.

``--ratio`` is size(IN file)/size(OUT), met by searching the kept count. Prints count, size,
ratio and time; writes nothing on failure; never overwrites the input.

``--adapt [SECONDS]`` (default 60 s when given bare) also fine-tunes a per-scene GaussPainter
delta for that wall-time budget and stores it in the file's ``painter_delta`` section
(:func:`exgs.pipeline.compress_scene`); with ``--ratio`` the whole file, delta included,
meets the ratio. The delta is left out when it does not beat the generic painter on held-out
views at the same file size. With ``--refine`` too, the delta is trained after refinement, on
the refined survivors, and must beat the refined file (room for it: the refined file's least
significant Gaussians are dropped).

``--keep`` is the user's "how much to keep" (a fraction or a count); inside the pipeline it is
``keep_target``, never the kept fraction (which is what a compressed scene *has* kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from ..errors import UsageError


def keep_value(text: str):
    """'0.1' → fraction, '5000' → count."""
    try:
        if text.strip().isdigit():
            v = int(text)
            if v < 1:
                raise ValueError
            return v
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--keep must be a fraction in (0, 1] or a count "
                                         f"≥ 1, got {text!r}") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"--keep fraction must be in (0, 1], got {text}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v >= 1.0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"ratio must be ≥ 1, got {text}")
    return v


def adapt_seconds(text) -> float:
    """``--adapt`` value → seconds (positive, finite, ≤ 1 day); UsageError otherwise."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"--adapt must be a number of seconds > 0, got {text!r}") from None
    if not (v > 0 and v <= 86400):
        raise UsageError(f"--adapt must be a number of seconds in (0, 86400], got {text!r}")
    return v


def register(sub) -> None:
    from ._common import parse_size

    p = sub.add_parser("compress", help="UGC-compress a scene into a progressive .exgs file")
    p.add_argument("input", help="scene file (.ply, .spz, .sog, ...)")
    p.add_argument("-o", "--output", required=True, help="output .exgs file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=positive_float,
                   help="target size ratio size(input file)/size(output), e.g. 100")
    g.add_argument("--keep", type=keep_value, help="fraction (0,1] or count of Gaussians kept")
    p.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], default=0,
                   help="SH degree stored (default 0)")
    p.add_argument("--cameras", help="INRIA cameras.json: score over these training views")
    p.add_argument("--shot", metavar="CAMERAS_JSON",
                   help="INRIA cameras.json of the frames the file will be rendered from (a "
                        "camera path): scored and refined as well, and the painter is judged "
                        "on them (at most 32, evenly spread)")
    p.add_argument("--views", type=int, default=24, help="orbit scoring views (default 24)")
    p.add_argument("--view-size", type=parse_size, default=(320, 240),
                   help="scoring view size WxH (default 320x240)")
    p.add_argument("--up", default="-y", help="scene up axis for orbit views (default -y)")
    p.add_argument("--volume-beta", type=float, default=None,
                   help="LightGaussian volume factor exponent (e.g. 0.1; default off)")
    p.add_argument("--no-voxel", action="store_true", help="plain top-k by score")
    p.add_argument("--voxel-size", type=float, default=None, help="voxel edge (scene units)")
    p.add_argument("--voxel-mass-share", type=float, default=0.5, metavar="S",
                   help="share of the picks given to voxels by significance mass rather than "
                        "by Gaussian count, 0..1 (default 0.5; 0 = the count rule)")
    p.add_argument("--no-amplify", action="store_true", help="no survivor amplification")
    p.add_argument("--no-painter-verdict", action="store_true",
                   help="do not judge the painter on held-out views of the file (by default a "
                        "file that restoring would make worse is marked 'restore with nothing')")
    p.add_argument("--no-painter-tune", action="store_true",
                   help="with the verdict, do not try the file's own painter gate bias and "
                        "detail scale (by default the one that restores its held-out views "
                        "best is stored in the file, about 180 bytes)")
    p.add_argument("--no-distill", action="store_true", help="truncate SH instead of distilling")
    p.add_argument("--position-bits", type=int, default=16, choices=range(8, 22),
                   metavar="8..21", help="position bits per axis (default 16)")
    p.add_argument("--device", default="auto", help="render device for scoring (auto|cpu|cuda)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    p.add_argument("--profile", action="store_true",
                   help="report wall time and peak RSS per stage (read, score, ..., write)")
    p.add_argument("--adapt", nargs="?", const="default", default=None, metavar="SECONDS",
                   help="fine-tune a per-scene GaussPainter delta for SECONDS (default 60) "
                        "and store it in the file (counted in --ratio)")
    p.add_argument("--adapt-form", default=None, metavar="FORM",
                   help="delta form: auto (default: the best of last/head/detail that fits "
                        "the budget, by held-out PSNR at equal file size), last, head, lora, "
                        "bias or detail (the full-resolution detail head: every pixel)")
    p.add_argument("--adapt-threads", type=int, default=1, metavar="N",
                   help="torch threads for the adaptation (default 1)")
    p.add_argument("--adapt-min-gain", type=float, default=None, metavar="DB",
                   help="keep the delta only if it gains at least DB dB on held-out views")
    p.add_argument("--painter", default=None, help="GaussPainter weights for --adapt "
                                                   "(default: shipped)")
    p.add_argument("--refine", default=None, metavar="SECONDS",
                   help="distil the survivors against the full scene's renders for SECONDS "
                        "(wall clock) at no extra bytes; kept only if better on held-out "
                        "views; Ctrl-C stops it early and keeps the best so far; with "
                        "--adapt the delta is trained after refinement")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cameras import read_cameras_json
    from ..fsutil import same_file
    from ..io import read_scene
    from ..pipeline import CompressOptions, compress_scene
    from ..ugc import write_exgs
    from ._common import human_bytes

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix.lower() != ".exgs":
        raise UsageError(f"{dst}: output must end in .exgs")
    if same_file(src, dst) or src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: is the input file (refusing to overwrite it)")
    if dst.is_dir():
        raise UsageError(f"{dst}: is a folder")
    if dst.exists() and not args.force:
        raise UsageError(f"{dst}: already exists (use --force to overwrite)")
    if args.views < 1:
        raise UsageError(f"--views must be ≥ 1, got {args.views}")
    from .. import profiling

    if args.profile:
        profiling.enable()
    t0 = time.perf_counter()
    with profiling.stage("read"):
        scene = read_scene(src).validate(src)
    cams = read_cameras_json(args.cameras) if args.cameras else None
    shot = read_cameras_json(args.shot) if args.shot else None
    if src.is_dir():
        src_bytes = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    else:
        src_bytes = os.path.getsize(src)
    adapt = _adapt_options(args)
    refine_seconds = _refine_seconds(args)
    if isinstance(args.keep, int) and args.keep > len(scene):
        raise UsageError(f"--keep {args.keep} exceeds the scene's {len(scene):,} Gaussians")
    last = [0.0]

    def progress(frac, msg):
        now = time.perf_counter()
        if not args.json and sys.stderr.isatty() and now - last[0] > 0.5:
            print(f"\r[{(frac or 0.0) * 100:3.0f}%] {msg:60s}", end="", file=sys.stderr,
                  flush=True)
            last[0] = now

    options = CompressOptions(
        ratio=args.ratio, keep_target=args.keep, source_bytes=src_bytes,
        sh_degree=args.sh_degree, cameras=cams, shot=shot, views=args.views,
        view_size=args.view_size,
        up=args.up, volume_beta=args.volume_beta, voxel=not args.no_voxel,
        voxel_size=args.voxel_size, voxel_mass_share=args.voxel_mass_share,
        amplify=not args.no_amplify, distill=not args.no_distill,
        position_bits=args.position_bits, device=args.device,
        painter_verdict=not args.no_painter_verdict, painter_tune=not args.no_painter_tune)
    net = None
    if adapt is not None:
        from ..painter.infer import load_net

        net = load_net(args.painter)
    with _refine_options(refine_seconds) as refine:
        res = compress_scene(scene, options, adapt, refine, progress=progress, net=net)
    if not args.json and sys.stderr.isatty():
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    with profiling.stage("write"):
        write_exgs(res, dst)
    st = res.stats
    st["seconds_total"] = time.perf_counter() - t0
    if args.profile:
        st["profile"] = profiling.records()
        if not args.json:
            for r in st["profile"]:
                print(f"  {r['stage']:10s} {r['seconds']:8.1f} s  peak RSS "
                      f"{r['peak_rss_gib']:.2f} GiB  (RSS after {r['rss_gib']:.2f} GiB, "
                      f"{r['calls']} call{'s' if r['calls'] > 1 else ''})")
    if args.json:
        print(json.dumps({"input": str(src), "output": str(dst), **st}, indent=2, default=str))
        return 0
    print(f"{src} -> {dst}: kept {st['kept']:,} of {st['source_gaussians']:,} Gaussians "
          f"({st['kept_fraction'] * 100:.2f} %), SH degree {st['sh_degree']}")
    print(f"  size {human_bytes(st['file_bytes'])} ({st['bytes_per_gaussian']:.2f} B/Gaussian), "
          f"ratio {st['ratio']:.1f}x vs the {human_bytes(src_bytes)} input, "
          f"time {st['seconds_total']:.1f} s")
    if st.get("shot_views"):
        taught = ", refinement taught" if st.get("refine") else ""
        print(f"  shot: {st['shot_views']} of its {len(shot)} cameras scored{taught}; the "
              "painter judged on its frames")
    rf = st.get("refine")
    if rf:
        d = rf["decision_psnr"]
        base = d["training-free"]
        best = base if rf["switched_off"] else max(d.values())
        what = ("switched off: the training-free survivors are kept" if rf["switched_off"]
                else f"{best - base:+.2f} dB at the same size")
        print(f"  refine: {rf['steps']} steps in {rf['seconds']:.1f} s"
              f"{' (stopped early)' if rf['cancelled'] else ''}, held-out views "
              f"{base:.2f} -> {best:.2f} dB ({what})")
    pd = st.get("painter_delta")
    if pd:
        if pd.get("enabled"):
            print(f"  painter delta ({pd['form']}): {pd['bytes']:,} bytes of the file, "
                  f"held-out {pd['heldout_generic_db']:.2f} -> {pd['heldout_adapted_db']:.2f} dB "
                  f"({pd['gain_db']:+.2f} dB over {pd.get('reference', 'generic')} at equal size), "
                  f"{pd['steps']} steps")
        elif pd.get("restore") == "none":
            print(f"  painter delta: 'none' ({pd['bytes']} bytes): the file is marked to be "
                  f"rendered unrestored ({pd.get('reason', '')})")
        elif pd.get("restore") == "tune":
            t = pd["tune"]
            print(f"  painter setting of its own ({pd['bytes']} bytes): gate bias "
                  f"{t['gate_bias']:+g}, detail scale {t['detail_scale']:g}; held-out "
                  f"unrestored {pd['heldout_none_db']:.2f}, generic "
                  f"{pd['heldout_generic_db']:.2f}, own {pd['heldout_tuned_db']:.2f} dB")
        else:
            print(f"  painter delta: not stored ({pd.get('reason', 'switched off')})")
        tried = {f: c for f, c in (pd.get("candidates") or {}).items()
                 if c.get("heldout_adapted_db") is not None}
        if tried and not pd.get("enabled"):
            print("  painter delta tried, switched off: held-out " + ", ".join(
                f"{f} {c['heldout_adapted_db']:.2f} dB" for f, c in tried.items()))
    return 0


def _refine_seconds(args):
    """``--refine`` → seconds (finite, > 0) or None; UsageError otherwise."""
    if args.refine is None:
        return None
    from ..ugc.refine import check_budget

    return check_budget(args.refine)


@contextlib.contextmanager
def _refine_options(seconds):
    """RefineOptions for ``seconds`` (None → None) whose cancel flag a first Ctrl-C sets
    while the block runs (refinement stops, or is skipped, and the best file so far is
    written); a second Ctrl-C aborts."""
    if seconds is None:
        yield None
        return
    import signal
    import threading

    from ..ugc.refine import RefineOptions

    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT) if in_main else None
    def on_interrupt(*_):
        if stop.is_set():  # a second Ctrl-C aborts as usual
            raise KeyboardInterrupt
        stop.set()

    if in_main:
        signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield RefineOptions(seconds=seconds, cancel=stop)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old)


def _adapt_options(args):
    """The AdaptOptions of ``--adapt*`` (None without ``--adapt``); UsageError on bad values."""
    if args.adapt is None:
        if args.adapt_form or args.adapt_min_gain is not None or args.painter:
            raise UsageError("--adapt-form, --adapt-min-gain and --painter need --adapt")
        return None
    from ..painter.adapt import DEFAULT_SECONDS
    from ..pipeline import adapt_options

    secs = DEFAULT_SECONDS if args.adapt == "default" else adapt_seconds(args.adapt)
    if not 1 <= args.adapt_threads <= 256:
        raise UsageError(f"--adapt-threads must be in 1..256, got {args.adapt_threads}")
    return adapt_options(secs, form=args.adapt_form, min_gain_db=args.adapt_min_gain,
                         threads=args.adapt_threads)
