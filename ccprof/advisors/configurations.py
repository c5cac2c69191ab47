"""The plan across configurations: which GPU, how many, sharded how, with which memory tweak.

For every catalog GPU with a price, 1, 2, 4 or 8 of them on one node (and 2 to 16 nodes where the
catalog has the node's network and they can matter), the script as written
and with each memory tweak its advisor projects (mixed precision, activation checkpointing,
LoRA) is costed: memory per GPU, step time, tokens per second per GPU, the planned run's hours
and dollars, and whether one step fits. From the rows: the cheapest configuration that fits, the
fastest one under ``--budget`` and the cheapest one that meets ``--deadline``.

What each row assumes (also in ``Configurations.assumptions``):

- Data parallel keeps the script's batch on each GPU, so N GPUs take N batches a step and the run
  needs ``run_steps / N`` steps for the same samples (a global batch N times larger: the learning
  rate may need to follow).
- DDP (every GPU holds the whole model state) adds its gradient buckets (one more gradient-sized
  buffer unless ``gradient_as_bucket_view=True``: PyTorch DDP docs) and the ring all-reduce that
  backward does not hide (``ccprof.hardware.comm.ddp_comm``).
- FSDP / ZeRO-3 (when the state does not fit one GPU with DDP) holds 1/N of the parameters,
  gradients and optimizer state, plus one repeated block's parameters gathered in full (two with
  prefetch), and adds the all-gathers and reduce-scatter that compute does not hide
  (``ccprof.hardware.comm.fsdp_comm``; Rajbhandari et al., ZeRO, SC 2020; Zhao et al., PyTorch
  FSDP, VLDB 2023).
- Within a node GPUs talk over the catalog's interconnect (NVLink, else PCIe); across nodes over the
  catalog's network per GPU (``network_gbit_s_per_gpu`` of the node ``gpus_per_node`` describes),
  costed by ``ccprof.hardware.comm.collective_s``. Rows of 2, 4, 8 and 16 whole nodes are added for a
  GPU with a network figure only while they can matter: when the one-node rows do not fit, miss
  ``--deadline``, or stay within ``--budget`` (for the same samples more nodes cost no less in this
  model: they only add collectives). A GPU without a network figure is planned on one node only.
- A memory tweak's step time and peak are its advisor's projection on that GPU.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ccprof.advisors._common import Ledger, catalog_entries, ledger, run_price
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice, ConfigRow, Configurations
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS
from ccprof.artefacts.vocab import MODEL_PHASES
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.comm import (
    NCCL_BUS_EFF,
    NETWORK_BUS_EFF,
    NETWORK_HOP_LATENCY_S,
    collective_kind,
    ddp_comm,
    fsdp_comm,
)
from ccprof.hardware.pipeline import pipeline_ranks
from ccprof.hardware.projection import (
    MEMORY_FIT_SOURCES,
    MEMORY_HEADROOM_FRAC,
    MemoryFit,
    memory_fit_for,
    spanned_nodes,
)

__all__ = ["plan_configurations", "GPU_COUNTS", "NODE_COUNTS", "MEMORY_TWEAKS"]

GPU_COUNTS = (1, 2, 4, 8)                         # one node: 8 GPUs is the common HGX/DGX board
NODE_COUNTS = (2, 4, 8, 16)                       # whole nodes of the catalog's gpus_per_node
# the memory tweaks each GPU is costed with, in the catalog's order (TweakInfo.plan_variant)
MEMORY_TWEAKS = tuple(t for t, info in TWEAKS.items() if info.plan_variant)

ASSUMPTIONS = [
    "Data parallel keeps the script's batch on each GPU: N GPUs take N batches a step, and the run needs "
    "1/N of the steps for the same samples (a global batch N times larger; the learning rate may need to follow).",
    "DDP holds the whole model state on each GPU plus its gradient buckets (one more gradient-sized buffer, "
    "gradient_as_bucket_view=False, the default), and adds the ring all-reduce backward does not hide.",
    "FSDP (ZeRO-3), chosen where DDP does not fit, holds 1/N of the parameters, gradients and optimizer state plus "
    "two repeated blocks' parameters gathered in full (the current one and the prefetched next), and adds the "
    "all-gathers and reduce-scatter compute does not hide.",
    f"One step fits when its tensors' peak stays under {1 - MEMORY_HEADROOM_FRAC:.0%} of the GPU's memory (the rest "
    "for the CUDA context, library workspaces and the caching allocator's fragmentation); for a dry run, whose "
    "allocations are replayed through PyTorch's caching allocator, when the allocator's reserved peak + NCCL's "
    "buffers (an estimate per process group: 32 channels x 3 peers x NCCL's default Simple, LL and LL128 buffers) + "
    "the CUDA context (512 MiB) stay within the GPU's memory; a tweak's or a planned shard's reserved figure moves "
    "with its tensors' peak.",
    "Within a node the GPUs talk over the catalog's interconnect (NVLink, else PCIe 4.0 x16) at "
    f"{NCCL_BUS_EFF:.0%} of it; across nodes over the catalog node's network per GPU at {NETWORK_BUS_EFF:.0%} of "
    "what one node's GPUs have together (NCCL runs a ring per network card; measured on InfiniBand, unverified for "
    f"AWS EFA), each ring step that crosses nodes taking {NETWORK_HOP_LATENCY_S * 1e6:.1f} us (NCCL's own tuning "
    "model).",
    "Rows of 2, 4, 8 and 16 whole nodes are listed only while they can matter: when one node cannot hold a step, "
    "misses the deadline, or stays within the budget (for the same samples more nodes cost no less in this model: "
    "they only add collectives).",
    "Collectives are costed as NCCL rings: a ring's latency grows with its GPUs, and at 8-16 nodes NCCL may pick its "
    "tree all-reduce (log2 of the nodes in network steps) instead, so small gradient buckets over many nodes are "
    "costed on the high side.",
    "A memory tweak's step time and peak on each GPU are its advisor's projection there.",
    "The picks (cheapest, fastest within the budget, cheapest by the deadline) train the script's model as it is: "
    "rows with a tweak that changes what is trained (LoRA) are listed but never picked.",
]
SOURCES = [
    "PyTorch DDP docs (bucket_cap_mb=25, gradient_as_bucket_view)",
    "Li et al., PyTorch Distributed, VLDB 2020 (overlap of the all-reduce with backward)",
    "Rajbhandari et al., ZeRO, SC 2020 (sharded parameters, gradients, optimizer state)",
    "Zhao et al., PyTorch FSDP, VLDB 2023 (all-gather in forward and backward, reduce-scatter of gradients)",
    "nccl-tests PERFORMANCE.md (ring bus bandwidth)",
    "NCCL src/graph/tuning.cc (ring steps that cross nodes; 9.6 us per network step, Simple protocol)",
    "NVIDIA/nccl-tests issue #175 (2 x 8 A100, 4 x 200 Gb/s HDR per node: 86 GB/s all-reduce bus bandwidth)",
    *MEMORY_FIT_SOURCES,
]


def _block_bytes(profile: Profile) -> int:
    """One repeated block's parameter bytes (what FSDP gathers in full per layer), 0 when none."""
    led = ledger(profile)
    params = profile.model.params or 0
    bytes_per_param = led.params / params if params else 4.0
    blocks = profile.model.repeated_blocks
    if not blocks:
        return 0
    return int(max(b.params_each for b in blocks) * bytes_per_param)


