"""ccprof's partial plotly.js bundle (ccprof/reports/static/plotly-ccprof.min.js).

The bundle holds plotly.js core + the traces ccprof/reports/figures.py emits
(scripts/build_plotly_bundle.sh). Checks: it exists, is much smaller than the full plotly.js,
matches the plotly.js version the plotly Python package writes figure JSON for, is what the
report inlines, and registers every trace type the figures can emit: statically (each
``go.<Trace>`` in figures.py) and in Debian's chromium (the rich fixture and the compare page
draw every chart with no console error and no request).

``CCPROF_BUNDLE_TIMING=1`` also times the rich report with both bundles side by side (best of
three, with the load average) into tests/artifacts/bundle_open_time.txt; never asserted.
"""
import dataclasses
import os
import re
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports import compare_html, figures, html, render_html
from tests.helpers.paths import ARTIFACTS, FIXTURES, ROOT

BUNDLE = ROOT / "ccprof" / "reports" / "static" / "plotly-ccprof.min.js"
ENTRY = ROOT / "scripts" / "plotly_entry.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
_HEADER = re.compile(r"/\* ccprof partial bundle: plotly\.js v(\S+), traces: ([a-z0-9 ]+) \(")


def _header() -> tuple[str, set[str]]:
    """(plotly.js version, trace types) from the bundle's one-line ccprof comment."""
    m = _HEADER.search(BUNDLE.read_text(encoding="utf-8")[:2000])
    assert m, "bundle lacks its ccprof header line: rebuild with scripts/build_plotly_bundle.sh"
    return m.group(1), set(m.group(2).split())


def _figures_py_traces() -> set[str]:
    """Trace types figures.py can build: every ``go.<Class>(`` except Figure, lower-cased."""
    src = Path(figures.__file__).read_text(encoding="utf-8")
    return {c.lower() for c in re.findall(r"\bgo\.([A-Z]\w*)\(", src)} - {"figure"}


def _full_js_version() -> str:
    return re.search(r"plotly\.js v(\S+)", get_plotlyjs()[:300]).group(1)


def _sample():
    return (Profile.from_json(FIXTURES / "profile_sample.json"),
            AdviceSet.from_json(FIXTURES / "advice_sample.json"))


def test_bundle_exists_and_is_much_smaller_than_full_plotly():
    assert BUNDLE.is_file(), "run scripts/build_plotly_bundle.sh"
    full_bytes = len(get_plotlyjs().encode("utf-8"))
    bundle_bytes = BUNDLE.stat().st_size
    assert bundle_bytes < full_bytes / 3, (bundle_bytes, full_bytes)   # 1.27 MB vs 4.82 MB today
    text = BUNDLE.read_text(encoding="utf-8")
    assert text.startswith("/**\n* plotly.js v") and "Licensed under the MIT license" in text[:300]
    assert "var Plotly=" in text[:3000]                                  # the global the page calls


def test_bundle_matches_the_plotly_python_package_version():
    # figures are serialised by the plotly Python package for its embedded plotly.js schema
    version, _ = _header()
    assert version == _full_js_version(), "plotly was upgraded: rerun scripts/build_plotly_bundle.sh"


def test_bundle_lists_every_trace_figures_py_can_emit():
    _, traces = _header()
    emitted = _figures_py_traces()
    assert {"bar", "scatter", "treemap", "waterfall"} <= emitted       # the scan itself works
    assert emitted <= traces, f"add {sorted(emitted - traces)} to {ENTRY.name} and rebuild"
    required = set(re.findall(r"require\('plotly\.js/lib/([a-z0-9]+)'\)", ENTRY.read_text()))
    assert traces == (required - {"core"}) | {"scatter"}               # header agrees with the entry


def test_report_inlines_the_bundle_not_the_full_plotly():
    out = render_html(*_sample())
    assert "ccprof partial bundle: plotly.js v" in out
    assert get_plotlyjs()[-2000:] not in out
    assert len(out.encode("utf-8")) < 2_000_000
    assert html._plotly_js().count("</script") == 0


