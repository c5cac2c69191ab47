"""The HTML report without a browser: self-contained, escaped, small, and the CLI commands."""
import dataclasses
import re

from click.testing import CliRunner

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.cli import cli
from ccprof.reports import compare_html, render_html, write_report
from tests.helpers.paths import FIXTURES
from tests.helpers.reports import evil_profile, sample

MAX_REPORT_BYTES = 5_000_000


def test_report_is_self_contained_and_small():
    html = render_html(*sample())
    assert len(html.encode()) < MAX_REPORT_BYTES
    from ccprof.reports.html import _plotly_js

    assert html.count(_plotly_js()[-300:]) == 1      # plotly.js inlined exactly once
    assert html.count("<script") == 3                 # figures JSON, plotly.js, our JS
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # no reference that a browser would fetch
    for attr in re.findall(r"<(?:script|link|img|iframe)[^>]*\b(?:src|href)=[^>]*>", html):
        raise AssertionError(f"external reference: {attr}")
    for section in ("header", "glance", "recommendations", "charts", "modules"):
        assert f'id="{section}"' in html


def test_every_tweak_has_its_anchor():
    profile, advice = sample()
    html = render_html(profile, advice)
    for a in advice.advice:
        assert f'id="tweak-{a.tweak}"' in html


def test_user_strings_are_text_never_markup():
    html = render_html(*evil_profile())
    body, _, _ = html.partition('<script type="application/json"')
    assert "<script>window.__pwned" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body
    assert "&#34;" in body or "&quot;" in body
    assert "&amp;amp;" in body                        # "&amp;" typed by the user stays literal
    # inside the figures JSON, "<" is \u003c so nothing can close the script element
    figs = html.split('<script type="application/json" id="ccprof-figures">', 1)[1].split("</script>", 1)[0]
    assert "<" not in figs and "\\u0026lt;script" in figs  # plotly shows &lt; as a literal <


def test_sparse_report_renders_with_reasons():
    profile = Profile.from_json(FIXTURES / "profile_sparse.json")
    html = render_html(profile, None)
    assert "no price attached" in html
    assert profile.reasons["gpu"] in html
    assert render_html(Profile(), AdviceSet())       # an empty profile still renders


def test_write_report_writes_only_in_out_dir(tmp_path):
    out = tmp_path / "nested" / "out"
    before = set(tmp_path.rglob("*"))
    path = write_report(*sample(), out)
    assert path == out / "report.html" and path.is_file()
    assert set(tmp_path.rglob("*")) - before == {tmp_path / "nested", out, path}


def test_compare_html():
    rich, _ = sample()
    faster = dataclasses.replace(rich, cost=dataclasses.replace(rich.cost, step_s=0.5, usd_run=9.5,
                                                                 usd_per_step=0.0005))
    html = compare_html(rich, faster)
    assert "step time" in html and "-55.4%" in html  # (0.5 - 1.122125) / 1.122125
    assert "$21.45" in html and "$9.50" in html


def test_cli_report_rerenders_from_saved_files(tmp_path):
    (tmp_path / "profile.json").write_text((FIXTURES / "profile_sample.json").read_text())
    (tmp_path / "advice.json").write_text((FIXTURES / "advice_sample.json").read_text())
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "profile.json"), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert 'id="tweak-mixed_precision"' in html      # advice.json next to the profile was found
    assert "mixed_precision" in res.output            # the terminal summary
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "profile.json"), "--quiet"])
    assert res.exit_code == 0 and res.output.strip() == str(tmp_path / "report.html")
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "advice.json")])
    assert res.exit_code == 2 and "not a ccprof profile" in res.output


def test_cli_compare(tmp_path):
    out = tmp_path / "cmp.html"
    res = CliRunner().invoke(cli, ["compare", str(FIXTURES / "profile_sample.json"),
                                   str(FIXTURES / "profile_sparse.json"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "step time" in res.output and "-98.9%" in res.output   # 12.1 ms vs 1.12 s
    assert out.is_file() and "ccprof compare" in out.read_text()