def _variants(profile: Profile, ctx: AdviceContext, base_step: float) -> list[tuple[str, float, int, Advice | None]]:
    """(name, step seconds, peak bytes, advice) on ctx's GPU: as written, then each memory tweak
    its advisor recommends there (one that is not recommended changes nothing worth a row)."""
    from ccprof.advisors import advise_one  # here: advisors import this module's package

    led = ledger(profile)
    out: list[tuple[str, float, int, Advice | None]] = [("as written", base_step, led.peak, None)]
    ref = run_price(profile, ctx).step_s     # what the advice's step_s_after is a change of
    for tweak in MEMORY_TWEAKS:
        a = advise_one(tweak, profile, ctx)
        p = a.projected
        if a.status != "recommended" or p.peak_bytes_after is None:
            continue
        ratio = p.step_s_after / ref if p.step_s_after and ref else 1.0 - p.time_saved_frac
        out.append((tweak, max(base_step * ratio, 0.0), int(max(p.peak_bytes_after, 0)), a))
    return out


def _parallel(n: int, nodes: int, spec: GpuSpec, step1: float, peak1: int, adapters: bool, led: Ledger,
              block: int, backward_s: float, compute_s: float, fits: Callable[[int], bool]) -> tuple[str, int, float, str]:
    """(parallel, tensors' peak per GPU, step seconds, collectives) of ``n`` GPUs over ``nodes`` nodes: DDP
    where the whole state fits one GPU (``fits(peak)``, or only adapters train), else FSDP."""
    if n == 1:
        return "none", peak1, step1, "one GPU"
    state = led.params + led.grads + led.opt
    ddp_mem = peak1 + (0 if adapters else led.grads)
    if fits(ddp_mem) or adapters:
        c = ddp_comm(0 if adapters else led.grads, n, spec, backward_s, nodes=nodes)
        what = ("all-reduce of the adapters' gradients (a few MiB at most)"
                + (f" over {nodes} nodes" if nodes > 1 else "")) if adapters else c.what
        return "ddp", ddp_mem, step1 + c.exposed_s, what
    c = fsdp_comm(led.params, led.grads, n, spec, compute_s, nodes=nodes)
    mem = int(state / n + (peak1 - state) + 2 * block) if peak1 > state else int(peak1 / n + 2 * block)
    return "fsdp", mem, step1 + c.exposed_s, c.what


