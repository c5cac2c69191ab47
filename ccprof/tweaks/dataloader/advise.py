"""dataloader: workers, pinned memory and persistent workers when the GPU would wait for data."""
from __future__ import annotations

from dataclasses import replace

from ccprof.advisors import constants as C
from ccprof.advisors._common import fmt_change, fmt_pct, fmt_s, make_advice, recost
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import DataloaderOptions

__all__ = ["advise_dataloader"]

SNIPPET = """
loader = torch.utils.data.DataLoader(dataset, batch_size={b}, shuffle=True,
                                     num_workers={w}, pin_memory=True, persistent_workers=True,
                                     prefetch_factor=2)
for x, y in loader:
    x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)
"""


@register("dataloader")
def advise_dataloader(profile: Profile, ctx: AdviceContext) -> Advice:
    """The data wait on the target GPU (``ccprof.hardware.step.data_wait_s``) with more workers."""
    d = profile.data
    now = d.num_workers or 0
    # the GPU host's loader, not this host's core count: the option's workers (default 4), or twice
    # the script's own when it already has that many and the GPU still waits
    workers = int(ctx.option("dataloader", "num_workers"))
    target = workers if now < workers else 2 * now
    snippet = SNIPPET.format(b=d.batch_size or 32, w=target)
    if not d.dataloader_seen:
        return make_advice("dataloader", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale="No torch DataLoader was seen: batches come from elsewhere.")
    after = replace(profile, data=replace(d, num_workers=target, pin_memory=True))
    rc = recost(profile, ctx, profile_after=after)
    wait = rc.before.phase_s.get("data", 0.0)
    share = wait / rc.before.step_s if rc.before.step_s else 0.0
    how = rc.before.data.get("method", "")
    missing = [s for s, bad in (("num_workers>0", not d.num_workers),
                                ("pin_memory=True", d.pin_memory is False),
                                ("persistent_workers=True", bool(d.num_workers) and d.persistent_workers is False))
               if bad]
    if d.batch_s is None and wait <= 0:
        return make_advice("dataloader", "already_applied" if now else "not_applicable", profile, ctx,
                           confidence="low", snippet=snippet,
                           rationale=(f"No data wait was measured with num_workers={now}, and the time to make a "
                                      f"batch is unknown ({d.batch_s_method or 'not measured'}), so the wait on "
                                      f"{rc.spec.name} cannot be projected: with a far faster step there, check it "
                                      "on the GPU."))
    if share < C.DATA_WAIT_FRAC_MIN:
        return make_advice("dataloader", "already_applied" if now else "not_applicable", profile, ctx,
                           confidence="high", snippet=snippet,
                           rationale=(f"On {rc.spec.name} the GPU would wait {fmt_s(wait)} for data per "
                                      f"{fmt_s(rc.before.step_s)} step ({fmt_pct(share)}, below "
                                      f"{fmt_pct(C.DATA_WAIT_FRAC_MIN)}): {how}."),
                           details={"wait_s": wait, "wait_frac": share, "data": rc.before.data})
    if rc.frac <= 0.005:
        return make_advice("dataloader", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"On {rc.spec.name} the GPU would wait {fmt_s(wait)} for data per step "
                                      f"({fmt_pct(share)}) with the loader's {now} workers, and {target} would not "
                                      f"shorten it ({how}): move decoding or augmentation offline, or into the "
                                      "model on the GPU."),
                           details={"wait_s": wait, "wait_frac": share, "data": rc.before.data})
    rationale = (f"On {rc.spec.name} the GPU would wait {fmt_s(wait)} for data in a {fmt_s(rc.before.step_s)} step "
                 f"({fmt_pct(share)}): {how}. "
                 + (f"Set {', '.join(missing)}; " if missing else "")
                 + f"with {target} workers making batches while the GPU computes, the wait is "
                 f"{fmt_s(rc.after.phase_s.get('data', 0.0))}: {rc.says()}, {fmt_change(rc.frac)}.")
    return make_advice("dataloader", "recommended", profile, ctx, confidence="medium", time_saved_frac=rc.frac,
                       rationale=rationale, snippet=snippet, options=DataloaderOptions(num_workers=target),
                       assumptions=[f"Each worker makes a batch in the time one process took here "
                                    f"({fmt_s(d.batch_s) if d.batch_s else 'the measured wait'}); {target} workers "
                                    "deliver that many batches in parallel, so the GPU waits only for what its own "
                                    "compute does not cover.",
                                    f"The GPU host has {target} CPU cores free for workers (--option "
                                    "num_workers=N states another count)."],
                       sources=["PyTorch DataLoader docs: workers prefetch batches in parallel processes",
                                "PyTorch TensorBoard profiler plugin (pytorch/kineto tb_plugin) recommendations: DataLoader > 5% of step -> more workers"],
                       details={"wait_s": wait, "wait_frac": share, "workers_after": target, "missing": missing,
                                "data": rc.before.data, "step_s_before_model": rc.before.step_s,
                                "step_s_after_model": rc.after.step_s})
