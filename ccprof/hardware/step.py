"""The one cost model: seconds of a training step on a GPU, phase by phase.

    from ccprof.hardware.step import cost_step
    sc = cost_step(profile, catalog["h100-sxm"])          # the step as the script would run there
    sc.phase_s, sc.step_s, sc.bound                         # {"data": ..., "forward": ...}, s, by phase

Every stage that needs seconds asks this module: the projection onto each catalog GPU, every
advisor's "after" (a tweak changes the policy or the op list, and the step is costed again),
the plan, verify and the reports. Per phase::

    device_s = sum over the phase's kernels of calls x achieved seconds (ccprof.hardware.kernels)
    host_s   = dispatches x (the reference host's dispatch + a CUDA launch) + the phase's Python
               (its bytecodes, counted, x the reference's cost of one; older profiles: module
               calls x the reference's module-call cost, forward only)      (ccprof.hardware.host)
    phase_s  = max(device_s, host_s)          # the host queues kernels ahead; the slower side wins

and the data phase is what the loader makes the GPU wait for (:func:`data_wait_s`): the whole
batch time with ``num_workers=0``, else what the workers cannot hide behind the step's compute.
``step_s`` is the sum of the phases. Nothing here reads a time the profiling host measured except
a batch's making (its CPU time over a speed probe): ``step_s_lo``/``step_s_hi`` carry that
figure's 95% interval, the only spread a projection has.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from ccprof.artefacts.profile import OpCost, Profile, module_ancestors
from ccprof.artefacts.vocab import MATMUL_CLASSES, MODEL_PHASES, STEP_PHASES
from ccprof.hardware import kernels as K
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.comm import collective_kind
from ccprof.hardware.host import HostSide, host_side
from ccprof.hardware.inputs import StepInputs, step_inputs
from ccprof.hardware.translate import (
    Kernel,
    Policy,
    optimizer_kernels,
    policy_for,
    regrouped,
    row_kernels,
    translate,
)

__all__ = ["CUDA_LAUNCH_S", "PCIE_BYTES_PER_S", "PHASES", "OVERLAPPED_PHASES", "StepCost", "blocks", "cost_step",
           "data_wait_s", "exposed_comm_s", "fuse", "module_s", "op_s"]

PHASES = STEP_PHASES

# Host cost of one kernel launch on top of PyTorch's dispatch: cudaLaunchKernel and the CUDA
# bookkeeping around it take ~3-5 us when launches are pipelined (NVIDIA, "Getting Started
# with CUDA Graphs", 2019); 4 us is taken. Not measurable on a CPU-only host.
CUDA_LAUNCH_S = 4e-6
# Host-to-device copy of a batch: PCIe 4.0 x16 is 32 GB/s per direction (PCI-SIG); ~25 GB/s is
# what pinned copies reach. The copy is taken as not overlapped (the common `x.to(device)`).
PCIE_BYTES_PER_S = 25e9


@dataclass(frozen=True)
class StepCost:
    """A step on one GPU: seconds by phase for device and host, the phase times, and notes."""
    gpu: str
    policy: Policy
    device_s: dict[str, float]
    host_s: dict[str, float]
    phase_s: dict[str, float]
    step_s: float
    launches: int
    by_class: dict[str, float] = field(default_factory=dict)   # device seconds by kernel class
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # the data wait at the ends of the batch time's 95% interval (None: no measured spread)
    data_lo_s: float | None = None
    data_hi_s: float | None = None
    # collectives by phase: their seconds on the links, and what of them the compute does not hide
    # (included in device_s; :func:`exposed_comm_s`)
    comm_s: dict[str, float] = field(default_factory=dict)
    comm_exposed_s: dict[str, float] = field(default_factory=dict)

    @property
    def step_s_lo(self) -> float:
        """The step at the low end of the measured batch time's interval (= step_s without one)."""
        return self.step_s if self.data_lo_s is None else self.step_s - self.phase_s.get("data", 0.0) + self.data_lo_s

    @property
    def step_s_hi(self) -> float:
        return self.step_s if self.data_hi_s is None else self.step_s - self.phase_s.get("data", 0.0) + self.data_hi_s

    @property
    def bound(self) -> dict[str, str]:
        """Which side sets each phase: ``device`` or ``host`` (the data phase is ``data``)."""
        out = {"data": "data"}
        for ph in PHASES[1:]:
            out[ph] = "host" if self.host_s.get(ph, 0.0) > self.device_s.get(ph, 0.0) else "device"
        return out

    @property
    def compute_s(self) -> float:
        """The step without its data wait."""
        return self.step_s - self.phase_s.get("data", 0.0)

    def scaled(self, device_factor: dict[str, float]) -> "StepCost":
        """The same step with each phase's device time scaled (a measured-GPU recalibration)."""
        dev = {ph: v * device_factor.get(ph, 1.0) for ph, v in self.device_s.items()}
        phase = dict(self.phase_s)
        for ph in PHASES[1:]:
            phase[ph] = max(dev.get(ph, 0.0), self.host_s.get(ph, 0.0))
        return replace(self, device_s=dev, phase_s=phase, step_s=sum(phase.values()))


