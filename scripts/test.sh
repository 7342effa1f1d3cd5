#!/usr/bin/env bash
# Set up, then run the whole test suite (backend, service, Blender add-on via bpy 5.0), then
# the add-on tests again under Blender 4.2 LTS (bpy 4.2.0 in .venv-bpy42; skip with
# EXGS_TEST_BPY42=0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.cache/numba}"
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
if [ "${EXGS_TEST_BPY42:-1}" != "0" ]; then
  if [ ! -x .venv-bpy42/bin/python ] || ! .venv-bpy42/bin/python -c "import bpy" 2>/dev/null; then
    echo "setup: installing bpy 4.2.0 (Blender 4.2 LTS) into .venv-bpy42 for the add-on tests" >&2
    PY=python3.11; command -v "$PY" >/dev/null 2>&1 || PY=python3
    "$PY" -m venv .venv-bpy42
    .venv-bpy42/bin/python -m pip install -q --disable-pip-version-check bpy==4.2.0 "numpy<2" \
      2> >(grep -v "^WARNING: Location" >&2)
  fi
  echo "== add-on tests under Blender 4.2 LTS ==" >&2
  EXGS_BPY_PYTHON="$PWD/.venv-bpy42/bin/python" .venv/bin/python -m pytest -q -p no:cacheprovider tests/addon
fi
