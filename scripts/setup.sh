#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, then the
# package (editable, which builds the cffi C core) and its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libcap-dev libseccomp-dev libseccomp2 bubblewrap gcc nftables curl; do  # nftables: net="egress" (libnftables); curl: custom runtimes (the host's /usr is bound into sandboxes)
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to apt-get install ${need_apt[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check wheel setuptools cffi pytest hypothesis boto3 awscli matplotlib
"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation -e .
"$PY" -c "import sandbox._core" # the C core must import
