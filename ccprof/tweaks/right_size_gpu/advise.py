"""right_size_gpu: a cheaper catalog GPU that fits the job finishes the run for fewer dollars."""
from __future__ import annotations

from ccprof.advisors._common import catalog_entries, clamp, fmt_pct, fmt_s, fmt_usd, make_advice, run_price
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.hardware import right_size

__all__ = ["advise_right_size_gpu", "cheapest_fit"]

SNIPPET = """
# ccprof analyze train.py --gpu {gpu}      # re-project on it
# then rent {name} instead of {current}
"""


def cheapest_fit(profile: Profile, ctx: AdviceContext) -> tuple[list[dict], str]:
    """Rows from ccprof.hardware.right_size (GPUs that fit, cheapest run first), and a note."""
    cat = catalog_entries(ctx)
    try:
        # the run size as the hardware stage read it (with its source), unless the context overrides it
        rows = right_size(profile, cat, total_steps=ctx.run_steps or None, projection=profile.projection)
    except Exception as e:  # a catalog/projection mismatch must not hide the other advice
        return [], f"right-sizing failed ({type(e).__name__}: {e})"
    return rows, ""


@register("right_size_gpu")
def advise_right_size_gpu(profile: Profile, ctx: AdviceContext) -> Advice:
    """Saving = the target's cost per step - the cheapest fitting GPU's, both from the hardware
    stage; x the planned steps for dollars when the run size is known."""
    price = run_price(profile, ctx)
    if price.usd_per_hour <= 0 or not profile.projection:
        return make_advice("right_size_gpu", "not_applicable", profile, ctx, confidence="low",
                           snippet=SNIPPET.format(gpu="l4", name="a cheaper GPU", current="the current one"),
                           rationale="No projection or price is attached to this profile, so GPUs cannot be compared.")
    rows, note = cheapest_fit(profile, ctx)
    if not rows:
        return make_advice("right_size_gpu", "not_applicable", profile, ctx, confidence="low",
                           snippet=SNIPPET.format(gpu="l4", name="a cheaper GPU", current=price.gpu),
                           rationale=f"No catalog GPU comparison is possible: {note or 'no GPU fits the job'}.")
    best = rows[0]
    current = next((r for r in rows if r["gpu"] == price.gpu), None)
    cur_step_usd = current["usd_per_step"] if current else price.step_s * price.usd_per_hour / 3600.0
    cur_step_s = current["step_s"] if current else price.step_s
    snippet = SNIPPET.format(gpu=best["gpu"], name=best["name"], current=price.gpu)
    n = price.run_steps

    def cost(usd_step: float) -> str:
        return (f"{fmt_usd(usd_step * n)} for the {n:,}-step run" if n
                else f"{fmt_usd(usd_step * 1000)} per 1,000 steps")

    if best["gpu"] == price.gpu or best["usd_per_step"] >= cur_step_usd:
        return make_advice("right_size_gpu", "already_applied", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"{price.gpu} is already the cheapest catalog GPU that fits "
                                      f"({cost(cur_step_usd)}; next: "
                                      + (f"{rows[1]['name']} at {cost(rows[1]['usd_per_step'])})." if len(rows) > 1 else "none).")))
    frac = clamp(1 - best["usd_per_step"] / cur_step_usd) if cur_step_usd else 0.0
    usd = (cur_step_usd - best["usd_per_step"]) * n if price.priced else 0.0
    hours = (f" ({best['step_s'] * n / 3600:.1f} h of wall time vs {cur_step_s * n / 3600:.1f} h)" if n
             else f" (a step takes {fmt_s(best['step_s'])} vs {fmt_s(cur_step_s)}; the run size is unknown, "
                  "so the saving is a share of whatever the run costs)")
    rationale = (f"{best['name']} fits the job and runs a step in {fmt_s(best['step_s'])} at ${best['usd_per_hour']:.2f}/h "
                 f"(price {best.get('price_date', '')}): {cost(best['usd_per_step'])} against "
                 f"{cost(cur_step_usd)} on {price.gpu}, {fmt_pct(frac)} of the cost{hours}. "
                 f"Projection method: {best.get('method', 'cost_model')} (ccprof's cost model).")
    return make_advice("right_size_gpu", "recommended", profile, ctx, confidence="medium", usd_saved=usd,
                       time_saved_frac=0.0, step_s_after=best["step_s"], rationale=rationale, snippet=snippet,
                       cost_saved_frac=frac,
                       assumptions=["Projected step times from the hardware stage's cost model (each GPU's achieved kernel times, host and data wait); prices as dated in the catalog."],
                       sources=[best.get("price_source", "ccprof hardware catalog"),
                                "ccprof bench/projection_accuracy.py (the cost model against published step times)"],
                       details={"best": best, "candidates": rows[:5], "dollar_frac": frac})
