"""checkpointing: keep only block boundaries, recompute each block in backward."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import (
    fmt_bytes,
    fmt_change,
    fmt_pct,
    forward_flops,
    gpu_spec,
    ledger,
    make_advice,
    module_map,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.hardware.edits import recompute as recompute_blocks
from ccprof.hardware.projection import FIT_SOURCES, memory_fit_for

__all__ = ["advise_checkpointing", "project_checkpointing"]

SNIPPET = """
from torch.utils.checkpoint import checkpoint

# Hugging Face models: model.gradient_checkpointing_enable()
for i, block in enumerate(model.{container}):
    model.{container}[i] = CheckpointedBlock(block)

class CheckpointedBlock(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block
    def forward(self, *args, **kwargs):
        return checkpoint(self.block, *args, use_reentrant=False, **kwargs)
"""

_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim")
# bytes per element of the dtype holding most parameters (the residual stream's dtype)
_DTYPE_BYTES = {"float64": 8, "float32": C.BYTES_FP32, "bfloat16": C.BYTES_BF16, "float16": C.BYTES_BF16}


def _residual_width(profile: Profile) -> tuple[int | None, str]:
    """Width of the stream the blocks pass on: the config's hidden size, else the embeddings' dim."""
    cfg = profile.model.hf_config
    key = next((k for k in _HIDDEN_KEYS if cfg.get(k)), None)
    if key:
        return int(cfg[key]), f"hidden {int(cfg[key])}"
    if profile.model.embeddings:
        # token (+ position) embeddings feed the first block: their dim is the residual width
        e = max(profile.model.embeddings, key=lambda e: e.params)
        return int(e.dim), f"{e.name}'s dim {e.dim}"
    return None, ""


def _boundary_bytes(profile: Profile, block_acts: list[int], block_names: list[str]) -> tuple[int, str]:
    """Bytes of one block's input (what checkpointing keeps), and how it was estimated.

    Token models: tokens per micro-batch x the residual width x the parameters' dtype. The
    residual stream keeps that dtype under autocast (the embedding output is fp32 and the
    blocks' residual adds promote bf16 back to fp32), so autocast alone does not halve it.
    """
    width, how = _residual_width(profile)
    tokens = profile.steps.tokens_per_step
    if width and tokens:
        tokens_micro = tokens // max(1, profile.steps.micro_batches)
        dt = _DTYPE_BYTES.get(profile.precision.param_dtype, C.BYTES_FP32)
        return int(tokens_micro * width * dt), f"{tokens_micro:,} tokens x {how} x {dt} bytes"
    # Generic (conv blocks): a block saves one tensor of about its input's size per leaf module.
    leaves = []
    for name in block_names:
        kids = [m for m in profile.model.modules if m.name.startswith(name + ".") and m.activation_bytes > 0
                and not any(o.name.startswith(m.name + ".") for o in profile.model.modules)]
        leaves.append(max(1, len(kids)))
    per = [a // n for a, n in zip(block_acts, leaves)]
    return (int(max(per)) if per else 0), "a block's activations / its leaf modules (one saved tensor each)"


def project_checkpointing(profile: Profile) -> dict:
    """Activations and peak after checkpointing every repeated block, and the extra FLOPs.

    act_after = max(end of forward: act - sum(block activations) + n_blocks x boundary;
    recompute of the last block in backward: n_blocks x boundary + its activations + those of
    the modules before the blocks (embeddings)). Extra FLOPs = one more forward of the blocks.
    Example: act 10, blocks 2 x 4, boundary 0.5, no embeddings: max(10-8+1, 1+4) = 5.
    The boundary is a block's input: tokens x residual width (the config's hidden size, else
    the embeddings' dim) x the parameters' dtype bytes; a block's activations divided by its
    leaves overestimated it 3.2x on examples/gpt_loop.py (wide MLP and attention tensors),
    and the projected peak by 24%. Returns {} without repeated blocks.
    """
    rbs = [rb for rb in profile.model.repeated_blocks if rb.count >= 2]
    if not rbs:
        return {}
    mods = module_map(profile)
    led = ledger(profile)
    names = [n for rb in rbs for n in rb.names]
    acts = [mods[n].activation_bytes if n in mods else 0 for n in names]
    fwd = int(sum(forward_flops(profile, mods[n]) if n in mods else 0 for n in names))
    boundary, how = _boundary_bytes(profile, acts, names)
    bounds = len(names) * boundary
    pre = sum(mods[e.name].activation_bytes for e in profile.model.embeddings if e.name in mods)
    end_of_forward = led.act - sum(acts) + bounds
    # Recomputing the last block happens after backward has freed everything after it
    # (final norm, head, loss): only the boundaries, that block and what ran before remain.
    recompute = bounds + (max(acts) if acts else 0) + pre
    act_after = max(0, max(end_of_forward, recompute))
    saved = led.act - act_after
    return {"blocks": len(names), "containers": [rb.container for rb in rbs],
            "block_activation_bytes": sum(acts), "boundary_bytes": boundary, "boundary_estimate": how,
            "activations_after_bytes": act_after, "memory_saved_bytes": int(saved),
            "peak_bytes_after": int(led.peak - saved), "extra_flops": fwd,
            "extra_flops_frac": fwd / profile.flops.per_step if profile.flops.per_step else 0.0}


@register("checkpointing")
def advise_checkpointing(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend checkpointing when activations are a large share of peak and blocks repeat."""
    st = profile.static
    if profile.model.gradient_checkpointing or st.checkpointing:
        where = "on the live model" if profile.model.gradient_checkpointing else f"in the script (line {st.lines.get('checkpointing', '?')})"
        f = profile.flops
        effect = ""
        if f.forward and f.per_step:
            # without recomputation backward is ~2x forward; what exceeds it is the recomputed forward
            recompute = max(0, f.backward - 2 * f.forward)
            led = ledger(profile)
            effect = (f" Measured in this run: backward counted {f.backward / f.forward:.2f}x the forward FLOPs "
                      f"(2x without recomputation), so recomputation adds {fmt_pct(recompute / max(1, f.per_step - recompute))} "
                      f"FLOPs per step; activations saved for backward are {fmt_bytes(led.act)} of the "
                      f"{fmt_bytes(led.peak)} peak.")
        return make_advice("checkpointing", "already_applied", profile, ctx, confidence="high",
                           rationale=f"Gradient checkpointing is already on ({where}).{effect}",
                           snippet=SNIPPET.replace("{container}", "layers"))
    pr = project_checkpointing(profile)
    led = ledger(profile)
    act_share = led.act / led.peak if led.peak else 0.0
    if not pr:
        return make_advice("checkpointing", "not_applicable", profile, ctx, confidence="medium",
                           rationale=(f"No repeated blocks were found in {profile.model.class_ or 'the model'}, so there "
                                      f"are no block boundaries to keep; activations are {fmt_pct(act_share)} of the "
                                      f"{fmt_bytes(led.peak)} peak."), snippet=SNIPPET.replace("{container}", "layers"))
    container = pr["containers"][0]
    snippet = SNIPPET.replace("{container}", container)
    details = dict(pr)
    if act_share < C.CKPT_ACT_SHARE_MIN or pr["memory_saved_bytes"] <= 0:
        return make_advice("checkpointing", "not_applicable", profile, ctx, confidence="medium",
                           rationale=(f"Activations are {fmt_pct(act_share)} of the {fmt_bytes(led.peak)} peak "
                                      f"(below {fmt_pct(C.CKPT_ACT_SHARE_MIN)}): checkpointing the {pr['blocks']} blocks "
                                      f"would free {fmt_bytes(pr['memory_saved_bytes'])} for "
                                      f"{fmt_pct(pr['extra_flops_frac'])} more FLOPs; not worth it."),
                           snippet=snippet, details=details)
    spec = gpu_spec(profile, ctx)
    rc = recost(profile, ctx, ops=recompute_blocks(profile.ops, pr["containers"]), spec=spec)
    frac = rc.frac
    details.update({"step_s_before_model": rc.before.step_s, "step_s_after_model": rc.after.step_s,
                    "time_saved_frac": frac})
    # the one fit rule (the projection's and the report's) for the step as profiled
    fit = memory_fit_for(profile, spec) if spec.memory_bytes else None
    if fit is not None:
        details["memory_fit"] = fit.as_dict()
    if fit is not None and fit.fits:
        # It only costs time unless memory is short: then it is the plan's to pair with a
        # larger batch (plan.build_plan reads these details), not a recommendation on its own.
        return make_advice("checkpointing", "not_applicable", profile, ctx, confidence="high",
                           rationale=(f"The {fmt_bytes(led.peak)} peak fits {spec.name} (it {fit.says()}), "
                                      f"so checkpointing the {pr['blocks']} blocks of {', '.join(pr['containers'])} "
                                      f"would free {fmt_bytes(pr['memory_saved_bytes'])} for "
                                      f"{fmt_pct(pr['extra_flops_frac'])} more FLOPs per step ({fmt_change(frac)} "
                                      f"re-costed): a cost, unless the freed memory buys a larger batch (the plan "
                                      f"checks that)."),
                           snippet=snippet, details=details)
    rationale = (f"Activations are {fmt_pct(act_share)} of the {fmt_bytes(led.peak)} peak; the {pr['blocks']} "
                 f"blocks of {', '.join(pr['containers'])} save {fmt_bytes(pr['block_activation_bytes'])}. Keeping "
                 f"only each block's input ({fmt_bytes(pr['boundary_bytes'])}, {pr['boundary_estimate']}) leaves "
                 f"{fmt_bytes(pr['activations_after_bytes'])} at the worse of the end of forward and the recompute of "
                 f"the last block (after the head's activations are freed): peak "
                 f"{fmt_bytes(led.peak)} -> {fmt_bytes(pr['peak_bytes_after'])}. It costs one extra forward of the "
                 f"blocks, {pr['extra_flops']:,} FLOPs ({fmt_pct(pr['extra_flops_frac'])} of the step), re-costed as "
                 f"their forward kernels run again in backward: {rc.says()}, {fmt_change(frac)}; the peak "
                 f"does not fit {spec.name} without it"
                 + (f" (it {fit.says()}); with it the step "
                    f"{memory_fit_for(profile, spec, pr['peak_bytes_after']).says()}." if fit is not None else "."))
    return make_advice("checkpointing", "recommended", profile, ctx, confidence="high",
                       time_saved_frac=frac, memory_saved_bytes=pr["memory_saved_bytes"],
                       peak_bytes_after=pr["peak_bytes_after"], rationale=rationale, snippet=snippet,
                       assumptions=["Recompute: the blocks' recorded forward kernels run again inside backward.",
                                    "Non-reentrant torch.utils.checkpoint keeps each block's inputs only.",
                                    f"A block's input is {pr['boundary_estimate']}; the residual stream "
                                    "keeps the parameters' dtype under autocast.",
                                    "What the peak held beyond model state and activations (loss gradient, "
                                    "logits, temporaries) is still there at the new peak."],
                       sources=["Chen et al. 2016, arXiv 1604.06174 (O(sqrt n) memory for one extra forward)",
                                "Kaplan et al. 2020: a step is ~6N FLOPs per token, the forward ~2N; one extra forward adds at most ~+33% compute",
                                *FIT_SOURCES],
                       details=details)
