"""Shared machinery for the advisors: the price of the planned run, the target GPU, re-costing
a tweak through the hardware stage's cost model, the memory ledger at peak, formatting, and
the Advice builder."""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from typing import Any

from ccprof import units
from ccprof.advisors import constants as C
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice, Projected
from ccprof.artefacts.profile import GpuProjection, Profile
from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, options_for
from ccprof.hardware import DEFAULT_GPU, GpuSpec, Policy, StepCost, load_catalog, policy_for, user_catalog_path
from ccprof.hardware import target_gpu as hardware_target_gpu
from ccprof.hardware.projection import fits_memory, step_cost_for

# Tweaks whose time saving is a share of the whole run (fewer steps), not of each step.


# ---------------------------------------------------------------------------- formatting
# The prose forms of ccprof.units' formatters (one implementation with the report): a
# missing figure reads "unknown" in a sentence, and percents drop the decimal from 10% up.
def fmt_bytes(n: float | int | None) -> str:
    """1288490188 -> '1.20 GiB'."""
    return units.fmt_bytes(n, missing="unknown")


def fmt_pct(frac: float | None) -> str:
    """0.613 -> '61%'; 0.042 -> '4.2%'."""
    return units.fmt_pct(frac, digits=None, missing="unknown")


def fmt_usd(usd: float | None) -> str:
    """12.3456 -> '$12.35'; 0.000123 -> '$0.00012'."""
    return units.fmt_usd(usd, missing="unknown")


def fmt_s(s: float | None) -> str:
    """0.0123 -> '12.3 ms'; 5400 -> '1.50 h'."""
    return units.fmt_s(s, missing="unknown")


def fmt_num(n: float | None) -> str:
    """12_345_678 -> '12.3M'; 6.7e9 -> '6.70B'."""
    return units.fmt_count(n, missing="unknown")


def fmt_change(frac: float) -> str:
    """0.25 -> '25.0% less time per step'; -0.04 -> '4.0% more time per step'."""
    if abs(frac) < 0.0005:
        return "no change in time per step"
    return f"{fmt_pct(abs(frac))} {'less' if frac > 0 else 'more'} time per step"


# ---------------------------------------------------------------------------- price and run
@dataclass(frozen=True)
class RunPrice:
    """The planned run on the target GPU, as the advisors price it."""
    gpu: str
    step_s: float
    run_steps: int
    usd_per_hour: float
    usd_run: float
    priced: bool
    note: str
    # half the width of the step's projected band (what the profile measured rather than
    # counted: ccprof.hardware.host), as a share of the step; 0 when the step is all counts
    noise_frac: float = 0.0


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def target_gpu(profile: Profile, ctx: AdviceContext) -> str:
    """The target GPU's catalog id, by the one resolver (``ccprof.hardware.target_gpu``: ``ctx.gpu``,
    then the GPU the profile was costed on, the GPU in use, the default)."""
    return hardware_target_gpu(profile, catalog_entries(ctx), ctx.gpu)[0]


def target_projection(profile: Profile, ctx: AdviceContext) -> GpuProjection | None:
    gpu = target_gpu(profile, ctx)
    if profile.projection and gpu in profile.projection:
        return profile.projection[gpu]
    return None


def run_price(profile: Profile, ctx: AdviceContext) -> RunPrice:
    """Step time, planned steps and dollars of the run, from ``profile.cost`` and overrides."""
    gpu = target_gpu(profile, ctx)
    cost = profile.cost
    proj = target_projection(profile, ctx)
    if cost is not None and cost.step_s > 0:
        step_s, src = cost.step_s, f"the hardware stage's {cost.gpu} step time"
    elif proj is not None and (proj.measured_step_s or proj.step_s):
        step_s, src = float(proj.measured_step_s or proj.step_s), f"the {gpu} projection"
    else:
        step_s, src = mean(profile.steps.step_s), f"the measured {profile.device.type} step time"
    run_steps = ctx.run_steps or (cost.run_steps if cost is not None else 0) or 0
    usd_per_hour = ctx.usd_per_hour if ctx.usd_per_hour is not None else (cost.usd_per_hour if cost else 0.0)
    priced = usd_per_hour > 0 and run_steps > 0
    if cost is not None and ctx.run_steps is None and ctx.usd_per_hour is None and cost.usd_run > 0:
        usd_run = cost.usd_run - cost.usd_eval_run     # the training steps: what a step tweak changes
    else:
        usd_run = step_s * run_steps * usd_per_hour / 3600.0
    if priced:
        note = (f"Dollars: {run_steps:,} planned steps x {fmt_s(step_s)} ({src}) at "
                f"${usd_per_hour:.2f}/h on {gpu or 'the target GPU'} = {fmt_usd(usd_run)}.")
    else:
        why = "no price was attached to this profile" if usd_per_hour <= 0 else "the planned run size is unknown (pass --total-steps)"
        note = f"Dollars are $0 because {why}; time and memory still hold."
        usd_run = 0.0
    noise = 0.0
    if proj is not None and proj.step_s and proj.step_s_lo is not None and proj.step_s_hi is not None:
        noise = max(proj.step_s_hi - proj.step_s, proj.step_s - proj.step_s_lo, 0.0) / proj.step_s
    return RunPrice(gpu, step_s, int(run_steps), float(usd_per_hour), float(usd_run), priced, note,
                    noise_frac=noise)