def data_wait_s(profile: Profile | StepInputs, compute_s: float, host: HostSide | None = None,
                batch_s: float | None = None) -> tuple[float, dict[str, Any]]:
    """Seconds per step the GPU would wait for data, and how that was worked out.

    With ``num_workers=0`` the main process makes every batch: the wait is the batch time times
    batches per step. With workers, each makes a batch in ``batch_s`` while the GPU computes;
    ``w`` workers deliver ``w / batch_s`` batches a second, so the wait per step is
    ``max(0, batches x batch_s / w - compute_s)``. The batch time is the one ``host`` prices on
    the target host (``ccprof.hardware.host``; ``batch_s`` overrides it: an end of its interval);
    without one there is no wait to project, whatever the profiling host's loop waited (that
    wait is its own CPU's). The host-to-device copy of the batch is added at
    :data:`PCIE_BYTES_PER_S`.
    """
    inputs = step_inputs(profile)
    d = inputs.data
    host = host or host_side(inputs)
    measured = d.measured_wait_s
    bps = d.batches_per_step or float(max(d.micro_batches, 1))
    info: dict[str, Any] = {"measured_wait_s": measured, "batches_per_step": bps}
    copy_s = (d.batch_bytes or 0) * bps / PCIE_BYTES_PER_S if inputs.device.type != "cuda" else 0.0
    info["h2d_copy_s"] = copy_s
    one = batch_s if batch_s is not None else host.batch_s
    if one is None or one <= 0:
        info["method"] = ("no batch time measured: no data wait projected (the profiling host's own wait, "
                          f"{measured * 1e3:.1f} ms, is its CPU's)" if measured else "no data wait measured")
        return copy_s, info
    workers = d.num_workers or 0
    make_s = one * bps
    if workers <= 0:
        wait = make_s
        info["method"] = f"num_workers=0: the main process makes {bps:g} batch(es) of {one * 1e3:.2f} ms per step"
    else:
        wait = max(0.0, make_s / workers - compute_s)
        info["method"] = (f"{workers} workers at {one * 1e3:.2f} ms a batch deliver {bps:g} batch(es) in "
                          f"{make_s / workers * 1e3:.2f} ms; the GPU computes for {compute_s * 1e3:.2f} ms")
    info["batch_s"] = one
    info["batch_s_method"] = d.batch_s_method
    return wait + copy_s, info


