"""distributed: use every visible GPU with DDP, fix DataParallel and accumulation without
no_sync, shard model state with FSDP when it does not fit one device."""
from __future__ import annotations

from ccprof.advisors._common import clamp, fmt_bytes, fmt_pct, fmt_s, gpu_spec, ledger, make_advice, recost, run_price
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.hardware.comm import DDP_BUCKET_BYTES, NCCL_BUS_EFF, ddp_comm, link_bytes_per_s
from ccprof.hardware.projection import FIT_SOURCES, MemoryFit, memory_fit_for, peak_budget_bytes

__all__ = ["advise_distributed", "project_ddp", "fsdp_gpus"]

SNIPPET = """
# torchrun --nproc_per_node={n} train.py
import os, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("nccl")
local_rank = int(os.environ["LOCAL_RANK"]); torch.cuda.set_device(local_rank)
model = DDP(model.to(local_rank), device_ids=[local_rank])
sampler = torch.utils.data.distributed.DistributedSampler(dataset)
# accumulating? skip the all-reduce on all but the last micro-batch:
#   with model.no_sync(): loss.backward()
# model state larger than one GPU: torch.distributed.fsdp.fully_shard(model)
"""


def project_ddp(step_s: float, backward_s: float, grad_bytes: int, n: int, spec) -> dict:
    """One step on each of ``n`` GPUs with DDP (the batch per GPU unchanged), and the run's wall time.

    Each GPU runs the profiled step plus the part of the ring all-reduce of the gradients that
    backward does not hide (``ccprof.hardware.comm.ddp_comm``); n GPUs make n steps' progress at
    once, so the run takes ``(step + exposed) / (n x step)`` of its single-GPU wall time.
    """
    comm = ddp_comm(grad_bytes, n, spec, backward_s)
    after = step_s + comm.exposed_s
    return {"gpus": n, "comm_s": comm.total_s, "exposed_comm_s": comm.exposed_s, "step_s_after": after,
            "wall_time_saved_frac": 1 - after / (n * step_s) if step_s else 0.0,
            "speedup": n * step_s / after if after else 0.0, "how": comm.what}


