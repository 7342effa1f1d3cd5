"""The facts of a .exgs file besides its Gaussians, printed as one JSON line.

Run by the add-on with the *backend's* Python, by path (this file is never imported by the
add-on, which stays free of the backend's dependencies)::

    <backend python> exgs_facts.py FILE.exgs
    → {"kept_fraction": float | null, "refined": bool, "painter_delta_b64": str | null,
       "warning": str | null, "count": int, "sh_degree": int}

``refined``: the Gaussians were refined after pruning (the header's refine record;
GaussPainter then uses its refined gate table). ``count`` is the number of Gaussians in the file (the add-on imports a prefix of big files
first: progressive loading).
Format code only (no ML imports). A corrupt delta section gives a warning and no delta; the
scene itself still imports. Exit 2 with a one-line message when the file cannot be read.
"""

from __future__ import annotations

import base64
import json
import sys


def facts(path: str) -> dict:
    from exgs.io import exgs_format

    h = exgs_format.read_exgs_header(path)
    refined = getattr(exgs_format, "is_refined", None)  # backends from before session 7
    out = {"kept_fraction": exgs_format.kept_fraction(h),
           "refined": bool(refined(h)) if refined else False, "painter_delta_b64": None,
           "warning": None, "count": int(h["count"]), "sh_degree": int(h["sh_degree"])}
    try:
        d = exgs_format.read_exgs_delta(path)
        if d is not None:
            out["painter_delta_b64"] = base64.b64encode(d).decode("ascii")
    except Exception as e:  # a bad delta section: the Gaussians still import
        out["warning"] = " ".join(str(e).split())
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: exgs_facts.py FILE.exgs", file=sys.stderr)
        return 2
    try:
        print(json.dumps(facts(argv[0])))
    except Exception as e:
        print(f"exgs: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
