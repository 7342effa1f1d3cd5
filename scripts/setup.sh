#!/usr/bin/env bash
# Set up .venv with the exgs backend, its test tools and bpy (Blender as a module) for the
# add-on tests. Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${EXGS_PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do command -v "$c" >/dev/null 2>&1 && { PY="$c"; break; }; done
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.exgs-setup-stamp
want="$(cat constraints.txt backend/pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import exgs" 2>/dev/null; then
  exit 0
fi
echo "setup: installing the backend and test tools into .venv (first run: ~2 min)" >&2
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
  -e "backend[test,blender]" 2> >(grep -v "^WARNING: Location" >&2)
echo "$want" > "$stamp"
