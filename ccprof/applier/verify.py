"""``--verify``: re-run the script with each top tweak applied and measure what it really saved.

Each tweak runs in its own fresh harness process with the same seed, warm-up and steps as
the baseline (the analysis run itself, seeded when verifying), applied to the live model
at its first forward by ``ccprof.applier.runtime``. The measured step time, peak memory
and loss sit next to the projection in ``Advice.measured``:

- ``time_saved_frac`` = 1 - median tweak step / median baseline step, on the device the
  script ran on. On a CPU that ratio says nothing about a GPU (bf16, TF32, kernels differ),
  so ``usd_saved`` is left empty there and the note says so; memory transfers as measured.
- ``memory_saved_bytes`` = baseline peak - tweak peak (the memory-step ledger of each run).
- ``memory_error_frac`` = (projected peak after - measured peak after) / measured peak after.
- ``time_error_frac`` = projected time_saved_frac - measured time_saved_frac (points).
- ``harmful``: the quality guard (NaN/inf, or a clearly worse loss) with its numbers.
"""
from __future__ import annotations

import os
import re
import statistics
from dataclasses import replace
from typing import Any, Callable

from ccprof.artefacts.advice import Advice, AdviceSet, Measured, Verification
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS

__all__ = ["VERIFY_SEED", "NOISE_SIGMAS", "NOT_MEASURABLE", "step_noise_frac", "verifiable", "pick_tweaks",
           "measure", "verify", "failure_line"]

# Tweaks no re-run of a few steps can measure, and why (said for those ranked within the top K;
# the catalog says, ccprof/artefacts/tweaks.py)
NOT_MEASURABLE = {t: i.no_runtime for t, i in TWEAKS.items() if not i.runtime}

VERIFY_SEED = 0
# A measured time difference smaller than this many robust standard deviations of the
# baseline's own step times is reported as noise (2 sigma: ~95% of a normal spread).
NOISE_SIGMAS = 2.0


def step_noise_frac(step_s: list[float]) -> float | None:
    """Robust relative spread of step times: 1.4826 x median absolute deviation / median."""
    if len(step_s) < 3:
        return None
    med = statistics.median(step_s)
    mad = statistics.median(abs(x - med) for x in step_s)
    return 1.4826 * mad / med if med else None


def verifiable(advice: Advice) -> bool:
    return advice.status == "recommended" and advice.tweak in TWEAKS and TWEAKS[advice.tweak].runtime


def pick_tweaks(advice_set: AdviceSet, k: int) -> list[str]:
    """The top ``k`` recommended tweaks (in ranking order) that can be applied to a live run."""
    return [a.tweak for a in advice_set.advice if verifiable(a)][:k]


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def failure_line(run: Profile | None) -> str | None:
    """The re-run's own error, as ``file:line: message``; None when it finished."""
    if run is None:
        return "the re-run produced no profile (it stopped before its first training step)"
    e = run.error
    if e is None:
        return None
    msg = e.message
    if e.file and e.line:
        msg = re.sub(r"\s*\([^()]*:\d+\)$", "", msg)           # the location goes in front
        return f"{os.path.basename(e.file)}:{e.line}: {msg}"
    return msg


def _options_for(advice: Advice | None) -> dict[str, Any]:
    """The fields of what ``advice`` projected (its typed options), for the re-run's spec: the
    runtime applier applies exactly those (LoRA's rank and targets, the micro-batch count ...)."""
    return advice.tweak_options().to_dict() if advice is not None else {}


def measure(baseline: Profile, run: Profile | None, projected_frac: float | None,
            projected_peak_after: int | None, usd_run: float | None, note_extra: str = "") -> Measured:
    """Measured effects of one verify run against the baseline profile."""
    from ccprof.applier.runtime import quality_guard   # here: the runtime package imports torch

    if run is None:
        return Measured(note="the verify run produced no profile" + note_extra, harmful=False)
    base_s, run_s = _median(baseline.steps.step_s), _median(run.steps.step_s)
    time_frac = (1.0 - run_s / base_s) if (base_s and run_s) else None
    base_peak, run_peak = baseline.memory.peak_bytes, run.memory.peak_bytes
    mem_saved = (base_peak - run_peak) if (base_peak and run_peak) else None
    loss_delta = None
    if baseline.steps.loss and run.steps.loss:
        loss_delta = run.steps.loss[-1] - baseline.steps.loss[-1]
    harmful, guard = quality_guard(list(baseline.steps.loss), list(run.steps.loss))
    notes = [guard]
    noise = step_noise_frac(baseline.steps.step_s)
    if time_frac is not None and noise is not None and abs(time_frac) < NOISE_SIGMAS * noise:
        notes.append(f"the time difference ({time_frac:+.1%}) is within the baseline's step-to-step "
                     f"noise (±{NOISE_SIGMAS * noise:.1%}): measure more steps to tell")
    usd = None
    if time_frac is not None and usd_run is not None and baseline.device.type == "cuda":
        usd = time_frac * usd_run
    elif baseline.device.type != "cuda":
        notes.append(f"time measured on {baseline.device.type.upper()}, which does not carry over to a GPU; "
                     "memory does")
    mem_err = None
    if projected_peak_after and run_peak:
        mem_err = (projected_peak_after - run_peak) / run_peak
    time_err = (projected_frac - time_frac) if (projected_frac is not None and time_frac is not None) else None
    if run.error is not None:
        notes.append(f"the run did not finish cleanly: {run.error.message}")
    for entry in run.applied:
        if not entry.get("applied"):
            notes.append(f"{entry['tweak']} not applied: {entry.get('reason')}")
        for n in entry.get("notes", []) or []:
            notes.append(f"{entry['tweak']}: {n}")
    return Measured(time_saved_frac=time_frac, memory_saved_bytes=mem_saved, usd_saved=usd,
                    loss_delta=loss_delta, step_s=run_s, peak_bytes=run_peak or None,
                    time_error_frac=time_err, memory_error_frac=mem_err, harmful=harmful,
                    note="; ".join(n for n in notes if n) + note_extra)


