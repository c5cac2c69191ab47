"""``--verify``: re-run the script with each top tweak applied and measure what it really saved.

The whole of ``--verify`` lives here: parsing the request (``parse_request``), choosing the
tweaks from the one ranking (``pick_tweaks``, ``ccprof.advisors.rank``'s order), running the re-runs
(``verify_script``: ``ccprof.profiler.runner.run_script`` with the runtime applier as its
``apply`` plugin, the same seed, steps and arguments as the baseline), setting aside what the
baseline wrote when a re-run refuses to find it, stopping on Ctrl-C/SIGTERM, and measuring each
re-run against the baseline (``verify``, ``measure``). ``ccprof.api.analyze_script`` calls
``verify_script`` once.

Each tweak runs in its own fresh harness process with the same seed, warm-up and steps as
the baseline (the analysis run itself, seeded when verifying), applied to the live model
at its first forward by ``ccprof.applier.runtime``. The measured step time, peak memory
and loss sit next to the projection in ``Advice.measured``:

- ``time_saved_frac`` = 1 - median tweak step / median baseline step, on the device the
  script ran on (on a CPU, the main thread's CPU time of each step, which another process's
  load moves less than wall time), with the band the two runs' own spread allows. On a CPU
  that ratio says nothing about a GPU (bf16, TF32, kernels differ), so ``usd_saved`` is left
  empty there and the note says so; memory transfers as measured.

Only tweaks a re-run can measure here are picked (``artefacts.tweaks.measurable_here``: TF32 has
no effect on a CPU, a batch-size or DataLoader change needs a DataLoader); the others ranked
among them are listed with why before any re-run starts.
- ``memory_saved_bytes`` = baseline peak - tweak peak (the memory-step ledger of each run).
- ``memory_error_frac`` = (projected peak after - measured peak after) / measured peak after.
- ``time_error_frac`` = projected time_saved_frac - measured time_saved_frac (points).
- ``harmful``: the quality guard (NaN/inf, or a clearly worse loss) with its numbers.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ccprof.artefacts.advice import Advice, AdviceSet, Measured, Verification
from ccprof.artefacts.profile import Finding, Profile
from ccprof.artefacts.tweaks import measurable_here
from ccprof.exit_codes import ExitCode
from ccprof.stats import median_ci

__all__ = ["VERIFY_SEED", "RERUN_PLUGINS", "Rerun", "VerifyOutcome", "parse_request", "cwd_entries",
           "verify_script", "verifiable", "pick_tweaks", "measure", "verify", "failure_line"]

VERIFY_SEED = 0
# what a re-run's harness applies the tweaks with, by name (the profiler imports no applier;
# DESIGN.md: stages only look down)
RERUN_PLUGINS = {"apply": "ccprof.applier.runtime"}


def parse_request(verify: int | str) -> tuple[int | None, bool]:
    """``--verify K|plan`` as ``(k, plan)``: ``"3"`` -> ``(3, False)``, ``"plan"`` -> ``(None, True)``.
    Raises ValueError, in the user's terms, for anything else."""
    text = str(verify)
    if text == "plan":
        return None, True
    if text.isdigit() and int(text) > 0:
        return int(text), False
    raise ValueError(f"--verify takes a number of tweaks (e.g. 3) or 'plan', not {verify!r}")


def _where(baseline: Profile | None) -> tuple[str, bool]:
    if baseline is None:
        return "cuda", True
    return baseline.device.type, bool(baseline.data.dataloader_seen)


def verifiable(advice: Advice, baseline: Profile | None = None) -> bool:
    """A recommended tweak a re-run like ``baseline`` (its device, its DataLoader) can measure."""
    return advice.status == "recommended" and measurable_here(advice.tweak, *_where(baseline))[0]


