"""Shared machinery for the advisors: the price of the planned run, the target GPU, re-costing
a tweak through the hardware stage's cost model, the memory ledger at peak, formatting, and
the Advice builder."""
from __future__ import annotations

import functools
import math
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ccprof import units
from ccprof.advisors import constants as C
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice, Projected
from ccprof.artefacts.profile import GpuProjection, Profile
from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, options_for
from ccprof.hardware import DEFAULT_GPU, GpuSpec, Policy, StepCost, load_catalog, policy_for, user_catalog_path
from ccprof.hardware import target_gpu as hardware_target_gpu
from ccprof.hardware.inputs import step_inputs
from ccprof.hardware.projection import memory_fit_for, pipelined_step, step_cost_for

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
    before = _scheduled(profile, spec, base, step_cost_for(profile, spec, base))
    after_policy = replace(base, **(policy or {}))
    kw: dict[str, Any] = {"extra_kernels": tuple(extra)}
    if ops is not None:
        kw["ops"] = ops
    after_profile = profile_after or profile
    after = _scheduled(after_profile, spec, after_policy, step_cost_for(after_profile, spec, after_policy, **kw),
                       ops=ops, extra=tuple(extra))
    return Recost(spec, before, after)


def _scheduled(profile: Profile, spec: GpuSpec, policy: Policy, sc: StepCost, *, ops: Any = None,
               extra: tuple = ()) -> StepCost:
    """``sc`` (the profile's own rank's step) as its pipeline schedules it, when the profile traced a
    pipeline: every rank's rows under ``policy``, the tweak's edited rows and added kernels on the
    profile's own rank, the slowest rank stretched by the bubble (:func:`ccprof.hardware.pipeline.pipeline_step`,
    as the projection schedules it: :func:`ccprof.hardware.projection.pipelined_step`). Without a
    pipeline, ``sc`` itself."""
    if step_inputs(profile).pipeline is None:
        return sc
    run = pipelined_step(profile, spec, policy, ops=ops, extra_kernels=extra)
    return replace(sc, step_s=run.step_s, phase_s=run.phase_s)


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


# ---------------------------------------------------------------------------- a tweak the script has, off
def turn_on(profile: Profile, tweak: str) -> dict[str, Any] | None:
    """The tweak as the script already has it behind a flag this run left off, or None.

    From the script reader's facts (``StaticFacts.inactive/behind/switches``, the catalog's
    ``TweakInfo.facts``): ``{"fact", "line", "behind", "argv", "command", "says", "snippet"}``;
    ``argv`` is the run's arguments with the flag on (None when ccprof could not write them).
    The advice then says "turn on what you have", not new code and not "already applied".
    """
    st = profile.static
    for fact in TWEAKS[tweak].facts:
        if fact not in st.inactive:
            continue
        line = st.inactive[fact]
        behind = st.behind.get(fact) or f"line {line}"
        argv = st.switches.get(fact)
        script = Path(profile.environment.script).name if profile.environment.script else "train.py"
        command = shlex.join(["python", script, *argv]) if argv is not None else None
        says = (f"Your script already has this ({behind}), and this run left it off: turn it on"
                + (f" with `{command}`" if command else " (ccprof could not tell which value turns it on)")
                + " rather than adding it again.")
        snippet = (f"# {TWEAKS[tweak].title}: already in {script}, {behind}\n"
                   + (f"# turn it on instead of adding it again:\n{command}\n" if command
                      else "# set that option so the block runs, instead of adding it again\n"))
        return {"fact": fact, "line": line, "behind": behind, "argv": argv, "command": command,
                "says": says, "snippet": snippet}
    return None


# ---------------------------------------------------------------------------- one-time costs
@dataclass(frozen=True)
class OneTimeCost:
    """What a tweak costs once per run rather than per step, subtracted from the run's saving.

    ``s``: seconds on the target GPU, billed at its price (compiling the graphs); ``run_frac``: a
    share of the planned run's cost as the script runs it (a teacher trained first, a fine-tune
    after pruning). ``what`` names it in a sentence, ``source`` says where its figure comes from
    (a paper, a measurement of this run). Example: ``OneTimeCost("compiling the model", "...", s=9.5)``.
    """
    what: str
    source: str
    s: float = 0.0
    run_frac: float = 0.0
    measured: bool = False


def one_time_share(cost: OneTimeCost, price: RunPrice) -> float | None:
    """The one-time cost as a share of the planned run's cost; None when it is a number of seconds
    and the run's size is unknown (nothing to divide it by)."""
    run_s = price.step_s * price.run_steps
    if cost.s > 0 and run_s <= 0:
        return None
    return cost.run_frac + (cost.s / run_s if cost.s > 0 else 0.0)


