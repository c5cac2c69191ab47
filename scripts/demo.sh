#!/usr/bin/env bash
# Set up (idempotent) and run the demo: profile the bundled nanoGPT-style example,
# write ccprof-report/{profile.json,advice.json,report.html}.
set -euo pipefail
cd "$(dirname "$0")/.."
CCPROF_SKIP_BROWSER=1 ./scripts/setup.sh
. .venv/bin/activate
exec ccprof analyze examples/gpt_loop.py --steps 10 --out ccprof-report "$@"
