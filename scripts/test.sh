#!/usr/bin/env bash
# The test suite: unit tests (no root), kernel tests (real sandboxes, checked from
# inside), hostile tests, and the cgroup v2 tests inside a QEMU VM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -x tests/v2vm/setup.sh ] || [ -f tests/v2vm/setup.sh ]; then
  bash tests/v2vm/setup.sh || echo "test.sh: v2 VM set-up failed; its test will report why" >&2
fi
PY=$(python3 -c 'import os,sys;print(os.path.realpath(sys.executable))')
exec "$PY" -m pytest -p no:cacheprovider -q tests "$@"