# ---------------------------------------------------------------------------- target GPU and re-costing
def catalog_entries(ctx: AdviceContext) -> dict[str, GpuSpec]:
    """The hardware catalog in use as {gpu_id: ccprof.hardware.GpuSpec}."""
    if ctx.catalog:
        return dict(ctx.catalog)
    return dict(_default_catalog(_user_catalog_key()))


def _user_catalog_key() -> tuple[str, float]:
    """What the default catalog depends on: the user's file and its modification time."""
    path = user_catalog_path()
    try:
        return str(path or ""), (path.stat().st_mtime if path is not None else 0.0)
    except OSError:
        return str(path), -1.0


@functools.lru_cache(maxsize=4)
def _default_catalog(key: tuple[str, float]) -> dict[str, GpuSpec]:
    """load_catalog() once per user file version: the advisors ask for the target GPU often."""
    return load_catalog()


def gpu_spec(profile: Profile, ctx: AdviceContext) -> GpuSpec:
    """The target GPU's catalog entry (``--gpu``, the GPU in use, else the stated default), with
    ``ctx.device_memory_bytes`` as its memory when given; a GPU outside the catalog that the
    profile ran on keeps its own name and memory on the default's figures."""
    gid = target_gpu(profile, ctx)
    cat = catalog_entries(ctx)
    spec = cat.get(gid) or cat.get(DEFAULT_GPU) or next(iter(cat.values()))
    unmatched_gpu = (profile.device.type == "cuda" and not profile.device.catalog_id and not ctx.gpu
                     and not (profile.cost is not None and profile.cost.gpu))
    if ctx.device_memory_bytes:
        spec = replace(spec, memory_bytes=int(ctx.device_memory_bytes))
    elif unmatched_gpu and profile.device.memory_bytes:
        spec = replace(spec, name=profile.device.name or spec.name, memory_bytes=int(profile.device.memory_bytes))
    return spec


def capability(spec: GpuSpec) -> float | None:
    """CUDA compute capability from the catalog's arch (``"Hopper (sm_90)"`` -> 9.0), or None."""
    m = re.search(r"sm_(\d)(\d)", spec.arch or "")
    return float(f"{m.group(1)}.{m.group(2)}") if m else None


def capability_at_least(spec: GpuSpec, major: int) -> bool:
    cap = capability(spec)
    return cap is not None and cap >= major


@dataclass(frozen=True)
class Recost:
    """A tweak's step on the target GPU: the step as the script runs it, and with the tweak,
    both from the one cost model (``ccprof.hardware.step.cost_step``)."""
    spec: GpuSpec
    before: StepCost
    after: StepCost

    @property
    def frac(self) -> float:
        """Share of the step time the tweak saves (negative: it costs time)."""
        b = self.before.step_s
        return 1.0 - self.after.step_s / b if b > 0 else 0.0

    def says(self) -> str:
        """'12.3 ms -> 8.1 ms per step on NVIDIA A100 SXM4 80GB (ccprof's cost model; ...)'."""
        return (f"{fmt_s(self.before.step_s)} -> {fmt_s(self.after.step_s)} per step on {self.spec.name} "
                f"(ccprof's cost model: {self.after.policy.describe()})")


def base_policy(profile: Profile, spec: GpuSpec) -> Policy:
    return policy_for(profile, spec)


def recost(profile: Profile, ctx: AdviceContext, *, policy: dict[str, Any] | None = None, ops: Any = None,
           extra: Any = (), profile_after: Profile | None = None, spec: GpuSpec | None = None) -> Recost:
    """The step before and after a tweak on the target GPU.

    ``policy``: Policy fields the tweak changes (``{"autocast": "bfloat16"}``); ``ops``: the edited
    op list (``ccprof.hardware.edits``); ``extra``: kernels it adds; ``profile_after``: a profile
    whose data or host side the tweak changed (the DataLoader's workers).
    """
    spec = spec or gpu_spec(profile, ctx)
    base = base_policy(profile, spec)
    before = step_cost_for(profile, spec, base)
    after_policy = replace(base, **(policy or {}))
    kw: dict[str, Any] = {"extra_kernels": tuple(extra)}
    if ops is not None:
        kw["ops"] = ops
    after = step_cost_for(profile_after or profile, spec, after_policy, **kw)
    return Recost(spec, before, after)


