// Entry point of ccprof's partial plotly.js bundle (built by scripts/build_plotly_bundle.sh).
// plotly.js/lib/core brings the scatter trace and every layout component (shapes,
// annotations, legend, hover, modebar, colorscale, ...); register here only the other trace
// types ccprof/reports/figures.py emits. Adding a go.<Trace> there means adding it here and
// rebuilding (tests/reports/test_bundle.py fails until then).
'use strict';

var Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/bar'),        // memory, phases, gpu_costs, compare
    require('plotly.js/lib/treemap'),    // flops
    require('plotly.js/lib/waterfall')   // waterfall
]);

module.exports = Plotly;