def fuse(kernels: list[Kernel], profile: Profile | StepInputs, spec: GpuSpec,
         params: K.KernelParams) -> tuple[list[Kernel], str]:
    """torch.compile's fusion, as a stated rule: the non-matmul ops between two matmuls of a
    phase merge into one kernel (Inductor's pointwise and reduction fusion; Ansel et al., ASPLOS
    2024) that reads what enters the group and writes what leaves it once.

    What is compiled is the model (``torch.compile(model)``): ops that ran outside its modules (a
    loss computed on its output, a criterion module) keep their eager kernels. A profile whose
    rows name no module at all (recorded before rows did) fuses the phase whole.

    The profiler counted the groups and those bytes on the recorded step (``model.fusion``);
    they scale with the phase's memory-bound bytes here, so edits (autocast, a larger batch)
    carry over. GEMMs, convolutions and attention keep their kernels. Returns the new kernels and
    a note; without fusion groups the kernels come back unchanged.
    """
    fusion = step_inputs(profile).model.fusion
    if not fusion:
        return kernels, "no fusion groups were recorded (older profile): compile not costed"
    out: list[Kernel] = []
    for ph in MODEL_PHASES:
        f = fusion.get(ph)
        stream = [k for k in kernels if k.phase == ph and k.cls not in _KEEP]
        if any(k.in_model for k in stream):
            out += [k for k in stream if not k.in_model]        # outside the compiled model: eager
            stream = [k for k in stream if k.in_model]
        if not f or not stream or not f.get("bytes"):
            out += stream
            continue
        nbytes = sum(k.nbytes for k in stream)
        ratio = min(1.0, f["fused_bytes"] / f["bytes"])
        gaps = max(1, int(f["gaps"]))
        fused_bytes = nbytes * ratio
        per_call = K.stream_s(fused_bytes / gaps, "elementwise", spec, params)
        out.append(Kernel(f"fused {ph} kernels (torch.compile, projected)", "fused", ph, "float32", gaps,
                          per_call, gaps, sum(k.flops for k in stream), int(fused_bytes)))
    out += [k for k in kernels if k.cls in _KEEP or k.phase not in MODEL_PHASES]
    groups = ", ".join(f"{ph} {int(v.get('gaps', 0))} groups" for ph, v in fusion.items())
    return out, f"torch.compile: the non-matmul ops between matmuls fused into one kernel per group ({groups})"


_KEEP = MATMUL_CLASSES | {"host", "collective"}


def cost_step(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy | None = None, *,
              ops: Iterable[OpCost] | None = None, params: K.KernelParams | None = None,
              extra_kernels: Iterable[Kernel] = (), data: bool = True,
              class_factors: dict[str, float] | None = None) -> StepCost:
    """Seconds of one training step of ``profile`` on ``spec``, by phase.

    Inputs: the profile, or its StepInputs (:func:`ccprof.hardware.inputs.step_inputs`: what a
    what-if edits); the GPU; a Policy (default: the script's own, :func:`policy_for`);
    ``ops`` an edited op list (a tweak's, e.g. a larger batch or frozen weights); extra kernels
    a tweak adds (LoRA's adapters); ``data=False`` leaves the data wait out; ``class_factors``
    scale each kernel class's device time (a recalibration from kernels measured on a GPU).
    Output: a StepCost whose ``phase_s`` sums to ``step_s``.

    Example: ``cost_step(p, cat["a100-80gb"], replace(policy_for(p), autocast="bfloat16")).step_s``.
    """
    inputs = step_inputs(profile)
    params = params or K.load_params()
    policy = policy or policy_for(inputs, spec)
    kernels = translate(inputs, spec, policy, ops=ops, params=params) + list(extra_kernels)
    if class_factors:
        kernels = [replace(k, per_call_s=k.per_call_s * class_factors.get(k.cls, 1.0)) for k in kernels]
    notes: list[str] = []
    compiled_already = inputs.model.compiled
    if policy.compiled and not compiled_already:
        kernels, note = fuse(kernels, inputs, spec, params)
        notes.append(note)
    hs = host_side(inputs)
    device = dict.fromkeys(PHASES[1:], 0.0)
    host = dict.fromkeys(PHASES[1:], 0.0)
    by_class: dict[str, float] = {}
    launches = 0
    comm = dict.fromkeys(PHASES[1:], 0.0)
    comm_longest = dict.fromkeys(PHASES[1:], 0.0)
    p2p = dict.fromkeys(PHASES[1:], 0.0)            # sends and receives: waited on (:func:`blocks`)
    for k in kernels:
        ph = k.phase if k.phase in device else "other"
        by_class[k.cls] = by_class.get(k.cls, 0.0) + k.device_s
        if k.cls == "collective" and blocks(k.op):
            p2p[ph] += k.device_s
        elif k.cls == "collective":
            comm[ph] += k.device_s
            comm_longest[ph] = max(comm_longest[ph], k.per_call_s)
        else:
            device[ph] += k.device_s
        launches += k.calls
        if policy.compiled and k.cls != "host":
            host[ph] += k.calls * CUDA_LAUNCH_S          # Inductor's wrapper launches; no per-op dispatch
        else:
            host[ph] += k.dispatches * hs.dispatch_s + k.calls * CUDA_LAUNCH_S
    if hs.python_s is not None:
        for ph in PHASES[1:]:
            if policy.compiled and ph in MODEL_PHASES and not compiled_already:
                continue            # the compiled graph replaces the model's Python (guards stay: small)
            host[ph] += hs.python_s.get(ph, 0.0)
    elif not policy.compiled:
        host["forward"] += inputs.host.module_calls_per_step * hs.module_call_s
    exposed = {ph: exposed_comm_s(ph, comm[ph], comm_longest[ph], device[ph]) + p2p[ph] for ph in PHASES[1:]}
    comm = {ph: comm[ph] + p2p[ph] for ph in PHASES[1:]}
    if any(comm.values()):
        notes.append("collectives: " + ", ".join(f"{ph} {comm[ph] * 1e3:.2f} ms ({exposed[ph] * 1e3:.2f} ms not hidden)"
                                                 for ph in PHASES[1:] if comm[ph]))
    for ph in PHASES[1:]:
        device[ph] += exposed[ph]
    phase = {ph: max(device[ph], host[ph]) for ph in PHASES[1:]}
    compute = sum(phase.values())
    lo = hi = None
    if data:
        wait, dinfo = data_wait_s(inputs, compute, hs)
        if hs.batch_s is not None and (hs.batch_s_lo, hs.batch_s_hi) != (hs.batch_s, hs.batch_s):
            lo = data_wait_s(inputs, compute, hs, batch_s=hs.batch_s_lo)[0]
            hi = data_wait_s(inputs, compute, hs, batch_s=hs.batch_s_hi)[0]
    else:
        wait, dinfo = 0.0, {"method": "left out"}
    phase = {"data": wait, **phase}
    notes.append(f"host: {hs.how}; {CUDA_LAUNCH_S * 1e6:.0f} us per CUDA launch")
    return StepCost(gpu=spec.id, policy=policy, device_s=device, host_s=host, phase_s=phase,
                    step_s=sum(phase.values()), launches=launches, by_class=by_class, notes=notes, data=dinfo,
                    data_lo_s=lo, data_hi_s=hi, comm_s={ph: v for ph, v in comm.items() if v},
                    comm_exposed_s={ph: v for ph, v in exposed.items() if comm[ph]})


