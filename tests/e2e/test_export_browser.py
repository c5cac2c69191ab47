"""The exported trace in a real trace viewer: Debian's chromium driven by Python playwright.

chrome://tracing is not in this Chromium (156 answers ERR_FAILED, even with its internal debugging
pages turned on at chrome://chrome-urls), and ui.perfetto.dev needs the internet. The viewer
Chromium bundles offline is DevTools' Performance panel (devtools://devtools/bundled/trace_app.html),
which loads trace-event JSON files: the test loads the export there, checks that it parsed (its
full range is the projected step), finds the kernels of one op by name with the panel's search
(the flame chart is a canvas; the match count and the selected event's name and arguments are in
the DOM) and keeps a screenshot.
"""
import os

import pytest

from ccprof import api
from ccprof.reports.export import step_trace
from tests.helpers.profiles import gpt_plain, priced

CHROMIUM = "/usr/bin/chromium"
# how long each awaited event may take: generous, because the suite runs on two workers of two cores
WAIT_MS = 120_000
VIEWER = "devtools://devtools/bundled/trace_app.html"
# every text node of the page, shadow roots included (DevTools draws in web components)
TEXTS = """() => { const out = []; const walk = root => root.querySelectorAll('*').forEach(el => {
  if (el.shadowRoot) walk(el.shadowRoot);
  el.childNodes.forEach(n => { if (n.nodeType === 3 && n.textContent.trim()) out.push(n.textContent.trim()); }); });
  walk(document); return out; }"""
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
]


def test_trace_opens_in_chromiums_trace_viewer(tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    profile = priced(gpt_plain())
    saved = tmp_path / "profile.json"
    profile.to_json(saved)
    trace_path = tmp_path / "step.trace.json"
    api.export_profile(saved, trace_path=trace_path)
    trace = step_trace(profile)
    step_ms = profile.projection["a100-80gb"].step_s * 1e3
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(VIEWER)
            # the standalone viewer has no page to debug: Escape closes its "connection closed" dialog
            page.wait_for_selector("text=Debugging connection was closed", state="attached", timeout=WAIT_MS)
            page.keyboard.press("Escape")
            tab = page.get_by_role("tab", name="Performance")
            tab.click()
            expect(tab).to_have_attribute("aria-selected", "true", timeout=WAIT_MS)
            page.locator("input[type=file]").set_input_files(str(trace_path))
            page.wait_for_selector("text=Full range", state="attached", timeout=WAIT_MS)
            page.keyboard.press("Escape")          # the flame chart's shortcuts dialog opens over the tracks
            # the flame chart is a canvas: find the kernels by name with its search (Ctrl+F), which
            # counts the matches and selects one (its name and arguments show in the summary pane)
            page.get_by_role("tab", name="Summary").click(force=True)     # focus in the panel, for its shortcut
            page.keyboard.press("Control+f")
            find = page.locator("#search-input-field")
            find.wait_for(state="visible", timeout=WAIT_MS)
            find.fill("aten.addmm")
            # Enter selects the next match; one pressed while the panel is still indexing the trace is
            # lost, so it is pressed again until a match is selected (each press: the next match)
            for attempt in range(12):
                find.press("Enter")
                try:
                    page.wait_for_function(f"() => ({TEXTS})().includes('Event aten.addmm selected')",
                                           timeout=WAIT_MS // 12)
                    break
                except PlaywrightTimeout:
                    if attempt == 11:
                        raise
            page.screenshot(path=str(tmp_path / "trace_viewer.png"))
            texts = page.evaluate(TEXTS)
        finally:
            browser.close()
    assert (tmp_path / "trace_viewer.png").stat().st_size > 0
    # the viewer parsed the events: its range is the projected step, to its 0.01 ms
    full = next(t for t in texts if t.startswith("Full range ("))
    shown_ms = float(full.split("(")[1].replace("\xa0", " ").split(" ")[0])
    assert shown_ms == pytest.approx(step_ms, abs=0.006)
    # every aten.addmm kernel of the trace is found, and the selected one's arguments are shown
    addmm = sum(1 for e in trace["traceEvents"] if e["name"] == "aten.addmm" and e["ph"] == "X")
    assert addmm > 0 and any(t.endswith(f" of {addmm}") for t in texts)
    assert '"calls"' in texts and '"per_call_us"' in texts
    assert errors == []