# ---------------------------------------------------------------------------- memory ledger
@dataclass(frozen=True)
class Ledger:
    peak: int
    params: int
    grads: int
    opt: int
    act: int
    other: int
    grads_at_peak: int                    # the share of gradients resident at the peak
    opt_bytes_per_param: float
    note: str


def ledger(profile: Profile) -> Ledger:
    """The memory ledger, with how much of the gradients the peak holds.

    When params + grads + optimizer state + activations exceed the peak, not all were resident
    together (``zero_grad(set_to_none=True)`` frees gradients before the forward): the resident
    gradients are what the peak leaves after the rest.
    """
    m = profile.memory
    four = m.params_bytes + m.grads_bytes + m.optimizer_state_bytes + m.activations_bytes
    if four <= m.peak_bytes * 1.02:
        g, note = m.grads_bytes, "gradients are resident at the peak"
    else:
        g = max(0, m.peak_bytes - (m.params_bytes + m.optimizer_state_bytes + m.activations_bytes))
        note = (f"gradients are only partly resident at the peak ({fmt_bytes(g)} of "
                f"{fmt_bytes(m.grads_bytes)})")
    # per parameter of the optimizers that hold state: one that has not stepped yet (the next
    # layer's in a layer-by-layer run, a GAN's G before its turn) holds none to divide
    n_opt = sum(o.param_count for o in profile.optimizer.optimizers if o.state_bytes) if profile.optimizer else 0
    opt_pp = (m.optimizer_state_bytes / n_opt) if n_opt else (
        m.optimizer_state_bytes / profile.model.trainable_params if profile.model.trainable_params else 0.0)
    return Ledger(m.peak_bytes, m.params_bytes, m.grads_bytes, m.optimizer_state_bytes,
                  m.activations_bytes, m.other_bytes, g, opt_pp, note)


