#!/usr/bin/env bash
# The main job: real isolated runs, each checked from inside the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$(python3 -c 'import os,sys;print(os.path.realpath(sys.executable))')
exec "$PY" examples/demo.py "$@"
