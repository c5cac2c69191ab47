#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on CPU, on two pytest-xdist workers (CI's 2
# cores; most tests wait on a subprocess or on Python, so two workers roughly halve the wall time).
# CCPROF_TEST_WORKERS=0 runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -q -ra -n "${CCPROF_TEST_WORKERS:-2}" --dist worksteal "$@"
