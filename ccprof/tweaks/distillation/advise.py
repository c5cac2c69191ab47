"""distillation: train a shallower student on the teacher's soft labels."""
from __future__ import annotations

from ccprof.advisors._common import (
    OneTimeCost,
    fmt_bytes,
    fmt_change,
    fmt_num,
    fmt_pct,
    ledger,
    make_advice,
    module_map,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import DistillationOptions
from ccprof.hardware.edits import shrink_blocks

__all__ = ["advise_distillation", "project_distillation"]

SNIPPET = """
import torch.nn.functional as F
student = build_model(num_layers=teacher_layers // 2)   # or a named smaller family
teacher.eval().requires_grad_(False)
with torch.no_grad():
    t_logits = teacher(x)
s_logits = student(x)
T = 2.0
loss = 0.5 * loss_fn(s_logits, y) + 0.5 * T * T * F.kl_div(
    F.log_softmax(s_logits / T, -1), F.log_softmax(t_logits / T, -1), log_target=True, reduction="batchmean")
"""

_MARKERS = ("distil", "student", "teacher")


def project_distillation(profile: Profile, depth_frac: float, ctx: AdviceContext | None = None) -> dict:
    """A student keeping ``depth_frac`` of the repeated blocks: its FLOPs and memory, and the
    step re-costed with a live teacher forward (the teacher's forward ops again, no backward).
    Returns {} without repeated blocks."""
    rbs = [rb for rb in profile.model.repeated_blocks if rb.count >= 2]
    if not rbs:
        return {}
    mods = module_map(profile)
    names = [n for rb in rbs for n in rb.names]
    drop = 1 - depth_frac
    blk_flops = sum(mods[n].flops if n in mods else 0 for n in names)
    blk_act = sum(mods[n].activation_bytes if n in mods else 0 for n in names)
    blk_params = sum(rb.params_each * rb.count for rb in rbs)
    led = ledger(profile)
    per_step = profile.flops.per_step
    student_flops = per_step - drop * blk_flops
    with_teacher = student_flops + profile.flops.forward     # teacher forward each step
    bytes_per_param = (led.params + led.grads_at_peak + led.opt) / profile.model.params if profile.model.params else 16
    mem_saved = int(drop * (blk_params * bytes_per_param + blk_act) - led.params)   # teacher weights stay resident
    out = {"blocks": len(names), "student_blocks": round(len(names) * depth_frac),
           "student_params": int(profile.model.params - drop * blk_params),
           "student_flops": int(student_flops), "step_flops_with_teacher": int(with_teacher),
           "inference_time_saved_frac": drop * blk_flops / per_step if per_step else 0.0,
           "memory_saved_bytes": mem_saved, "time_saved_frac": 0.0}
    if profile.ops:
        containers = [rb.container for rb in rbs]
        teacher = [o for o in profile.ops if o.phase == "forward" and o.autocast != "cast"]
        rc = recost(profile, ctx or AdviceContext(), ops=shrink_blocks(profile.ops, containers, depth_frac) + teacher)
        out.update({"time_saved_frac": rc.frac, "recost": rc.says(), "step_s_before_model": rc.before.step_s,
                    "step_s_after_model": rc.after.step_s})
    return out


@register("distillation")
def advise_distillation(profile: Profile, ctx: AdviceContext) -> Advice:
    """Offer a half-depth student; low confidence and accuracy risk, said plainly."""
    m = profile.model
    names = " ".join([m.class_, *m.roots, m.hf_model_type or ""]).lower()
    if any(k in names for k in _MARKERS) or "distillation" in profile.static.lines:
        return make_advice("distillation", "already_applied", profile, ctx, confidence="medium", snippet=SNIPPET,
                           rationale=f"The run already trains a distilled/student model ({m.class_}).")
    depth_frac = 1 / ctx.option("distillation", "keep_every")
    pr = project_distillation(profile, depth_frac, ctx)
    if not pr:
        return make_advice("distillation", "not_applicable", profile, ctx, confidence="medium", snippet=SNIPPET,
                           rationale=(f"{m.class_ or 'The model'} has no repeated blocks to halve; name a smaller "
                                      "family to compare against."))
    frac = pr["time_saved_frac"]
    # A student needs a trained teacher. A script that starts from pretrained weights has one (the
    # model it loads); one that trains from scratch is training the teacher: distilling then costs
    # this whole run first, and the student's run on top.
    pretrained = bool(m.pretrained or profile.static.from_pretrained)
    teacher = None if pretrained else OneTimeCost(
        "training the teacher first: the model trains from scratch, so no trained teacher exists and its "
        "training is this planned run", "the profile: no pretrained weights were loaded", run_frac=1.0)
    memory = pr["memory_saved_bytes"] if pretrained else 0     # the teacher's own run needs this run's memory
    rationale = (f"A student with {pr['student_blocks']} of the {pr['blocks']} blocks has {fmt_num(pr['student_params'])} "
                 f"parameters (teacher {fmt_num(m.params)}) and needs {pr['student_flops']:,} FLOPs per step "
                 f"(teacher {profile.flops.per_step:,}). Training it with the teacher's forward each step costs "
                 f"{pr['step_flops_with_teacher']:,} FLOPs; re-costed (the student's blocks and the teacher's forward "
                 f"kernels), {pr.get('recost', 'no op records')}: {fmt_change(frac)}; inference on the student "
                 f"saves {fmt_pct(pr['inference_time_saved_frac'])}. ")
    if pretrained:
        rationale += (f"Memory changes by {fmt_bytes(pr['memory_saved_bytes'])} (teacher weights stay resident). ")
    else:
        rationale += ("The model trains from scratch: the teacher must be trained first (this run, at full memory), "
                      "so distilling pays off at inference or when a trained teacher is reused, not on this run. ")
    rationale += ("This trades accuracy for cost: DistilBERT kept 97% of its teacher's quality; yours may keep less. "
                  "Confidence is low.")
    return make_advice("distillation", "recommended", profile, ctx, confidence="low", risk="accuracy",
                       time_saved_frac=frac, memory_saved_bytes=memory, rationale=rationale,
                       snippet=SNIPPET, one_time=teacher,
                       assumptions=[f"Student depth {fmt_pct(depth_frac)} of the teacher (it keeps every "
                                    f"{ctx.option('distillation', 'keep_every')}th block: --option distillation.keep_every).",
                                    ("The pretrained model the script loads is the teacher, with no training of its "
                                     "own counted; a teacher that must first be fine-tuned on this task costs this "
                                     "run again." if pretrained else
                                     "No trained teacher exists (the model trains from scratch): the teacher's "
                                     "training, counted once, is this planned run as the script runs it."),
                                    "The teacher's forward runs every step (no cached logits): it is in the "
                                    "re-costed step.",
                                    "The student reaches useful quality in the same number of steps."],
                       sources=["Sanh et al., DistilBERT, 2019: 40% smaller, 60% faster, 97% of quality"],
                       details={**pr, "teacher_pretrained": pretrained, "memory_saved_bytes": memory},
                       options=DistillationOptions(keep_every=ctx.option("distillation", "keep_every")))
