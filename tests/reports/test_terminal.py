"""The terminal summary wraps figures, never cuts them (issue 23 item 5): on an 80-column log (CI,
`| tee`) and on a narrow terminal every dollar figure, risk and tweak id is printed whole."""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports import terminal_summary
from ccprof.reports.view import build_report_view
from tests.helpers.paths import FIXTURES


def _summary(width: int) -> tuple[str, list]:
    profile = Profile.from_json(FIXTURES / "profile_sample.json")
    advice = AdviceSet.from_json(FIXTURES / "advice_sample.json")
    out = io.StringIO()
    terminal_summary(profile, advice, Console(file=out, width=width, force_terminal=False, color_system=None))
    return out.getvalue(), build_report_view(profile, advice).recommendations[:5]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_every_figure_is_printed_whole(width):
    text, recs = _summary(width)
    assert recs
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    # the panel's frame gone, lines joined, a word's trailing ";", "," or ":" (the narrow list) dropped
    words = [w.rstrip(";,:") for w in re.sub(r"[│╭╮╰╯─┃━╇┡]", " ", text).split()]
    for r in recs:
        for figure in (r.tweak, r.usd, r.risk, r.confidence):
            for word in figure.split():          # a figure may wrap between its words, never inside one
                assert word in words, (width, figure, text)
