"""batch_size: fill the memory headroom with a larger batch to amortize fixed per-step costs, under a
stated contract (same samples in fewer steps, or same steps) and learning-rate rule."""
from __future__ import annotations

import math
from dataclasses import replace

from ccprof.advisors import constants as C
from ccprof.advisors._common import (
    batch_size,
    fmt_bytes,
    fmt_pct,
    fmt_s,
    fmt_usd,
    gpu_spec,
    ledger,
    make_advice,
    recost,
    run_price,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import BatchSizeOptions
from ccprof.hardware import steps_per_epoch
from ccprof.hardware.edits import scale_batch
from ccprof.hardware.projection import FIT_SOURCES, memory_fit_for, peak_budget_bytes
from ccprof.tweaks.batch_size.contract import (
    FULL_BATCH_OPTIMIZERS,
    GOYAL,
    MALLADI,
    describe_rule,
    epoch_cap,
    lr_factor,
    lr_rule_for,
    steps_after,
)

__all__ = ["advise_batch_size", "largest_batch", "script_lr", "run_steps_after"]

TB_PLUGIN = ("PyTorch TensorBoard profiler plugin (pytorch/kineto tb_plugin) recommendations: "
             "GPU utilization < 50% -> larger batch")
LBFGS_DOCS = ("PyTorch docs, torch.optim, 'Taking an optimization step': LBFGS needs to reevaluate the function "
              "multiple times, through a closure; PyTorch C++ docs, 'Second-Order Optimizers': LBFGS is for "
              "full-batch training (not mini-batch)")

LINEAR_DOCS = ("PyTorch docs, torch.nn.Linear: 'Input: (*, H_in) where * means any number of dimensions "
               "including none'")

# Shares of the largest tensor peak that fits (projection.peak_budget_bytes, the one fit rule): from 80% on,
# the batch could grow by at most 1.25x, so there is no headroom to advise; from 50% on, the batch already
# fills the GPU (already_applied) rather than being held back by something else (not_applicable).
NO_HEADROOM_FRAC = 0.8
FILLED_FRAC = 0.5

SNIPPET = """
loader = torch.utils.data.DataLoader(dataset, batch_size={b}, shuffle=True)   # was {b0}
# {contract}
# {lr}
"""


def largest_batch(profile: Profile, budget_bytes: int) -> int:
    """The largest batch whose peak fits ``budget_bytes``; activations and temporaries
    (``other_bytes``) scale with the batch, model state does not.

    Example: peak 1000 = state 400 + activations 500 + other 100 at batch 8 (75/sample),
    budget 2000: (2000 - 400) // 75 = 21.
    """
    b = batch_size(profile) or 0
    led = ledger(profile)
    var = led.act + led.other
    if not b or var <= 0:
        return b
    return int((budget_bytes - (led.peak - var)) // (var / b))


def script_lr(profile: Profile) -> tuple[str | None, float | None]:
    """The first optimizer's class and the learning rate the script set (a scheduler's
    ``initial_lr`` when one changed it), or None where not one number."""
    opts = profile.optimizer.optimizers if profile.optimizer else []
    if not opts:
        return None, None
    h = opts[0].hyperparams or {}
    lr = h.get("initial_lr", h.get("lr"))
    ok = isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0
    return opts[0].class_, float(lr) if ok else None


def run_steps_after(profile: Profile, ctx: AdviceContext, run_steps: int, b: int, nb: int, keep: str) -> int:
    """The run's optimizer steps under the contract. A run the script limits in epochs keeps them
    (keep=samples), each of ceil(dataset / new batch) batches, as the rewritten script will run;
    otherwise ``contract.steps_after`` (steps / k, or the same steps).

    Example: 3 epochs of 40 samples at batch 8 (15 steps) -> batch 16: 3 x ceil(40 / 16) = 9, not 15 / 2.
    """
    spe = steps_per_epoch(profile)
    if keep == "samples" and spe and run_steps and ctx.run_steps is None:
        epochs = run_steps / spe
        if any(lim.kind == "epochs" and abs(lim.value - epochs) < 1e-9 for lim in profile.run_limits):
            n, mb = profile.data.dataset_len, max(profile.steps.micro_batches or 1, 1)
            batches = math.ceil(n / nb) if n else math.ceil(spe * mb * b / nb)
            return max(1, round(epochs * math.ceil(batches / mb)))
    return steps_after(run_steps, b, nb, keep)


def _contract_text(keep: str, b: int, nb: int, run_steps: int, new_steps: int) -> str:
    k = nb / b
    if keep == "steps":
        steps = f"the planned {run_steps:,} steps stay" if run_steps else "the run keeps its number of steps"
        return (f"same steps (--option batch_keep=steps): {steps}, each on {k:.3g}x the samples, so a limit "
                f"in epochs is multiplied by {k:.3g} and an LR schedule in steps keeps its length")
    steps = (f"the planned {run_steps:,} steps become {new_steps:,}" if run_steps
             else f"the run takes {k:.3g}x fewer steps")
    sched = f"{new_steps:,} steps" if run_steps else f"1/{k:.3g} of its steps"
    return (f"same samples, fewer steps (--option batch_keep=samples, the default): {steps}; a limit in "
            f"epochs stays as it is (each epoch has {k:.3g}x fewer steps), a limit in steps and an LR schedule "
            f"in steps (warm-up, decay) span {sched}")


EPOCH_CAP = ("A batch holds at most half the samples of one epoch, so each epoch keeps at least 2 mini-batches; "
             "with one batch per epoch every step trains on the same samples (full-batch gradient descent).")


def _forward_where(profile: Profile) -> str:
    """`` (`model(...)` at train.py:89)``: where the training steps called the model, when recorded."""
    for site in profile.sites:
        if site.what == "forward" and site.role == "train" and site.line:
            return f" (the model's call at {site.file}:{site.line})"
    return ""


def _data_cannot_follow(profile: Profile, ctx: AdviceContext, b: int) -> Advice | None:
    """not_applicable where the script's data, not a setting, fixes the batch: its model input is
    one unbatched sample, or every step ccprof hashed fed the same samples (a batch made once)."""
    d = profile.data
    shape = f"[{', '.join(str(n) for n in d.input_shape)}]" if d.input_shape else ""
    where = _forward_where(profile)
    if d.unbatched_input:
        return make_advice(
            "batch_size", "not_applicable", profile, ctx, confidence="high",
            snippet=f"# the model's input {shape} is one sample: stack samples into a [N, ...] batch first",
            rationale=(f"The trained model's input is one 1-D vector {shape}{where}: a single sample with no batch "
                       f"dimension (it is as long as the model's first nn.Linear's in_features), one per forward "
                       f"call. There is no batch dimension to grow; whatever the script draws to make that vector "
                       f"(such as a sample set reduced to a few statistics) does not reach the model. To train on more "
                       f"samples per step, the script must stack them into a [N, {shape[1:-1]}] batch, a change "
                       f"to the model's input, not a setting."),
            assumptions=["torch.nn.Linear takes inputs of shape (*, in_features): a 1-D input of in_features "
                         "values is one sample with no batch dimension."],
            sources=[LINEAR_DOCS], details={"batch_before": b, "input_shape": d.input_shape})
    if d.same_inputs:
        n = d.distinct_samples or b
        return make_advice(
            "batch_size", "not_applicable", profile, ctx, confidence="high",
            snippet=f"# full-batch: every step trains on the same {n:,} samples; a larger batch needs more data",
            rationale=(f"Full-batch: every one of the {d.input_steps} steps ccprof hashed (warm-up and measurement "
                       f"steps: the dtype, shape and values of the tensors the model was called with"
                       f"{', the first ' + shape if shape else ''}) trained on the same "
                       f"{n:,} samples{where}. The script makes its batch once (hard-coded samples, a tensor built "
                       f"before the loop, a whole graph) and feeds it every step, so a larger batch needs more "
                       f"data, not a setting: the batch already holds all the data the script has. To train on "
                       f"larger batches, give the script more samples and draw each step's batch from them (a "
                       f"Dataset and a DataLoader with batch_size=)."),
            assumptions=["Inputs are compared by dtype, shape and values (every value up to 2^20 of them, else "
                         "2^16 spread evenly); the same values in every hashed step are the same samples."],
            details={"batch_before": b, "same_inputs": True, "distinct_samples": n, "input_steps": d.input_steps})
    return None


@register("batch_size")
def advise_batch_size(profile: Profile, ctx: AdviceContext) -> Advice:
    """Per-sample time at the larger batch, re-costed (fixed per-step work is amortized and GEMMs
    fill more of the GPU), priced under the contract ``keep`` (``samples``: steps / k; ``steps``:
    the same steps), with the learning rate scaled by ``lr_rule``."""
    b = batch_size(profile)
    d = profile.data
    spec = gpu_spec(profile, ctx)
    led = ledger(profile)
    opt_cls, lr = script_lr(profile)
    n_data = profile.data.dataset_len
    full = [o.class_ for o in (profile.optimizer.optimizers if profile.optimizer else [])
            if o.class_ in FULL_BATCH_OPTIMIZERS]
    if full:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="high",
                           snippet="# keep the batch: LBFGS is a full-batch method",
                           rationale=(f"The run trains with {full[0]}, a quasi-Newton optimizer whose step(closure) "
                                      f"reevaluates the loss several times on the same inputs (its inner iterations "
                                      f"and line search): it is meant for full-batch training, the whole training set"
                                      + (f" ({n_data:,} samples)" if n_data else "")
                                      + " at each step, not mini-batches. A larger batch is not a cheaper way to the "
                                        "same result there; the batch is the run's full-batch design, not headroom."),
                           sources=[LBFGS_DOCS], details={"batch_before": b, "optimizer": full[0]})
    if not b:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="low",
                           snippet="# the batch size was not seen", rationale="The batch size was not seen.")
    if n_data and b >= n_data:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="high",
                           snippet=f"# batch {b} already holds the whole training set ({n_data:,} samples)",
                           rationale=(f"The batch of {b} already holds the whole training set ({n_data:,} samples, "
                                      f"len() of the DataLoader's dataset): there is no larger batch."),
                           details={"batch_before": b, "dataset_len": n_data})
    data_bound = _data_cannot_follow(profile, ctx, b)
    if data_bound is not None:
        return data_bound
    if spec.memory_bytes is None:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="low",
                           snippet=f"# batch {b}: the target GPU's memory is unknown",
                           rationale="The target GPU's memory is unknown (CPU run, no catalog entry); pass --gpu.")
    # the one fit rule (the projection's and the report's): its largest tensor peak, inverted to a batch
    budget = peak_budget_bytes(profile, spec)
    fit_now = memory_fit_for(profile, spec)
    fits = min(largest_batch(profile, budget), C.BATCH_MAX_MULTIPLE * b)
    wanted = ctx.option("batch_size", "batch_size")
    factor = ctx.option("batch_size", "factor")
    if wanted is None and factor is not None:
        wanted = max(1, round(b * factor))
    nb = int(wanted) if wanted is not None else fits
    capped = ""
    if n_data and nb > n_data:
        capped = (f" It is capped at the training set's {n_data:,} samples (len() of the DataLoader's dataset): "
                  f"a larger batch would repeat or not exist.")
        nb = n_data
    epoch = d.epoch_samples if not n_data else None
    epoch_capped = False
    if epoch and nb > epoch_cap(epoch):
        cap = epoch_cap(epoch)
        if cap <= b:
            return make_advice("batch_size", "already_applied", profile, ctx, confidence="medium",
                               snippet=f"# batch {b}: one epoch holds {epoch:,} samples; a larger batch needs more data",
                               rationale=(f"One epoch of the script's data holds {epoch:,} samples "
                                          f"({d.epoch_samples_source}): batch {b} already makes it "
                                          f"{epoch // b:,} steps, and a batch above {cap:,} would leave it one "
                                          f"step, that trains every step on the same samples (full-batch). "
                                          f"A larger batch needs more data here, not a setting: give the script "
                                          f"a longer corpus or more samples to grow it."),
                               assumptions=[EPOCH_CAP],
                               details={"batch_before": b, "epoch_samples": epoch, "batch_cap": cap})
        capped = (f" It is capped at {cap:,}, half of the {epoch:,} samples one epoch holds "
                  f"({d.epoch_samples_source}), so an epoch keeps at least 2 steps: one batch of the whole "
                  f"epoch would train every step on the same samples.")
        nb = cap
        epoch_capped = True
    if wanted is not None and nb > max(fits, b):
        capped += (f" Batch {nb} is the one asked for (--option batch_size); ccprof's ledger fits at most "
                   f"{max(fits, b)} on {spec.name} (a peak of at most {fmt_bytes(budget)}).")
    used = led.peak / budget if budget > 0 else math.inf
    if wanted is None and (used >= NO_HEADROOM_FRAC or nb <= b or not fit_now.fits):
        room = (f"at batch {b} the step {fit_now.says()}" if not fit_now.fits else
                f"the peak of {fmt_bytes(led.peak)} is {fmt_pct(used)} of the largest that fits, {fmt_bytes(budget)} "
                f"(at batch {b} the step {fit_now.says()})")
        return make_advice("batch_size", "already_applied" if used >= FILLED_FRAC else "not_applicable", profile, ctx,
                           confidence="medium", snippet=f"# batch {b}: no headroom for a larger one",
                           rationale=f"On {spec.name}, {room}: no headroom for a larger batch.",
                           details={"batch_before": b, "memory_fit": fit_now.as_dict(), "peak_budget_bytes": budget})
    util = profile.gpu.mean_sm_util_pct if profile.gpu else None
    peak_after = int(led.peak + (led.act + led.other) * (nb / b - 1))
    fit_after = memory_fit_for(profile, spec, peak_after)
    k = nb / b
    # a batch k times as large takes k times as long to make: its band too
    bigger = replace(profile, data=replace(d, batch_s=d.batch_s * k,
                                           batch_s_lo=d.batch_s_lo * k if d.batch_s_lo is not None else None,
                                           batch_s_hi=d.batch_s_hi * k if d.batch_s_hi is not None else None,
                                           batch_bytes=int((d.batch_bytes or 0) * k) or None)) \
        if d.batch_s else profile
    rc = recost(profile, ctx, ops=scale_batch(profile.ops, k), profile_after=bigger, spec=spec)
    per_before = rc.before.step_s / b
    per_after = rc.after.step_s / nb
    per_sample_frac = 1 - per_after / per_before if per_before > 0 else 0.0
    keep = ctx.option("batch_size", "keep")
    rule = ctx.option("batch_size", "lr_rule") or lr_rule_for(opt_cls)
    options = BatchSizeOptions(batch_size=nb, keep=keep, lr_rule=rule)
    if per_sample_frac <= 0.005:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="medium",
                           snippet=f"# batch {nb} (from {b}) would not cost less per sample",
                           rationale=(f"Batch {nb} (from {b}) would fit {spec.name}, but the step grows with it: "
                                      f"{fmt_s(rc.before.step_s)} -> {fmt_s(rc.after.step_s)} ({fmt_s(per_before)} -> "
                                      f"{fmt_s(per_after)} per sample): nothing fixed per step left to amortize."),
                           details={"batch_after": nb, "batch_before": b})
    # the contract's run: its steps, each step's time, and their dollars
    price = run_price(profile, ctx)
    ratio = rc.after.step_s / rc.before.step_s if rc.before.step_s else 1.0
    run_steps = price.run_steps
    new_steps = run_steps_after(profile, ctx, run_steps, b, nb, keep) if run_steps else 0
    if run_steps:
        cost_after_frac = ratio * new_steps / run_steps
    else:
        cost_after_frac = ratio / k if keep == "samples" else ratio
    frac = 1 - cost_after_frac
    step_after = price.step_s * ratio
    usd_after = price.usd_run * cost_after_frac
    usd_saved = price.usd_run - usd_after if price.priced else None
    lr_k = lr_factor(rule, k)
    lr_text = describe_rule(rule, k, opt_cls)
    if lr is not None and rule != "none":
        lr_text += f": {lr:.4g} -> {lr * lr_k:.4g}"
    elif rule != "none":
        lr_text += " (the script's learning rate was not seen as one number)"
    if rule == "linear":
        lr_text += " (Goyal et al. reach it by a gradual warm-up over 5 epochs: add one if your schedule has none)"
    contract = _contract_text(keep, b, nb, run_steps, new_steps)
    if price.priced:
        dollars = (f"Dollars under this contract: {new_steps:,} steps x {fmt_s(step_after)} (the larger batch's step) "
                   f"= {fmt_usd(usd_after)}, from {fmt_usd(price.usd_run)}.")
    else:
        dollars = (f"Under this contract the run's GPU time is {fmt_pct(cost_after_frac)} of what it is now "
                   f"(step x {ratio:.3g}" + (f", steps / {k:.3g})." if keep == "samples" else ", same steps)."))
    more = (f" Keeping the steps trains on {k:.3g}x the samples and costs {fmt_pct(-frac)} more GPU time; "
            f"--option batch_keep=samples keeps the samples and saves {fmt_pct(per_sample_frac)}."
            if keep == "steps" and frac < 0 else "")
    rationale = (f"On {spec.name}, at batch {b} the step {fit_now.says()}. Activations and temporaries are "
                 f"{fmt_bytes((led.act + led.other) / b)} per sample, so batch {nb} (from {b}) peaks at "
                 f"{fmt_bytes(peak_after)} and {fit_after.says()}."
                 f"{capped} Re-costed at batch {nb} (every op's batch dimension scaled, the optimizer step and "
                 f"per-step host work unchanged, GEMMs re-tiled): {rc.says()}, i.e. {fmt_s(per_before)} -> "
                 f"{fmt_s(per_after)} per sample ({fmt_pct(per_sample_frac)} less)"
                 + (f"; the GPU averaged {util:.0f}% utilization" if util is not None else "")
                 + f". Contract: {contract}. Learning rate: {lr_text}. {dollars}{more} "
                 "A larger batch changes optimization: check the loss curve against the old run's.")
    snippet = SNIPPET.format(b=nb, b0=b, contract=contract,
                             lr=(f"lr = {lr * lr_k:.4g}   # was {lr:.4g}, " if lr is not None and rule != "none" else "learning rate ")
                             + describe_rule(rule, k, opt_cls))
    return make_advice("batch_size", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                       usd_saved=usd_saved, memory_saved_bytes=led.peak - peak_after, peak_bytes_after=peak_after,
                       step_s_after=None, rationale=rationale, snippet=snippet, options=options,
                       assumptions=["What grows with the batch is read from each op's shapes (tensors of a "
                                    "parameter's shape and the optimizer step stay); the step is costed again.",
                                    ("The run keeps its number of samples: its steps are divided by the batch factor "
                                     f"({k:.3g}), and a schedule in steps with them (a run limited in epochs keeps "
                                     "them, each of ceil(training set / new batch) steps)."
                                     if keep == "samples" else
                                     f"The run keeps its number of steps: it sees {k:.3g}x the samples."),
                                    f"The learning rate follows the {rule} rule ({describe_rule(rule, k, opt_cls)}): "
                                    "it keeps the optimization comparable, not guaranteed equal."]
                                   + ([EPOCH_CAP] if epoch_capped else []),
                       sources=[TB_PLUGIN, GOYAL, MALLADI, *FIT_SOURCES],
                       details={"batch_after": nb, "batch_before": b, "per_sample_s_before": per_before,
                                "per_sample_s_after": per_after, "step_s_before_model": rc.before.step_s,
                                "step_s_after_model": rc.after.step_s,
                                "time_scope": "run" if keep == "samples" else "step",
                                "step_s_ratio": ratio, "keep": keep, "lr_rule": rule, "lr_factor": lr_k,
                                "lr_before": lr, "lr_after": lr * lr_k if lr is not None else None,
                                "run_steps_before": run_steps, "run_steps_after": new_steps,
                                "usd_run_after": usd_after if price.priced else None,
                                "dataset_len": n_data, "memory_fit": fit_now.as_dict(),
                                "memory_fit_after": fit_after.as_dict(), "peak_budget_bytes": budget})
