"""The ``exgs`` command. Sub-commands live in :mod:`exgs.commands` (one module each, with a
``register(subparsers)`` function), so subsystems add commands without touching this file.

Errors the user can fix print one line ``exgs: error: ...`` to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import importlib
import pkgutil
import sys

from . import __version__
from .errors import ExgsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exgs",
        description="ExGS: compress 3D Gaussian Splatting scenes 100x+ and render them.")
    parser.add_argument("--version", action="version", version=f"exgs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        mod.register(sub)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except ExgsError as e:
        print(f"exgs: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `exgs info x | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print("exgs: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("exgs: error: out of memory", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