def batch_size(profile: Profile) -> int | None:
    """Samples per optimizer step divided by micro-batches, or the DataLoader batch size."""
    if profile.data.batch_size:
        return int(profile.data.batch_size)
    s = profile.steps
    if s.samples_per_step:
        return max(1, s.samples_per_step // max(1, s.micro_batches))
    return None


# ---------------------------------------------------------------------------- model structure
def linear_modules(profile: Profile) -> list:
    """ModuleStats of the model's nn.Linear layers (by ``model.linear_names``)."""
    names = set(profile.model.linear_names)
    return [m for m in profile.model.modules if m.name in names]


def head_names(profile: Profile) -> set[str]:
    """Output layers LoRA leaves alone (peft's 'all-linear' excludes the output layer)."""
    lin = profile.model.linear_names
    heads = {n for n in lin if n.split(".")[-1] in ("lm_head", "head", "classifier", "score", "output", "fc_out")}
    if not heads and lin:
        last = lin[-1]
        vocab = profile.model.hf_config.get("vocab_size")
        if vocab and "lm_head" in last:
            heads.add(last)
    return heads


def forward_flops(profile: Profile, m: Any) -> float:
    """A module's forward FLOPs; when the profiler left them 0, its step FLOPs times the
    model's forward share (flops.forward / flops.per_step)."""
    if m.forward_flops:
        return float(m.forward_flops)
    f = profile.flops
    return m.flops * (f.forward / f.per_step) if f.per_step and f.forward else m.flops / 3.0


def module_map(profile: Profile) -> dict[str, Any]:
    return {m.name: m for m in profile.model.modules}


# ---------------------------------------------------------------------------- the builder
def make_advice(tweak: str, status: str, profile: Profile, ctx: AdviceContext, *,
                rationale: str, snippet: str, confidence: str = "medium",
                time_saved_frac: float = 0.0, memory_saved_bytes: int = 0,
                usd_saved: float | None = None, risk: str | None = None,
                assumptions: list[str] | None = None, sources: list[str] | None = None,
                details: dict[str, Any] | None = None, peak_bytes_after: int | None = None,
                step_s_after: float | None = None, cost_saved_frac: float | None = None,
                options: TweakOptions | None = None) -> Advice:
    """An Advice with dollars and 'after' figures filled from the run's price.

    Step-scoped savings change the step time; run-scoped ones (the catalog's ``run_scoped``) cut steps, so
    ``step_s_after`` stays and the saving is a share of the run's dollars.
    A "recommended" advice whose share of the run's cost saved is not above both the
    projection's band (``RunPrice.noise_frac``) and ``constants.MIN_SAVING_FRAC`` becomes
    ``"no_saving"``, its figures kept in ``details["no_saving"]`` (unless it frees memory a run
    that does not fit needs).
    ``cost_saved_frac`` is the share of the run's GPU cost saved: by default ``usd_saved`` /
    the run's dollars when both are known, else ``time_saved_frac`` (one GPU, one price: time
    is cost). ``expected_frac`` weighs it by confidence; ``rank`` orders by it.
    ``options``: what was projected, as the tweak's typed options (``LoraOptions(rank=8,
    targets=[...])``); --verify and ``ccprof apply --from`` apply exactly these. Kept for
    recommended advice only.
    """
    price = run_price(profile, ctx)
    d = dict(details or {})
    d.setdefault("time_scope", "run" if TWEAKS[tweak].run_scoped else "step")
    d.setdefault("gpu", price.gpu)
    explicit_usd = usd_saved is not None and status == "recommended"
    if status == "recommended":
        share = cost_saved_frac
        if share is None:
            share = (usd_saved / price.usd_run if explicit_usd and price.priced and price.usd_run > 0
                     else time_saved_frac)
        gate = max(price.noise_frac, C.MIN_SAVING_FRAC)
        # a tweak that frees memory on a run that does not fit the target (90% of its memory,
        # or the device the user named) is needed, whatever it costs
        needed = memory_saved_bytes > 0 and not fits_memory(profile.memory.peak_bytes or 0, gpu_spec(profile, ctx))
        if share <= gate and not needed:
            d["no_saving"] = {"cost_saved_frac": share, "time_saved_frac": time_saved_frac,
                              "memory_saved_bytes": int(memory_saved_bytes), "band_frac": price.noise_frac,
                              "threshold_frac": gate}
            status = "no_saving"
            why = (f"the projection's own band, ±{fmt_pct(price.noise_frac)}" if price.noise_frac > C.MIN_SAVING_FRAC
                   else f"ccprof's {fmt_pct(C.MIN_SAVING_FRAC)} threshold")
            if share <= -0.0005:
                head = f"No saving: it would add {fmt_pct(-share)} to the run's GPU cost"
            elif share < 0.0005:
                head = "No projected saving of the run's GPU cost"
            else:
                head = f"No measurable saving: {fmt_pct(share)} of the run's GPU cost, within {why}"
            freed = f" (it frees {fmt_bytes(memory_saved_bytes)}, which this run does not need)" \
                if memory_saved_bytes > 0 else ""
            rationale = f"{head}{freed}. " + rationale
    if status != "recommended":
        time_saved_frac, memory_saved_bytes, usd_saved = 0.0, 0, 0.0
        peak_bytes_after = step_s_after = None
    if usd_saved is None:
        usd_saved = price.usd_run * time_saved_frac
    if cost_saved_frac is None:
        if explicit_usd and price.priced and price.usd_run > 0:
            cost_saved_frac = usd_saved / price.usd_run
        else:
            cost_saved_frac = time_saved_frac
    if status != "recommended":
        cost_saved_frac = 0.0
    if not price.priced:
        usd_saved = 0.0
    weight = C.CONFIDENCE_WEIGHT.get(confidence, C.CONFIDENCE_WEIGHT["low"])
    d.setdefault("confidence_weight", weight)
    d.setdefault("saving_band_frac", price.noise_frac)
    if status == "recommended":
        if step_s_after is None and price.step_s and d.get("step_s_ratio"):
            step_s_after = price.step_s * float(d["step_s_ratio"])     # the step itself changed (batch size)
        if step_s_after is None and price.step_s:
            step_s_after = price.step_s * (1 - time_saved_frac) if d["time_scope"] == "step" else price.step_s
        if peak_bytes_after is None and profile.memory.peak_bytes:
            peak_bytes_after = int(profile.memory.peak_bytes - memory_saved_bytes)
    text = rationale.strip()
    if status == "recommended":
        text += " " + price.note
    return Advice(
        tweak=tweak, status=status, title=TWEAKS[tweak].title,
        projected=Projected(time_saved_frac=float(round(time_saved_frac, 6)),
                            memory_saved_bytes=int(memory_saved_bytes),
                            usd_saved=float(round(usd_saved, 4)),
                            step_s_after=step_s_after, peak_bytes_after=peak_bytes_after,
                            cost_saved_frac=float(round(cost_saved_frac, 6)),
                            # a cost is expected in full; only savings are discounted
                            expected_frac=float(round(cost_saved_frac * (weight if cost_saved_frac > 0 else 1.0), 6))),
        confidence=confidence, risk=risk or TWEAKS[tweak].risk, rationale=text,
        assumptions=list(assumptions or []), sources=list(sources or []), snippet=snippet.strip() + "\n",
        auto_apply=TWEAKS[tweak].auto_apply, details=d,
        options=options_for(tweak, options).to_dict() if status == "recommended" else {})


def clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x)) if math.isfinite(x) else lo