def verify(run_one: Callable[[list[str], dict[str, dict]], Profile | None], baseline: Profile,
           advice_set: AdviceSet, k: int | None = None, plan: bool = False,
           on_tweak: Callable[[str], None] | None = None) -> AdviceSet:
    """``advice_set`` with ``measured`` filled for the top ``k`` tweaks (and/or the plan).

    ``run_one(tweaks, options_by_tweak)`` runs the script once with those tweaks applied (each
    tweak's options as the fields of its typed options, ``Advice.options``)
    and returns its Profile (the CLI passes a closure over ``run_script``).
    """
    by_tweak = advice_set.by_tweak()
    # the dollars a step change moves: the training steps (evaluation between them is apart)
    usd_run = (baseline.cost.usd_run - baseline.cost.usd_eval_run) if baseline.cost else None
    new_advice = list(advice_set.advice)
    picked = pick_tweaks(advice_set, k or 0)
    not_measurable: dict[str, str] = {}
    if picked or k:
        # recommended tweaks ranked above the last one verified (or within the top k) that no
        # re-run can measure: said plainly, with why
        recs = [a for a in advice_set.advice if a.status == "recommended"]
        last = max((i for i, a in enumerate(recs) if a.tweak in picked), default=(k or 0) - 1)
        for a in recs[:max(last + 1, k or 0)]:
            if not verifiable(a):
                not_measurable[a.tweak] = NOT_MEASURABLE.get(a.tweak, "ccprof cannot apply it to a running script")
    failed: dict[str, str] = {}
    for tweak in picked:
        if on_tweak:
            on_tweak(tweak)
        adv = by_tweak[tweak]
        prof = run_one([tweak], {tweak: _options_for(adv)})
        applied = [e for e in (prof.applied if prof else []) if e.get("tweak") == tweak]
        err = failure_line(prof)
        if prof is not None and applied and not applied[0].get("applied"):
            m = Measured(note=f"could not apply at run time: {applied[0].get('reason')}", failed=True,
                         error=f"not applied: {applied[0].get('reason')}")
            failed[tweak] = m.error
        elif err is not None and (prof is None or not prof.steps.measured):
            m = Measured(note=f"the re-run with {tweak} failed: {err}", failed=True, error=err)
            failed[tweak] = err
        else:
            m = measure(baseline, prof, adv.projected.time_saved_frac, adv.projected.peak_bytes_after, usd_run)
        new_advice = [replace(a, measured=m) if a.tweak == tweak else a for a in new_advice]
    new_plan = advice_set.plan
    if plan:
        tweaks = [t for t in advice_set.plan.tweaks if t in TWEAKS and TWEAKS[t].runtime]
        skipped = [t for t in advice_set.plan.tweaks if t not in tweaks]
        if tweaks:
            if on_tweak:
                on_tweak("plan: " + " + ".join(tweaks))
            prof = run_one(tweaks, {t: _options_for(by_tweak.get(t)) for t in tweaks})
            before = advice_set.plan.step_s_before
            frac = (1 - advice_set.plan.step_s_after / before) if before else None
            extra = f"; not applied at run time: {', '.join(skipped)}" if skipped else ""
            err = failure_line(prof)
            if err is not None and (prof is None or not prof.steps.measured):
                m = Measured(note=f"the re-run with the plan failed: {err}{extra}", failed=True, error=err)
                failed["plan"] = err
            else:
                m = measure(baseline, prof, frac, advice_set.plan.peak_bytes_after or None, usd_run, extra)
            picked = picked + ["plan"]
        else:
            m = Measured(note="no tweak of the plan can be applied to a running script")
            not_measurable["plan"] = "no tweak of the plan can be applied to a running script"
        new_plan = replace(advice_set.plan, measured=m)
    summary = Verification(requested="plan" if plan else str(k or 0), measured=list(picked), failed=failed,
                           not_measurable=not_measurable)
    return replace(advice_set, advice=new_advice, plan=new_plan, verification=summary)
