"""What the cost model reads of a profile: ``StepInputs``, built once by :func:`step_inputs`.

DESIGN's cost model takes "the ops of a step, a device spec and a precision policy". A Profile
holds much more (findings, the environment, the memory ledger, the report's inputs); this
module names the part the seconds depend on, so ``step``, ``translate``, ``host`` and
``projection`` read typed fields instead of paths into fifteen sections of the artefact::

    inputs = step_inputs(profile)               # once; a StepInputs passes through unchanged
    cost_step(inputs, spec).step_s              # the same number as cost_step(profile, spec)
    cost_step(inputs.with_ops(scale_batch(inputs.ops, 2)), spec)   # a what-if: edit, cost again

Records (each field says which part of the Profile it comes from):

* ``ops``: the step's op rows (``Profile.ops``);
* ``measured``: what was timed on the profiling device (step times, phase means, kernel times):
  the projection's calibration on a catalog GPU;
* ``host``: the host work counted (Python bytecodes by phase, module calls) and the speeds
  (the probe, a stated ``--host-speed``);
* ``data``: a batch's making and how the loader delivers it (workers, batches per step, bytes);
* ``model``: FLOPs, the peak memory, torch.compile's fusion groups, whether the run compiled;
* ``device``: the device the profile ran on;
* ``precision``/``optimizers``: what :func:`ccprof.hardware.translate.policy_for` reads (the
  optimizers as the target GPU would construct them: ``fused=`` that is True on CUDA only, read
  from the script, counts as fused on a CPU profile);
* ``eval``: the evaluation episode between steps, costed as a step of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

from ccprof.artefacts.profile import EvalWork, OpCost, OptimizerInfo, Pipeline, Precision, Profile

__all__ = ["StepInputs", "Measured", "HostCounts", "DataTiming", "ModelFacts", "DeviceFacts", "step_inputs"]


@dataclass(frozen=True)
class Measured:
    """Times taken on the profiling device (``Profile.steps``, ``Profile.kernel_s``)."""
    step_s: tuple[float, ...] = ()                               # each timed step
    phase_s: dict[str, float] = field(default_factory=dict)       # phase means
    kernel_s: dict[str, float] = field(default_factory=dict)      # device seconds by op (torch.profiler)


@dataclass(frozen=True)
class HostCounts:
    """The host work counted in the step (``Profile.host``; ``Profile.counters`` before it)."""
    counted: bool = False                        # a host section was recorded
    opcodes: dict[str, int] | None = None        # Python bytecodes by phase (None: not counted)
    module_calls_per_step: int = 0
    probe_s: float | None = None                 # the speed probe on the profiling host
    target_speed: float | None = None            # --host-speed: the GPU machine's host vs the reference


@dataclass(frozen=True)
class DataTiming:
    """A batch's making and its delivery (``Profile.data``, ``Profile.steps``)."""
    batch_s: float | None = None                 # one batch's making, and its 95% interval
    batch_s_lo: float | None = None
    batch_s_hi: float | None = None
    batch_clock: str = "wall"                    # "thread_cpu": CPU seconds, in probe units
    batch_io_s: float = 0.0                      # time off the CPU (a disk, the network)
    batch_s_method: str | None = None
    num_workers: int | None = None
    batches_per_step: float | None = None
    batch_bytes: int | None = None               # one batch's tensors (the host-to-device copy)
    micro_batches: int = 1                       # backward passes per optimizer step
    measured_wait_s: float = 0.0                 # the profiling host's own data phase (not projected)


@dataclass(frozen=True)
class ModelFacts:
    """Facts of the model and its step (``Profile.flops``, ``memory``, ``fusion``, ``static``)."""
    flops_per_step: int = 0                      # executed (recomputation included)
    model_flops_per_step: int = 0                # the model's own (MFU)
    peak_bytes: int = 0                          # the larger of the ledger's peak and CUDA's
    # a dry run's allocations replayed through PyTorch's caching allocator (Memory.reserved_peak_bytes):
    # the fit's reserved rule (projection.memory_fit); None for a measured run, which keeps the tensors' rule
    reserved_peak_bytes: int | None = None
    # the allocator settings that replay honoured, in words (Memory.allocator.describe()); "" the defaults
    allocator_rule: str = ""
    fusion: dict[str, dict[str, int]] = field(default_factory=dict)   # torch.compile's groups by phase
    compiled: bool = False                       # the script compiles the model already


