"""The Session's state, in typed records: each mixin reads and writes its own record's fields.

A ``Session`` holds one of each (``session.clock``, ``.log``, ``.data``, ``.host``, ``.loads``,
``.measure``, ``.eval``, ``.model``, ``.hooks``), created empty in ``Session.__init__``:

=============  ==================  ============================================================
record         written by          what it holds
=============  ==================  ============================================================
StepClock      session_steps       the phase clock: the phase now, when it and the step began
                                   (wall and thread CPU seconds), the open step's phase sums
StepLog        session_steps       each timed step's record (times, phases, losses, batches,
                                   samples), the open step's counts, the step count
DataState      session_data        DataLoaders, the training loader, batches seen, sampled
                                   fingerprints, the wait inside ``__next__``
HostState      session_host        every batch's making (CPU, wall, the speed probe beside it)
                                   in the main process and the workers, the scratch folder
LoadState      session_loads       where weights came from (files, ``from_pretrained``)
PassState      session_passes      the measurement pass running, those queued, their results
EvalState      session_eval        evaluation episodes and the one open now
ModelWatch     hooks               the trained roots, their optimizers, the device, autocast
HookState      hooks               what ``uninstall`` removes; call depths; discovery
=============  ==================  ============================================================

What stays on the Session itself: its settings (steps, warm-up, callbacks) and what every
mixin adds to (``counters``, ``findings``, ``run_limits``, the GPU sampler's ``gpu_info``).
"""
from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ccprof.profiler.session_base import _TIMED

__all__ = ["StepClock", "StepLog", "DataState", "HostState", "LoadState", "PassState", "EvalState",
           "ModelWatch", "HookState"]


def _phase_sums() -> dict[str, float]:
    return dict.fromkeys(_TIMED, 0.0)


@dataclass
class StepClock:
    """The phase clock (``session_steps``): wall seconds from ``clock.wall_s``, CPU from ``clock.cpu_s``."""
    phase: str = "other"                          # the phase running now
    phase_t: float = 0.0                          # wall seconds when it began
    phase_tc: float = 0.0                         # thread CPU seconds when it began
    step_t0: float | None = None                  # wall seconds when the open step began (None: none open)
    step_tc0: float = 0.0
    cur_phase: dict[str, float] = field(default_factory=_phase_sums)       # the open step's wall s by phase
    cur_phase_cpu: dict[str, float] = field(default_factory=_phase_sums)   # ... and its CPU s
    last_checkpoint: float = 0.0                  # wall seconds of the last partial profile


@dataclass
class StepLog:
    """Steps (``session_steps``; ``hooks`` counts backwards and samples): the count, each timed step's record, and the open step's counts."""
    index: int = 0                                # completed steps
    kind: str | None = None                       # "optimizer" | "backward"
    step_s: list[float] = field(default_factory=list)
    step_cpu_s: list[float] = field(default_factory=list)
    phase_totals: list[dict[str, float]] = field(default_factory=list)
    phase_cpu_totals: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)      # the open step's
    micro_batches: list[int] = field(default_factory=list)
    closure_backwards: list[int] = field(default_factory=list)  # per step: backwards inside optimizer.step(closure)
    samples: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    batches_per_step: list[int] = field(default_factory=list)
    after_checkpoint: set[int] = field(default_factory=set)     # indices into step_s of steps after one
    cur_micro: int = 0
    cur_closure: int = 0                          # backwards inside optimizer.step(closure) in the open step
    cur_sites: Counter[tuple] = field(default_factory=Counter)  # backward call sites of the open step
    cur_samples: int = 0
    cur_tokens: int = 0
    cur_samples_in_opt: tuple[int, int] | None = None           # closure optimizers: one forward's batch
    cur_batches: int = 0
    cur_inputs: list[str] = field(default_factory=list)         # the open step's model inputs (input_key)
    # per hashed step (warm-up and pass steps): its model inputs' keys and its samples
    step_inputs: list[tuple[tuple[str, ...], int]] = field(default_factory=list)


@dataclass
class DataState:
    """DataLoader watching (``session_data``)."""
    loaders: list[weakref.ref] = field(default_factory=list)
    dataset: Any = None                           # strong: --scan-data reads it after the run
    loader_info: dict[str, Any] = field(default_factory=dict)
    batch_shapes: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    batch_bytes: int | None = None
    example_input: tuple[tuple, dict] | None = None   # the main root's first training forward
    unbatched: bool = False                       # its input is one sample with no batch dimension
    train_loader: weakref.ref | None = None
    pending_fp: dict[int, list[str]] = field(default_factory=dict)   # iterator id -> sampled rows
    it_batches: dict[int, int] = field(default_factory=dict)
    # iterator serial -> its batches so far, for the iterators whose batches reached a backward
    # (a few dozen at most): one batch each is a loop that never walks the loader
    trained_it_batches: dict[int, int] = field(default_factory=dict)
    iterators_made: int = 0
    last_it_serial: int | None = None
    last_it: int | None = None
    last_loader: weakref.ref | None = None
    loader_from_backward: bool = False
    wait_s: float = 0.0                           # wall seconds inside DataLoader __next__
    in_next: bool = False


