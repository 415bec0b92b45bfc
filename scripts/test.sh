#!/usr/bin/env bash
# The test suite: unit tests (no root), kernel tests (real sandboxes, checked from
# inside), hostile tests, and the cgroup v2 tests inside a QEMU VM; then the
# isolation and hostile suites once more against zygote-made sandboxes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -x tests/v2vm/setup.sh ] || [ -f tests/v2vm/setup.sh ]; then
  bash tests/v2vm/setup.sh || echo "test.sh: v2 VM set-up failed; its test will report why" >&2
fi
PY=$(python3 -c 'import os,sys;print(os.path.realpath(sys.executable))')
"$PY" -m pytest -p no:cacheprovider -q tests "$@"
# The isolation and hostile suites again, with every probe run in a sandbox
# forked from a zygote (tests/probes/harness.py), so zygote-made sandboxes are
# held to the same checks.  Skipped when the caller picked tests of their own.
if [ $# -eq 0 ]; then
  echo "test.sh: isolation and hostile suites again, probes in zygote-made sandboxes (SANDBOX_TEST_ZYGOTE=1)"
  SANDBOX_TEST_ZYGOTE=1 "$PY" -m pytest -p no:cacheprovider -q tests/kernel/test_isolation_*.py tests/hostile
fi