def pick_tweaks(advice_set: AdviceSet, k: int, baseline: Profile | None = None) -> tuple[list[str], dict[str, str]]:
    """The top ``k`` recommended tweaks a re-run here can measure, in the one ranking's order
    (``ccprof.advisors.rank``: the report's, and ``apply --from --top``'s), and the recommended
    ones ranked among them that it cannot, with why."""
    from ccprof.advisors import rank  # here: the one ranking; the advisors load only on this path

    picked: list[str] = []
    skipped: dict[str, str] = {}
    for a in rank(list(advice_set.advice)):
        if a.status != "recommended" or len(picked) >= k:
            continue
        ok, why = measurable_here(a.tweak, *_where(baseline))
        if ok:
            picked.append(a.tweak)
        else:
            skipped[a.tweak] = why
    return picked, skipped


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
    from ccprof.applier.runtime import quality_guard  # here: the runtime package imports torch

    if run is None:
        return Measured(note="the verify run produced no profile" + note_extra, harmful=False)
    cpu = baseline.device.type != "cuda" and bool(baseline.steps.step_cpu_s) and bool(run.steps.step_cpu_s)
    base_times = list(baseline.steps.step_cpu_s if cpu else baseline.steps.step_s)
    run_times = list(run.steps.step_cpu_s if cpu else run.steps.step_s)
    base_s, run_s = _median(base_times), _median(run_times)
    time_frac = (1.0 - run_s / base_s) if (base_s and run_s) else None
    base_peak, run_peak = baseline.memory.peak_bytes, run.memory.peak_bytes
    mem_saved = (base_peak - run_peak) if (base_peak and run_peak) else None
    # the same steps of both runs: timed steps may go on past --steps, by a different count in each
    n = min(len(baseline.steps.loss), len(run.steps.loss))
    base_loss, run_loss = list(baseline.steps.loss[:n]), list(run.steps.loss[:n])
    loss_delta = run_loss[-1] - base_loss[-1] if n else None
    harmful, guard = quality_guard(base_loss, run_loss)
    notes = [guard]
    # the band: the 95% intervals of the two medians, together
    sb, sr = median_ci(base_times), median_ci(run_times)
    band = (sb.rel_half_width + sr.rel_half_width) if (sb is not None and sr is not None) else None
    clock = "CPU time of the main thread" if cpu else "wall time"
    if time_frac is not None and band is not None:
        if abs(time_frac) <= band:
            notes.append(f"the time difference ({time_frac:+.1%}, {clock}) is within the two runs' own spread "
                         f"(±{band:.1%}): no measurable change here")
        else:
            notes.append(f"time saved {time_frac:+.1%} ±{band:.1%} ({clock} of the step, medians of "
                         f"{sb.n} and {sr.n} steps)")
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
                    note="; ".join(n for n in notes if n) + note_extra,
                    time_band_frac=band, clock="cpu" if cpu else "wall")


def verify(run_one: Callable[[list[str], dict[str, dict]], Profile | None], baseline: Profile,
           advice_set: AdviceSet, k: int | None = None, plan: bool = False,
           on_tweak: Callable[[str], None] | None = None,
           on_start: Callable[[list[str], dict[str, str]], None] | None = None) -> AdviceSet:
    """``advice_set`` with ``measured`` filled for the top ``k`` tweaks (and/or the plan).

    ``run_one(tweaks, options_by_tweak)`` runs the script once with those tweaks applied (each
    tweak's options as the fields of its typed options, ``Advice.options``)
    and returns its Profile (the CLI passes a closure over ``run_script``). ``on_start(picked,
    not_measurable)`` hears, before any re-run, which tweaks will be measured and which ranked
    among them cannot be here, with why.
    """
    by_tweak = advice_set.by_tweak()
    # the dollars a step change moves: the training steps (evaluation between them is apart)
    usd_run = (baseline.cost.usd_run - baseline.cost.usd_eval_run) if baseline.cost else None
    new_advice = list(advice_set.advice)
    picked, not_measurable = pick_tweaks(advice_set, k or 0, baseline)
    if on_start is not None:
        on_start(list(picked), dict(not_measurable))
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
        tweaks = [t for t in advice_set.plan.tweaks if measurable_here(t, *_where(baseline))[0]]
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


# ---------------------------------------------------------------------------- the re-runs
@dataclass(frozen=True)
class Rerun:
    """How the baseline ran; every ``--verify`` re-run runs the same way (seeded)."""
    script: str
    args: tuple[str, ...] = ()
    steps: int = 10
    warmup: int = 3
    timeout_s: float = 600.0
    nproc: int = 1
    stdout: Any = None          # where the script's own output goes (None: discarded)


@dataclass(frozen=True)
class VerifyOutcome:
    """What ``verify_script`` gives back: the advice with ``measured`` filled, or, when Ctrl-C or
    SIGTERM stopped the re-runs, the advice as it was with ``stopped`` and a sentence why."""
    advice: AdviceSet
    stopped: ExitCode | None = None
    message: str | None = None


class _StopVerify(BaseException):
    """A --verify re-run was stopped by Ctrl-C or SIGTERM: stop verifying (BaseException, so
    the verify stage does not take it for a failure of its own)."""

    def __init__(self, code: ExitCode):
        super().__init__(code)
        self.code = code


def cwd_entries() -> set[str]:
    """The names in the current folder (taken before the baseline: what it made is set aside)."""
    try:
        return set(os.listdir("."))
    except OSError:
        return set()