def test_missing_bundle_falls_back_to_full_plotly(monkeypatch, tmp_path):
    monkeypatch.setattr(html, "_PLOTLY_BUNDLE", tmp_path / "absent.min.js")
    html._plotly_js.cache_clear()
    try:
        assert html._plotly_js().endswith(get_plotlyjs()[-300:])
    finally:
        monkeypatch.undo()
        html._plotly_js.cache_clear()
    assert "ccprof partial bundle" in html._plotly_js()[:1000]


# --- in a real browser -------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"{CHROMIUM} is missing: apt-get install -y chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, path: Path) -> dict:
    """Load ``path``; return errors, foreign requests, chart states, registered traces, ready ms."""
    url = path.resolve().as_uri()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: m.type in ("error", "warning") and errors.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: r.url != url and requests.append(r.url))
    try:
        page.goto(url)
        page.wait_for_selector("body[data-charts-ready]", timeout=30_000)
        return dict(
            errors=errors, requests=requests,
            ready=page.get_attribute("body", "data-charts-ready"),
            ready_ms=float(page.get_attribute("body", "data-ready-ms") or "nan"),
            charts=page.eval_on_selector_all(
                "[data-chart]", "els => els.map(e => [e.dataset.chart, e.dataset.drawn || '',"
                                " e.querySelectorAll('svg.main-svg').length])"),
            registered=set(page.evaluate("Object.keys(Plotly.PlotSchema.get().traces)")),
            used=set(page.evaluate(
                "(() => { const f = JSON.parse(document.getElementById('ccprof-figures').textContent);"
                " return [].concat(...Object.values(f).map(x => x.data.map(t => t.type || 'scatter'))); })()")),
            version=page.evaluate("Plotly.version"))
    finally:
        page.close()


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("kind", ["report", "compare"])
def test_bundle_draws_every_chart_in_chromium(browser, tmp_path, kind):
    rich, advice = _sample()
    if kind == "report":
        text = render_html(rich, advice)
    else:
        faster = dataclasses.replace(rich, cost=dataclasses.replace(rich.cost, step_s=0.5, usd_run=9.5))
        text = compare_html(rich, faster)
    path = tmp_path / f"{kind}.html"
    path.write_text(text, encoding="utf-8")
    r = _open(browser, path)
    assert r["errors"] == [] and r["requests"] == [] and r["ready"] == "1"
    assert r["version"] == _header()[0]
    assert r["registered"] == _header()[1]                  # exactly the advertised traces
    assert r["used"] and r["used"] <= r["registered"]
    assert r["charts"] and all(drawn == "1" and svgs > 0 for _, drawn, svgs in r["charts"]), r["charts"]
    if kind == "report":
        assert {c[0] for c in r["charts"]} == {
            "memory", "phases", "flops", "gpu_costs", "waterfall", "gpu_timeline", "loss"}
        assert r["used"] == {"bar", "scatter", "treemap", "waterfall"}
        assert _figures_py_traces() <= r["registered"]


@pytest.mark.browser
@needs_chromium
@pytest.mark.skipif(os.environ.get("CCPROF_BUNDLE_TIMING") != "1",
                    reason="set CCPROF_BUNDLE_TIMING=1 to time both bundles (slow, loads 4.8 MB x3)")
def test_open_time_side_by_side(browser, tmp_path, monkeypatch):
    """Best-of-three ready time of the rich report with the partial and the full plotly.js."""
    partial = tmp_path / "partial.html"
    partial.write_text(render_html(*_sample()), encoding="utf-8")
    monkeypatch.setattr(html, "_plotly_js", lambda: get_plotlyjs().replace("</script", "<\\/script"))
    full = tmp_path / "full.html"
    full.write_text(render_html(*_sample()), encoding="utf-8")
    lines = []
    for name, path in (("partial", partial), ("full", full)):
        runs = [_open(browser, path) for _ in range(3)]
        assert all(r["errors"] == [] and r["ready"] == "1" for r in runs)
        ready_ms = [r["ready_ms"] for r in runs]
        lines.append(f"{name:8s} {path.stat().st_size:>9,d} bytes  ready in {min(ready_ms):6.0f} ms "
                     f"(best of 3; {', '.join(f'{ms:.0f}' for ms in ready_ms)})  "
                     f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bundle_open_time.txt").write_text("\n".join(lines) + "\n")