def _more_nodes(last: ConfigRow, budget_usd: float | None, deadline_h: float | None) -> bool:
    """Whether the next node count is worth a row: the last did not fit, misses the deadline, or
    stays within the budget (a faster run may too)."""
    if not last.fits:
        return True
    if deadline_h is not None and (last.run_hours is None or last.run_hours > deadline_h):
        return True
    return budget_usd is not None and last.usd_run is not None and last.usd_run <= budget_usd


def _traced_world(profile: Profile) -> tuple[int, int, str]:
    """(ranks, nodes, parallel) of a profile traced on several ranks (``--nproc``, ``--dry-run --nproc
    N --nnodes M``): a pipeline's stages traced (``DryRun.pipeline``: "pipeline"), else its collectives
    say how it shards (a reduce-scatter: FSDP; else DDP)."""
    kinds = {collective_kind(o.op) for o in profile.ops}
    nodes = spanned_nodes(profile)
    if profile.dry_run is not None:
        nodes = max(nodes, profile.dry_run.nnodes)
        if profile.dry_run.pipeline is not None and profile.dry_run.pipeline.ranks:
            return profile.world_size, nodes, "pipeline"
    return profile.world_size, nodes, "fsdp" if "reduce_scatter" in kinds else "ddp"


def _pipeline_ranks(profile: Profile) -> int:
    """The ranks of one traced pipeline (its stages' distinct ranks), which share each sample."""
    pipe = profile.dry_run.pipeline if profile.dry_run is not None else None
    return max(1, pipeline_ranks(pipe)) if pipe is not None else 1