def verify_script(rerun: Rerun, baseline: Profile, advice_set: AdviceSet, request: int | str, *,
                  out_dir: str | Path, before_baseline: set[str],
                  on_verify: Callable[[str], None] | None = None) -> VerifyOutcome:
    """Re-run ``rerun.script`` once per top tweak (or once with the plan) and measure each.

    ``request``: ``--verify``'s value (``parse_request``). ``before_baseline``: ``cwd_entries()``
    taken before the baseline ran (what the baseline wrote into the cwd is set aside under
    ``out_dir/verify-stash`` when a re-run refuses to find it, then put back). ``on_verify`` hears
    progress lines. Example::

        out = verify_script(Rerun("train.py", steps=10), profile, advice, 3,
                            out_dir="ccprof-report", before_baseline=before)
        out.advice.by_tweak()["checkpointing"].measured.memory_saved_bytes
    """
    from ccprof.profiler.runner import run_script  # here: keeps `import ccprof.applier.verify` light

    k, plan = parse_request(request)
    out = Path(out_dir)
    made = sorted(cwd_entries() - before_baseline - {out.resolve().name, "__pycache__"})

    def once(tweaks: list[str], options: dict[str, dict]) -> Profile | None:
        res = run_script(rerun.script, list(rerun.args), steps=rerun.steps, warmup=rerun.warmup,
                         timeout_s=rerun.timeout_s,
                         stdout=rerun.stdout if rerun.stdout is not None else subprocess.DEVNULL,
                         nproc=rerun.nproc, seed=VERIFY_SEED, tweak=tweaks, tweak_options=options,
                         plugins=RERUN_PLUGINS)
        if res.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            raise _StopVerify(res.exit_code)     # Ctrl-C / SIGTERM ends --verify, not one re-run
        return res.profile

    def run_one(tweaks: list[str], options: dict[str, dict]) -> Profile | None:
        prof = once(tweaks, options)
        blocked = _blocked_by(prof, made)
        if blocked:
            # the baseline left an output the script refuses to find (run_clm's "Output
            # directory ... already exists"): set the baseline's aside, re-run, put it back
            with _set_aside(blocked, out / "verify-stash", "+".join(tweaks)):
                prof = once(tweaks, options)
            if prof is not None:
                prof = replace(prof, findings=[*prof.findings, Finding(
                    "verify", f"re-run after setting aside what the baseline wrote: {', '.join(blocked)} "
                              f"(kept in {out / 'verify-stash'}, restored after)")])
        return prof

    def on_start(picked: list[str], skipped: dict[str, str]) -> None:
        if on_verify is None:
            return
        if skipped:
            on_verify("--verify: not measurable here: " + "; ".join(f"{t} ({why})" for t, why in skipped.items()))
        if not plan:
            on_verify(f"--verify: {len(picked)} re-run(s): {', '.join(picked) or 'none'}")

    try:
        verified = verify(run_one, baseline, advice_set, k=k, plan=plan, on_start=on_start,
                          on_tweak=(lambda t: on_verify(f"verifying {t} ...")) if on_verify else None)
    except _StopVerify as stop:
        return VerifyOutcome(advice_set, stop.code,
                             "--verify stopped by " + ("Ctrl-C" if stop.code == ExitCode.INTERRUPTED else "SIGTERM")
                             + "; the baseline's profile, advice and report are written, unverified")
    return VerifyOutcome(verified)


def _blocked_by(prof: Profile | None, made: list[str]) -> list[str]:
    """Entries the baseline created that a failed re-run's error names as already existing."""
    e = prof.error if prof is not None else None
    if e is None or not made or (prof is not None and prof.steps.measured):
        return []
    text = f"{e.message}\n{e.traceback or ''}".lower()
    if "exist" not in text:
        return []
    return [m for m in made if m.lower() in text]


class _set_aside:
    """Move ``names`` (in the cwd) into ``stash/<label>/`` for a block, then move them back; what
    the block itself wrote under those names is kept next to them as ``<name>.verify-<label>``.
    Nothing is deleted."""

    def __init__(self, names: list[str], stash: Path, label: str):
        self.names, self.dir = list(names), Path(stash) / label

    def __enter__(self) -> "_set_aside":
        self.dir.mkdir(parents=True, exist_ok=True)
        for n in self.names:
            shutil.move(n, str(self.dir / n))
        return self

    def __exit__(self, *exc: Any) -> None:
        for n in self.names:
            if Path(n).exists():
                shutil.move(n, str(self.dir / f"{n}.verify-{self.dir.name}"))
            shutil.move(str(self.dir / n), n)
