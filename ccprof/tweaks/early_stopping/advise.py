"""early_stopping: stop when the validation loss stops improving, from a loss history."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_pct, make_advice, run_price
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.advisors.history import HistoryError, load_history, plateau
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_early_stopping"]

SNIPPET = """
best, bad, patience = float("inf"), 0, {patience}
for epoch in range(epochs):
    train_one_epoch(model, loader, optimizer)
    val = evaluate(model, val_loader)
    if val < best * (1 - {min_delta}):
        best, bad = val, 0
    else:
        bad += 1
        if bad >= patience:
            break
# Hugging Face: Trainer(..., callbacks=[EarlyStoppingCallback(early_stopping_patience={patience})])
#   with TrainingArguments(eval_strategy="steps", load_best_model_at_end=True, metric_for_best_model="eval_loss")
"""


@register("early_stopping")
def advise_early_stopping(profile: Profile, ctx: AdviceContext) -> Advice:
    """Saving = planned steps after the plateau plus patience; needs --history."""
    patience = ctx.option("early_stopping", "patience")
    st = profile.static
    snippet = SNIPPET.format(patience=patience, min_delta=C.EARLY_STOP_MIN_DELTA_FRAC)
    if st.early_stopping:
        return make_advice("early_stopping", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"The script already stops early (line {st.lines.get('early_stopping', '?')}).")
    if not ctx.history:
        val = ("The script evaluates on validation data" + (f" (line {st.lines['validation']})" if "validation" in st.lines else "")
               + ", so a history exists or can be logged") if st.validation else \
            "The script has no validation loop: add one (an evaluation every N steps) before early stopping can work"
        return make_advice("early_stopping", "not_applicable", profile, ctx, confidence="low", snippet=snippet,
                           rationale=(f"No loss history was given, so ccprof cannot see where the validation loss "
                                      f"flattens. Pass --history with a Hugging Face trainer_state.json, a CSV of "
                                      f"step,val_loss, or a TensorBoard log directory. {val}."),
                           details={"script_has_validation": st.validation})
    try:
        pts = load_history(ctx.history)
        pl = plateau(pts, patience, C.EARLY_STOP_MIN_DELTA_FRAC)
    except (HistoryError, OSError, ValueError, KeyError) as e:
        return make_advice("early_stopping", "not_applicable", profile, ctx, confidence="low", snippet=snippet,
                           rationale=f"The history {ctx.history} could not be used: {e}.")
    price = run_price(profile, ctx)
    planned = float(price.run_steps or pl.last_step)
    interval = (pl.last_step - pts[0][0]) / max(1, len(pts) - 1)
    if pl.stop_step is not None:
        stop = pl.stop_step
        how = (f"the best validation loss {pl.best_loss:.4g} came at step {pl.best_step:g}; with patience "
               f"{patience} evaluations (every ~{interval:g} steps) training stops at step {stop:g}")
    elif pl.plateau_step is not None and pl.plateau_step < planned:
        stop = pl.plateau_step + patience * interval
        f = pl.fit
        how = (f"the loss is still improving at step {pl.last_step:g}; the fitted curve "
               f"{f['a']:.3g} + {f['b']:.3g}*step^-{f['c']:.2f} flattens (less than "
               f"{fmt_pct(C.EARLY_STOP_MIN_DELTA_FRAC)} left to gain) at step {pl.plateau_step:,.0f}, plus patience "
               f"{patience} evaluations -> step {stop:,.0f}")
    else:
        return make_advice("early_stopping", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"The {pl.evals} validation losses up to step {pl.last_step:g} keep improving and "
                                      f"the fitted curve does not flatten before the planned {planned:,.0f} steps: "
                                      "stopping early would cost quality."),
                           details={"best_step": pl.best_step, "fit": pl.fit})
    frac = clamp(1 - stop / planned) if planned else 0.0
    if frac <= 0:
        return make_advice("early_stopping", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=f"{how[0].upper() + how[1:]}, which is not before the planned {planned:,.0f} steps.")
    rationale = (f"From {ctx.history}: {how}. The planned run has {planned:,.0f} steps, so the "
                 f"{planned - stop:,.0f} after it ({fmt_pct(frac)} of the run) can be skipped.")
    return make_advice("early_stopping", "recommended", profile, ctx,
                       confidence="medium" if pl.stop_step is not None else "low",
                       time_saved_frac=frac, rationale=rationale, snippet=snippet,
                       assumptions=[f"Patience {patience} evaluations (Lightning EarlyStopping default), "
                                    f"min improvement {fmt_pct(C.EARLY_STOP_MIN_DELTA_FRAC)} of the loss.",
                                    "The history comes from a run like the planned one (same data, schedule)."],
                       sources=["Prechelt, Early Stopping - But When?, 1998 (~75% time saved at ~4% generalization cost)"],
                       details={"best_step": pl.best_step, "best_loss": pl.best_loss, "stop_step": stop,
                                "planned_steps": planned, "fit": pl.fit, "evals": pl.evals})