# phases whose collectives run beside the compute on a stream of their own: DDP all-reduces each
# gradient bucket as backward fills it (Li et al., "PyTorch Distributed", VLDB 2020); FSDP
# all-gathers the next block's parameters while the current one computes (Zhao et al., "PyTorch
# FSDP", VLDB 2023). Elsewhere (the optimizer's, the script's own all-reduce of a loss) the
# collective blocks.
OVERLAPPED_PHASES = MODEL_PHASES


def blocks(op: str) -> bool:
    """A send or receive (a pipeline's activations and gradients): never hidden behind compute,
    whatever its phase. torch.distributed.pipelining's schedules wait on each batch of them before
    the compute that follows (``_wait_batch_p2p(_batch_p2p(...))`` around every forward and backward
    chunk in torch/distributed/pipelining/schedules.py, torch 2.13): a received tensor is that
    compute's input."""
    return collective_kind(op) in ("send", "recv")


def exposed_comm_s(phase: str, comm_s: float, longest_s: float, compute_s: float) -> float:
    """Seconds of a phase's collectives the compute cannot hide: in an overlapped phase the larger
    of its longest collective (the last bucket starts when backward ends; the first gather before
    any compute) and what exceeds the compute; elsewhere all of them."""
    if comm_s <= 0:
        return 0.0
    if phase not in OVERLAPPED_PHASES:
        return comm_s
    return min(comm_s, max(longest_s, comm_s - compute_s))




