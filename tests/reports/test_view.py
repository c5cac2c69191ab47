"""Gold-file tests of the report view models (dates and paths scrubbed).

Regenerate after an intended change: ``CCPROF_UPDATE_GOLD=1 python -m pytest tests/reports/test_view.py``
and review the diff of ``tests/fixtures/gold/``.
"""
import dataclasses
import json
import os
import re

import pytest

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.hardware import load_catalog
from ccprof.reports.compare import build_compare_view
from ccprof.reports.view import NO_PRICE, build_report_view, gpu_cost_rows
from tests.helpers.paths import FIXTURES

GOLD = FIXTURES / "gold"
CATALOG = load_catalog(user=False)      # the built-in catalog: a user's file must not move gold numbers

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")
_PATH = re.compile(r"(?<![\w.])/(?:[\w.\-]+/)+(?=[\w.\-]+)")


def scrub(text: str) -> str:
    """ISO timestamps -> <DATE>, absolute directories -> <DIR>/ (file names kept)."""
    return _PATH.sub("<DIR>/", _DATE.sub("<DATE>", text))


def load(name: str):
    profile = Profile.from_json(FIXTURES / f"profile_{name}.json")
    advice = AdviceSet.from_json(FIXTURES / f"advice_{name}.json")
    return profile, advice


