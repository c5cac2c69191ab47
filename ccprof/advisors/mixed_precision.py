"""mixed_precision: bf16/fp16 autocast for matmuls; projected through the target's roofline."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import (clamp, fmt_bytes, fmt_pct, fmt_s, gpu_spec, ledger,
                                     linear_modules, make_advice, op_shares, run_price,
                                     target_projection)
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

__all__ = ["advise_mixed_precision", "project_mixed_precision_memory"]

SNIPPET = """
# bf16 autocast around forward + loss; weights, grads and optimizer stay fp32.
with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
    loss = loss_fn(model(x), y)
loss.backward()          # fp16 instead of bf16 also needs torch.amp.GradScaler("cuda")
optimizer.step()
"""


_KEEP_FP32 = ("Norm", "Softmax", "Loss")     # autocast runs these in fp32 (torch.amp op lists)


def _own_activation_bytes(profile: Profile) -> list[tuple[object, int]]:
    """(module, activation bytes saved by the module itself, not by its children).

    Containers (ModuleList) record 0 although their children saved tensors: a module's
    total is taken as max(its own record, the sum of its children's totals), deepest first.
    """
    mods = profile.model.modules
    def parent(n: str) -> str | None:
        return None if not n else (n.rsplit(".", 1)[0] if "." in n else "")
    total = {m.name: m.activation_bytes for m in mods}
    kids: dict[str, int] = {}
    for m in sorted(mods, key=lambda m: -m.name.count(".") - (1 if m.name else 0)):
        t = max(total[m.name], kids.get(m.name, 0))
        total[m.name] = t
        par = parent(m.name)
        if par is not None:
            kids[par] = kids.get(par, 0) + t
    return [(m, max(0, total[m.name] - kids.get(m.name, 0))) for m in mods]


def project_mixed_precision_memory(profile: Profile) -> dict:
    """Peak memory under bf16 autocast.

    Activations saved by matmuls and by the ops fed from them (activation functions,
    attention) halve; those saved by norms, softmax and the loss (autocast's fp32 list), and
    anything saved outside a module (the root's own: loss, residual adds), stay fp32.
    Autocast adds a bf16 copy of every Linear weight, saved for backward.
    Example: Linear inputs 100 MiB + LayerNorm inputs 20 MiB -> 50 + 20 MiB, plus 2 bytes x
    Linear params. Returns {"activations_after_bytes", "weight_cache_bytes",
    "memory_saved_bytes", "peak_bytes_after", "halved_bytes"}.
    """
    led = ledger(profile)
    own = _own_activation_bytes(profile)
    if own and sum(b for _, b in own):
        halved = sum(b for m, b in own if m.name and not any(k in m.class_ for k in _KEEP_FP32))
    else:  # no per-module ledger: everything halves except MP_OTHER_ACT_KEEP_FRAC
        halved = int(led.act * (1 - C.MP_OTHER_ACT_KEEP_FRAC))
    halved = min(halved, led.act)
    matmul_params = sum(m.params for m in linear_modules(profile))
    cache = matmul_params * C.BYTES_BF16
    act_after = int(led.act - halved * (1 - C.BYTES_BF16 / C.BYTES_FP32) + cache)
    saved = led.act - act_after
    return {"activations_after_bytes": act_after, "weight_cache_bytes": cache, "halved_bytes": int(halved),
            "memory_saved_bytes": int(saved), "peak_bytes_after": int(led.peak - saved)}


def _measured_effect(profile: Profile) -> str:
    """What this run measured of the tweak's effect (for an already-applied tweak)."""
    from ccprof.advisors._common import matmul_flops_by_dtype

    by = matmul_flops_by_dtype(profile)
    total = sum(by.values())
    if not total:
        return ""
    low = sum(v for k, v in by.items() if k in ("bfloat16", "float16"))
    led = ledger(profile)
    return (f" Measured in this run: {fmt_pct(low / total)} of the {total:,} matmul/conv/attention FLOPs per step "
            f"ran in 16-bit; activations saved for backward are {fmt_bytes(led.act)} of the {fmt_bytes(led.peak)} peak.")


@register("mixed_precision")
def advise_mixed_precision(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend autocast when fp32 matmuls dominate; project time via the roofline."""
    p = profile.precision
    if p.autocast or profile.static.autocast or p.param_dtype in ("bfloat16", "float16"):
        how = (f"autocast ({p.autocast_dtype or 'dtype unknown'}) was seen during the run" if p.autocast
               else f"the script uses autocast (line {profile.static.lines.get('autocast', '?')})"
               if profile.static.autocast else f"parameters are already {p.param_dtype}")
        return make_advice("mixed_precision", "already_applied", profile, ctx, confidence="high",
                           rationale=f"Mixed precision is already on: {how}.{_measured_effect(profile)}",
                           snippet=SNIPPET)
    spec = gpu_spec(profile, ctx)
    sh = op_shares(profile, spec)
    mm_share = sh.matmul_fp32_flops / profile.flops.per_step if profile.flops.per_step else 0.0
    mem = project_mixed_precision_memory(profile)
    led = ledger(profile)
    proj = target_projection(profile, ctx)
    price = run_price(profile, ctx)
    assumptions = [
        f"Activations saved by matmuls, activation functions and attention ({fmt_bytes(mem['halved_bytes'])}) "
        f"become 2-byte; norms, softmax and the loss stay fp32 (autocast op lists); autocast keeps a bf16 "
        f"copy of the Linear weights ({fmt_bytes(mem['weight_cache_bytes'])}) for backward.",
        "Weights, gradients and optimizer state stay fp32 (FACTS.md: AMP alone shrinks activations, not model state).",
    ]
    if proj is not None and proj.step_s and proj.step_s_bf16:
        frac = clamp(1 - proj.step_s_bf16 / proj.step_s)
        how = (f"the hardware roofline projects {fmt_s(proj.step_s)} -> {fmt_s(proj.step_s_bf16)} "
               f"per step on {price.gpu}")
    elif sh.total_s > 0:
        bf16 = spec.peak_flops["bfloat16"]
        after = sh.total_s - sh.matmul_fp32_s + sh.matmul_fp32_flops / bf16
        frac = clamp(1 - after / sh.total_s)
        how = (f"ccprof's per-op roofline on {spec.name} ({spec.source}) puts fp32 matmuls at "
               f"{fmt_pct(sh.share(sh.matmul_fp32_s))} of the step; at the bf16 peak they shrink "
               f"{spec.peak_flops['float32'] and bf16 / spec.peak_flops['float32']:.0f}x")
    else:
        frac = clamp(mm_share * (1 - 1 / C.MP_SPEEDUP_FALLBACK))
        how = f"assuming bf16 matmuls run {C.MP_SPEEDUP_FALLBACK:.0f}x faster (NVIDIA AMP docs: up to 3x)"
    act_share = led.act / led.peak if led.peak else 0.0
    if mm_share < C.MP_MATMUL_SHARE_MIN and mem["memory_saved_bytes"] <= 0:
        return make_advice("mixed_precision", "not_applicable", profile, ctx, confidence="medium",
                           rationale=(f"fp32 matmuls are only {fmt_pct(mm_share)} of the step's FLOPs "
                                      f"(below {fmt_pct(C.MP_MATMUL_SHARE_MIN)}) and activations are "
                                      f"{fmt_pct(act_share)} of peak: autocast would save little."),
                           snippet=SNIPPET, details={"fp32_matmul_flops_frac": mm_share, **mem})
    rationale = (f"fp32 matmuls are {fmt_pct(mm_share)} of the {profile.flops.per_step:,} FLOPs per step; "
                 f"{how}, so a step takes {fmt_pct(frac)} less time. Activations are {fmt_bytes(led.act)} "
                 f"({fmt_pct(act_share)} of the {fmt_bytes(led.peak)} peak); {fmt_bytes(mem['halved_bytes'])} of them "
                 f"are saved by matmuls and the ops they feed and halve in bf16, and autocast adds "
                 f"{fmt_bytes(mem['weight_cache_bytes'])} of bf16 weight copies: activations "
                 f"{fmt_bytes(mem['activations_after_bytes'])}, peak {fmt_bytes(led.peak)} -> {fmt_bytes(mem['peak_bytes_after'])}.")
    return make_advice("mixed_precision", "recommended", profile, ctx,
                       confidence="high" if proj is not None else "medium",
                       time_saved_frac=frac, memory_saved_bytes=mem["memory_saved_bytes"],
                       peak_bytes_after=mem["peak_bytes_after"], rationale=rationale,
                       assumptions=assumptions, snippet=SNIPPET,
                       sources=["Micikevicius et al., Mixed Precision Training, ICLR 2018 ('nearly halves memory')",
                                "NVIDIA AMP documentation (up to 3x on Volta/Turing)",
                                f"{spec.source}"],
                       details={"fp32_matmul_flops_frac": mm_share, **mem})
