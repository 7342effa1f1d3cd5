"""Headless command: ``blender -c exgs <command> ...`` (Blender 4.2+ register_cli_command).

    blender -c exgs import IN.ply OUT.blend [--axis Y_DOWN]
    blender -c exgs compress IN.ply OUT.exgs [--ratio 100 | --keep 0.1] [--sh-degree 0]
        [--refine SECONDS] [--adapt SECONDS]
    blender -c exgs render FILE.blend [-s START] [-e END] [-o //frames/####] [--restore]

Exit codes: 0 success, 1 failed (backend/render error, message on stderr), 2 bad usage.
Backend selection as in the preferences, overridable with EXGS_BACKEND_URL / EXGS_TOKEN /
EXGS_PYTHON.
"""

from __future__ import annotations

import argparse
import os
import sys

_HANDLE = None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SystemExit(f"usage: {message}")


def _parser():
    p = _Parser(prog="blender -c exgs", description="ExGS headless commands")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("import", help="import a splat file and save a .blend")
    a.add_argument("input")
    a.add_argument("output")
    a.add_argument("--axis", default="Y_DOWN", choices=["Y_DOWN", "Y_UP", "Z_UP"])
    c = sub.add_parser("compress", help="compress a scene file in the backend")
    c.add_argument("input")
    c.add_argument("output")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--ratio", type=float)
    g.add_argument("--keep", type=float, help="fraction (0..1] or count of Gaussians kept")
    c.add_argument("--sh-degree", type=int, default=0)
    c.add_argument("--refine", type=float, default=None, metavar="SECONDS",
                   help="distil the kept Gaussians against the full scene for SECONDS (no "
                        "extra bytes; kept only when held-out views improve)")
    c.add_argument("--adapt", type=float, default=None, metavar="SECONDS",
                   help="fine-tune a per-scene painter delta for SECONDS, stored in the file")
    r = sub.add_parser("render", help="render a .blend's frame range with the ExGS engine")
    r.add_argument("blend")
    r.add_argument("-s", "--start", type=int)
    r.add_argument("-e", "--end", type=int)
    r.add_argument("-o", "--output", help="output path pattern (Blender's, e.g. //out/####)")
    r.add_argument("--restore", action="store_true")
    return p


def _err(msg: str) -> None:
    print(f"exgs: error: {msg}", file=sys.stderr)


def main(argv) -> int:
    import bpy
    from . import backend, errors, io_import, paths, plyio
    from .engine import final

    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as e:
        if e.code not in (0, None):
            _err(str(e.code))
            return 2
        return 0
    if args.cmd == "compress":
        for name, top in (("adapt", 86400), ("refine", 3600)):
            v = getattr(args, name)
            if v is not None and not 0 < v <= top:  # (NaN fails too)
                _err(f"--{name} must be a number of seconds in (0, {top}], got {v}")
                return 2
    try:
        backend.prime()
        if args.cmd == "import":
            bpy.ops.wm.read_homefile(use_empty=True)
            obj, secs = io_import.import_file(bpy.context, args.input, axis=args.axis)
            bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.output))
            print(f"exgs: imported {len(obj.data.vertices)} Gaussians in {secs:.2f} s → "
                  f"{args.output}")
            return 0
        if args.cmd == "compress":
            v, _fmt = io_import.load_vertices(os.path.abspath(args.input))
            digest = plyio.content_hash(v)
            ply = os.path.join(paths.cache_dir(), f"{digest}.ply")
            if not os.path.exists(ply):
                plyio.write_ply(ply, v)
            keep = args.keep
            ratio = args.ratio if (args.ratio or keep is not None) else 100.0
            data, stats, _sid = backend.compress(ply, digest, ratio=ratio, keep=keep,
                                                 sh_degree=args.sh_degree, adapt=args.adapt,
                                                 refine=args.refine)
            tmp = args.output + ".part"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, args.output)
            rf = stats.get("refine") or {}
            how = (f"; refined {rf.get('steps', 0)} steps"
                   f"{' (switched off: no gain on held-out views)' if rf.get('switched_off') else ''}"
                   if rf else "")
            print(f"exgs: wrote {args.output} ({len(data)} bytes){how}")
            return 0
        if args.cmd == "render":
            if not os.path.exists(args.blend):
                _err(f"{args.blend}: no such file")
                return 2
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
            scene = bpy.context.scene
            scene.render.engine = "EXGS"
            if args.start is not None:
                scene.frame_start = args.start
            if args.end is not None:
                scene.frame_end = args.end
            if args.output:
                scene.render.filepath = args.output
            if args.restore:
                scene.exgs_render.restore = True
            final.ERRORS.clear()
            bpy.ops.render.render(animation=True)
            if final.ERRORS:
                _err(final.ERRORS[-1])
                return 1
            print(f"exgs: rendered frames {scene.frame_start}..{scene.frame_end}")
            return 0
    except (errors.ImportFailed, errors.BackendError, errors.RenderError,
            OSError, ValueError) as e:
        _err(errors.describe(e))
        return 1
    except Exception as e:  # client errors etc.: still one line, no traceback
        _err(errors.describe(e))
        return 1
    return 2


def register():
    global _HANDLE
    import bpy
    if hasattr(bpy.utils, "register_cli_command"):
        _HANDLE = bpy.utils.register_cli_command("exgs", main)


def unregister():
    global _HANDLE
    import bpy
    if _HANDLE is not None:
        bpy.utils.unregister_cli_command(_HANDLE)
        _HANDLE = None
