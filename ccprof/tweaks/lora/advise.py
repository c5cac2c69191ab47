"""lora: freeze the base weights, train low-rank adapters on the Linear layers."""
from __future__ import annotations

import math

from ccprof.advisors import constants as C
from ccprof.advisors._common import (
    fmt_bytes,
    fmt_change,
    fmt_num,
    fmt_pct,
    head_names,
    ledger,
    linear_modules,
    make_advice,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.advisors.families import pretrained_family, published_match
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import LoraOptions
from ccprof.hardware.edits import freeze_base

__all__ = ["peft_targets", "advise_lora", "project_lora", "lora_applied"]

SNIPPET = """
from peft import LoraConfig, get_peft_model

config = LoraConfig(r={rank}, lora_alpha={alpha}, lora_dropout={dropout}, target_modules={targets})
model = get_peft_model(model, config)          # freezes every base weight
optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=2e-4)
"""


def lora_applied(profile: Profile) -> bool:
    """peft in the script, or LoRA modules on the live model."""
    return profile.static.peft or any(".lora_A" in m.name or m.name.endswith("lora_A") for m in profile.model.modules)


def _targets(profile: Profile, ctx: AdviceContext) -> list:
    heads = head_names(profile)
    lins = [m for m in linear_modules(profile) if m.name not in heads]
    targets = ctx.option("lora", "targets")
    if targets:
        lins = [m for m in lins if m.name.split(".")[-1] in targets or m.name in targets]
    return lins


def _frozen_prefix_activation_bytes(profile: Profile, trainable: set[str]) -> tuple[int, int]:
    """Activations saved by the modules that run before the first module left trainable,
    and the largest of them.

    With every base weight frozen, nothing upstream of the first adapter (or kept head)
    needs a gradient, so autograd saves nothing there: a CNN with LoRA on its head only keeps
    no conv activations at all. Modules are taken in registration order (the forward order of
    sequential models and transformer stacks); leaves only, so nothing counts twice.
    """
    mods = profile.model.modules
    names = [m.name for m in mods]
    leaves = [m for m in mods if m.name and not any(n.startswith(m.name + ".") for n in names)]
    total = largest = 0
    for m in leaves:
        if any(m.name == t or m.name.startswith(t + ".") for t in trainable):
            return total, largest
        total += m.activation_bytes
        largest = max(largest, m.activation_bytes)
    return 0, 0     # nothing left trainable: no projection of this kind


def project_lora(profile: Profile, ctx: AdviceContext) -> dict:
    """Memory and time of LoRA rank r on the target Linears with every base weight frozen.

    Adapters per Linear: r x (in + out) parameters, with in + out ~ 2 sqrt(weight params)
    (exact for square layers). Memory saved = gradients at peak + optimizer state of the base
    minus the adapters' weights, gradients and state, plus the activations of the frozen
    modules that run before the first trainable one. Time: the step re-costed without the frozen
    weights' gradient kernels, with an optimizer over the adapters only and the adapters' own
    small GEMMs (``ccprof.hardware.edits.freeze_base``).
    """
    r = ctx.option("lora", "rank")
    led = ledger(profile)
    targets = _targets(profile, ctx)
    lin_all = linear_modules(profile)
    adapters = sum(r * 2 * math.isqrt(max(1, m.params)) for m in targets)
    trainable = profile.model.trainable_params or profile.model.params
    grad_frac = led.grads_at_peak / led.grads if led.grads else 0.0
    base_saved = led.grads_at_peak + led.opt
    adapter_bytes = int(adapters * (C.BYTES_FP32 * (1 + grad_frac) + led.opt_bytes_per_param))
    frozen_prefix, largest = _frozen_prefix_activation_bytes(profile, {m.name for m in targets} | head_names(profile))
    saved = base_saved - adapter_bytes + frozen_prefix
    if frozen_prefix:
        # the peak then moves into the frozen forward, where the step's temporaries and at
        # least one layer's output are still alive: the peak cannot fall below that
        floor = led.params + adapter_bytes + profile.memory.other_bytes + largest
        saved = min(saved, max(0, led.peak - floor))
    rc = recost(profile, ctx, ops=freeze_base(profile.ops, r, adapters / trainable if trainable else 0.0,
                                              exclude_scopes=sorted(head_names(profile))))
    wgrad = sum(o.flops for o in profile.ops if o.phase == "backward" and o.out_shapes
                and all(i in o.fixed for i in range(len(o.shapes), len(o.shapes) + len(o.out_shapes))))
    return {"rank": r, "targets": [m.name for m in targets], "adapter_params": adapters,
            "adapter_bytes": adapter_bytes, "base_grad_opt_bytes": base_saved,
            "memory_saved_bytes": int(saved), "peak_bytes_after": int(led.peak - saved),
            "weight_grad_flops": int(wgrad), "time_saved_frac": rc.frac, "recost": rc.says(),
            "step_s_before_model": rc.before.step_s, "step_s_after_model": rc.after.step_s,
            "optimizer_s_before": rc.before.phase_s.get("optimizer", 0.0),
            "optimizer_s_after": rc.after.phase_s.get("optimizer", 0.0),
            "linear_params": sum(m.params for m in lin_all), "frozen_prefix_activation_bytes": frozen_prefix}


def peft_targets(profile: Profile, targets: list[str]) -> list[str]:
    """``targets`` as peft's ``target_modules`` would be written: the name suffixes (``q_proj``,
    ``c_attn``) when they match exactly those Linear layers, else the full names."""
    suffixes = sorted({t.split(".")[-1] for t in targets})
    names = profile.model.linear_names or [m.name for m in profile.model.modules]
    matched = {n for n in names if n.split(".")[-1] in suffixes}
    return suffixes if matched == set(targets) else sorted(targets)


@register("lora")
def advise_lora(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend LoRA for full fine-tuning of Linear-heavy models."""
    m = profile.model
    pr = project_lora(profile, ctx)
    snippet = SNIPPET.format(rank=ctx.option("lora", "rank"), alpha=ctx.option("lora", "alpha"),
                             dropout=ctx.option("lora", "dropout"),
                             targets=repr(sorted({t.split('.')[-1] for t in pr["targets"]}) or "all-linear"))
    if lora_applied(profile):
        return make_advice("lora", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"LoRA is already in use ({'peft in the script' if profile.static.peft else 'lora_A modules on the model'}); "
                                      f"{fmt_num(m.trainable_params)} of {fmt_num(m.params)} parameters train."))
    if m.params and m.trainable_params < 0.5 * m.params:
        return make_advice("lora", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"Only {fmt_pct(m.trainable_params / m.params)} of the parameters train: "
                                      "this is not full fine-tuning, most weights are already frozen."))
    lin_share = pr["linear_params"] / m.params if m.params else 0.0
    if not pr["targets"] or lin_share < C.LORA_LINEAR_SHARE_MIN:
        return make_advice("lora", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"Linear layers hold {fmt_pct(lin_share)} of the {fmt_num(m.params)} parameters "
                                      f"(below {fmt_pct(C.LORA_LINEAR_SHARE_MIN)}): LoRA adapters would leave most of "
                                      "the model's training cost in place."), details=pr)
    led = ledger(profile)
    scratch = not (m.pretrained or profile.static.from_pretrained)
    family = pretrained_family(profile)
    if scratch and family is None:
        return make_advice("lora", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"{m.class_ or 'The model'} trains from scratch and matches no pretrained family: "
                                      "LoRA adapts pretrained weights, and frozen random weights would cap what it "
                                      "can learn."), details=pr)
    match = published_match(profile) if scratch else None
    if match is not None and not match.fits:
        # the same check finetune makes: LoRA on this model needs weights published for its architecture
        return make_advice("lora", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"{m.class_} trains from scratch, and no published '{family}' checkpoint fits "
                                      f"it: the closest, {match.says()}, differs in {'; '.join(match.differs)}. "
                                      "LoRA adapts pretrained weights; frozen random weights would cap what it can "
                                      "learn."),
                           sources=[match.published.source], details={**pr, "checkpoint": match.published.id,
                                                                       "differs": match.differs})
    rationale = (f"All {fmt_num(m.trainable_params)} parameters train and Linear layers hold {fmt_pct(lin_share)} of them. "
                 f"Freezing the base drops its gradients at peak and optimizer state ({fmt_bytes(pr['base_grad_opt_bytes'])}; "
                 f"{led.note}); rank-{pr['rank']} adapters on {len(pr['targets'])} Linear layers add "
                 f"{fmt_num(pr['adapter_params'])} parameters ({fmt_bytes(pr['adapter_bytes'])} with their gradients and "
                 f"state): peak {fmt_bytes(led.peak)} -> {fmt_bytes(pr['peak_bytes_after'])}. The frozen weights no longer "
                 f"get gradients ({pr['weight_grad_flops']:,} FLOPs of weight-gradient kernels), the optimizer updates "
                 f"only the adapters, and the adapters add their own rank-{pr['rank']} GEMMs: re-costed, "
                 f"{pr['recost']}, {fmt_change(pr['time_saved_frac'])}.")
    if scratch:
        rationale += (f" The model was built from scratch: LoRA only makes sense once it starts from pretrained "
                      f"{family} weights (see finetune); confidence is low until then.")
    return make_advice("lora", "recommended", profile, ctx, confidence="low" if scratch else "medium",
                       time_saved_frac=pr["time_saved_frac"], memory_saved_bytes=pr["memory_saved_bytes"],
                       peak_bytes_after=pr["peak_bytes_after"], rationale=rationale, snippet=snippet,
                       assumptions=[f"Adapter rank r={pr['rank']} (peft's default 8; --option lora_rank).",
                                    "Adapter size r x (in + out) with in + out ~ 2 sqrt(weight params).",
                                    "Time: backward keeps the activation gradients the adapters need and drops every "
                                    "parameter gradient; the adapters' GEMMs are costed at their own (thin) shapes."],
                       sources=["Hu et al., LoRA, ICLR 2022 (" + C.LORA_PUBLISHED + ")",
                                "Rajbhandari et al., ZeRO (SC 2020): fp32 Adam 16 bytes/param (4 weights + 4 grads + 8 state)"],
                       details=pr, options=LoraOptions(rank=pr["rank"], targets=peft_targets(profile, pr["targets"])))
