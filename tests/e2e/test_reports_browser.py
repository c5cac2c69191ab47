"""The HTML report in a real browser: Debian's chromium driven by Python playwright.

Checks: no console errors, no network requests, every chart draws, tables sort, user strings
never run, opens in under 2 s. Screenshots go to tests/artifacts/ (gitignored).
"""
import dataclasses
import os
from pathlib import Path

import pytest

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports import compare_html, render_html
from tests.helpers.browser import Page
from tests.helpers.paths import ARTIFACTS, FIXTURES

CHROMIUM = "/usr/bin/chromium"
OPEN_BUDGET_S = 2.0        # issue 5: "opens in under 2 s in the test browser"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def _write(tmp_path: Path, name: str, html: str) -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _sample():
    return (Profile.from_json(FIXTURES / "profile_sample.json"),
            AdviceSet.from_json(FIXTURES / "advice_sample.json"))


def test_rich_report_draws_every_chart_and_sorts(browser, tmp_path):
    page = Page(browser, _write(tmp_path, "report.html", render_html(*_sample())))
    try:
        assert page.page.get_attribute("body", "data-charts-ready") == "1"
        assert page.errors == []
        assert page.foreign_requests() == []
        charts = page.page.eval_on_selector_all(
            "[data-chart]", "els => els.map(e => [e.dataset.chart, e.dataset.drawn || '', e.querySelectorAll('svg.main-svg').length])")
        assert sorted(c[0] for c in charts) == sorted(
            ["memory", "phases", "flops", "gpu_costs", "waterfall", "gpu_timeline", "loss"])
        assert all(drawn == "1" and svgs > 0 for _, drawn, svgs in charts), charts
        assert page.page.locator("[data-missing]").count() == 0

        # sort the module table by FLOPs: ascending, then descending
        def flops_column():
            return page.page.eval_on_selector_all(
                "#module-table tbody tr", "rows => rows.map(r => parseFloat(r.cells[5].dataset.v))")
        header = page.page.locator("#module-table th", has_text="FLOPs")
        header.click()
        asc = flops_column()
        assert asc == sorted(asc) and header.get_attribute("aria-sort") == "ascending"
        header.click()
        desc = flops_column()
        assert desc == sorted(desc, reverse=True)
        names_js = "rows => rows.map(r => r.cells[0].textContent)"
        before = page.page.eval_on_selector_all("#module-table tbody tr", names_js)
        name_header = page.page.locator("#module-table th", has_text="module")
        name_header.click()
        names = page.page.eval_on_selector_all("#module-table tbody tr", names_js)
        assert name_header.get_attribute("aria-sort") == "ascending"
        assert sorted(names) == sorted(before) and names[0] == "(root)"   # "(" sorts before letters
        page.page.locator("#gpu-table th", has_text="planned run").click()
        runs = page.page.eval_on_selector_all(
            "#gpu-table tbody tr", "rows => rows.map(r => r.cells[4].dataset.v).filter(v => v !== '').map(parseFloat)")
        assert runs == sorted(runs)
        _shot(page, "report_sample.png")
    finally:
        page.close()


def test_sparse_report_says_why_charts_are_missing(browser, tmp_path):
    profile = Profile.from_json(FIXTURES / "profile_sparse.json")
    page = Page(browser, _write(tmp_path, "sparse.html", render_html(profile, None)))
    try:
        assert page.errors == [] and page.foreign_requests() == []
        missing = page.page.eval_on_selector_all("[data-missing]", "els => els.map(e => e.dataset.missing)")
        assert set(missing) == {"gpu_costs", "waterfall", "gpu_timeline", "loss"}
        assert profile.reasons["gpu"] in page.page.inner_text("#box-gpu_timeline")
        assert "no price attached" in page.page.inner_text("#glance")
        drawn = page.page.eval_on_selector_all("[data-chart]", "els => els.map(e => e.dataset.drawn)")
        assert drawn and all(d == "1" for d in drawn)
        _shot(page, "report_sparse.png")
    finally:
        page.close()


