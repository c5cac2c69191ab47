"""The Profile: everything ccprof measured about a few training steps, as frozen data.

Every stage after the profiler (hardware projection, advisors, reports, verify) reads a
Profile and never re-runs the script. ``Profile.to_json()`` / ``Profile.from_json()``
round-trip it; ``schema`` is versioned.

Units are in the names: ``_bytes``, ``_s``, ``_flops`` (or ``flops`` fields), ``_frac``.
Memory ledger convention (``Memory``): ``params_bytes``, ``grads_bytes`` and
``optimizer_state_bytes`` are the steady-state sizes of those categories (each storage
counted once), ``activations_bytes`` is everything autograd saved for backward during one
step that is not a parameter, and ``other_bytes = peak_bytes - (the four above)``, floored
at 0: inputs, temporaries and allocator slack at the peak.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ccprof import _serde
from ccprof._serde import ArtefactError

SCHEMA = "ccprof.profile/1"

__all__ = [
    "SCHEMA", "Profile", "Pipeline", "PipelineRank", "Device", "ModuleStat", "RepeatedBlock", "Embedding", "ModelInfo",
    "OptimizerInfo", "OptimizerSection", "Steps", "OpCost", "Flops", "AllocatorSettings", "Memory", "DataInfo",
    "Precision", "GpuSample", "GpuInfo", "HostInfo", "RunLimit", "EvalWork", "Setting", "CallSite", "StaticFacts", "Environment", "Finding",
    "ErrorInfo", "StandIn", "DryRun", "GpuProjection", "Cost", "ArtefactError", "module_ancestors",
]


def module_ancestors(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each dotted module name -> itself and its ancestors among ``names``, innermost first:
    ``{"h.0.attn": ("h.0.attn", "h.0", "h", ""), ...}`` when all four are names ("" is the root).
    How per-module figures add a module's descendants in (``ModuleStat.flops``, ``module_s``)."""
    known = set(names)
    out: dict[str, tuple[str, ...]] = {}
    for name in known:
        parts = name.split(".") if name else []
        prefixes = [".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]
        out[name] = (name, *(n for n in (*prefixes, "") if n in known and n != name))
    return out


def _cls(default: Any = "") -> Any:
    return field(default=default, metadata={"json": "class"})


@dataclass(frozen=True)
class Device:
    type: str = "cpu"                       # "cpu" | "cuda"
    name: str = ""                          # "NVIDIA H200", or the CPU model
    memory_bytes: int | None = None         # device memory (GPUs); None on CPU
    count: int = 1                          # devices visible to the process
    capability: str | None = None           # CUDA compute capability "9.0"
    catalog_id: str | None = None           # matching hardware catalog id, when known


@dataclass(frozen=True)
class ModuleStat:
    """One module of the tree, by dotted name ("" is the root).

    ``flops``, ``forward_flops`` and ``op_bytes`` count the ops the module owns and its descendants'
    (a ``ModuleList`` gets its blocks' sum): forward ops the module ran, backward ops its forward's
    autograd nodes ran (``ccprof.profiler.flops.FlopPass``). Its projected seconds are in the
    target GPU's ``GpuProjection.module_s``.
    """
    name: str
    class_: str = _cls()
    depth: int = 0
    params: int = 0                         # own + children
    trainable_params: int = 0
    flops: int = 0                          # forward + backward, one step
    forward_flops: int = 0
    activation_bytes: int = 0               # saved for backward while this module ran
    op_bytes: int = 0                       # read + written by its ops, one step, all phases


@dataclass(frozen=True)
class RepeatedBlock:
    """A container of identical blocks, e.g. ``model.layers`` = 12 x LlamaDecoderLayer."""
    container: str
    class_: str = _cls()
    count: int = 0
    params_each: int = 0
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Embedding:
    name: str
    num_embeddings: int = 0
    dim: int = 0
    params: int = 0
    trainable: bool = True


@dataclass(frozen=True)
class ModelInfo:
    class_: str = _cls()
    params: int = 0
    trainable_params: int = 0
    param_dtypes: dict[str, int] = field(default_factory=dict)   # dtype -> element count
    buffers_bytes: int = 0
    modules: list[ModuleStat] = field(default_factory=list)
    repeated_blocks: list[RepeatedBlock] = field(default_factory=list)
    embeddings: list[Embedding] = field(default_factory=list)
    linear_names: list[str] = field(default_factory=list)
    pretrained: bool = False                # weights loaded from a checkpoint (not the run's own)
    loaded_from: str | None = None          # "from_pretrained:<id>", "load_state_dict", "resume", ...
    resumed: bool = False                   # optimizer state restored too: this run continues an earlier one
    hf_model_type: str | None = None        # "llama", "gpt2", ...
    hf_config: dict[str, Any] = field(default_factory=dict)  # small scalar subset
    gradient_checkpointing: bool = False    # seen on the live model
    roots: list[str] = field(default_factory=list)  # classes of every trained root module
    # parameters reachable under several names (one Parameter object): each group is its dotted
    # names, e.g. GPT-2's ["transformer.wte.weight", "lm_head.weight"] (freezing one freezes all)
    tied_params: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class OptimizerInfo:
    class_: str = _cls()
    hyperparams: dict[str, Any] = field(default_factory=dict)
    param_count: int = 0                    # elements it updates
    state_bytes: int = 0
    steps: int = 0                          # step() calls seen
    foreach: bool | None = None
    fused: bool | None = None
    # parameters that had a gradient at some step() and none at another (a branch of the model
    # some steps do not take): names, the first 20, and how many in all
    grad_gaps: list[str] = field(default_factory=list)
    grad_gap_params: int = 0


@dataclass(frozen=True)
class OptimizerSection:
    optimizers: list[OptimizerInfo] = field(default_factory=list)
    state_bytes: int = 0


@dataclass(frozen=True)
class Steps:
    warmup: int = 0
    measured: int = 0
    step_s: list[float] = field(default_factory=list)
    phase_s: dict[str, float] = field(default_factory=dict)  # data/forward/backward/optimizer/other means
    # the same phases in thread CPU time of the main thread (medians over the timed steps): what
    # another process's load barely moves
    phase_cpu_s: dict[str, float] = field(default_factory=dict)
    step_cpu_s: list[float] = field(default_factory=list)   # each measured step's thread CPU time
    loss: list[float] = field(default_factory=list)
    micro_batches: int = 1                  # backward passes per optimizer step (closure re-evaluations aside)
    # backward passes inside optimizer.step(closure) per step: a closure optimizer (LBFGS) re-evaluating
    # the same batch, each after zero_grad(); not micro-batches
    closure_backwards: int = 0
    samples_per_step: int | None = None
    tokens_per_step: int | None = None
    kind: str = "optimizer"                 # "optimizer" | "backward" (no torch.optim)

    _json_min = {"warmup": 0, "measured": 0, "step_s": 0}  # checked on load (ccprof._serde)


@dataclass(frozen=True)
class OpCost:
    """One aten op of one step, grouped by shapes: what the cost model needs to cost it elsewhere.

    ``count`` calls with the same op, dtype, phase, shapes and scope are one row; ``flops`` and
    the bytes are totals over those calls. ``shapes`` / ``out_shapes`` are the input and output
    tensor shapes of one call, in argument order (a 0-dim tensor is ``[]``). ``fixed`` indexes
    ``shapes + out_shapes`` for tensors with a parameter's shape (they do not grow with the
    batch). ``scope`` is the module the op ran in, with block indices as ``*``
    (``transformer.h.*``). ``attrs`` holds the few non-tensor arguments the cost model needs
    (convolution ``groups``/``transposed``, attention ``causal``). ``autocast`` says how the op
    would run under CUDA autocast: ``"low"`` (16-bit), ``"fp32"``, ``"cast"`` (a dtype copy
    autocast would add) or ``""`` (not recorded); ``autocast_bytes`` is what it would move then.
    ``recompute`` marks forward work re-run inside backward (activation checkpointing).
    ``modules`` splits ``count`` by the module that owns the calls (the innermost one, dotted
    name; forward: the module that ran it, backward: the module whose forward made the autograd
    node); calls no module owns (the script's loss, the optimizer) are left out of it.
    """
    op: str
    dtype: str = "float32"
    count: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    phase: str = "forward"                  # forward | backward | optimizer | other | data (the DataLoader's)
    shapes: list[list[int]] = field(default_factory=list)
    out_shapes: list[list[int]] = field(default_factory=list)
    fixed: list[int] = field(default_factory=list)
    scope: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    autocast: str = ""
    autocast_bytes: int = 0
    recompute: bool = False
    modules: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


@dataclass(frozen=True)
class Flops:
    """FLOPs of one step. ``per_step`` is what executed (HFU counts it); ``model_per_step`` leaves
    out forward work recomputed in backward (PaLM's MFU definition); ``recompute`` is the difference."""
    per_step: int = 0
    forward: int = 0
    backward: int = 0
    model_per_step: int = 0
    recompute: int = 0
    by_module: dict[str, int] = field(default_factory=dict)
    by_op: dict[str, int] = field(default_factory=dict)
    method: str = "torch.utils.flop_counter.FlopCounterMode"
    fvcore_forward: int | None = None       # cross-check, forward only
    fvcore_note: str | None = None          # why fvcore could not count, when it could not

    def module_flops(self) -> int:
        """FLOPs of the step that some module owns: ``by_module`` summed over its outermost names
        (each includes its descendants). The rest of ``per_step`` ran outside every module."""
        chains = module_ancestors(self.by_module)
        return int(sum(v for n, v in self.by_module.items() if len(chains[n]) == 1))

    def module_frac(self) -> float | None:
        """Share of the step's FLOPs attributed to modules (None without FLOPs); ``1 -
        module_frac()`` ran outside every module (a loss of the script's own, the optimizer).

        Example: ``Profile.from_json("profile.json").flops.module_frac()`` -> ``0.998``.
        """
        return self.module_flops() / self.per_step if self.per_step > 0 else None


@dataclass(frozen=True)
class AllocatorSettings:
    """PyTorch's CUDA caching allocator settings in force at the measured step, as the script's process
    had them (``ccprof.profiler.allocator.settings_in_force``): the ``PYTORCH_ALLOC_CONF`` /
    ``PYTORCH_CUDA_ALLOC_CONF`` string, then each ``torch.cuda.memory._set_allocator_settings`` call.

    ``text`` is the last settings string applied and ``source`` where it came from (the variable's
    name, or the call with the script's file and line). The fields below are what the replay uses;
    ``not_replayed`` names the keys given but not replayed (``garbage_collection_threshold``, pinned
    memory options, keys torch does not know) and ``errors`` the parts that could not be read (torch
    itself would have refused them; the replay then keeps the defaults for them)."""
    text: str = ""
    source: str = ""
    expandable_segments: bool = False
    max_split_size_bytes: int | None = None            # None: unlimited (torch's default)
    max_non_split_rounding_bytes: int | None = None    # None: 20 MiB (kLargeBuffer, torch's default)
    # divisions per power-of-two interval of request sizes, 16 intervals from 1 MiB (index 0: <= 1 MiB)
    # up to 64 GiB; empty: no rounding beyond 512 bytes (torch's default)
    roundup_power2_divisions: list[int] = field(default_factory=list)
    garbage_collection_threshold: float | None = None
    not_replayed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def rule(self) -> str:
        """The replay's rule in words: "expandable segments", "max_split_size 512 MiB", ... or
        "default settings"."""
        parts = ["expandable segments"] if self.expandable_segments else []
        if self.max_split_size_bytes is not None:
            parts.append(f"max_split_size_mb {self.max_split_size_bytes >> 20}")
        if self.max_non_split_rounding_bytes is not None:
            parts.append(f"max_non_split_rounding_mb {self.max_non_split_rounding_bytes >> 20}")
        if any(d > 1 for d in self.roundup_power2_divisions):
            parts.append("roundup_power2_divisions")
        return ", ".join(parts) or "default settings"

    def describe(self) -> str:
        """The rule, where it came from and what was left out: "expandable segments, from
        PYTORCH_CUDA_ALLOC_CONF; not replayed: garbage_collection_threshold:0.6"."""
        words = self.rule() + (f", from {self.source}" if self.source else "")
        if self.not_replayed:
            words += f"; not replayed: {', '.join(self.not_replayed)}"
        if self.errors:
            words += f"; not read (torch refuses them): {', '.join(self.errors)}"
        return words


@dataclass(frozen=True)
class Memory:
    peak_bytes: int = 0
    params_bytes: int = 0
    grads_bytes: int = 0
    optimizer_state_bytes: int = 0
    activations_bytes: int = 0
    other_bytes: int = 0
    buffers_bytes: int = 0
    cuda_max_allocated_bytes: int | None = None
    cuda_reserved_bytes: int | None = None
    method: str = ""
    # what PyTorch's CUDA caching allocator would reserve (torch.cuda.max_memory_reserved) for the
    # ledger's allocations replayed in order (ccprof.profiler.allocator); None in older profiles
    reserved_peak_bytes: int | None = None
    # the allocator settings that replay honoured; None: none were given (the default allocator), and
    # in profiles older than the setting
    allocator: AllocatorSettings | None = None

    _json_min = {"peak_bytes": 0}           # checked on load (ccprof._serde)


@dataclass(frozen=True)
class DataInfo:
    batch_size: int | None = None
    shapes: list[str] = field(default_factory=list)      # "input_ids: int64[8, 128]"
    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    dataset_len: int | None = None
    steps_per_epoch: int | None = None
    wait_frac: float | None = None
    fingerprints: list[str] = field(default_factory=list)
    duplicate_frac: float | None = None
    near_duplicate_frac: float | None = None
    duplicate_scope: str = "sampled"        # "sampled" | "dataset"
    token_inputs: bool = False
    seq_len: int | None = None
    dataloader_seen: bool = False
    # Host time to produce one batch in one process (the work DataLoader workers share), and
    # how it was found: timed where each batch is made (the main process with num_workers=0,
    # inside each worker otherwise), "probe: N samples fetched in the main process", or None.
    batch_s: float | None = None
    batch_s_method: str | None = None
    # the 95% interval of the median batch time, over ``batch_s_n`` batches, and its clock:
    # "thread_cpu" (CPU time where the batch is made) or "wall" (older profiles, the probe's fallback)
    batch_s_lo: float | None = None
    batch_s_hi: float | None = None
    batch_s_n: int = 0
    batch_clock: str = "wall"
    # besides ``batch_s`` (CPU time), what a batch waits off the CPU (a disk or network read, a
    # sleep): the cost model adds it as it is, whatever the host's speed
    batch_io_s: float = 0.0
    batches_per_step: float | None = None
    batch_bytes: int | None = None          # bytes of one batch's tensors (host-to-device copy)
    # False when the training loader's sampler is effectively endless (sampling with replacement
    # far past the dataset, or an iterable dataset): len(loader) is then no epoch
    finite: bool | None = None
    scan: dict[str, Any] | None = None      # --scan-data: advisors.data_scan.scan_dataset's result
    # What the trained model's forward was fed, step after step, measured on the warm-up steps and
    # the FLOP and memory passes' (hashing is kept out of the timed steps): ``input_steps`` steps hashed
    # (dtype, shape and values of the forward's tensors); ``same_inputs`` True when every one
    # of them fed the same values (a batch made once: ``make_batch()`` of hard-coded sentences, one
    # ``torch.randn`` tensor reused, full-batch training on a whole graph), None under 2 steps;
    # ``distinct_samples``: the samples of the distinct inputs among them (the batch, once, when
    # every step fed the same); ``input_shape``: the input tensor's shape (``[4]``: a 1-D vector,
    # one unbatched sample of 4 features)
    input_steps: int = 0
    same_inputs: bool | None = None
    distinct_samples: int | None = None
    input_shape: list[int] | None = None
    # the input is one sample with no batch dimension: a 1-D floating tensor as long as the model's
    # first nn.Linear's in_features (a GAN discriminator fed 4 moments); it counts as 1 sample
    unbatched_input: bool = False
    # Samples one epoch of the script's data holds, when finite and known: the DataLoader's
    # dataset length, or with no DataLoader one pass of the loops inside the script's epoch loop
    # x the samples per step (``for epoch in range(num_epochs): for i in range(0, n - 30, 30):``,
    # 3 steps of 20 -> 60); ``epoch_samples_source`` says which
    epoch_samples: int | None = None
    epoch_samples_source: str = ""


@dataclass(frozen=True)
class Precision:
    autocast: bool = False
    autocast_dtype: str | None = None
    grad_scaler: bool = False
    tf32_matmul: bool = False
    tf32_cudnn: bool = False                # TF32 convolutions in effect (only on CUDA)
    float32_matmul_precision: str = "highest"
    cudnn_allow_tf32: bool | None = None    # torch.backends.cudnn.allow_tf32 as the script left it
    param_dtype: str = "float32"            # dtype holding most parameters


@dataclass(frozen=True)
class GpuSample:
    t_s: float
    sm_util_pct: float | None = None
    mem_used_bytes: int | None = None
    power_w: float | None = None


@dataclass(frozen=True)
class GpuInfo:
    samples: list[GpuSample] = field(default_factory=list)
    interval_s: float = 0.1
    mean_sm_util_pct: float | None = None
    p95_sm_util_pct: float | None = None
    mean_power_w: float | None = None
    energy_j_per_step: float | None = None
    source: str = "nvml"


@dataclass(frozen=True)
class RunLimit:
    """A limit on the run's length the script itself sets, read at its first optimizer step.

    ``kind``: ``"steps"`` (optimizer steps, or iterations of the loop around the step) or
    ``"epochs"``; ``source`` says where (``"for ... in range(args.max_iters) (train.py:88)"``,
    ``"Trainer.state.max_steps=1245 (...)"``); ``priority``: 1 a framework trainer's own count,
    2 the loop around the step, 3 a limit-named setting, 4 a weaker name (``steps``).
    """
    kind: str = "steps"
    value: float = 0.0
    source: str = ""
    priority: float = 3.0


@dataclass(frozen=True)
class EvalWork:
    """Model work between optimizer steps that is not training, measured apart from the step.

    An *episode* is a run of forwards of a trained model under ``no_grad``/``inference_mode``
    with no training work in between: a validation loop, ``generate()``. The first episode runs
    under its own FLOP counter (``flops``, ``ops`` for pricing it on a GPU; its ``seconds`` are
    then slowed by the counting, ``seconds_counted``); later ones are only timed. ``every_steps``
    is how often the script runs one, read from the condition around it (``step % 500 == 0``:
    500) or a trainer's setting, else observed (episodes / steps seen, said in ``every_source``).
    """
    episodes: int = 0                       # episodes seen while profiling
    steps_seen: int = 0                     # optimizer steps watched (warm-up and passes included)
    forward_calls: int = 0                  # trained-model forwards in one episode (the counted one)
    module_calls: int = 0                   # nn.Module calls in the counted episode (host cost)
    seconds: float = 0.0                    # one episode's wall seconds on this host
    seconds_counted: bool = False           # True: timed under the FLOP counter (an upper bound)
    flops: int = 0                          # FLOPs of the counted episode
    ops: list[OpCost] = field(default_factory=list)
    ops_flops_frac: float = 1.0             # share of ``flops`` the op rows hold (rows are capped)
    every_steps: float | None = None        # one episode per this many optimizer steps
    every_source: str = ""
    extra_episodes: int = 0                 # episodes besides the periodic ones (``or step == last``)
    where: str = ""                         # the user's file:line that called the model


@dataclass(frozen=True)
class HostInfo:
    """What the profiling host's CPU costs per launched op: the host side of a GPU step.

    ``dispatch_s`` is PyTorch's dispatch of one small aten op on this host (timed on tiny
    tensors, so it is nearly all host work): the speed bench the hardware stage compares with
    the reference host's; ``module_call_s`` the extra cost of running it inside an
    ``nn.Module.__call__``; ``module_calls_per_step`` is counted in the FLOP step. Since
    ``clock == "thread_cpu"`` every figure is thread CPU time (``ccprof.profiler.host``). The
    cost model prices the host side by counts (ops, module calls, ``opcodes``) at the reference
    host's figures (``ccprof.hardware.host``); these timings say how this host compares.
    """
    dispatch_s: float = 0.0
    module_call_s: float = 0.0
    module_calls_per_step: int = 0
    method: str = ""
    cpu: str = ""                           # the profiling host's CPU model
    clock: str = "wall"                     # "thread_cpu": CPU time of this thread; "wall": older profiles
    # the speed probe (ccprof.profiler.host.speed_probe): CPU s per round on this host, the fastest
    # of the run (beside every batch made, and ten windows at the end); against the reference
    # host's it converts a batch's CPU time (ccprof.hardware.host)
    probe_s: float | None = None
    # Python bytecodes each phase ran (forward, backward, optimizer, other, data, eval) in the
    # step that counted them (``opcode_step``, a pass step); None when not counted (older profiles)
    opcodes: dict[str, int] | None = None
    opcode_step: int | None = None
    # the GPU host's speed relative to the reference host (``ccprof.hardware.host``), as the user
    # stated it (--host-speed); None: the reference host (a CPU profile) or this host (a GPU one)
    target_speed: float | None = None


@dataclass(frozen=True)
class Setting:
    """Where one value the run passed to a call came from (``ccprof.profiler.sites``): what a
    rewrite must change, and where, to change that value in the script's own run.

    name: the call's parameter (``"batch_size"``); value: what the run passed (a JSON scalar);
    code: the argument's source at the call (``"config.batch_size"``, ``"64"``; ``""`` when the
    call left it to its default);
    kind: ``"literal"`` (written at the call) | ``"argparse"`` (an option of an ``ArgumentParser``
    the script parsed) | ``"attribute"`` (a field of an object the script holds: a config node, a
    dataclass) | ``"global"`` (a module-level name of the script) | ``"local"`` (a function's
    variable) | ``"default"`` (the call's own default) | ``"unknown"``;
    path: how the script reaches it in the frame ``scope_*`` names (``"args.batch_size"``,
    ``"config.trainer.batch_size"``, ``"batch_size"``); ``""`` for a literal or a default;
    file/line: where the value is written (the literal's call, the ``batch_size = 128`` assignment,
    the ``add_argument`` call); 0 when not found;
    flag: the command-line option that sets it (``"--batch-size"``, ``"--trainer.batch_size"``);
    default: the option's default, or the assignment's literal; None when unknown;
    argv: the element of the run's arguments that set it (``"--batch_size=4"``, ``"--bs 4"``);
    ``""`` when the command line did not;
    scope_file/scope_line/scope_function: the user frame where ``path`` resolves and its line
    when the call ran: a rewrite can set ``path = N`` just before that statement.
    Files are relative to the script's folder when inside it.
    """
    name: str
    value: Any = None
    code: str = ""
    kind: str = "unknown"
    path: str = ""
    file: str = ""
    line: int = 0
    flag: str = ""
    default: Any = None
    argv: str = ""
    scope_file: str = ""
    scope_line: int = 0
    scope_function: str = ""


@dataclass(frozen=True)
class CallSite:
    """A call in the user's code that made or ran an object a tweak touches, as the run saw it.

    what: ``"dataloader"`` | ``"optimizer"`` | ``"model"`` (a trained root module's constructor) |
    ``"forward"`` (a call of a trained root module) | ``"accelerator"`` | ``"training_args"``;
    cls: the object's class, qualified (``"torch.utils.data.dataloader.DataLoader"``, ``"model.GPT"``);
    file/line/function: the innermost frame of the user's code (relative to the script's folder
    when inside it); stack: the user's frames from there outward, ``[file, line, function]``, to
    the script's own module frame;
    role: ``"train"`` (it fed, stepped or ran the measured training steps) | ``"eval"`` | ``""``;
    name: what the innermost frame calls it, when the call's result is assigned to a name
    (``"model"``, ``"train_loader"``);
    settings: where each value the tweaks read (batch size, workers, learning rate) came from;
    count: how many times the run made this call.
    """
    what: str
    cls: str = ""
    file: str = ""
    line: int = 0
    function: str = ""
    stack: list[list[Any]] = field(default_factory=list)
    role: str = ""
    name: str = ""
    settings: list[Setting] = field(default_factory=list)
    count: int = 1


@dataclass(frozen=True)
class StaticFacts:
    """What the script's source says, read with libcst. ``lines`` maps a fact to its line."""
    parsed: bool = True
    autocast: bool = False
    grad_scaler: bool = False
    checkpointing: bool = False
    accumulation: bool = False
    validation: bool = False
    early_stopping: bool = False
    from_pretrained: bool = False
    load_state_dict: bool = False           # weights loaded from a file (`.load_state_dict(...)`)
    ddp: bool = False
    fsdp: bool = False
    data_parallel: bool = False
    compile: bool = False
    hf_trainer: bool = False
    lightning: bool = False
    peft: bool = False
    tf32: bool = False                      # TF32 matmuls allowed (`allow_tf32 = True`, matmul precision "high")
    fused_optimizer: bool = False           # every torch.optim optimizer with a fused/foreach kernel uses it
    dataloader: bool = False                # every DataLoader has workers, pin_memory and persistent_workers
    float64: bool = False                   # the script makes the model float64 (.double(), dtype=torch.float64, ...)
    training_args: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    note: str | None = None
    # facts the source has (fact -> line) that the run showed were not active, e.g. a
    # `torch.compile` behind `if compile:` with --compile=False (see static.reconcile)
    inactive: dict[str, int] = field(default_factory=dict)
    # facts the source holds behind a flag (fact -> which, and whether the run set it), e.g.
    # "compile": "behind `if args.compile:` (line 200), set by --compile (off in this run)"
    behind: dict[str, str] = field(default_factory=dict)
    # facts off in this run (``inactive``): the run's arguments with the flag turned on, where
    # ccprof could write them (``ccprof.script.flags.switch_on``), e.g. "compile": [..., "--compile"]
    switches: dict[str, list[str]] = field(default_factory=dict)
    # facts on for the target GPU only through a device condition a CPU run does not take (fact ->
    # the place; its line in ``lines``, the condition in ``behind``), e.g. "fused_optimizer":
    # "`AdamW(..., fused=use_fused)`" with ``use_fused = fused_available and device_type == 'cuda'``
    on_cuda: dict[str, str] = field(default_factory=dict)
    # the place each fact in ``lines`` was read from, as code (``"float64": "`model.double()`"``)
    what: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Environment:
    python: str = ""
    torch: str = ""
    ccprof: str = ""
    transformers: str | None = None
    script: str = ""
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    started_at: str = ""
    finished_at: str = ""
    hostname: str = ""


@dataclass(frozen=True)
class Finding:
    """Something that happened during profiling that the user must hear about (OOM...)."""
    kind: str
    message: str
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class StandIn:
    """A value a --dry-run did not have and assumed: what, the value used, the script's line
    that asked for it, and how many times it did."""
    what: str
    value: Any = None
    file: str = ""
    line: int = 0
    function: str = ""
    count: int = 0


@dataclass(frozen=True)
class PipelineRank:
    """One rank of a pipeline as its own dry run traced it (``--dry-run --nproc``): the stages it
    holds, its step's op rows (every microbatch's forward and backward, its optimizer step), its
    FLOPs and its memory peaks, and what else costing its step reads of its own run: its
    optimizers (over its own parameters), its host counts (module calls, bytecodes by phase) and
    its torch.compile fusion groups (``ccprof.hardware.inputs.StepInputs.for_rank``)."""
    rank: int
    stages: list[int] = field(default_factory=list)     # stage indices this rank holds (several: looped)
    ops: list[OpCost] = field(default_factory=list)
    flops_per_step: int = 0
    model_flops_per_step: int = 0
    peak_bytes: int = 0
    reserved_peak_bytes: int | None = None
    params: int = 0
    # None in profiles made before ccprof kept them: the rank is then costed with the profile's own
    optimizers: list[OptimizerInfo] | None = None
    host: HostInfo | None = None
    fusion: dict[str, dict[str, int]] | None = None


@dataclass(frozen=True)
class Pipeline:
    """The script's pipeline (``torch.distributed.pipelining``) as the dry run saw it: the schedule's
    class, microbatches per step, stages and the global rank holding each; ``ranks`` holds each
    traced rank's work once the stages' dry runs are merged (empty in one stage's own profile)."""
    schedule: str = ""                      # "Schedule1F1B", "ScheduleGPipe", "ScheduleInterleaved1F1B", ...
    microbatches: int = 1
    num_stages: int = 1
    stage_rank: list[int] = field(default_factory=list)     # stage index -> global rank
    ranks: list[PipelineRank] = field(default_factory=list)


@dataclass(frozen=True)
class DryRun:
    """The profile of a --dry-run: the script ran on fake tensors (shapes, dtypes, devices; no
    storage, no arithmetic). Nothing in it was timed; every second is the cost model's."""
    stand_ins: list[StandIn] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    # the world the script saw (--nproc GPUs per node x --nnodes nodes; rank 0 traced)
    nproc: int = 1
    nnodes: int = 1
    rank: int = 0                           # the rank traced (a pipeline's: the one with the largest peak)
    pipeline: Pipeline | None = None        # set when the script ran torch.distributed.pipelining stages


@dataclass(frozen=True)
class ErrorInfo:
    kind: str                               # "script_error" | "timeout" | "ended" | "no_training" | "interrupted" | "oom" | "dry_run_unsupported"
    message: str
    exit_code: int = 0
    traceback: str | None = None
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class GpuProjection:
    step_s: float | None = None
    step_s_bf16: float | None = None
    fits: bool = False
    mfu: float | None = None
    measured_step_s: float | None = None    # only for the GPU the profile ran on
    method: str = "cost_model"              # "cost_model" | "measured" | "calibrated" | "flops_only"
    detail: dict[str, Any] = field(default_factory=dict)
    # seconds by phase (data, forward, backward, optimizer, other), summing to step_s; each phase
    # is the larger of its device time and its host time (see ccprof.hardware.step)
    phase_s: dict[str, float] = field(default_factory=dict)
    phase_s_bf16: dict[str, float] = field(default_factory=dict)
    hfu: float | None = None                # executed FLOPs / step / peak
    eval_s: float | None = None             # one evaluation episode (profile.eval), outside the step
    # the step at the ends of the 95% interval of what the projection measured (a batch's making;
    # everything else is counted): None for projections made before ccprof kept it
    step_s_lo: float | None = None
    step_s_hi: float | None = None
    # device seconds of the kernels each module owns (OpCost.modules), its descendants' included,
    # under the same policy and calibration as step_s; host dispatch and the data wait stay out of
    # it. Filled for the target GPU only (ccprof.hardware.attach); {} elsewhere and in older profiles
    module_s: dict[str, float] = field(default_factory=dict)
    # device seconds of each op row's kernels, all its calls: op_s[i] is Profile.ops[i] (same order and
    # length), costed as step_s costs it (same policy and class calibration; ccprof.hardware.step.op_s).
    # They sum to the step's modelled device time, sum(detail["device_s"].values()): host dispatch and
    # the data wait are in no row, nor the phase recalibration or the unexplained rest of a measured GPU.
    # Filled for the target GPU only (ccprof.hardware.attach); [] elsewhere and in older profiles
    op_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Cost:
    gpu: str = ""
    usd_per_hour: float = 0.0
    price_date: str = ""
    price_source: str = ""
    step_s: float = 0.0
    usd_per_step: float = 0.0
    usd_per_1k_steps: float = 0.0
    usd_per_1k_samples: float | None = None
    usd_per_1m_tokens: float | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    steps_per_epoch: int | None = None
    usd_per_epoch: float | None = None
    run_steps: int = 0
    run_steps_source: str = ""
    usd_run: float = 0.0
    run_hours: float = 0.0
    energy_j_per_step: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # evaluation between steps (profile.eval), priced apart and included in usd_run/run_hours
    eval_s: float | None = None             # one episode on this GPU
    evals_in_run: float = 0.0
    usd_eval_run: float = 0.0


@dataclass(frozen=True)
class Profile:
    schema: str = SCHEMA
    status: str = "complete"                # "complete" | "partial"
    device: Device = field(default_factory=Device)
    model: ModelInfo = field(default_factory=ModelInfo)
    optimizer: OptimizerSection | None = None
    steps: Steps = field(default_factory=Steps)
    flops: Flops = field(default_factory=Flops)
    ops: list[OpCost] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    data: DataInfo = field(default_factory=DataInfo)
    precision: Precision = field(default_factory=Precision)
    gpu: GpuInfo | None = None
    host: HostInfo | None = None
    # torch.compile's fusion opportunity, by phase: non-matmul ops between two matmuls ("gaps"),
    # their kernel count and bytes, and the bytes each gap reads and writes once when fused
    fusion: dict[str, dict[str, int]] = field(default_factory=dict)
    # on a CUDA GPU: device seconds of each aten op's kernels over one step (torch.profiler)
    kernel_s: dict[str, float] = field(default_factory=dict)
    # the run's length as the script sets it (ccprof.profiler.run_size), most direct first
    run_limits: list[RunLimit] = field(default_factory=list)
    # forwards under no_grad between optimizer steps (validation, generate()): not in the step
    eval: EvalWork | None = None
    static: StaticFacts = field(default_factory=StaticFacts)
    environment: Environment = field(default_factory=Environment)
    findings: list[Finding] = field(default_factory=list)
    error: ErrorInfo | None = None
    reasons: dict[str, str] = field(default_factory=dict)   # why a section is null: {"optimizer": ...}
    counters: dict[str, int] = field(default_factory=dict)  # forward_calls, backward_calls, ...
    projection: dict[str, GpuProjection] | None = None      # by catalog GPU id (hardware stage)
    cost: Cost | None = None                                 # for the target GPU (hardware stage)
    applied: list[dict[str, Any]] = field(default_factory=list)  # runtime tweaks applied (--verify)
    world_size: int = 1                     # processes under torchrun
    rank: int = 0                           # this profile's rank (0 after merging)
    ranks: list[dict[str, Any]] = field(default_factory=list)    # per-rank summary, merged on rank 0
    # the calls in the user's code that made the loader, optimizer, models (ccprof.profiler.sites)
    sites: list[CallSite] = field(default_factory=list)
    # set when the run was a --dry-run (fake tensors: nothing measured, the stand-ins it assumed)
    dry_run: DryRun | None = None

    def to_dict(self) -> dict[str, Any]:
        return _serde.to_dict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the profile; also written to ``path`` when given."""
        return _serde.dump_json(self, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        return _serde.check_schema(cls, data, "ccprof.profile/", "profile")

    def ops_frame(self, gpu: str | None = None):
        """A pandas DataFrame with one row per op row of the step (``ops``, same order) and its
        projected device seconds on ``gpu`` (default the target GPU, ``cost.gpu``), which sum to
        the step's modelled device time (:func:`ccprof.artefacts.frames.ops_frame` lists the
        columns). ValueError when the profile holds no per-op seconds for that GPU
        (``ccprof.hardware.attach(profile, gpu=ID)`` costs them).

        Example: ``Profile.from_json("profile.json").ops_frame().groupby("phase").projected_s.sum()``.
        """
        from ccprof.artefacts.frames import ops_frame  # here: pandas loads only when a frame is asked for

        return ops_frame(self, gpu)

    def modules_frame(self, gpu: str | None = None):
        """A pandas DataFrame with one row per module (``model.modules``): class, params, FLOPs,
        forward FLOPs, activation bytes and ``module_s``, its kernels' projected device seconds on
        ``gpu`` (default the target GPU), descendants included
        (:func:`ccprof.artefacts.frames.modules_frame`). ValueError as for :meth:`ops_frame`.

        Example: ``Profile.from_json("profile.json").modules_frame().nlargest(5, "module_s")``.
        """
        from ccprof.artefacts.frames import modules_frame  # here: pandas loads only when a frame is asked for

        return modules_frame(self, gpu)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "Profile":
        """Load a profile from a path or from JSON text; ArtefactError (a ValueError naming the
        field) when it is not a valid ``ccprof.profile/1``."""
        return _serde.load_json(cls, path_or_text, "ccprof.profile/", "profile")
