#!/usr/bin/env bash
# The default job: set up, then run `exgs demo` on the built-in scene (writes ./out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/exgs demo "$@"