@dataclass(frozen=True)
class DeviceFacts:
    """The device the profile ran on (``Profile.device``)."""
    type: str = "cpu"
    name: str = ""
    catalog_id: str | None = None


@dataclass(frozen=True)
class StepInputs:
    """Everything the cost model reads of a profiled step (see the module docstring).

    Build it with :func:`step_inputs` (or :meth:`from_profile`); edit it with
    :meth:`with_ops` / ``dataclasses.replace`` for a what-if, and cost it again.
    """
    ops: tuple[OpCost, ...] = ()
    measured: Measured = field(default_factory=Measured)
    host: HostCounts = field(default_factory=HostCounts)
    data: DataTiming = field(default_factory=DataTiming)
    model: ModelFacts = field(default_factory=ModelFacts)
    device: DeviceFacts = field(default_factory=DeviceFacts)
    precision: Precision = field(default_factory=Precision)
    optimizers: tuple[OptimizerInfo, ...] = ()
    eval: EvalWork | None = None
    # a dry run's pipeline: every rank's op rows (``pipeline.ranks``); ``ops`` are rank ``pipeline_rank``'s
    pipeline: Pipeline | None = None
    pipeline_rank: int = 0
    # the script passes ``fused=`` True only on CUDA and the run was not on CUDA: its optimizers count as fused
    fused_on_gpu: bool = False

    @classmethod
    def from_profile(cls, profile: Profile) -> "StepInputs":
        """The cost model's inputs of ``profile`` (every path the model reads is here)."""
        h, d, st = profile.host, profile.data, profile.steps
        if h is not None:
            host = HostCounts(counted=True, opcodes=h.opcodes, module_calls_per_step=h.module_calls_per_step,
                              probe_s=h.probe_s, target_speed=h.target_speed)
        else:       # older profiles: the module calls were a counter
            host = HostCounts(module_calls_per_step=(profile.counters or {}).get("module_calls_per_step", 0))
        m = profile.memory
        pipe = profile.dry_run.pipeline if profile.dry_run is not None else None
        fused_on_gpu = _fused_on_gpu(profile)
        return cls(
            ops=tuple(profile.ops),
            measured=Measured(step_s=tuple(st.step_s), phase_s=st.phase_s, kernel_s=profile.kernel_s),
            host=host,
            data=DataTiming(batch_s=d.batch_s, batch_s_lo=d.batch_s_lo, batch_s_hi=d.batch_s_hi,
                            batch_clock=d.batch_clock, batch_io_s=d.batch_io_s, batch_s_method=d.batch_s_method,
                            num_workers=d.num_workers, batches_per_step=d.batches_per_step,
                            batch_bytes=d.batch_bytes, micro_batches=st.micro_batches,
                            measured_wait_s=max(st.phase_s.get("data", 0.0) or 0.0, 0.0)),
            model=ModelFacts(flops_per_step=profile.flops.per_step,
                             model_flops_per_step=profile.flops.model_per_step,
                             peak_bytes=max(m.peak_bytes or 0, m.cuda_max_allocated_bytes or 0),
                             reserved_peak_bytes=m.reserved_peak_bytes if profile.dry_run is not None else None,
                             allocator_rule=m.allocator.describe() if m.allocator is not None else "",
                             fusion=profile.fusion or {},
                             compiled=bool(profile.static.compile)
                             or any("OptimizedModule" in r for r in profile.model.roots)),
            device=DeviceFacts(type=profile.device.type, name=profile.device.name,
                               catalog_id=profile.device.catalog_id),
            precision=_precision_on_gpu(profile),
            optimizers=_optimizers_on_gpu(tuple(profile.optimizer.optimizers) if profile.optimizer else (),
                                          fused_on_gpu),
            eval=profile.eval,
            pipeline=pipe if pipe is not None and pipe.ranks else None,
            pipeline_rank=profile.dry_run.rank if profile.dry_run is not None else 0,
            fused_on_gpu=fused_on_gpu,
        )

    def for_rank(self, rank: int) -> "StepInputs":
        """Rank ``rank`` of the pipeline (``pipeline.ranks``) as a step of its own: its op rows, and
        its optimizers, host counts (module calls, bytecodes by phase), FLOPs, peaks and fusion
        groups as its own dry run recorded them (a profile made before ranks kept them: these
        inputs' own). The data, precision, device, measured times and host speed stay these inputs'
        (every rank runs the same script on the same kind of GPU and host). ``self`` for the
        profile's own rank (``pipeline_rank``) and for a rank the pipeline does not hold.

        Example: ``step_inputs(profile).for_rank(3).optimizers[0].param_count`` (the last stage's parameters).
        """
        pipe = self.pipeline
        row = next((r for r in pipe.ranks if r.rank == rank), None) if pipe is not None else None
        if row is None or rank == self.pipeline_rank:
            return self
        host = self.host
        if row.host is not None:
            host = replace(host, counted=True, opcodes=row.host.opcodes,
                           module_calls_per_step=row.host.module_calls_per_step)
        opts = self.optimizers if row.optimizers is None else _optimizers_on_gpu(tuple(row.optimizers),
                                                                                 self.fused_on_gpu)
        model = replace(self.model, flops_per_step=row.flops_per_step, model_flops_per_step=row.model_flops_per_step,
                        peak_bytes=row.peak_bytes,
                        reserved_peak_bytes=row.reserved_peak_bytes if self.model.reserved_peak_bytes else None,
                        fusion=self.model.fusion if row.fusion is None else row.fusion)
        return replace(self, ops=tuple(row.ops), host=host, optimizers=opts, model=model, pipeline_rank=rank)

    def with_ops(self, ops: Iterable[OpCost]) -> "StepInputs":
        """The same step with an edited op list (``ccprof.hardware.edits``)."""
        return replace(self, ops=tuple(ops))

    def eval_step(self) -> "StepInputs | None":
        """The evaluation episode as a step of its own: its counted forward ops, its module calls,
        no measured phases, no fusion groups; None without counted ops."""
        ev = self.eval
        if ev is None or not ev.ops:
            return None
        host = replace(self.host, module_calls_per_step=ev.module_calls) if self.host.counted else self.host
        return replace(self, ops=tuple(ev.ops), measured=replace(self.measured, phase_s={}), host=host,
                       data=replace(self.data, measured_wait_s=0.0), model=replace(self.model, fusion={}),
                       eval=None, pipeline=None)


