#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv in .venv with ccprof and what its tests need.
# torch is pinned here (not in pyproject) to the CPU build that lies on this machine's disk;
# an unpinned torch would pull a several-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.ccprof-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==${CCPROF_TORCH:-2.13.0}"
  python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
# Browser tests drive Debian's chromium (never playwright's own browser download, which fails here).
if [ "${CCPROF_SKIP_BROWSER:-0}" != "1" ] && [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; browser tests will be skipped" >&2
fi
