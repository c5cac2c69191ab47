"""The report's --dry-run section: that nothing was measured, what was assumed (the stand-ins,
each with the script's line), and whether the step's memory fits each GPU, with the margin."""
from __future__ import annotations

import os
from typing import Any

from ccprof.artefacts.profile import Profile
from ccprof.hardware.pipeline import describe_pipeline
from ccprof.hardware.projection import CUDA_CONTEXT_BYTES, MEMORY_HEADROOM_FRAC, memory_fit_for
from ccprof.reports.view_types import DryRunView
from ccprof.units import fmt_bytes, fmt_s

__all__ = ["dry_run_view"]


def _where(file: str, line: int, script: str, cwd: str = "") -> str:
    """``file:line`` relative to the script's folder when it is in it (the script's path is taken
    from the run's cwd, not this process's)."""
    base = os.path.dirname(os.path.join(cwd, script) if cwd else os.path.abspath(script)) if script else ""
    shown = os.path.relpath(file, base) if base and file.startswith(base + os.sep) else file
    return f"{shown}:{line}"


def dry_run_view(profile: Profile, catalog: dict[str, Any]) -> DryRunView | None:
    """None for a measured run; else the headline, the assumptions, one line per stand-in and
    one line per projected GPU saying whether the step's memory fits and by how much, with each part
    (the caching allocator's reserved peak, NCCL's buffers, the CUDA context) where the allocations
    were replayed, else the tensors' peak against 90% of the GPU."""
    dry = profile.dry_run
    if dry is None:
        return None
    peak = max(profile.memory.peak_bytes or 0, 0)
    headline = ("Dry run: the script ran on fake tensors (shapes, dtypes and devices, no storage, no arithmetic). "
                "Nothing here was measured: the ops, FLOPs and memory follow from the shapes, and every time and "
                "dollar is the cost model's.")
    stand_ins = []
    for s in dry.stand_ins:
        times = f" ({s.count:,} times)" if s.count > 1 else ""
        value = "" if s.value is None else f": {s.value!r} was used"
        where = _where(s.file, s.line, profile.environment.script, profile.environment.cwd)
        stand_ins.append(f"{where} ({s.function}): {s.what}{value}{times}")
    fits = []
    fit_rule = ""
    for gid, proj in sorted((profile.projection or {}).items()):
        spec = catalog.get(gid)
        if spec is None or not peak:
            fits.append(f"{gid}: {'fits' if proj.fits else 'does not fit'}")
            continue
        fit = memory_fit_for(profile, spec)
        fit_rule = fit.rule
        fits.append(f"{gid} ({fmt_bytes(spec.memory_bytes)}): {fit.says()}")
    world = ""
    if dry.nproc * dry.nnodes > 1:
        target = profile.cost.gpu if profile.cost is not None else ""
        proj = (profile.projection or {}).get(target)
        pipe = dry.pipeline
        if pipe is not None and pipe.ranks:
            traced = ", ".join(str(r.rank) for r in pipe.ranks)
            world = (f"The script saw {dry.nproc * dry.nnodes} ranks ({dry.nnodes} node(s) x {dry.nproc} GPU(s)); its "
                     f"pipeline's ranks {traced} were each traced as their own rank, and the memory above is rank "
                     f"{dry.rank}'s, the largest of them (one GPU's).")
            detail = proj.detail.get("pipeline") if proj is not None else None
            if detail:
                line = describe_pipeline(detail)
                world += (f" {line[0].upper()}{line[1:]} on {target}, {fmt_s(detail['bubble_s'])} "
                          f"({detail['rule']}).")
        else:
            world = (f"The script saw {dry.nproc * dry.nnodes} ranks ({dry.nnodes} node(s) x {dry.nproc} GPU(s)) and "
                     "was traced as rank 0: the memory above is one GPU's.")
        comm = (proj.detail.get("comm_s") or {}) if proj is not None else {}
        if comm:
            hidden = proj.detail.get("comm_exposed_s") or {}
            world += (f" Its collectives take {fmt_s(sum(comm.values()))} a step on {target}'s links, "
                      f"{fmt_s(sum(hidden.values()))} of it not hidden behind compute "
                      f"({', '.join(f'{ph} {fmt_s(v)}' for ph, v in comm.items())}).")
        else:
            world += " It ran no collective in the step."
    return DryRunView(headline=headline, assumptions=list(dry.assumptions), stand_ins=stand_ins, fits=fits, world=world,
                      fits_note=_fits_note(profile, peak, fit_rule) if peak else "")


def _fits_note(profile: Profile, peak: int, rule: str) -> str:
    """How the fit above was made: the parts and where each figure comes from."""
    tensors = f"Peak memory of one step {fmt_bytes(peak)} (this process's tensors in the script's dtypes)."
    reserved = profile.memory.reserved_peak_bytes
    if rule != "reserved" or not reserved:
        return (f"{tensors} Against {1 - MEMORY_HEADROOM_FRAC:.0%} of each GPU's memory (the rest left free for the "
                "CUDA context, workspaces and fragmentation).")
    settings = profile.memory.allocator
    if settings is not None and settings.expandable_segments:
        rules = ("512-byte rounding, best-fit reuse and expandable segments: one segment per stream and pool that "
                 "maps 2 MiB (small) or 20 MiB (large) pages at its end as it grows")
    else:
        rules = "512-byte rounding, 2 and 20 MiB segments and best-fit reuse"
    rules += ", each allocation on the stream it was made on"
    if settings is not None:
        rules += f"; the run's allocator settings: {settings.describe()}"
    return (f"{tensors} PyTorch's CUDA caching allocator would reserve {fmt_bytes(reserved)} for these allocations "
            "(torch.cuda.max_memory_reserved, what training logs show: the ledger's allocations replayed through its "
            f"{rules}). "
            "Beside it the GPU holds what that figure leaves out: NCCL's buffers for each process group that ran a "
            "collective (an estimate: 32 channels x 3 peers x the Simple 4 MiB, LL 512 KiB and LL128 4.7 MiB buffers, "
            "NCCL's defaults, in 10 MiB; NCCL docs NCCL_BUFFSIZE, NVIDIA/nccl#964 and #1685) and the CUDA context "
            f"({fmt_bytes(CUDA_CONTEXT_BYTES)}: ~300-400 MB measured with lazy module loading, pytorch/pytorch#107667 "
            "and #109888). A step fits when the three stay within the GPU's memory.")