# torch.optim classes with a fused CUDA kernel (``fused=True``)
_FUSED_CLASSES = ("Adam", "AdamW", "SGD", "Adagrad")


def _fused_on_gpu(profile: Profile) -> bool:
    """A CPU run of a script that passes ``fused=`` True only on CUDA (``fused=torch.cuda.is_available()``;
    the script reader's ``static.on_cuda``): it measured the unfused branch, the GPU runs the fused one."""
    return "fused_optimizer" in profile.static.on_cuda and profile.device.type != "cuda"


def _optimizers_on_gpu(opts: tuple[OptimizerInfo, ...], fused_on_gpu: bool) -> tuple[OptimizerInfo, ...]:
    """Optimizers as the target GPU's run would build them (:func:`_fused_on_gpu`)."""
    if not fused_on_gpu:
        return opts
    return tuple(replace(o, fused=True, foreach=None) if o.class_ in _FUSED_CLASSES and not o.fused else o
                 for o in opts)


def _precision_on_gpu(profile: Profile) -> Precision:
    """The precision the target GPU's run would have: autocast that the script turns on only on
    CUDA (``enabled=device_type == "cuda"``; ``static.on_cuda``) and a CPU run did not show is on
    (its dtype unknown: ``policy_for`` takes float16, the same tensor-core rate as bfloat16)."""
    p = profile.precision
    if "autocast" in profile.static.on_cuda and not p.autocast and profile.device.type != "cuda":
        return replace(p, autocast=True)
    return p


def step_inputs(source: Profile | StepInputs) -> StepInputs:
    """``source`` as the cost model's inputs: a StepInputs unchanged, a Profile read once.

    >>> step_inputs(Profile()).device.type
    'cpu'
    """
    if isinstance(source, StepInputs):
        return source
    return StepInputs.from_profile(source)
