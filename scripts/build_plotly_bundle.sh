#!/usr/bin/env bash
# Rebuild ccprof/reports/static/plotly-ccprof.min.js: a partial plotly.js holding only what
# the HTML report draws, inlined by ccprof/reports/html.py instead of the full plotly.js.
#
# Why: the full bundle (plotly.offline.get_plotlyjs(), 4.8 MB) takes chromium 1.5-3 s to
# parse, so the report missed issue 5 ("under 5 MB and opens in under 2 s in the test
# browser") on a busy machine. The partial bundle is ~1.2 MB.
#
# What ccprof/reports/figures.py uses (read 2026-11, plotly 7.1.0 / plotly.js 4.1.1):
#   traces      scatter    loss, gpu_timeline          (always in plotly.js/lib/core)
#               bar        memory (stacked, horizontal), phases, gpu_costs, compare
#               treemap    flops (maxdepth, branchvalues="total", marker colorscale)
#               waterfall  waterfall (measure relative/total, increasing/decreasing/totals)
#   layout      shapes (memory capacity line, compare add_hline), annotations (capacity
#               label), legend (horizontal), hover text (fx), modebar, a second y axis
#               (overlaying="y"), colorscale; all of them are registered by lib/core.
#   not used    calendars (world-calendars), gl/regl traces, maps, geo, mathjax.
# treemap shares code with pie and sunburst, so their modules are bundled but not registered.
#
# Usage:   scripts/build_plotly_bundle.sh
# Needs:   node >= 20, npm and the npm registry. All npm work happens in a temporary
#          directory that is removed afterwards; the only file written in the repository is
#          the bundle. Keep PLOTLY_JS_VERSION equal to the plotly.js embedded in the plotly
#          Python package (see the first line of plotly.offline.get_plotlyjs()):
#          tests/reports/test_bundle.py checks it, since the figures' JSON follows that schema.
set -euo pipefail

PLOTLY_JS_VERSION="${PLOTLY_JS_VERSION:-4.1.1}"
ESBUILD_VERSION="${ESBUILD_VERSION:-0.28.2}"

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
entry="$here/plotly_entry.js"
out="$root/ccprof/reports/static/plotly-ccprof.min.js"

# the trace list for the header: scatter (core) + every plotly.js/lib/<trace> the entry requires
traces="scatter $(grep -o "require('plotly.js/lib/[a-z0-9]*')" "$entry" | sed "s|.*/lib/||; s|')||" \
    | grep -vx core | tr '\n' ' ')"
traces="${traces% }"

work="$(mktemp -d "${TMPDIR:-/tmp}/ccprof-plotly.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
# --ignore-scripts: nothing from the registry runs here besides esbuild's own binary
npm install --silent --no-audit --no-fund --ignore-scripts \
    "plotly.js@$PLOTLY_JS_VERSION" "esbuild@$ESBUILD_VERSION" >/dev/null
cp "$entry" entry.js

# Options follow plotly.js's own esbuild-config.js (iife, global Plotly, es2016, global=window,
# no AMD). The maplibre CSS that registry.js requires for map traces is never registered
# here, so .css loads as empty. Licence comments of bundled packages go to the end of file.
node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=Plotly --minify \
    --target=es2016 --define:global=window --define:define.amd=false \
    --define:process.env.NODE_DEBUG=false --loader:.css=empty --legal-comments=eof \
    --log-level=warning --outfile=bundle.js

{
    # plotly.js's own licence header, verbatim from its full minified bundle
    sed -n '1,/\*\//p' node_modules/plotly.js/dist/plotly.min.js
    printf '/* ccprof partial bundle: plotly.js v%s, traces: %s (scripts/build_plotly_bundle.sh) */\n' \
        "$PLOTLY_JS_VERSION" "$traces"
    cat bundle.js
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") bytes; traces: $traces)"
