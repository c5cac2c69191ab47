"""Reports of the bundled examples, from real `ccprof analyze` runs: under 5 MB, and they load
in chromium with no console errors, no network requests and every available chart drawn."""
import os
import subprocess
import sys

import pytest

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports import render_html
from tests.helpers.paths import ARTIFACTS, FIXTURES, ROOT

EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
MAX_REPORT_BYTES = 5_000_000


def test_saved_real_artefacts_render():
    """A profile and advice written by `ccprof analyze examples/hf_trainer.py` (a real run)."""
    d = FIXTURES / "real_hf_trainer"
    html = render_html(Profile.from_json(d / "profile.json"), AdviceSet.from_json(d / "advice.json"))
    assert len(html.encode()) < MAX_REPORT_BYTES
    assert 'id="tweak-' in html and "LlamaForCausalLM" in html


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="/usr/bin/chromium is missing")
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_report(example, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.helpers.browser import Page

    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(ROOT / "examples" / f"{example}.py"),
                          "--steps", "2", "--warmup", "1", "--quiet", "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = out / "report.html"
    assert report.stat().st_size < MAX_REPORT_BYTES
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = Page(b, report)
            assert page.errors == [] and page.foreign_requests() == []
            drawn = page.page.eval_on_selector_all("[data-chart]", "els => els.map(e => e.dataset.drawn)")
            assert drawn and all(d == "1" for d in drawn)
            ARTIFACTS.mkdir(exist_ok=True)
            page.page.screenshot(path=str(ARTIFACTS / f"example_{example}.png"),
                                 full_page=True)
        finally:
            b.close()
