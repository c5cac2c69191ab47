"""ccprof.reports: the HTML cost report, the terminal summary, and compare.

    from ccprof.reports import render_html, write_report, terminal_summary
    path = write_report(profile, advice_set, Path("ccprof-report"))   # report.html
    terminal_summary(profile, advice_set, rich.console.Console())

Stages: ``view.py`` builds formatted view models from the artefacts, ``figures.py`` turns
them into plotly figures, ``html.py`` renders jinja2 templates (autoescape on) into one
self-contained offline file, ``terminal.py`` prints with rich.
"""
from ccprof.reports.html import compare_html, render_html, write_report
from ccprof.reports.terminal import advice_table, compare_table, terminal_summary

__all__ = ["render_html", "write_report", "terminal_summary", "compare_html", "compare_table", "advice_table"]