def check_gold(name: str, obj) -> None:
    text = scrub(json.dumps(dataclasses.asdict(obj), indent=1, ensure_ascii=False, sort_keys=True)) + "\n"
    path = GOLD / f"{name}.json"
    if os.environ.get("CCPROF_UPDATE_GOLD"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"gold file {path} is missing: run with CCPROF_UPDATE_GOLD=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"view changed; see {path}"


def test_scrub_dates_and_paths():
    assert scrub("ran 2026-11-20T14:03:11+00:00 at /home/ana/proj/train.py") == "ran <DATE> at <DIR>/train.py"


@pytest.mark.parametrize("name", ["sample", "sparse"])
def test_report_view_gold(name):
    profile, advice = load(name)
    check_gold(f"report_view_{name}", build_report_view(profile, advice, generated_at="2026-01-01T00:00:00", catalog=CATALOG))


def test_compare_view_gold():
    rich, _ = load("sample")
    sparse, _ = load("sparse")
    check_gold("compare_view", build_compare_view(rich, sparse, generated_at="2026-01-01T00:00:00"))


def test_rich_view_numbers():
    profile, advice = load("sample")
    v = build_report_view(profile, advice, catalog=CATALOG)
    cards = {c.label: c.value for c in v.glance.cards}
    # 1.122125 s x $3.43/h / 3600 = $0.001069 per step; x 20,000 steps = $21.38, + 40 validation
    # episodes x 1.85 s x $3.43/h = $0.07 -> $21.45
    assert cards["cost per step"] == "$0.0011"
    assert cards["planned run"] == "$21.45"
    assert v.evaluation.startswith("Evaluation between steps (train_llama.py:49): 20 forwards")
    assert "every 500 steps" in v.evaluation and "40 episodes in the planned run: $0.071" in v.evaluation
    assert cards["MFU"] == "39.4%"                   # the projection's mfu on the measured GPU
    assert cards["after the plan"] == "$8.90"             # $21.38 x 0.46 x 0.93 x 0.965 + $0.07 of validation
    # ranked by expected saving (share of cost x confidence weight), the advisors' one ranking
    exp = sorted((a for a in advice.advice if a.status == "recommended"), key=lambda a: -a.projected.expected_frac)
    assert [r.tweak for r in v.recommendations] == [a.tweak for a in exp]
    # right_size_gpu saves the most dollars but at medium confidence ranks below mixed_precision at high
    assert [r.tweak for r in v.recommendations][:2] == ["mixed_precision", "right_size_gpu"]
    assert v.recommendations[0].expected.startswith("expected 54.0% (x1 for high")
    assert v.rank_note.startswith("Ranked by expected saving") and "medium 0.7" in v.rank_note
    assert v.recommendations[0].rank == 1
    mp = next(r for r in v.recommendations if r.tweak == "mixed_precision")
    assert mp.anchor == "tweak-mixed_precision" and mp.in_plan
    assert [m.what for m in mp.measured][:3] == ["step time", "memory", "dollars"]
    assert mp.measured[0].projected == "54.0% faster" and mp.measured[0].measured == "49.0% faster"
    # waterfall: starts at today's cost, ends at the plan's, deltas in between add up
    w = v.waterfall
    assert w[0].measure == "absolute" and w[-1].measure == "total"
    assert w[0].usd + sum(s.usd for s in w[1:-1]) == pytest.approx(w[-1].usd)
    assert all(c.available for c in v.charts)


def test_right_size_rows_fit_first_cheapest_first():
    profile, _ = load("sample")
    rows = gpu_cost_rows(profile, catalog=CATALOG)
    fits = [r for r in rows if r.fits]
    assert rows[: len(fits)] == fits                 # non-fitting GPUs last
    assert [r.usd_run for r in fits] == sorted(r.usd_run for r in fits)
    l4 = next(r for r in rows if r.gpu == "l4")
    assert l4.usd_run == pytest.approx(1.35 * 20_000 / 3600 * 0.80)   # = $6.00
    assert next(r for r in rows if r.gpu == "a100-80gb").target
    t4 = next(r for r in rows if r.gpu == "t4")
    assert not t4.fits and t4.run == "—" and "needs" in t4.note


def test_price_comes_from_the_catalog_in_use():
    from ccprof.hardware import load_catalog

    profile, _ = load("sample")
    cat = load_catalog(user=False)
    cat["l4"] = dataclasses.replace(cat["l4"], usd_per_hour=1.0)     # a user's price override
    rows = gpu_cost_rows(profile, catalog=cat)
    row = next(r for r in rows if r.gpu == "l4")
    assert row.name == cat["l4"].name and row.price == "$1.00/h"
    assert row.usd_run == pytest.approx(1.35 * 20_000 / 3600 * 1.0)


def test_sparse_view_says_why():
    profile, advice = load("sparse")
    v = build_report_view(profile, advice, catalog={})
    charts = {c.id: c for c in v.charts}
    assert not charts["gpu_timeline"].available
    assert charts["gpu_timeline"].reason == profile.reasons["gpu"]
    assert not charts["gpu_costs"].available and NO_PRICE in charts["gpu_costs"].reason
    assert not charts["waterfall"].available
    assert not charts["loss"].available
    assert charts["memory"].available and charts["flops"].available
    assert v.header.price == NO_PRICE
    assert v.recommendations == [] and v.plan is None
    assert any(c.value == NO_PRICE for c in v.glance.cards)


def test_view_of_a_default_profile_does_not_fail():
    v = build_report_view(Profile(), None, catalog={})
    assert v.modules == [] and v.flops_tree == []
    assert [c.id for c in v.charts if c.available] == []


def test_unknown_run_size_is_said_not_invented():
    """With no run length known, the report compares per 1,000 steps and prices no run."""
    from ccprof.hardware import attach

    profile, advice = load("sample")
    profile = dataclasses.replace(profile, static=dataclasses.replace(profile.static, training_args={}),
                                  run_limits=[], cost=None)
    profile = attach(profile, gpu="a100-80gb", catalog=CATALOG)
    assert profile.cost.run_steps == 0
    v = build_report_view(profile, advice, catalog=CATALOG)
    cards = {c.label: (c.value, c.note) for c in v.glance.cards}
    assert cards["planned run"][0] == "size unknown" and "--total-steps" in cards["planned run"][1]
    assert v.header.planned_run.startswith("size unknown") and not v.header.planned_run_known
    fitting = [r for r in v.gpu_costs if r.fits and r.usd_per_1k_steps is not None]
    assert fitting and all(r.usd_run is None and r.run.endswith("/ 1k steps") for r in fitting)
    per_1k = [r.usd_per_1k_steps for r in fitting]
    assert per_1k == sorted(per_1k)                       # cheapest per step first
    assert not v.waterfall
    chart = {c.id: c for c in v.charts}
    assert chart["gpu_costs"].title.startswith("Cost per 1,000 steps")
    assert "unknown" in chart["waterfall"].reason
    assert all(r.usd == "run size unknown" for r in v.recommendations)


def test_saved_profile_renders_the_prices_it_was_costed_with(tmp_path):
    """The right-size table is priced when the profile is costed and kept in it (issue 12): a
    catalog whose prices changed since does not change the report of a saved profile."""
    from ccprof.hardware import attach

    profile, _ = load("sample")
    costed = Profile.from_json(attach(profile, catalog=CATALOG, total_steps=10_000).to_json())   # saved and loaded
    assert costed.cost.detail["right_size"], "the priced table is kept in the profile"
    today = gpu_cost_rows(costed, CATALOG)
    doubled = {g: dataclasses.replace(s, usd_per_hour=None if s.usd_per_hour is None else 2 * s.usd_per_hour)
               for g, s in CATALOG.items()}
    assert gpu_cost_rows(costed, doubled) == today
    assert gpu_cost_rows(costed, {}) == today           # no catalog at all: still the same table
    priced = [r for r in today if r.usd_per_hour is not None]
    assert priced and all(r.name for r in today)


def test_module_rows_show_bytes_and_projected_time():
    from tests.helpers.profiles import gpt_plain, priced
    p = priced(gpt_plain())
    v = build_report_view(p, AdviceSet(), generated_at="2026-01-01T00:00:00", catalog=CATALOG)
    rows = {r.name: r for r in v.modules}
    assert rows["blocks.0"].step_s > 0 and rows["blocks.0"].step_s == pytest.approx(rows["blocks.1"].step_s)
    assert rows["blocks.0"].step_text and rows["blocks.0"].op_bytes_text
    assert rows["blocks.0"].flops == rows["blocks.2"].flops
    assert "100.0% of the step's" in v.modules_note and p.cost.gpu in v.modules_note
    node = next(n for n in v.flops_tree if n.id == "blocks.0")
    assert f"on {p.cost.gpu}" in node.text