def _one_time_details(cost: OneTimeCost, price: RunPrice, time_saved_frac: float, step_scoped: bool) -> dict:
    """details["one_time"]: the cost in seconds, run share and dollars, and its break-even step."""
    share = one_time_share(cost, price)
    saved_per_step_s = price.step_s * time_saved_frac if step_scoped else 0.0
    out: dict[str, Any] = {"what": cost.what, "source": cost.source, "s": float(cost.s), "run_frac": float(cost.run_frac),
                           "measured": cost.measured, "share_of_run": share,
                           "usd": (share * price.usd_run if share is not None and price.priced else None),
                           "break_even_steps": None}
    if cost.s > 0 and not cost.run_frac and saved_per_step_s > 0:
        out["break_even_steps"] = int(math.ceil(cost.s / saved_per_step_s))
    return out


def _share_of_run(frac: float) -> str:
    """0.06 -> '6.0% of it'; 2949.2 -> '2,949 times the run's GPU cost' (percent stops reading well)."""
    return f"{fmt_pct(frac)} of it" if frac < 10 else f"{frac:,.0f} times the run's GPU cost"


def _one_time_says(cost: OneTimeCost, od: dict, price: RunPrice) -> str:
    """'compiling the model: ~9.5 s on the A100 ($0.0095; source)'."""
    parts = []
    if cost.s > 0:
        parts.append(f"~{fmt_s(cost.s)} on {price.gpu or 'the target GPU'}")
    if cost.run_frac > 0:
        parts.append(f"{fmt_pct(cost.run_frac)} of the planned run's cost")
    if od["usd"] is not None:
        parts.append(fmt_usd(od["usd"]))
    return f"{cost.what} ({', '.join(parts)}; {cost.source})"


# ---------------------------------------------------------------------------- shared facts
@dataclass(frozen=True)
class Fp32Matmuls:
    """The step's fp32 matmuls (matmul, convolution and attention ops that ran in float32): the
    one computation every advisor states them from (tf32, mixed_precision), so two advice never
    disagree on them. FLOPs are measured; seconds are the cost model's, on the target GPU as the
    script would run there (``policy_for``)."""
    flops: int
    flops_frac: float           # of the step's FLOPs
    device_s: float             # their device seconds on the target GPU
    cuda_core_s: float          # of which on CUDA cores (fp32 GEMMs without TF32: what TF32 moves)
    step_s: float               # the step on the target GPU, by the cost model
    gpu: str

    @property
    def time_frac(self) -> float:
        return self.device_s / self.step_s if self.step_s > 0 else 0.0

    @property
    def cuda_core_time_frac(self) -> float:
        return self.cuda_core_s / self.step_s if self.step_s > 0 else 0.0

    def says(self) -> str:
        """'fp32 matmuls are 100% of the step's 1,000,000 FLOPs and 12% of its projected 3.1 ms on NVIDIA A100'."""
        return (f"fp32 matmuls are {fmt_pct(self.flops_frac)} of the step's FLOPs and "
                f"{fmt_pct(self.time_frac)} of its projected {fmt_s(self.step_s)} on {self.gpu}")

    def facts(self) -> dict[str, float]:
        """The keys ``consistency.contradictions`` compares across advice."""
        return {"fp32_matmul_flops_frac": round(self.flops_frac, 6), "fp32_matmul_time_frac": round(self.time_frac, 6)}


def fp32_matmul_flops(profile: Profile) -> tuple[int, float]:
    """(FLOPs, share of ``flops.per_step``) of the matmul, convolution and attention ops the profile
    recorded in float32: what no GPU changes, so a checker can recompute it from the profile alone."""
    from ccprof.artefacts.vocab import MATMUL_CLASSES, dtype_name
    from ccprof.hardware.kernels import op_class
    flops = sum(o.flops for o in profile.ops if op_class(o.op) in MATMUL_CLASSES and dtype_name(o.dtype) == "float32")
    per = profile.flops.per_step
    return int(flops), (flops / per if per else 0.0)