def test_hostile_names_are_shown_as_text_never_run(browser, tmp_path):
    from tests.helpers.reports import EVIL, evil_profile

    profile, advice = evil_profile()
    page = Page(browser, _write(tmp_path, "evil.html", render_html(profile, advice)))
    try:
        assert page.page.evaluate("window.__pwned") is None
        assert page.dialogs == []
        assert page.foreign_requests() == []          # no <img src=x> was created
        assert page.errors == []
        assert page.page.locator("img").count() == 0
        assert EVIL in page.page.inner_text("#header")  # shown verbatim, as text
        assert f"lm_head{EVIL}" in page.page.inner_text("#module-table")
        assert "</script><script>window.__pwned=4</script>" in page.page.inner_text("#recommendations")
        _shot(page, "report_hostile.png")
    finally:
        page.close()


def test_compare_page(browser, tmp_path):
    rich, _ = _sample()
    faster = dataclasses.replace(rich, cost=dataclasses.replace(rich.cost, step_s=0.5, usd_run=9.5))
    page = Page(browser, _write(tmp_path, "compare.html", compare_html(rich, faster)))
    try:
        assert page.errors == [] and page.foreign_requests() == []
        assert page.page.get_attribute("#chart-compare", "data-drawn") == "1"
        assert "-55.4%" in page.page.inner_text("#compare-table")
        _shot(page, "compare.png")
    finally:
        page.close()


def test_report_opens_quickly(browser, tmp_path):
    """From navigation start to every chart drawn, best of three loads.

    Most of it is chromium parsing the inlined plotly.js (1.2 MB custom bundle), which scales with free CPU: on a
    machine busier than one runnable process per core the number says nothing about the
    report, so the budget is checked only when the machine is not overloaded.
    """
    path = _write(tmp_path, "report.html", render_html(*_sample()))
    assert path.stat().st_size < 5_000_000
    best_ms = float("inf")
    for _ in range(3):
        page = Page(browser, path)
        best_ms = min(best_ms, float(page.page.get_attribute("body", "data-ready-ms")))
        page.close()
        if best_ms < OPEN_BUDGET_S * 1000:
            break
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "open_time.txt").write_text(
        f"report ready in {best_ms:.0f} ms (best of 3), load average {load:.2f} on {cores} cores\n")
    if best_ms >= OPEN_BUDGET_S * 1000 and load > cores:
        pytest.skip(f"machine overloaded (load {load:.1f} on {cores} cores): took {best_ms:.0f} ms")
    assert best_ms < OPEN_BUDGET_S * 1000, f"report took {best_ms:.0f} ms to draw"


def test_the_plan_across_configurations_draws_and_sorts(browser, tmp_path):
    """The configurations' dollars-against-hours chart draws, and its table sorts by dollars."""
    from ccprof.advisors import AdviceContext, advise
    from ccprof.hardware import attach
    from tests.helpers.profiles import hand_profile
    profile = attach(hand_profile(), gpu="a100-80gb", total_steps=10_000)
    advice = advise(profile, AdviceContext(configurations=True, budget_usd=20.0))
    page = Page(browser, _write(tmp_path, "configs.html", render_html(profile, advice)))
    try:
        assert page.page.get_attribute("body", "data-charts-ready") == "1" and page.errors == []
        assert page.page.get_attribute("#chart-configs", "data-drawn") == "1"
        assert page.page.locator("#chart-configs svg.main-svg").count() > 0
        assert "Fastest within $20.00" in page.page.inner_text("#configurations")
        page.page.locator("#configs-table th", has_text="planned run").click()
        usd = page.page.eval_on_selector_all(
            "#configs-table tbody tr", "rows => rows.map(r => parseFloat(r.cells[4].dataset.v))")
        assert len(usd) > 10 and usd == sorted(usd)
    finally:
        page.close()
