"""Report sections about the advice: the ranked recommendations (with what a ``--verify`` re-run
measured), the rest of the advice, the plan, its cost waterfall, and the verification sentences.
"""
from __future__ import annotations

from ccprof.advisors import rank
from ccprof.advisors.constants import CONFIDENCE_WEIGHT as W
from ccprof.advisors.constants import STATUS_LABEL
from ccprof.artefacts.advice import Advice, AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports._view_common import _saved_memory, _saved_time, _saved_usd, _tweak_title, run_known
from ccprof.reports.view_types import MeasuredRow, OtherAdvice, PlanView, Recommendation, WaterfallStep
from ccprof.units import MISSING, fmt_bytes, fmt_delta_usd, fmt_pct, fmt_s, fmt_signed_pct, fmt_usd


def rank_note() -> str:
    """How the recommendations are ordered, with the weights the advisors use."""
    weights = ", ".join(f"{k} {v:g}" for k, v in W.items())
    return (f"Ranked by expected saving: the share of the run's GPU cost a tweak saves x its "
            f"confidence weight ({weights}).")


def _measured_rows(a: Advice, priced: bool) -> list[MeasuredRow]:
    m, p = a.measured, a.projected
    if m is None or m.failed:
        return []
    rows = [MeasuredRow("step time", _saved_time(p.time_saved_frac), _saved_time(m.time_saved_frac)),
            MeasuredRow("memory", _saved_memory(p.memory_saved_bytes), _saved_memory(m.memory_saved_bytes)),
            MeasuredRow("dollars", _saved_usd(p.usd_saved, priced), _saved_usd(m.usd_saved, priced)),
            MeasuredRow("step time after", fmt_s(p.step_s_after), fmt_s(m.step_s)),
            MeasuredRow("peak memory after", fmt_bytes(p.peak_bytes_after), fmt_bytes(m.peak_bytes))]
    if m.loss_delta is not None:
        rows.append(MeasuredRow("last loss vs baseline", MISSING, f"{m.loss_delta:+.4g}"))
    if m.time_error_frac is not None or m.memory_error_frac is not None:
        rows.append(MeasuredRow("projection error (time / memory)", MISSING,
                                f"{fmt_signed_pct(m.time_error_frac)} / {fmt_signed_pct(m.memory_error_frac)}"))
    return rows


def _recommendations(profile: Profile, advice: AdviceSet) -> tuple[list[Recommendation], list[OtherAdvice]]:
    priced = run_known(profile)
    plan = set(advice.plan.tweaks)
    recs = [a for a in rank(list(advice.advice)) if a.status == "recommended"]
    out = []
    for i, a in enumerate(recs, 1):
        m = a.measured
        out.append(Recommendation(
            rank=i, tweak=a.tweak, anchor=f"tweak-{a.tweak}", title=_tweak_title(a.tweak, a.title),
            time=_saved_time(a.projected.time_saved_frac),
            memory=_saved_memory(a.projected.memory_saved_bytes),
            usd=_saved_usd(a.projected.usd_saved, priced),
            cost_share=f"{fmt_pct(a.projected.cost_saved_frac)} of the cost",
            expected=(f"expected {fmt_pct(a.projected.expected_frac)} (x{a.details.get('confidence_weight', 0):g} "
                      f"for {a.confidence} confidence)"),
            confidence=a.confidence, risk=a.risk,
            rationale=a.rationale, assumptions=list(a.assumptions), sources=list(a.sources),
            snippet=a.snippet, auto_apply=a.auto_apply, in_plan=a.tweak in plan,
            measured=_measured_rows(a, priced), measured_note=(m.note or "") if m else "",
            harmful=bool(m and m.harmful), failed=bool(m and m.failed)))
    order = {"no_saving": 0, "already_applied": 1, "not_applicable": 2}
    others = [OtherAdvice(a.tweak, f"tweak-{a.tweak}", _tweak_title(a.tweak, a.title),
                          STATUS_LABEL.get(a.status, a.status), a.rationale)
              for a in sorted((a for a in advice.advice if a.status != "recommended"),
                              key=lambda a: (order.get(a.status, 3), a.tweak))]
    return out, others


def _plan(profile: Profile, advice: AdviceSet) -> PlanView | None:
    plan = advice.plan
    if not plan.tweaks:
        return None
    parts = [f"step time {fmt_s(plan.step_s_before)} → {fmt_s(plan.step_s_after)}",
             f"peak memory {fmt_bytes(plan.peak_bytes_before)} → {fmt_bytes(plan.peak_bytes_after)}"]
    if run_known(profile):
        parts.append(f"planned run {fmt_usd(plan.usd_run_before)} → {fmt_usd(plan.usd_run_after)}")
    else:
        parts.append(f"cost of the run {fmt_signed_pct(plan.cost_frac_after - 1)} (its size is unknown)")
    if plan.gpu:
        parts.append(f"on {plan.gpu}")
    return PlanView(list(plan.tweaks), "; ".join(parts), list(plan.conflicts))


def verification_lines(advice: AdviceSet) -> list[str]:
    """``--verify`` in sentences: each failed re-run with the script's error line, the top
    tweaks no re-run can measure and why, then what was measured."""
    v = advice.verification
    if v is None:
        return []
    out = [f"The re-run with {t} failed: {line}" for t, line in v.failed.items()]
    out += [f"{t} cannot be measured by a re-run: {why}" for t, why in v.not_measurable.items()]
    ok = [t for t in v.measured if t not in v.failed]
    if ok:
        out.append(f"Measured by a re-run: {', '.join(ok)}.")
    if v.all_failed:
        out.insert(0, "Every --verify re-run failed: nothing below is measured.")
    return out


def _waterfall(profile: Profile, advice: AdviceSet) -> list[WaterfallStep]:
    plan = advice.plan
    if not run_known(profile) or not plan.tweaks or not plan.steps:
        return []
    out = [WaterfallStep(f"today ({profile.cost.gpu})", plan.usd_run_before, "absolute",
                         fmt_usd(plan.usd_run_before))]
    prev = plan.usd_run_before
    for st in plan.steps:
        d = st.usd_run - prev
        out.append(WaterfallStep(st.tweak, d, "relative", fmt_delta_usd(d)))
        prev = st.usd_run
    out.append(WaterfallStep("with the plan", plan.usd_run_after, "total", fmt_usd(plan.usd_run_after)))
    return out