def plan_configurations(profile: Profile, ctx: AdviceContext | None = None, *, budget_usd: float | None = None,
                        deadline_h: float | None = None) -> Configurations | None:
    """Every configuration's memory per GPU, step, throughput, hours and dollars, and the picks.

    Input: a costed Profile (``profile.projection`` from the hardware stage), the advice context
    (its catalog, run size and options), an optional budget (USD) and deadline (hours).
    Output: ``Configurations`` (None when the profile has no projection).
    Example: ``plan_configurations(profile, AdviceContext(run_steps=20_000), budget_usd=500).cheapest``.
    """
    ctx = ctx or AdviceContext()
    if not profile.projection:
        return None
    catalog = catalog_entries(ctx)
    led = ledger(profile)
    tokens = profile.steps.tokens_per_step or None
    samples = profile.steps.samples_per_step or None
    run_steps = ctx.run_steps or (profile.cost.run_steps if profile.cost is not None else 0) or 0
    block = _block_bytes(profile)
    rows: list[ConfigRow] = []
    one_node_only: list[str] = []
    networks: dict[str, str] = {}

    traced = _traced_world(profile) if profile.world_size > 1 else None

    def row(gid: str, spec: GpuSpec, n: int, nodes: int, name: str, step1: float, peak1: int,
            advice: Advice | None, backward: float, compute: float) -> ConfigRow:
        adapters = name in TWEAKS and TWEAKS[name].plan_variant == "adapters"
        if traced is not None:
            # the step and memory are already one rank's of the traced world, collectives included;
            # every rank takes each of the script's steps
            parallel, mem, step = traced[2], peak1, step1
            how = f"as traced: {n} ranks on {nodes} node(s), the script's own collectives"
            steps_needed = float(run_steps) if run_steps else None
            fit = memory_fit_for(profile, spec, mem)
        else:
            def fit_of(peak: int) -> MemoryFit:      # the plan's own world: one communicator of its n GPUs
                return memory_fit_for(profile, spec, peak, groups=((n, nodes),) if n > 1 else ())
            parallel, mem, step, how = _parallel(n, nodes, spec, step1, peak1, adapters, led, block, backward,
                                                 compute, lambda peak: fit_of(peak).fits)
            steps_needed = run_steps / n if run_steps else None
            fit = fit_of(mem)
        hours = steps_needed * step / 3600 if steps_needed else None
        # a pipeline's ranks share each sample (every stage of one pipeline sees the same batch): per GPU,
        # a step moves a share of the batch, and n GPUs hold n / share replicas of the pipeline
        share = _pipeline_ranks(profile) if parallel == "pipeline" else 1
        return ConfigRow(
            gpu=gid, gpus=n, nodes=nodes, parallel=parallel, tweak=name, memory_per_gpu_bytes=fit.need_bytes,
            usable_bytes=fit.capacity_bytes, fits=fit.fits, memory_parts=dict(fit.parts), step_s=step,
            tokens_per_s_per_gpu=tokens / share / step if tokens and step else None,
            samples_per_s=samples * n / share / step if samples and step else None,
            run_hours=hours, usd_run=hours * n * spec.usd_per_hour if hours is not None else None,
            usd_per_hour=n * spec.usd_per_hour,
            usd_per_1k_samples=(1000 * step * spec.usd_per_hour / 3600 / (samples / share)) if samples else None,
            how=how, risk=advice.risk if advice is not None else "none")

    for gid, proj in sorted(profile.projection.items()):
        spec = catalog.get(gid)
        if spec is None or not spec.usd_per_hour or not proj.step_s:
            continue
        g_ctx = replace(ctx, gpu=gid, usd_per_hour=None)
        compute = sum(v for ph, v in (proj.phase_s or {}).items() if ph in MODEL_PHASES) or proj.step_s
        backward = (proj.phase_s or {}).get("backward", 0.0)
        per_node = spec.gpus_per_node or max(GPU_COUNTS)
        networked = bool(spec.network_bytes_per_s_per_gpu and spec.gpus_per_node)
        if not networked:
            one_node_only.append(gid)
        for name, step1, peak1, advice in _variants(profile, g_ctx, proj.step_s):
            if traced is not None:
                rows.append(row(gid, spec, traced[0], traced[1], name, step1, peak1, advice, backward, compute))
                continue
            for n in (c for c in GPU_COUNTS if c <= per_node):
                rows.append(row(gid, spec, n, 1, name, step1, peak1, advice, backward, compute))
            last = rows[-1]
            for nodes in NODE_COUNTS if networked else ():
                if not _more_nodes(last, budget_usd, deadline_h):
                    break
                last = row(gid, spec, nodes * per_node, nodes, name, step1, peak1, advice, backward, compute)
                rows.append(last)
                networks[gid] = f"{gid}: {spec.network} ({spec.network_source})"
    if not rows:
        return None
    assumptions = list(ASSUMPTIONS)
    if traced is not None:
        assumptions.insert(0, f"The script ran as one of {traced[0]} ranks on {traced[1]} node(s) ({traced[2].upper()}, "
                              "as its collectives show): every row keeps that world, with each rank's memory and step "
                              "as traced and its collectives costed on each GPU's links. To plan another world, run "
                              "again with another --nproc (and --nnodes with --dry-run).")
    if one_node_only and traced is None:
        assumptions.append(f"No network figure in the catalog for {', '.join(one_node_only)}: planned on one node only "
                           "(add gpus_per_node and network_gbit_s_per_gpu with --catalog FILE to plan them across nodes).")
    return Configurations(rows=rows, run_steps=run_steps, budget_usd=budget_usd, deadline_h=deadline_h,
                          **_picks(rows, budget_usd, deadline_h), assumptions=assumptions,
                          sources=list(SOURCES) + sorted(networks.values()))


def _cost_key(r: ConfigRow) -> float:
    """The planned run's dollars; without a run size, dollars per 1,000 samples (the same order)."""
    if r.usd_run is not None:
        return r.usd_run
    return r.usd_per_1k_samples if r.usd_per_1k_samples is not None else r.usd_per_hour * r.step_s


# a tweak that changes what is trained (LoRA: accuracy) is shown, never picked: the picks train
# the script's model as it is
PICKABLE_RISKS = ("none", "numerics")


def _picks(rows: list[ConfigRow], budget: float | None, deadline: float | None) -> dict[str, int | None]:
    fit = [i for i, r in enumerate(rows) if r.fits and r.risk in PICKABLE_RISKS]
    cheapest = min(fit, key=lambda i: (_cost_key(rows[i]), rows[i].step_s / rows[i].gpus), default=None)
    fastest = None
    if budget is not None:
        ok = [i for i in fit if rows[i].usd_run is not None and rows[i].usd_run <= budget]
        fastest = min(ok, key=lambda i: (rows[i].run_hours, rows[i].usd_run), default=None)
    by_deadline = None
    if deadline is not None:
        ok = [i for i in fit if rows[i].run_hours is not None and rows[i].run_hours <= deadline]
        by_deadline = min(ok, key=lambda i: (rows[i].usd_run, rows[i].run_hours), default=None)
    return {"cheapest": cheapest, "fastest_in_budget": fastest, "cheapest_by_deadline": by_deadline}