def fp32_matmuls(profile: Profile, ctx: AdviceContext, spec: GpuSpec | None = None) -> Fp32Matmuls:
    """The step's fp32 matmul/conv/attention FLOPs (``profile.ops``) over ``flops.per_step``, and
    their device seconds over the step on the target GPU (the one cost model, the base policy)."""
    from ccprof.artefacts.vocab import MATMUL_CLASSES, dtype_name
    from ccprof.hardware.translate import translate
    spec = spec or gpu_spec(profile, ctx)
    flops, flops_frac = fp32_matmul_flops(profile)
    base = base_policy(profile, spec)
    step_s = step_cost_for(profile, spec, base).step_s if profile.ops else 0.0
    kernels = [k for k in translate(profile, spec, base) if k.cls in MATMUL_CLASSES
               and dtype_name(k.dtype) in ("float32", "tfloat32")] if profile.ops else []
    return Fp32Matmuls(flops, flops_frac, sum(k.device_s for k in kernels),
                       sum(k.device_s for k in kernels if k.unit == "simt"), step_s, spec.name)


# ---------------------------------------------------------------------------- the builder
def make_advice(tweak: str, status: str, profile: Profile, ctx: AdviceContext, *,
                rationale: str, snippet: str, confidence: str = "medium",
                time_saved_frac: float = 0.0, memory_saved_bytes: int = 0,
                usd_saved: float | None = None, risk: str | None = None,
                assumptions: list[str] | None = None, sources: list[str] | None = None,
                details: dict[str, Any] | None = None, peak_bytes_after: int | None = None,
                step_s_after: float | None = None, cost_saved_frac: float | None = None,
                options: TweakOptions | None = None, one_time: OneTimeCost | None = None) -> Advice:
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
    ``one_time``: what the tweak costs once per run (:class:`OneTimeCost`), subtracted from the run's
    saving before the gate and stated in the rationale and ``details["one_time"]``; with seconds
    and no known run size it cannot be subtracted, and the rationale says after how many steps it
    pays back.
    Memory is worth money only where it changes what the run needs: a run that does not fit the
    target keeps a memory saving that makes it fit, or that is at least ``MIN_SAVING_FRAC`` of its
    peak (a part of what a plan needs); a smaller one, or one on a run that fits, is "no_saving".
    ``details["priced"]`` says whether dollars were known; ``details["memory_needed"]`` whether the
    advice stands for memory the run needs rather than for money.
    """
    price = run_price(profile, ctx)
    d = dict(details or {})
    d.setdefault("time_scope", "run" if TWEAKS[tweak].run_scoped else "step")
    d.setdefault("gpu", price.gpu)
    d["priced"] = price.priced
    explicit_usd = usd_saved is not None and status == "recommended"
    one_time_frac: float | None = None
    one_time_note = ""
    if one_time is not None:
        od = _one_time_details(one_time, price, time_saved_frac, d["time_scope"] == "step")
        d["one_time"] = od
        one_time_frac = od["share_of_run"]
        said = _one_time_says(one_time, od, price)
        if one_time_frac is not None:
            one_time_note = f" One-time cost, subtracted from the saving: {said}."
        elif od["break_even_steps"]:
            one_time_note = (f" One-time cost, not subtracted because the planned run's size is unknown (pass "
                             f"--total-steps): {said}; at {fmt_s(price.step_s * time_saved_frac)} saved per step it "
                             f"pays back after {od['break_even_steps']:,} steps, and a shorter run costs more than it "
                             "saves.")
        else:
            one_time_note = (f" One-time cost, not subtracted because the planned run's size is unknown (pass "
                             f"--total-steps): {said}; it weighs more the shorter the run.")
    if status == "recommended":
        share = cost_saved_frac
        if share is None:
            share = (usd_saved / price.usd_run if explicit_usd and price.priced and price.usd_run > 0
                     else time_saved_frac)
        gross = share
        if one_time_frac:
            share = share - one_time_frac
            cost_saved_frac = share
            if explicit_usd:
                usd_saved = float(usd_saved) - one_time_frac * price.usd_run
        gate = max(price.noise_frac, C.MIN_SAVING_FRAC)
        spec = gpu_spec(profile, ctx)
        peak = profile.memory.peak_bytes or 0
        # the one fit rule (the tensors' peak against 90% of the GPU; for a dry run the allocator's
        # reserved peak + NCCL's buffers + the CUDA context against all of it)
        fit_now = memory_fit_for(profile, spec, peak)
        # what the peak is held against: 90% of the GPU under the tensors' rule, all of it under the reserved one
        capacity = (f"{fmt_bytes(fit_now.capacity_bytes)} {'usable on' if fit_now.rule == 'tensors' else 'of'} "
                    "the target GPU")
        short = memory_saved_bytes > 0 and not fit_now.fits
        after = (peak_bytes_after if peak_bytes_after is not None else peak - memory_saved_bytes)
        fits_after = memory_fit_for(profile, spec, after).fits
        # memory is worth money only where it changes what the run needs: a run that does not fit
        # the target keeps a saving that makes it fit, or a sizeable part of one (a plan combines them)
        needed = short and (fits_after or memory_saved_bytes >= C.MIN_SAVING_FRAC * peak)
        d["memory_needed"] = bool(needed and share <= gate)
        if share <= gate and not needed:
            d["no_saving"] = {"cost_saved_frac": share, "time_saved_frac": time_saved_frac,
                              "memory_saved_bytes": int(memory_saved_bytes), "band_frac": price.noise_frac,
                              "threshold_frac": gate}
            if one_time_frac:
                d["no_saving"].update({"gross_cost_saved_frac": gross, "one_time_frac": one_time_frac})
            status = "no_saving"
            why = (f"the projection's own band, ±{fmt_pct(price.noise_frac)}" if price.noise_frac > C.MIN_SAVING_FRAC
                   else f"ccprof's {fmt_pct(C.MIN_SAVING_FRAC)} threshold")
            if one_time_frac and gross > gate:
                head = (f"No saving once its one-time cost is counted: it saves {fmt_pct(gross)} of the run's GPU "
                        f"cost ({fmt_usd(gross * price.usd_run) if price.priced else 'dollars unknown'}) "
                        f"but costs {_share_of_run(one_time_frac)} once "
                        f"({fmt_usd(one_time_frac * price.usd_run) if price.priced else 'dollars unknown'}): "
                        f"net {fmt_pct(share) if share > -10 else 'a loss of ' + _share_of_run(-share)}")
            elif share <= -0.0005:
                head = f"No saving: it would add {fmt_pct(-share)} to the run's GPU cost"
            elif share < 0.0005:
                head = "No projected saving of the run's GPU cost"
            else:
                head = f"No measurable saving: {fmt_pct(share)} of the run's GPU cost, within {why}"
            if memory_saved_bytes > 0 and short:
                freed = (f" (it frees {fmt_bytes(memory_saved_bytes)}, {fmt_pct(memory_saved_bytes / peak)} of the "
                         f"{fmt_bytes(peak)} peak: the run still does not fit the {capacity}, and so small a part "
                         "of the gap changes nothing it needs)")
            elif memory_saved_bytes > 0:
                freed = f" (it frees {fmt_bytes(memory_saved_bytes)}, which this run does not need)"
            else:
                freed = ""
            rationale = f"{head}{freed}. " + rationale
        elif one_time_frac:
            one_time_note += (f" Net of it: {fmt_pct(share)} of the run's GPU cost"
                              + (f" ({fmt_usd(share * price.usd_run)})." if price.priced else "."))
        if status == "recommended" and d["memory_needed"]:
            # recommended for memory, not money: say so before anything the rationale says of time
            verdict = ("brings the run under it" if fits_after
                       else "is a part of what a plan needs to get under it")
            what = ("peak" if fit_now.rule == "tensors" else
                    f"peak ({fmt_bytes(fit_now.need_bytes)} with the caching allocator's reserve, NCCL's buffers "
                    "and the CUDA context)")
            rationale = (f"Recommended for memory, not money: the {fmt_bytes(peak)} {what} does not fit the "
                         f"{capacity}, and freeing "
                         f"{fmt_bytes(memory_saved_bytes)} (peak {fmt_bytes(after)}) {verdict}; its cost is "
                         f"{fmt_pct(-share) if share < -0.0005 else 'none'} of the run's GPU cost. " + rationale)
    rationale = rationale.strip() + one_time_note
    if status != "recommended":
        time_saved_frac, memory_saved_bytes, usd_saved = 0.0, 0, 0.0
        peak_bytes_after = step_s_after = None
    if usd_saved is None:
        usd_saved = price.usd_run * (cost_saved_frac if one_time_frac and cost_saved_frac is not None
                                     else time_saved_frac)
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
    switch = turn_on(profile, tweak) if status in ("recommended", "no_saving") else None
    if switch is not None:
        d["turn_on"] = switch
        text = f"{switch['says']} " + text
        snippet = switch["snippet"]
    if status == "recommended":
        text += " " + price.note
    return Advice(
        tweak=tweak, status=status, title=TWEAKS[tweak].title,
        projected=Projected(time_saved_frac=float(round(time_saved_frac, 6)),
                            memory_saved_bytes=int(memory_saved_bytes),
                            # six significant digits: a short run's saving of $0.00002 is a saving, not $0
                            usd_saved=float(f"{usd_saved:.6g}"),
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