@dataclass
class HostState:
    """The batch clock (``session_host``): (dataset id, CPU s, wall s, probe s) per batch made."""
    scratch_dir: str | None = None                # where workers write their batch times
    own_scratch: str | None = None                # a folder ccprof made (and removes)
    main_pid: int = 0
    main_fetches: list[tuple[int, float, float, float]] = field(default_factory=list)
    worker_fetches: list[tuple[int, float, float, float]] = field(default_factory=list)
    burst_probes: list[float] = field(default_factory=list)     # the probe around batches made again
    worker_file: Any = None                       # a forked worker's open batch file
    host_info: Any = None                         # the final profile's HostInfo, measured once


@dataclass
class LoadState:
    """Where weights came from (``session_loads``)."""
    loaded: list[tuple[str, int]] = field(default_factory=list)   # (module class, keys) from load_state_dict
    loaded_ids: set[int] = field(default_factory=set)
    pretrained_models: dict[int, str] = field(default_factory=dict)   # id(model) -> checkpoint
    file_storages: set[int | tuple[str, int]] = field(default_factory=set)  # storages read by torch.load / safetensors


@dataclass
class PassState:
    """The measurement passes (``session_passes``) and what they measured."""
    current: Any = None                           # the pass running (FlopPass, MemoryLedger, ...)
    name: str | None = None
    queue: list[str] = field(default_factory=list)
    retries: int = 0
    flops_result: Any = None                      # (Flops, ops)
    forward_flops_by_module: dict[str, int] = field(default_factory=dict)
    op_bytes_by_module: dict[str, int] = field(default_factory=dict)
    memory_result: Any = None                     # (Memory, activation bytes by module)
    fusion: dict[str, dict[str, int]] = field(default_factory=dict)
    module_calls_per_step: int = 0
    kernel_result: dict[str, float] = field(default_factory=dict)
    opcodes: dict[str, int] | None = None         # Python bytecodes by phase (the python pass)
    opcode_step: int | None = None


@dataclass
class EvalState:
    """Evaluation episodes (``session_eval``)."""
    episodes: list[dict[str, Any]] = field(default_factory=list)
    period: tuple | None = None
    where: str = ""
    open: bool = False
    t0: float = 0.0
    calls: int = 0
    counter: Any = None                           # the episode's FlopPass
    prev_phase: str = "other"
    paused_pass: bool = False


@dataclass
class ModelWatch:
    """What the model watching sees (``hooks``, ``session_eval``): the trained roots and their
    optimizers, the device, the precision the run used."""
    device_type: str = "cpu"
    roots: dict[int, Any] = field(default_factory=dict)           # id -> nn.Module, trained roots in call order
    # prefix -> module: the roots and the modules that train beside them, held in plain lists or
    # dicts and never called at the top level (set once, at the end of discovery; {} when none)
    reached: dict[str, Any] = field(default_factory=dict)
    main_root_cache: Any = None                   # the root with the most parameters, once discovery is over
    optimizers: list[Any] = field(default_factory=list)           # those that stepped
    primary_opt: Any = None                       # the first that stepped: its steps are the steps
    # strong: the profile is built after the script's frames (and its locals) are gone
    known_opts: list[Any] = field(default_factory=list)           # every one constructed
    opt_param_ids: tuple[int, set[int]] = (-1, set())             # (key, ids of their parameters)
    opt_calls: dict[int, int] = field(default_factory=dict)       # id(optimizer) -> step() calls
    # id(optimizer) -> {id(parameter): [steps it had a gradient, steps it had none]}, at each step()
    grad_presence: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    autocast_dtype: str | None = None
    grad_scaler: bool = False
    first_forward_done: bool = False


@dataclass
class HookState:
    """The hooks' own bookkeeping (``hooks``): what to remove at ``uninstall``, nesting depths."""
    handles: list[Any] = field(default_factory=list)
    patched: list[tuple[Any, str, Any]] = field(default_factory=list)   # (owner, name, original)
    global_fwd: list[Any] = field(default_factory=list)       # global module hooks, during discovery
    finder: Any = None                            # the sys.meta_path finder patching later imports
    root_hooks: dict[int, Any] = field(default_factory=dict)
    discovery: bool = True                        # until the first step ends
    depth: int = 0                                # module call depth (global hooks)
    opt_depth: int = 0                            # inside optimizer.step
    in_backward: bool = False
    awaiting_update: bool = False                 # a backward with no torch.optim optimizer seen
    probe: list[Any] = field(default_factory=list)    # (param, version, values) to see a hand-written update
    detached: bool = False                        # keep_running: measured; every hook is a no-op now
    janitor: Any = None                           # removes the optimizer hooks at the next forward
