#!/usr/bin/env bash
# Set up, then run the whole test suite (backend, service, Blender add-on via bpy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.cache/numba}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