def fsdp_gpus(profile: Profile, spec, state: int, rest: int, least: int) -> tuple[int, MemoryFit]:
    """The fewest GPUs (at least ``least``) whose FSDP shard of ``state`` plus the unsharded ``rest``
    (activations and temporaries) fits each GPU by the one fit rule, with the planned world's
    communicator (its NCCL buffers under the reserved rule), and that fit; ``least`` and its failing
    fit when no count fits (``rest`` alone, beside the buffers and the context, is over).

    Example: state 1.6 GB, rest 0.4 GB, a 1 GB GPU under the tensors' rule (0.9 GB): 0.5 GB for the
    shard -> ceil(1.6 / 0.5) = 4 GPUs, peak 0.8 GB each."""
    def fit(n: int) -> MemoryFit:          # the world's nodes do not change its buffers: one (n, 1) group
        return memory_fit_for(profile, spec, -(-state // n) + rest, groups=((n, 1),))
    room = peak_budget_bytes(profile, spec, groups=((least, 1),)) - rest
    n = max(least, -(-state // room)) if room > 0 else least
    return n, fit(n)


@register("distributed")
def advise_distributed(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend DDP/FSDP where GPUs go unused, DataParallel is used, no_sync is missing, or
    model state outgrows one device; the collectives are costed by ``ccprof.hardware.comm``."""
    st = profile.static
    n_vis = ctx.gpus or (profile.device.count if profile.device.type == "cuda" else 1)
    snippet = SNIPPET.format(n=max(2, n_vis))
    spec = gpu_spec(profile, ctx)
    led = ledger(profile)
    price = run_price(profile, ctx)
    link = link_bytes_per_s(spec)
    link_src = spec.interconnect or "PCIe 4.0 x16, 32 GB/s per direction (no catalog interconnect)"
    state = led.params + led.grads + led.opt
    sources = ["Li et al., PyTorch Distributed, VLDB 2020 (near-linear DDP scaling, 25 MB buckets, no_sync)",
               "nccl-tests PERFORMANCE.md (ring all-reduce bus bandwidth)"]
    assumptions = [f"Ring all-reduce of {fmt_bytes(led.grads)} of gradients at {fmt_pct(NCCL_BUS_EFF)} of "
                   f"{fmt_bytes(link)}/s each way ({link_src}), in {DDP_BUCKET_BYTES // 2**20} MiB buckets.",
                   "Buckets all-reduce while backward runs; only what backward does not cover (at least the last "
                   "bucket) adds to the step."]
    model = recost(profile, ctx, spec=spec).before
    if st.data_parallel and not st.ddp:
        return make_advice("distributed", "recommended", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"The script uses nn.DataParallel (line {st.lines.get('data_parallel', '?')}), which "
                                      "replicates the model from one GPU every step and runs one Python thread per GPU. "
                                      "DistributedDataParallel runs one process per GPU and overlaps the all-reduce; "
                                      "ccprof does not project the gain without a multi-GPU profile, so it claims no saving."),
                           sources=sources + ["PyTorch docs: DDP is recommended over DataParallel"],
                           details={"case": "data_parallel"})
    if st.ddp and (st.accumulation or profile.steps.micro_batches > 1) and "no_sync" not in st.lines:
        k = max(2, profile.steps.micro_batches)
        n = max(2, n_vis)
        c = ddp_comm(led.grads, n, spec, model.phase_s.get("backward", 0.0) / k)
        frac = clamp((k - 1) * c.exposed_s / model.step_s) if model.step_s else 0.0
        return make_advice("distributed", "recommended", profile, ctx, confidence="medium", snippet=snippet,
                           time_saved_frac=frac, assumptions=assumptions, sources=sources,
                           rationale=(f"DDP accumulates {k} micro-batches per step without no_sync(): {k - 1} redundant "
                                      f"all-reduces of {fmt_bytes(led.grads)} over {n} GPUs, each "
                                      f"{fmt_s(c.total_s)} of which {fmt_s(c.exposed_s)} is not hidden by that "
                                      f"micro-batch's backward: {fmt_pct(frac)} of the {fmt_s(model.step_s)} step on "
                                      f"{spec.name}."),
                           details={"case": "no_sync", "comm_s": c.total_s, "exposed_comm_s": c.exposed_s})
    if st.ddp or st.fsdp:
        return make_advice("distributed", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"The script already uses {'FSDP' if st.fsdp else 'DDP'}.")
    # the one fit rule (the projection's and the report's): model state alone on one GPU
    fit_state = memory_fit_for(profile, spec, state) if spec.memory_bytes else None
    if fit_state is not None and not fit_state.fits:
        n, fit_after = fsdp_gpus(profile, spec, state, led.act + led.other, max(2, n_vis))
        per = state / n + led.act + led.other
        says = (f"Model state (parameters {fmt_bytes(led.params)}, gradients {fmt_bytes(led.grads)}, "
                f"optimizer {fmt_bytes(led.opt)}) is {fmt_bytes(state)}: alone on one {spec.name} it "
                f"{fit_state.says()}. FSDP/ZeRO-3 over {n} GPUs holds {fmt_bytes(state / n)} of it per GPU: peak "
                f"{fmt_bytes(per)} per GPU with activations and temporaries, and with the NCCL buffers of the {n} GPUs' "
                f"process group it {fit_after.says()}.")
        details = {"case": "fsdp", "gpus": n, "memory_fit": fit_state.as_dict(), "memory_fit_after": fit_after.as_dict()}
        src = sources + ["Rajbhandari et al., ZeRO, SC 2020 (sharding parameters, gradients, optimizer state)",
                         *FIT_SOURCES]
        if not fit_after.fits:
            return make_advice("distributed", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                               rationale=(f"{says} Sharding the state over more GPUs does not bring it under: what "
                                          f"each GPU keeps beside its shard (activations and temporaries "
                                          f"{fmt_bytes(led.act + led.other)}, NCCL's buffers, the CUDA context) "
                                          "already does not fit. See checkpointing, grad_accumulation or a GPU "
                                          "with more memory."),
                               assumptions=assumptions, sources=src, details=details)
        return make_advice("distributed", "recommended", profile, ctx, confidence="medium", snippet=snippet,
                           memory_saved_bytes=int(led.peak - per), peak_bytes_after=int(per), assumptions=assumptions,
                           sources=src, rationale=says, details=details)
    if n_vis > 1:
        pr = project_ddp(model.step_s, model.phase_s.get("backward", 0.0), led.grads, n_vis, spec)
        # The user pays for all n visible GPUs today; with DDP the run ends n-fold sooner.
        usd = price.usd_run * n_vis * pr["wall_time_saved_frac"] if price.priced else 0.0
        return make_advice("distributed", "recommended", profile, ctx, confidence="medium", snippet=snippet,
                           time_saved_frac=pr["wall_time_saved_frac"], usd_saved=usd,
                           cost_saved_frac=pr["wall_time_saved_frac"],
                           step_s_after=price.step_s * pr["step_s_after"] / model.step_s if model.step_s else None,
                           assumptions=assumptions + [
                               f"You pay for all {n_vis} visible GPUs whether or not they work."], sources=sources,
                           rationale=(f"{n_vis} GPUs are visible but the script trains on one. With DDP each GPU runs "
                                      f"the {fmt_s(model.step_s)} step on its own batch and all-reduces "
                                      f"{fmt_bytes(led.grads)} of gradients ({fmt_s(pr['comm_s'])}, "
                                      f"{fmt_s(pr['exposed_comm_s'])} not hidden by backward on {spec.name}): "
                                      f"{n_vis} steps' progress in {fmt_s(pr['step_s_after'])}, "
                                      f"{pr['speedup']:.1f}x the throughput."),
                           details={"case": "unused_gpus", **pr})
    return make_advice("distributed", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                       rationale=(f"One device is visible and model state ({fmt_bytes(state)}) fits it: nothing to "
                                  "distribute. More GPUs would shorten the run, not cut its dollars."),
                       details={"case": "single"})
