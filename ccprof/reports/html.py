"""The self-contained HTML report: view models -> jinja2 templates (autoescape on) + plotly.

Everything the page needs is inlined once (CSS, plotly.js, the figures as JSON, a few lines
of sorting JS) under a Content-Security-Policy that forbids every network fetch, so the
file can be mailed to a team lead and opened offline.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

from ccprof import __version__
from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports.compare import build_compare_view
from ccprof.reports.figures import compare_figure, figures_json
from ccprof.reports.view import build_report_view
from ccprof.reports.view_types import CompareView, ReportView

__all__ = ["render_html", "render_view", "write_report", "compare_html", "REPORT_NAME"]

REPORT_NAME = "report.html"
_HERE = Path(__file__).parent


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


# plotly.js core + only the traces figures.py emits, ~1.2 MB instead of 4.8 MB, so chromium
# parses it in a fraction of the time (issue 5); rebuilt by scripts/build_plotly_bundle.sh
_PLOTLY_BUNDLE = _HERE / "static" / "plotly-ccprof.min.js"


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    """The plotly.js to inline: ccprof's partial bundle, or the full one if it is missing."""
    if _PLOTLY_BUNDLE.is_file():
        js = _PLOTLY_BUNDLE.read_text(encoding="utf-8")
    else:
        # Fallback for a tree without the built bundle: the full plotly.js from the plotly
        # package draws every trace type too, only the report grows to ~5 MB and opens slower.
        from plotly.offline import get_plotlyjs

        js = get_plotlyjs()
    # a literal "</script" inside would end the inline element early
    return js.replace("</script", "<\\/script")


@functools.lru_cache(maxsize=2)
def _static(name: str) -> str:
    return (_HERE / "static" / name).read_text(encoding="utf-8")


def _page(template: str, title: str, generated_at: str, figures: str, **ctx) -> str:
    return _env().get_template(template).render(
        title=title, version=__version__, generated_at=generated_at, css=_static("report.css"),
        js=_static("report.js"), plotly_js=_plotly_js(), figures_json=figures, **ctx)


def render_view(view: ReportView) -> str:
    """HTML text of an already built ``ReportView``."""
    return _page("report.html.j2", view.header.title, view.header.generated_at,
                 figures_json(view), v=view)


def render_html(profile: Profile, advice_set: AdviceSet | None = None,
                generated_at: str | None = None, catalog: dict[str, Any] | None = None) -> str:
    """The full HTML report of a profile and its advice, as one self-contained string.

    Inputs: ``Profile``; ``AdviceSet`` (None or empty: no recommendations);
    ``generated_at`` overrides the clock; ``catalog``: the hardware catalog, for what the
    profile does not hold (``build_report_view``). Output: HTML text (~1.3 MB, mostly the custom
    plotly.js bundle). Example: ``Path("r.html").write_text(render_html(profile, advice))``.
    """
    return render_view(build_report_view(profile, advice_set, generated_at, catalog=catalog))


def write_report(profile: Profile, advice_set: AdviceSet | None, out_dir: Path,
                 name: str = REPORT_NAME, catalog: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/report.html`` (creating ``out_dir``) and return its path.

    Nothing is written outside ``out_dir``. Example:
    ``write_report(profile, advice, Path("ccprof-report"))`` -> ``ccprof-report/report.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(render_html(profile, advice_set, catalog=catalog), encoding="utf-8")
    return path


def compare_html(before: Profile, after: Profile, generated_at: str | None = None) -> str:
    """A self-contained HTML page comparing two profiles (step time, memory, MFU, $).

    Example: ``compare_html(Profile.from_json("a.json"), Profile.from_json("b.json"))``.
    """
    view: CompareView = build_compare_view(before, after, generated_at)
    return _page("compare.html.j2", view.title, view.generated_at, compare_figure(view), v=view)
