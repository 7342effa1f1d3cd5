"""``exgs painter-train``: build cached training pairs from scenes and train GaussPainter.

Example (the command that produced the shipped default weights is in
backend/exgs/painter/weights/MODEL_CARD.md)::

    exgs painter-train --scenes playbot_lod2,playbot_lod4,garden,proc:0-40 \\
        --val-scenes playbot_lod3,proc:1000-1003 --cache /work/cache/painter \\
        --out /work/cache/painter-run --steps 3000 --minutes 55

Re-running the same command resumes: cached pairs are reused, training continues from
``OUT/checkpoint.pt``. The weights (diffusers layout) are written to ``OUT/painter/`` at every
checkpoint; use them with ``--painter OUT/painter``.
"""

from __future__ import annotations

import json
import time


def register(sub) -> None:
    p = sub.add_parser("painter-train", help="train the GaussPainter restorer (pairs cached on disk)")
    p.add_argument("--scenes", default="playbot_lod2,playbot_lod4,garden,proc:0-40",
                   help="training scenes: playbot_lodN, garden, proc:A-B (procedural seeds), "
                        "or .ply paths; comma-separated")
    p.add_argument("--val-scenes", default="playbot_lod3,proc:1000-1003",
                   help="held-out scenes for validation (never trained on)")
    p.add_argument("--scenes-dir", default="/work/shared/scenes",
                   help="directory with playbot_lodN.ply and garden_sfm_points.npz")
    p.add_argument("--cache", required=True, help="pair cache directory (npz files)")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, painter/ weights")
    p.add_argument("--views", type=int, default=8, help="views per training scene")
    p.add_argument("--val-views", type=int, default=4, help="views per validation scene")
    p.add_argument("--size", type=int, default=192, help="render size in pixels (square)")
    p.add_argument("--keeps-per-view", type=int, default=3, help="pruned renders per view")
    p.add_argument("--refine-steps", type=int, default=0,
                   help="> 0: real training scenes also get renders of each pruned scene after "
                        "this many refinement steps (exgs.ugc.refine, issue 10)")
    p.add_argument("--prune", choices=["auto", "ugc", "simple"], default="auto",
                   help="pruning: exgs.ugc when available (auto), or opacity×area score")
    p.add_argument("--val-prune", choices=["same", "auto", "ugc", "simple"], default="same",
                   help="pruning of the held-out pairs (default: as --prune)")
    p.add_argument("--extra-pairs", action="append", default=[],
                   help="also train on every cached pair file under this directory "
                        "(e.g. CACHE/ugc built by another --data-only run); repeatable")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=0.0, help="wall-time budget (0 = none)")
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop at this step while keeping the learning-rate schedule of --steps "
                        "(equal-step ablations against a longer run's checkpoint)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--segment-minutes", type=float, default=0.0,
                   help="stop (checkpointed) after this many minutes of this process; re-run to "
                        "resume (keeps a shared heavy-job lock held ≤ 15 min)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", default=None,
                   help="fine-tune from this weights directory ('shipped' = the default weights) "
                        "instead of training from scratch: its architecture is kept, its gate "
                        "reset to the training setting (floor --gate-floor, bias 0, no table)")
    p.add_argument("--vae-width", type=int, default=16)
    p.add_argument("--latent-channels", type=int, default=8)
    p.add_argument("--gate-floor", type=float, default=1.0,
                   help="gate floor while training (1 = fully learned gate; the shipped floor "
                        "is chosen afterwards by measurement, see docs/painter.md)")
    p.add_argument("--gate-head", action="store_true",
                   help="add the small full-resolution gate head (coverage features)")
    p.add_argument("--gate-stats", action="store_true",
                   help="the gate head also sees the render's degradation statistics and the "
                        "kept fraction (PainterConfig.gate_stats; with --init: the head is "
                        "widened, new inputs start at zero weight)")
    p.add_argument("--no-mask", action="store_true", help="ablation: no mask/alpha input or gate")
    p.add_argument("--no-latent-loss", action="store_true", help="ablation: w_lat = 0")
    p.add_argument("--p-identity", type=float, default=0.2,
                   help="fraction of training crops that are identity pairs (nothing pruned): "
                        "they teach the gate to leave complete renders alone")
    p.add_argument("--calibrate", action="store_true",
                   help="after training, choose the shipped gate bias/floor on training pairs "
                        "(exgs.painter.calibrate) and write them into OUT/painter/painter.json")
    p.add_argument("--gate-coverage-gain", type=float, default=16.0,
                   help="shipped gate: the floor applies only where the local coverage is "
                        "incomplete (PainterConfig.gate_coverage_gain; 0 = everywhere)")
    p.add_argument("--detail-head", action="store_true",
                   help="train only the full-resolution detail head (exgs.painter.detail) on top "
                        "of the frozen --init weights (default: shipped): a zero-init head is added "
                        "when the weights have none; training-scene views v000, v006, … are kept "
                        "out of its training for --calibrate (exgs.painter.detail_train)")
    p.add_argument("--detail-width", type=int, default=16)
    p.add_argument("--detail-dilations", default="1,2,4",
                   help="dilations of the detail head's hidden 3×3 convs")
    p.add_argument("--detail-stride", type=int, default=1, choices=(1, 2),
                   help="2: the detail head's convs run on 2×2 pixel blocks (half the cost)")
    p.add_argument("--detail-crop", type=int, default=96)
    p.add_argument("--detail-max-keep", type=float, default=1.0,
                   help="train the detail head only on renders with kept fraction ≤ this (its "
                        "calibration still sees every kept fraction)")
    p.add_argument("--detail-no-monotone", action="store_true",
                   help="detail calibration: keep each bin's own scale (no non-increasing clamp)")
    p.add_argument("--detail-batch", type=int, default=16)
    p.add_argument("--data-only", action="store_true", help="build the pair cache, do not train")
    p.add_argument("--calibrate-only", action="store_true",
                   help="only (re)calibrate OUT/painter's gate on the training pairs")
    p.add_argument("--calibrate-refined", action="store_true",
                   help="only choose OUT/painter's gate and detail tables for REFINED files "
                        "(refined_gate_bias_by_keep / refined_detail_scale_by_keep) on the "
                        "refined frames of the calibration views (v000, v006, …) of the "
                        "training pairs (exgs.painter.calibrate_refined); re-runnable")
    p.add_argument("--calibrate-free", action="store_true",
                   help="only choose OUT/painter's generic gate and detail tables "
                        "(gate_bias_by_keep / detail_scale_by_keep) by the same do-no-harm "
                        "rule on the training-free frames of the calibration views; with "
                        "--calibrate-refined both, training-free first")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..errors import UsageError
    from ..painter.data import (PairSampler, PairSpec, build_scene_pairs, load_pairs,
                                parse_scene_specs, ugc_available)

    if args.size % 8 or args.crop % 8 or args.crop > args.size:
        raise UsageError("--size and --crop must be multiples of 8 with crop ≤ size")
    train_specs = parse_scene_specs([args.scenes])
    val_specs = parse_scene_specs([args.val_scenes]) if args.val_scenes else []
    base = lambda v: v.removesuffix("+shell")  # noqa: E731  (a capture with or without shell)
    overlap = {base(t) for t in train_specs} & {base(v) for v in val_specs}
    if overlap:
        raise UsageError(f"scenes both trained on and held out: {', '.join(sorted(overlap))}")
    auto = "ugc" if ugc_available() else "simple"
    prune = args.prune if args.prune != "auto" else auto
    vprune = {"same": prune, "auto": auto}.get(args.val_prune, args.val_prune)
    ps = PairSpec(views=args.views, size=args.size, keeps_per_view=args.keeps_per_view,
                  prune=prune, seed=args.seed, refine_steps=args.refine_steps)
    vs = PairSpec(views=args.val_views, size=args.size, keeps_per_view=3, prune=vprune,
                  seed=args.seed + 1, keep_range=(0.01, 0.10))
    t0 = time.time()
    files, vfiles = [], []
    for spec in tqdm(train_specs, desc="pairs (train)"):
        files += build_scene_pairs(spec, f"{args.cache}/{prune}", ps, args.scenes_dir)
    for spec in tqdm(val_specs, desc="pairs (held out)"):
        vfiles += build_scene_pairs(spec, f"{args.cache}/{vprune}-val", vs, args.scenes_dir)
    from pathlib import Path

    for d in args.extra_pairs:
        extra = sorted(Path(d).glob("*/v*.npz"))
        if not extra:
            raise UsageError(f"{d}: no cached pair files (*/v*.npz)")
        files += extra
    t_data = time.time() - t0
    print(f"pairs: {len(files)} train views, {len(vfiles)} held-out views "
          f"(pruning: {prune}, held out: {vprune}, extra dirs: {len(args.extra_pairs)}; "
          f"{t_data / 60:.1f} min)")
    if args.data_only:
        return 0
    if args.calibrate_refined or args.calibrate_free:
        from ..painter.calibrate_refined import calibrate_free, calibrate_refined
        from ..painter.detail_train import split_views

        cal = split_views(files)[1]
        print(f"table calibration: {len(cal)} calibration views of {len(files)}")
        pairs = load_pairs(cal)
        if args.calibrate_free:
            calibrate_free(f"{args.out}/painter", pairs)
        if args.calibrate_refined:
            calibrate_refined(f"{args.out}/painter", pairs)
        return 0
    if args.detail_head:
        return run_detail(args, files)
    if args.calibrate_only:
        calibrate_weights(f"{args.out}/painter", files[::max(1, len(files) // 100)],
                          coverage_gain=args.gate_coverage_gain)
        return 0
    from ..painter.model import PainterConfig, PainterNet
    from ..painter.train import TrainConfig, train

    cfg = PainterConfig(vae_width=args.vae_width, latent_channels=args.latent_channels,
                        use_mask=not args.no_mask, gate_floor=args.gate_floor,
                        gate_head=args.gate_head, gate_stats=args.gate_stats)
    tc = TrainConfig(steps=args.steps, minutes=args.minutes, batch=args.batch, crop=args.crop,
                     lr=args.lr, stop_at=args.stop_at, seed=args.seed,
                     w_lat=0.0 if args.no_latent_loss else 1.0,
                     checkpoint_minutes=args.checkpoint_minutes, threads=args.threads,
                     segment_minutes=args.segment_minutes)
    import torch

    torch.manual_seed(args.seed)
    if args.init:
        from ..painter.infer import load_net

        net = load_net(None if args.init == "shipped" else args.init)
        net.cfg.gate_floor, net.cfg.gate_bias = args.gate_floor, 0.0
        net.cfg.gate_bias_by_keep, net.cfg.gate_coverage_gain = (), 0.0
        net.cfg.gate_covered_by_keep = ()
        if args.gate_stats and net.gate_head is not None and not net.cfg.gate_stats:
            from ..painter.model import GateHead

            head = GateHead(stats=True)
            head.widen_from(net.gate_head)
            net.gate_head, net.cfg.gate_stats = head, True
        cfg = net.cfg
    else:
        net = PainterNet(cfg)
    sampler = PairSampler(load_pairs(files), p_identity=args.p_identity)
    val = load_pairs(vfiles) if vfiles else None
    meta = {"scenes": train_specs, "val_scenes": val_specs, "views": args.views,
            "size": args.size, "keeps_per_view": args.keeps_per_view, "prune": prune,
            "val_prune": vprune, "p_identity": args.p_identity, "extra_pairs": args.extra_pairs,
            "data_minutes": round(t_data / 60, 2), "init": args.init}
    info = train(net, sampler, tc, args.out, val_pairs=val, meta=meta)
    from ..fsutil import atomic_path

    with atomic_path(Path(args.out) / "status.json") as tmp:  # for segment loops
        Path(tmp).write_text(json.dumps({"finished": info["finished"], "step": info["step"]}))
    print(json.dumps({"steps": info["step"], "minutes": round(info["minutes"], 1),
                      "val": info.get("val")}, indent=2))
    if args.calibrate and info.get("finished", True):
        calibrate_weights(f"{args.out}/painter", files[::max(1, len(files) // 100)],
                          coverage_gain=args.gate_coverage_gain)
    print(f"weights: {args.out}/painter")
    return 0


def run_detail(args, files) -> int:
    """``--detail-head``: train (resumable, segments) and/or calibrate the detail head."""
    from pathlib import Path

    from ..fsutil import atomic_path
    from ..painter.data import load_pairs
    from ..painter.detail_train import (DetailTrainConfig, base_restorations, calibrate_detail,
                                        split_views, train_detail)
    from ..painter.infer import load_net
    from ..painter.train import export_diffusers

    train_files, cal_files = split_views(files)
    out = Path(args.out)
    if args.calibrate_only:
        net = load_net(out / "painter")
        t0 = time.time()
        bases = base_restorations(net, load_pairs(cal_files))
        print(f"calibration bases: {len(cal_files)} views ({(time.time() - t0) / 60:.1f} min)")
        calibrate_detail(out / "painter", bases, monotone=not args.detail_no_monotone)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    init = None if args.init in (None, "shipped") else args.init
    net = load_net(init)
    base_meta = {}
    src = Path(init) if init else Path(__file__).resolve().parents[1] / "painter" / "weights"
    if (src / "painter.json").exists():
        base_meta = json.loads((src / "painter.json").read_text()).get("training", {})
    if net.detail is None:
        from ..painter.detail import DetailHead

        dil = tuple(int(x) for x in args.detail_dilations.split(","))
        net.cfg.detail_head, net.cfg.detail_width, net.cfg.detail_dilations = \
            True, args.detail_width, dil
        net.cfg.detail_stride = args.detail_stride
        net.detail = DetailHead(args.detail_width, dil, args.detail_stride)
    net.cfg.detail_scale_by_keep = ()
    for p in net.parameters():
        p.requires_grad_(False)
    for p in net.detail.parameters():
        p.requires_grad_(True)
    t0 = time.time()
    bases = _cached_bases(out / "detail_bases.pt", net, train_files, args.detail_max_keep)
    t_base = time.time() - t0
    print(f"bases: {len(train_files)} views, {len(cal_files)} kept for calibration "
          f"({t_base / 60:.1f} min)")
    tc = DetailTrainConfig(steps=args.steps, minutes=args.minutes,
                           segment_minutes=max(0.0, args.segment_minutes - t_base / 60)
                           if args.segment_minutes else 0.0,
                           batch=args.detail_batch, crop=args.detail_crop, lr=args.lr,
                           seed=args.seed, checkpoint_minutes=args.checkpoint_minutes,
                           threads=args.threads)
    info = train_detail(net, bases, tc, out)
    meta = {"base": base_meta, "detail": {
        "init": args.init, "scenes": parse_scene_specs_str(args.scenes),
        "train_views": len(train_files), "calibration_views": len(cal_files),
        "max_keep": args.detail_max_keep,
        "steps_done": info["step"], "train_minutes": round(info["minutes"], 2),
        "train_config": {k: getattr(tc, k) for k in ("steps", "minutes", "batch", "crop", "lr",
                                                      "seed")},
        "size": args.size, "refine_steps": args.refine_steps, "history": info["history"]}}
    export_diffusers(net, out / "painter", meta)
    with atomic_path(out / "status.json") as tmp:
        Path(tmp).write_text(json.dumps({"finished": info["finished"], "step": info["step"]}))
    print(json.dumps({"steps": info["step"], "minutes": round(info["minutes"], 1),
                      "finished": info["finished"]}))
    if args.calibrate and info["finished"]:
        del bases
        calibrate_detail(out / "painter", base_restorations(net, load_pairs(cal_files)),
                         monotone=not args.detail_no_monotone)
    print(f"weights: {out}/painter")
    return 0


def _cached_bases(path, net, files, max_keep: float = 1.0) -> list:
    """:func:`exgs.painter.detail_train.base_restorations` of ``files`` (renders with kept
    fraction ≤ ``max_keep``), cached in ``path`` (reused while the list of files and
    ``max_keep`` are the same; the frozen net is the run's own)."""
    import torch

    from ..fsutil import atomic_path
    from ..painter.data import load_pairs
    from ..painter.detail_train import base_restorations

    names = [str(f) for f in files] + ([f"max_keep={max_keep}"] if max_keep < 1 else [])
    if path.exists():
        d = torch.load(path, weights_only=False)
        if d["files"] == names:
            return d["bases"]
    bases = base_restorations(net, load_pairs(files), max_keep)
    with atomic_path(path) as tmp:
        torch.save({"files": names, "bases": bases}, tmp)
    return bases


def parse_scene_specs_str(s: str) -> list[str]:
    from ..painter.data import parse_scene_specs

    return parse_scene_specs([s])


def calibrate_weights(weights_dir: str, files, coverage_gain: float = 0.0,
                      covered=(0.0, 0.35, 1.0)) -> dict:
    """Sweep the gate bias/floor on ``files`` (training pairs), print the table, write the chosen
    values into ``weights_dir/painter.json`` (atomically) and return the chosen row."""
    from pathlib import Path

    from ..fsutil import atomic_path
    from ..painter.calibrate import choose, gate_sweep, gate_tables
    from ..painter.data import load_pairs
    from ..painter.infer import load_net

    net = load_net(weights_dir)
    net.cfg.gate_coverage_gain = coverage_gain
    rows, items = gate_sweep(net, load_pairs(files), biases=[-5, -4, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1],
                             floors=[0.0, 1.0], return_items=True,
                             covered=covered)
    best = choose(rows)
    table, ctable = gate_tables(rows, items, floor=best["floor"])
    print(f"gate calibration on {len(files)} training views (PSNR gain dB; identity: dB vs input)")
    print(f"{'bias':>6} {'floor':>6} {'<2%':>7} {'2-10%':>7} {'>10%':>7} {'identity':>9}")
    for r in rows:
        if r.get("covered", 0.0):
            continue
        mark = "  <- chosen" if r is best else ""
        print(f"{r['bias']:6.2f} {r['floor']:6.2f} {r.get('<2%', 0):7.2f} {r.get('2-10%', 0):7.2f} "
              f"{r.get('>10%', 0):7.2f} {r.get('identity', 0):9.2f}{mark}")
    cfg_file = Path(weights_dir) / "painter.json"
    d = json.loads(cfg_file.read_text())
    print("gate bias by kept fraction: " + ", ".join(f"{k:.4g}: {b:+.1f}" for k, b in table))
    print("covered-pixel cap by kept fraction: " + ", ".join(f"{k:.4g}: {b:.2f}" for k, b in ctable))
    d["gate_bias"], d["gate_floor"] = best["bias"], best["floor"]
    d["gate_coverage_gain"] = coverage_gain
    d["gate_bias_by_keep"] = [list(t) for t in table]
    d["gate_covered_by_keep"] = [list(t) for t in ctable] if any(c for _, c in ctable) else []
    d.setdefault("training", {})["calibration"] = {
        "views": len(files), "chosen": best, "bias_by_keep": [list(t) for t in table],
        "covered_by_keep": [list(t) for t in ctable],
        "rule": "exgs.painter.calibrate.choose / bias_by_keep"}
    with atomic_path(cfg_file) as tmp:
        Path(tmp).write_text(json.dumps(d, indent=2))
    return best
