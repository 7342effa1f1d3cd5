"""Scene-adaptive GaussPainter benchmark: generic vs adapted painter at EQUAL total file size.

    nice -n 10 .venv/bin/python bench/adapt.py [--scenes lod4,lod3,lod2] [--ratios 30,100,300]
        [--forms head,lora,bias] [--seconds 120] [--views 8] [--size 384] [--threads 1]
        [--painter DIR] [--refine SECONDS] [--out bench/results/adapt.json]

For every shared PLAYBOT scene and target ratio (size of the scene as an **SH-degree-3 INRIA
PLY**, 248 B/Gaussian + 1 kB, divided by the file size — the issue's reference):

* ``generic``: ``exgs.pipeline.compress_scene(ratio=R)`` → the file fills the budget with Gaussians; its
  renders are restored by the generic painter.
  ``generic_as_written_psnr``: the same file restored as readers restore it (since session 9
  it may carry its own painter setting, ``generic_section`` "tune", or the "none" marker);
  ``gain_over_written_db`` compares the delta file with the better of that and unrestored.
* ``adapted`` (per form): :func:`exgs.pipeline.compress_scene` with the same ratio →
  fewer Gaussians + the delta, the *whole* file within the same budget; renders restored by
  the generic painter with the file's delta applied. The delta is forced on
  (``min_gain_db = −inf``) so every form is measured; ``on_by_default`` says whether the
  default switch-off rule (the compressor's own held-out views) would have kept it.

``--refine SECONDS``: both files are refined (``exgs compress --refine``) and the delta is
trained after refinement, on the refined survivors; "generic" then restores as readers of a
refined file do (the weights' refined tables). The two files are refined in separate runs
for the same time budget, so their refined bases differ (step counts vary with the machine's
load: 0.8 dB between two 60 s runs of statue_st_peter at 300×); ``--refine-steps N`` refines
both for N steps instead, deterministically, so both start from the same survivors.

Quality: mean PSNR/SSIM over ``--views`` held-out orbit views (``exgs.ugc.evaluate.
held_out_views``: seed 1234, 17° azimuth offset, distance 0.8, never used for adaptation nor
scoring) at ``--size``², against the full scene's renders (its own SH degree), over black.
``gain_median`` is the median over views of the per-view PSNR gain. Adaptation time is the
wall time of the adaptation (rendering its views + training + its held-out check) on a
shared, loaded machine, 1 torch thread by default: step counts are machine-dependent.

Writes bench/results/adapt.json (merged with earlier runs: rows are keyed by scene, ratio,
form and budget; each row records ``painter_base``, the fingerprint of the generic weights —
start a new file when the weights change) and prints a table; ``--table`` only reprints it.
bench/results/adapt_interim.json holds the first runs, made with the interim step-810 weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = os.path.join(os.path.dirname(ROOT), "shared", "scenes")
if not os.path.isdir(SCENES):  # a worktree under /work/wt/NAME
    SCENES = "/work/shared/scenes"
RESULTS = os.path.join(ROOT, "bench", "results")


def _scene_path(name: str) -> str:
    if name.endswith(".ply"):
        return name
    if name.startswith("lod"):
        name = f"playbot_{name}"
    return os.path.join(SCENES, f"{name}.ply")


def _eval(refs, scene, cams, restore, kept_fraction=None):
    """(mean PSNR pruned, mean PSNR restored, mean SSIM restored, per-view restored PSNR)."""
    import numpy as np

    from exgs.metrics import psnr, ssim
    from exgs.render import render

    pr, rp, rs = [], [], []
    for ref, cam in zip(refs, cams):
        r = render(scene, cam, device="cpu")
        out = np.clip(restore(r.rgb, r.alpha, kept_fraction), 0, 1)
        pr.append(psnr(ref.rgb, r.rgb))
        rp.append(psnr(ref.rgb, out))
        rs.append(ssim(ref.rgb, out))
    return float(np.mean(pr)), float(np.mean(rp)), float(np.mean(rs)), rp


def _real_scene(spec: str, views: int, size: int):
    """A held-out real capture (``real:NAME[+shell]``): (scene, label, evaluation cameras,
    CompressOptions keywords). UGC scores and the delta trains on views of the *object*
    (:func:`exgs.painter.data.significance_views` + 24 varied ``frame_views``), inside a
    ``+shell``; the evaluation views are other ``frame_views`` (seed 1234)."""
    from exgs.painter.data import frame_views, load_scene, scene_frame, significance_views

    scene = load_scene(spec, SCENES)
    frame = scene_frame(spec, scene)
    train = significance_views(frame) + frame_views(frame, 24, 256, seed=77)
    cams = frame_views(frame, views, size, seed=1234)
    return scene, spec[5:], cams, {"cameras": train, "up": frame["up"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="lod4,lod3,lod2")
    ap.add_argument("--ratios", default="30,100,300")
    ap.add_argument("--forms", default="head,lora,bias")
    ap.add_argument("--seconds", type=float, default=120.0, help="adaptation budget")
    ap.add_argument("--rank", type=int, default=None, help="lora rank (default: AdaptConfig)")
    ap.add_argument("--views", type=int, default=8, help="held-out evaluation views")
    ap.add_argument("--size", type=int, default=384, help="evaluation view size (square)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--judge-size", type=int, default=None,
                    help="long side of the compressor's decision views (default: AdaptConfig)")
    ap.add_argument("--judge-pick", default=None, choices=("random", "isolated"),
                    help="which training cameras decide (default: AdaptConfig)")
    ap.add_argument("--detail-width", type=int, default=None,
                    help="width of a fresh detail head (default: AdaptConfig)")
    ap.add_argument("--painter", default=None, help="painter weights (default: shipped)")
    ap.add_argument("--refine", type=float, default=None, metavar="SECONDS",
                    help="refine both files for SECONDS; the delta is trained after it")
    ap.add_argument("--refine-steps", type=int, default=None, metavar="N",
                    help="refine both files for N steps instead (deterministic: both files "
                         "start from the same refined survivors)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "adapt.json"))
    ap.add_argument("--table", action="store_true", help="only print the table of --out")
    args = ap.parse_args(argv)
    if args.table:
        from exgs.painter.adapt import AdaptConfig

        _table(json.load(open(args.out))["rows"], AdaptConfig().min_gain_db)
        return 0

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from exgs.io import read_scene
    from exgs.painter.adapt import AdaptConfig
    from exgs.painter.adapt_judge import choose
    from exgs.painter.delta import apply_delta
    from exgs.painter.infer import Painter, load_net
    from exgs.pipeline import (CompressOptions, PainterCache, compress_scene, facts_of_bytes,
                               restorer_for)
    from exgs.ugc import inria_ply_bytes
    from exgs.ugc.evaluate import held_out_views, render_views
    from exgs.ugc.refine import RefineOptions

    def refine_opts():
        if args.refine_steps:
            return RefineOptions(steps=args.refine_steps, seconds=None)
        return None if args.refine is None else RefineOptions(seconds=args.refine)

    from exgs.painter.delta import base_fingerprint

    net = load_net(args.painter)
    generic = Painter(net)
    cache = PainterCache(args.painter)  # the readers' loader, for files as written
    fingerprint = base_fingerprint(net)
    default_min_gain = AdaptConfig().min_gain_db
    rows = []
    old = {}
    if os.path.exists(args.out):
        try:
            for r in json.load(open(args.out)).get("rows", []):
                old[(r["scene"], r["ratio"], r["form"], r.get("seconds"))] = r
        except (ValueError, KeyError, TypeError):
            old = {}

    def save():
        merged = dict(old)
        for r in rows:
            merged[(r["scene"], r["ratio"], r["form"], r.get("seconds"))] = r
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        meta = {"painter": args.painter or "shipped", "painter_base": fingerprint,
                "views": args.views, "size": args.size,
                "threads": args.threads, "source": "SH-3 INRIA PLY size (248 B/G + 1 kB)",
                "default_min_gain_db": default_min_gain,
                "load_avg": os.getloadavg()[0]}
        tmp = args.out + ".part"
        with open(tmp, "w") as f:
            json.dump({"meta": meta, "rows": list(merged.values())}, f, indent=1)
        os.replace(tmp, args.out)

    for sname in args.scenes.split(","):
        sname = sname.strip()
        extra = {}
        if sname.startswith("real:"):  # held-out real captures (exgs.painter.data specs)
            scene, label, cams, extra = _real_scene(sname, args.views, args.size)
        else:
            path = _scene_path(sname)
            scene = read_scene(path)
            label = os.path.basename(path)[:-4]
            cams = held_out_views(scene, args.views, (args.size, args.size))
        src = inria_ply_bytes(len(scene), 3)
        refs = render_views(scene, cams, "cpu")
        score = None
        for ratio in (float(x) for x in args.ratios.split(",")):
            t0 = time.perf_counter()
            opts = CompressOptions(ratio=ratio, source_bytes=src, device="cpu",
                                   ugc={"score": score}, **extra)
            g = compress_scene(scene, opts, refine=refine_opts())
            score = g.score
            refined = bool(g.stats.get("refine")) and not g.stats["refine"]["switched_off"]
            gp, gr, gs, gviews = _eval(
                refs, g.scene, cams,
                lambda a, b, k: generic.restore(a, b, kept_fraction=k, refined=refined),
                len(g.scene) / len(scene))
            # the generic file as compress_scene writes it (its own painter setting "tune",
            # the "none" marker, or nothing: the tables), restored as readers restore it
            reader = restorer_for(facts_of_bytes(g.data), cache=cache)
            gform = reader.delta["form"] or "generic"
            written = _eval(refs, g.scene, cams, lambda a, b, k: reader(a, b),
                            len(g.scene) / len(scene))[1]
            base = {"scene": label, "ratio": ratio, "source_bytes": src,
                    "budget_bytes": int(src / ratio), "generic_kept": len(g.scene),
                    "generic_bytes": len(g.data), "generic_pruned_psnr": round(gp, 3),
                    "generic_psnr": round(gr, 3), "generic_ssim": round(gs, 4),
                    "generic_section": gform, "generic_as_written_psnr": round(written, 3),
                    "generic_tune": (g.stats.get("painter_delta") or {}).get("tune"),
                    "refine_seconds": args.refine, "refine_steps": args.refine_steps,
                    "generic_refined": refined}
            print(f"{label} {ratio:g}x generic: {len(g.scene)} kept, {len(g.data)} B, "
                  f"pruned {gp:.2f} restored {gr:.2f} dB, as written ({gform}) {written:.2f} dB "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            for form in args.forms.split(","):
                cfg = AdaptConfig(form=form, seconds=args.seconds, threads=args.threads,
                                  min_gain_db=-math.inf)
                if args.rank:
                    cfg.rank = args.rank
                if args.judge_size is not None:
                    cfg.judge_size = args.judge_size
                if args.judge_pick is not None:
                    cfg.judge_pick = args.judge_pick
                if args.detail_width is not None:
                    cfg.detail_width = args.detail_width
                t1 = time.perf_counter()
                opts.ugc = {"score": score}
                a = compress_scene(scene, opts, cfg, refine_opts(), net=net)
                pdl = a.stats.get("painter_delta", {})
                row = dict(base, form=form, seconds=args.seconds, painter_base=fingerprint,
                           rank=cfg.rank if form == "lora" else 0, judge_size=cfg.judge_size,
                           judge_pick=cfg.judge_pick,
                           load_avg=round(os.getloadavg()[0], 2))
                if not pdl.get("enabled"):
                    row.update(fits=False, reason=pdl.get("reason"))
                    print(f"  {form}: {pdl.get('reason')}", flush=True)
                    rows.append(row)
                    save()
                    continue
                from exgs.io.exgs import DELTA_SECTION, exgs_section_from_bytes

                delta = exgs_section_from_bytes(a.data, DELTA_SECTION)
                a_ref = bool(a.stats.get("refine")) and not a.stats["refine"]["switched_off"]
                adapted = Painter(apply_delta(net, delta))
                ap_, ar, as_, aviews = _eval(
                    refs, a.scene, cams,
                    lambda x, y, k: adapted.restore(x, y, kept_fraction=k, refined=a_ref),
                    len(a.scene) / len(scene))
                gain_views = np.array(aviews) - np.array(gviews)
                # with the file's own setting the delta must beat it too; switched off, the
                # file is the one written without --adapt (same setting)
                tuned = pdl.get("heldout_tuned_db") is not None
                verdict = choose(pdl.get("heldout_adapted_db"), pdl.get("heldout_none_db"),
                                 max(pdl.get("heldout_generic_db"),
                                     pdl.get("heldout_tuned_db") or -math.inf),
                                 default_min_gain)
                chosen = {"delta": ar, "none": gp,
                          "generic": written if tuned else gr}[verdict["choice"]]
                row.update(choice_by_default=verdict["choice"], chosen_psnr=round(chosen, 3),
                           form_chosen=pdl.get("form"), candidates=pdl.get("candidates"),
                           internal_none_db=pdl.get("heldout_none_db"),
                           internal_generic_db=pdl.get("heldout_generic_db"),
                           internal_tuned_db=pdl.get("heldout_tuned_db"),
                           internal_adapted_db=pdl.get("heldout_adapted_db"),
                           gain_over_best_db=round(ar - max(gr, gp), 3),
                           gain_over_written_db=round(ar - max(written, gp), 3))
                row.update(fits=True, kept=len(a.scene), total_bytes=len(a.data),
                           delta_bytes=len(delta), pruned_psnr=round(ap_, 3),
                           adapted_psnr=round(ar, 3), adapted_ssim=round(as_, 4),
                           gain_db=round(ar - gr, 3),
                           gain_median=round(float(np.median(gain_views)), 3),
                           gain_min=round(float(gain_views.min()), 3),
                           ssim_gain=round(as_ - gs, 4),
                           internal_gain_db=pdl.get("gain_db"),
                           on_by_default=bool(pdl.get("gain_db", -1e9) >= default_min_gain),
                           steps=pdl.get("steps"), adapt_seconds=pdl.get("seconds"),
                           train_views=pdl.get("train_views"), params=pdl.get("params"),
                           wall_seconds=round(time.perf_counter() - t1, 1))
                assert row["total_bytes"] <= row["budget_bytes"], row
                rows.append(row)
                save()
                print(f"  unrestored {gp:.2f} / generic {gr:.2f} / adapted {ar:.2f} dB "
                      f"({pdl.get('form')}); default rule: {verdict['choice']} -> "
                      f"{chosen:.2f} dB", flush=True)
                print(f"  {form}: {len(a.scene)} kept + {len(delta)} B delta = "
                      f"{len(a.data)} B; {gr:.2f} -> {ar:.2f} dB ({ar - gr:+.2f}, median "
                      f"{row['gain_median']:+.2f}), SSIM {gs:.4f} -> {as_:.4f}; internal "
                      f"{pdl.get('gain_db'):+.2f}; {pdl.get('steps')} steps, "
                      f"{pdl.get('seconds')} s", flush=True)
    save()
    _table(json.load(open(args.out))["rows"], default_min_gain)
    return 0


def _table_rule(rows):
    """The switch-off rule at equal file size: unrestored / generic (the generic file) vs
    adapted (the delta file), and what the default rule stores."""
    rows = [r for r in rows if r.get("chosen_psnr") is not None]
    if not rows:
        return
    print()
    print("| scene | ratio | form (chosen) | budget B | unrestored dB | generic dB | adapted dB "
          "| adapted − best dB | default rule → dB | internal none / generic / adapted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["scene"], r["ratio"], r["form"])):
        print(f"| {r['scene']} | {r['ratio']:g}× | {r['form']} ({r.get('form_chosen')}) | "
              f"{r['budget_bytes']:,} | {r['generic_pruned_psnr']:.2f} | {r['generic_psnr']:.2f} | "
              f"{r['adapted_psnr']:.2f} | {r['gain_over_best_db']:+.2f} | "
              f"{r['choice_by_default']} → {r['chosen_psnr']:.2f} | "
              f"{r['internal_none_db']:.2f} / {r['internal_generic_db']:.2f} / "
              f"{r['internal_adapted_db']:.2f} |")


def _table(rows, min_gain):
    _table_rule(rows)
    """Markdown table of all rows; "on by default" is recomputed with the current default
    switch-off margin from the compressor's own held-out estimate (internal gain)."""
    for r in rows:
        if r.get("fits"):
            r["on_by_default"] = bool(r["internal_gain_db"] >= min_gain)
    print()
    print("| scene | ratio | form | budget s | kept generic → adapted | delta B | total B "
          "(budget) | generic PSNR / SSIM | adapted PSNR / SSIM | gain dB (median) | "
          "internal gain | on by default | steps | adapt s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["scene"], r["ratio"], r["form"],
                                         r.get("seconds") or 0)):
        if not r.get("fits"):
            print(f"| {r['scene']} | {r['ratio']:g}× | {r['form']} | {r.get('seconds'):g} | "
                  f"{r['generic_kept']:,} → — | — | — ({r['budget_bytes']:,}) | "
                  f"{r['generic_psnr']:.2f} / {r['generic_ssim']:.4f} | — | — | — | off: "
                  f"{r.get('reason', '')[:50]} | — | — |")
            continue
        print(f"| {r['scene']} | {r['ratio']:g}× | {r['form']} | {r['seconds']:g} | "
              f"{r['generic_kept']:,} → {r['kept']:,} | {r['delta_bytes']:,} | "
              f"{r['total_bytes']:,} ({r['budget_bytes']:,}) | {r['generic_psnr']:.2f} / "
              f"{r['generic_ssim']:.4f} | {r['adapted_psnr']:.2f} / {r['adapted_ssim']:.4f} | "
              f"{r['gain_db']:+.2f} ({r['gain_median']:+.2f}) | {r['internal_gain_db']:+.2f} | "
              f"{'yes' if r['on_by_default'] else 'no'} | {r['steps']} | "
              f"{r['adapt_seconds']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
