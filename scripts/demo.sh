#!/usr/bin/env bash
# The main job: real isolated runs, each checked from inside the sandbox, then
# Lambda-style functions invoked in warm, isolated execution environments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$(python3 -c 'import os,sys;print(os.path.realpath(sys.executable))')
"$PY" examples/demo.py "$@"
exec "$PY" examples/functions_demo.py
