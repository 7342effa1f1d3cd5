#!/usr/bin/env python3
"""Build the Blender extension zip: dist/exgs-<version>.zip.

    python scripts/build_extension.py [--out dist] [--no-validate] [--blender-ext PATH]

The zip holds the add-on (exgs_blender/*, minus caches), blender_manifest.toml, wheels/ and
the backend source (``backend_src/``: backend/exgs + pyproject.toml + README) so the add-on's
"Set up backend" button can pip-install its own backend into a venv.

Third-party wheels: the add-on needs none (bpy + stdlib + Blender's bundled numpy), so
WHEEL_REQUIREMENTS is empty and the manifest's ``wheels`` list stays empty. If a requirement
is added, this script ``pip download``s it for cp311 (Blender 4.2–4.4) and cp313 (Blender
5.x) on the listed platforms into wheels/ and rewrites the manifest's wheels list.

Validation and packing use Blender's own extension tool (``bl_pkg/cli/blender_ext.py``
shipped inside the bpy package): ``build`` then ``validate`` of the produced zip.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL_REQUIREMENTS: list[str] = []  # e.g. ["requests==2.32.3"]; empty: nothing needed
PYTHONS = ["3.11", "3.13"]
PLATFORMS = ["manylinux2014_x86_64", "win_amd64", "macosx_11_0_arm64", "macosx_10_15_x86_64"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.egg-info")


def find_blender_ext() -> str:
    pats = [os.path.join(ROOT, ".venv*", "lib", "python3*", "site-packages", "bpy", "*",
                         "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")]
    try:
        import importlib.util
        spec = importlib.util.find_spec("bpy")
        if spec and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                pats.insert(0, os.path.join(loc, "*", "scripts", "addons_core", "bl_pkg", "cli",
                                            "blender_ext.py"))
    except Exception:
        pass
    for p in pats:
        hits = sorted(glob.glob(p))
        if hits:
            return hits[-1]
    raise SystemExit("build_extension: cannot find Blender's bl_pkg/cli/blender_ext.py "
                     "(install bpy in .venv or pass --blender-ext)")


def manifest_version(path: str) -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', open(path, encoding="utf-8").read(), re.M)
    if not m:
        raise SystemExit(f"build_extension: no version in {path}")
    return m.group(1)


def download_wheels(dest: str) -> list[str]:
    """pip download WHEEL_REQUIREMENTS for every Python/platform; returns relative paths."""
    os.makedirs(dest, exist_ok=True)
    for req in WHEEL_REQUIREMENTS:
        for py in PYTHONS:
            for plat in PLATFORMS:
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                "--only-binary=:all:", "--python-version", py, "--platform", plat,
                                "-d", dest, req], check=True)
    return sorted(f"./wheels/{f}" for f in os.listdir(dest) if f.endswith(".whl"))


def stage(staging: str) -> None:
    shutil.copytree(os.path.join(ROOT, "exgs_blender"), staging, ignore=IGNORE)
    manifest = open(os.path.join(ROOT, "blender_manifest.toml"), encoding="utf-8").read()
    wheels_src = os.path.join(ROOT, "wheels")
    wheels = download_wheels(wheels_src) if WHEEL_REQUIREMENTS else []
    if wheels:
        shutil.copytree(wheels_src, os.path.join(staging, "wheels"),
                        ignore=shutil.ignore_patterns("*.md", ".*"))
        listing = "wheels = [\n" + "".join(f'  "{w}",\n' for w in wheels) + "]"
        manifest = re.sub(r"^wheels\s*=\s*\[[^\]]*\]", listing, manifest, flags=re.M)
    with open(os.path.join(staging, "blender_manifest.toml"), "w", encoding="utf-8") as f:
        f.write(manifest)
    src = os.path.join(staging, "backend_src")
    os.makedirs(src)
    shutil.copytree(os.path.join(ROOT, "backend", "exgs"), os.path.join(src, "exgs"),
                    ignore=IGNORE)
    for name in ("pyproject.toml", "README.md"):
        p = os.path.join(ROOT, "backend", name)
        if os.path.exists(p):
            shutil.copy2(p, src)
    for name in ("constraints.txt",):
        p = os.path.join(ROOT, name)
        if os.path.exists(p):
            shutil.copy2(p, src)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"))
    ap.add_argument("--blender-ext", default=None, help="path to bl_pkg/cli/blender_ext.py")
    ap.add_argument("--no-validate", action="store_true")
    args = ap.parse_args(argv)
    tool = args.blender_ext or find_blender_ext()
    version = manifest_version(os.path.join(ROOT, "blender_manifest.toml"))
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(os.path.abspath(args.out), f"exgs-{version}.zip")
    with tempfile.TemporaryDirectory(prefix="exgs-ext-") as tmp:
        staging = os.path.join(tmp, "exgs")
        stage(staging)
        tmp_zip = os.path.join(tmp, "exgs.zip")
        r = subprocess.run([sys.executable, tool, "build", "--source-dir", staging,
                            "--output-filepath", tmp_zip], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr, file=sys.stderr)
            print("build_extension: Blender's build step failed", file=sys.stderr)
            return 1
        if not args.no_validate:
            r = subprocess.run([sys.executable, tool, "validate", tmp_zip],
                               capture_output=True, text=True)
            if r.returncode != 0 or "error" in (r.stdout + r.stderr).lower():
                print(r.stdout + r.stderr, file=sys.stderr)
                print("build_extension: Blender's validation failed", file=sys.stderr)
                return 1
        shutil.move(tmp_zip, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