def op_s(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy | None = None, *,
         params: K.KernelParams | None = None, class_factors: dict[str, float] | None = None) -> list[float]:
    """Device seconds on ``spec`` of each op row of the step: ``out[i]`` is ``ops[i]``'s kernels
    (all its calls), in the order and number of the profile's ``ops``.

    Each row is costed as :func:`cost_step` costs it (same translation, policy, kernel model and
    class factors), so the list sums to the step's device time, ``sum(cost_step(...).device_s.values())``,
    under a policy that adds no torch.compile fusion (the script's own never does: a compiled run
    was recorded compiled). Rows that launch nothing are 0: views, host-only ops (``.item()``), the
    DataLoader's work and autocast casts that would not run. The optimizer's rows are regrouped on
    the GPU (one foreach launch per group of tensors, or one fused kernel): a regrouped kernel's
    seconds are split over the rows it runs in proportion to their bytes (by calls when they move
    none). Host dispatch and the data wait are in no row.

    Example: ``sum(op_s(p, cat["h100-sxm"])) == pytest.approx(sum(cost_step(p, cat["h100-sxm"]).device_s.values()))``.
    """
    inputs = step_inputs(profile)
    params = params or K.load_params()
    policy = policy or policy_for(inputs, spec)
    factors = class_factors or {}
    rows = inputs.ops
    out = [0.0] * len(rows)
    where: dict[int, int] = {}
    for i, row in enumerate(rows):
        if regrouped(row):
            where.setdefault(id(row), i)
            continue
        for _, k in row_kernels([row], spec, policy, params):
            out[i] += k.device_s * factors.get(k.cls, 1.0)
    for runs, k in optimizer_kernels([o for o in rows if regrouped(o)], inputs.optimizers, policy,
                                     spec, params):
        sec = k.device_s * factors.get(k.cls, 1.0)
        if sec <= 0 or not runs:
            continue
        weights = [float(o.bytes) for o in runs]
        if sum(weights) <= 0:
            weights = [float(max(o.count, 1)) for o in runs]
        total = sum(weights)
        for o, w in zip(runs, weights):
            out[where[id(o)]] += sec * w / total
    # a phase's collectives count what its compute does not hide (cost_step's exposed_comm_s); a send or
    # receive is never hidden (:func:`blocks`): all of its seconds count
    is_coll = [K.op_class(r.op) == "collective" for r in rows]
    for ph in PHASES[1:]:
        coll = [i for i, r in enumerate(rows) if r.phase == ph and is_coll[i] and not blocks(r.op)]
        if not coll:
            continue
        comm = sum(out[i] for i in coll)
        longest = max(out[i] / max(rows[i].count, 1) for i in coll)
        compute = sum(v for r, v, c in zip(rows, out, is_coll) if r.phase == ph and not c)
        share = exposed_comm_s(ph, comm, longest, compute) / comm if comm > 0 else 0.0
        for i in coll:
            out[i] *= share
    return out


def module_s(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy | None = None, *,
             params: K.KernelParams | None = None,
             class_factors: dict[str, float] | None = None,
             names: Iterable[str] | None = None, seconds: list[float] | None = None) -> dict[str, float]:
    """Device seconds on ``spec`` of the kernels each module owns, its descendants' included.

    Each op row is costed as :func:`cost_step` costs it (:func:`op_s`: same policy, kernel model
    and class factors) and its seconds are split over the modules that own its calls
    (``OpCost.modules``: calls x seconds per call); a module's figure then adds its descendants'
    (by dotted name among ``names``, the profile's module names; without them every dotted prefix,
    and the root "" only when it owns work itself; a ``ModuleList`` gets its blocks' sum). Work outside every module (a loss of
    the script's own, the optimizer), host dispatch and the data wait are in no module, and
    torch.compile's fusion (a policy change) is not split. Rows recorded before ccprof kept
    owners (no ``modules``) give ``{}``. ``seconds``: the rows' :func:`op_s` when already costed
    with the same arguments (the hardware stage stores both).

    Example: ``module_s(p, cat["h100-sxm"])["transformer.h.0"]`` -> ``1.9e-4``.
    """
    inputs = step_inputs(profile)
    if seconds is None:
        seconds = op_s(inputs, spec, policy, params=params, class_factors=class_factors)
    own: dict[str, float] = {}
    for op, sec in zip(inputs.ops, seconds):
        if not op.modules or sec <= 0:
            continue
        per_call = sec / max(op.count, 1)
        for name, calls in op.modules.items():
            own[name] = own.get(name, 0.0) + per_call * calls
    chains = module_ancestors(set(names) | set(own) if names is not None else _prefixes(own))
    out: dict[str, float] = {}
    for name, sec in own.items():
        for a in chains[name]:
            out[a] = out.get(a, 0.0) + sec
    return dict(sorted(out.items()))


def _prefixes(names: Iterable[str]) -> set[str]:
    """Every dotted prefix of ``names`` (all are modules: a module's path runs through its parents)."""
    out = set()
    for name in names:
        parts = name.split(".") if name else []
        out |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
        if not name:
            out.add("")
    return out
