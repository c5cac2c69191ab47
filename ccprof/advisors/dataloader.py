"""dataloader: workers, pinned memory and persistent workers when the data wait is high."""
from __future__ import annotations

import os

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_pct, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

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
    """Saving = data wait share x the share workers can hide."""
    d = profile.data
    workers = min(8, os.cpu_count() or 4)
    snippet = SNIPPET.format(b=d.batch_size or 32, w=workers)
    if not d.dataloader_seen:
        return make_advice("dataloader", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale="No torch DataLoader was seen: batches come from elsewhere.")
    wait = d.wait_frac
    if wait is None:
        return make_advice("dataloader", "not_applicable", profile, ctx, confidence="low", snippet=snippet,
                           rationale="The data wait was not measured.")
    missing = [s for s, bad in (("num_workers>0", not d.num_workers),
                                ("pin_memory=True", d.pin_memory is False),
                                ("persistent_workers=True", bool(d.num_workers) and d.persistent_workers is False))
               if bad]
    if wait < C.DATA_WAIT_FRAC_MIN:
        status = "already_applied" if d.num_workers else "not_applicable"
        return make_advice("dataloader", status, profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"Waiting for data is {fmt_pct(wait)} of the step (below "
                                      f"{fmt_pct(C.DATA_WAIT_FRAC_MIN)}); the loader uses {d.num_workers or 0} workers."))
    frac = clamp(wait * C.DATALOADER_HIDDEN_FRAC)
    rationale = (f"Waiting for data is {fmt_pct(wait)} of the step with num_workers={d.num_workers or 0}, "
                 f"pin_memory={d.pin_memory}, persistent_workers={d.persistent_workers}. "
                 + (f"Set {', '.join(missing)}; " if missing else "Add workers or move preprocessing offline; ")
                 + f"workers that prepare batches while the GPU computes hide about {fmt_pct(C.DATALOADER_HIDDEN_FRAC)} "
                 f"of it: {fmt_pct(frac)} less time per step.")
    return make_advice("dataloader", "recommended", profile, ctx, confidence="medium", time_saved_frac=frac,
                       rationale=rationale, snippet=snippet,
                       assumptions=[f"Workers hide {fmt_pct(C.DATALOADER_HIDDEN_FRAC)} of the wait (ccprof assumption).",
                                    "The data wait on the target machine matches the profiled one."],
                       sources=["PyTorch TensorBoard plugin: DataLoader > 5% of step -> more workers (FACTS.md)",
                                "PyTorch performance tuning guide: num_workers, pin_memory"],
                       details={"wait_frac": wait, "missing": missing})
