"""--dry-run: the unmodified script on fake tensors.

Under ``dry_run()`` every tensor the script makes (parameters, optimizer state, batches,
activations) is a ``FakeTensor``: shape, dtype, device and strides, no storage, no arithmetic.
The hooks, the FLOP pass, the memory ledger and the op recording see the same aten ops a real
run dispatches, so the op list, the FLOPs and the memory follow from shapes alone; a model of
any size is traced on a machine that could not hold it.

What needs values gets a stand-in, each one recorded with the script's file and line
(``StandIn``) so the report can say what was assumed:

- a tensor read as a Python number (``.item()``, ``float(t)``, ``if t:``, ``.tolist()``): 1.0
  for a float, 1 for an integer; a bool is True, except a test for NaN or Inf (a tensor that
  ``isnan``/``isinf`` made, or one reduced from it), which is False: the run is assumed healthy;
- a tensor turned into NumPy (``.numpy()``) or read through ``data_ptr()``: not followed, the
  run stops with an error naming the line;
- an op whose output shape depends on values (``nonzero``, ``masked_select``, ``unique``) of the
  model's arithmetic: the run stops there with an error naming the line (``DryRunUnsupported``);
  integer and bool tensors made from known values (randint indices, counters, their masks) are
  computed for real beside the fake ("shadows", ``StandInMode``), so their reads and shapes are exact;
- a NaN/Inf count read as a number (GradScaler's ``found_inf``): 0, so the optimizer steps;
- DataLoader worker processes: the batches are made in the main process (``num_workers=0``),
  as fake tensors cannot cross processes;
- checkpoint writes (``torch.save``, safetensors' ``save_file``, ``save_pretrained``): nothing is
  written, so no file of the user's is replaced by one without values.

Real tensors the script brings in (a dataset read with ``torch.from_numpy``) are turned into
fake ones when an op meets them. ``dry_run(cuda=True)`` (what ``analyze --dry-run`` uses) also
shows the script one CUDA GPU (``dryrun_cuda``); checkpoint loads read headers only
(``dryrun_weights``); ``dryrun_compat`` covers what public scripts do with fakes (f-strings,
``torch.equal``, ``pin_memory``).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ccprof.profiler.dryrun_cuda import FAST_PATH_OPS

__all__ = ["dry_run", "StandInMode", "DryRunUnsupported", "is_fake", "user_line"]

_aten = torch.ops.aten
_CCPROF = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))
# ops whose output marks a test for a broken value; reductions and logic carry the mark on
_BAD_TESTS = {_aten.isnan.default, _aten.isinf.default, _aten.isposinf.default, _aten.isneginf.default}
_CARRY = {_aten.any.default, _aten.any.dim, _aten.all.default, _aten.all.dim, _aten.logical_or.default,
          _aten.logical_and.default, _aten.bitwise_or.Tensor, _aten.bitwise_and.Tensor, _aten.sum.default,
          _aten.sum.dim_IntList, _aten.ne.Scalar, _aten.eq.Scalar, _aten.gt.Scalar, _aten.clone.default,
          _aten.detach.default, _aten._to_copy.default, _aten.view.default, _aten.squeeze.default}


_UNKNOWN = object()
# storage key -> in-place writes StandInMode saw while a dry run is on: what a hand-written update
# through ``p.data`` leaves (it bumps no version counter, and fakes have no values to compare)
_WRITES: dict[int, int] = {}


def writes_to(t: torch.Tensor) -> int:
    """In-place writes into ``t``'s storage seen so far in this dry run (0 outside one)."""
    return _WRITES.get(t.untyped_storage()._cdata, 0)


class DryRunUnsupported(RuntimeError):
    """The script needs a value the dry run does not have (a shape that depends on data)."""


def is_fake(t: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor
    return isinstance(t, FakeTensor)


# torch's own machinery between a Python-level read (t.item(), bool(t)) and the dispatch mode
_MACHINERY = tuple(os.path.join(_TORCH, *p) for p in (
    ("utils", "_python_dispatch.py"), ("_subclasses",), ("_tensor.py",), ("overrides.py",), ("utils", "_stats.py"),
    ("_dynamo",), ("_compile.py",), ("utils", "_contextlib.py"), ("_ops.py",)))


def user_line() -> tuple[str, int, str] | None:
    """(file, line, function) of the code that read the value: the first frame outside the
    dispatch machinery and ccprof. None when that is torch itself (an optimizer reading its step
    count): torch's own reads are not the script's assumptions."""
    f = sys._getframe(1)
    while f is not None:
        name = os.path.abspath(f.f_code.co_filename)
        # a dispatch mode between the read and its asker (torch's FlopCounterMode under ccprof's
        # FLOP pass) passes the read on: it does not read
        if (name.startswith(_CCPROF) or name.startswith(_MACHINERY) or f.f_code.co_filename.startswith("<")
                or f.f_code.co_name == "__torch_dispatch__"):
            f = f.f_back
            continue
        if name.startswith(_TORCH):
            return None
        return name, f.f_lineno, f.f_code.co_name
    return None


def _from_ccprof() -> bool:
    """True when ccprof's own code (not the script) asked: its reads are not the script's stand-ins."""
    # Up to the first frame that is neither torch nor ccprof (the script, or its library), the
    # outermost ccprof frame decides: one of ccprof's dispatch modes (the FLOP and memory passes sit
    # between a read and whoever asked) means the script asked; any other (a hook reading a loss)
    # means ccprof did.
    f, outermost = sys._getframe(2), None
    dry_files = os.path.join(_CCPROF, "profiler", "dryrun")
    while f is not None:
        name = os.path.abspath(f.f_code.co_filename)
        if name.startswith(_CCPROF):
            if not name.startswith(dry_files):
                outermost = f
        elif not name.startswith(_TORCH):
            break
        f = f.f_back
    return outermost is not None and outermost.f_code.co_name != "__torch_dispatch__"


@dataclass
class _Record:
    what: str
    value: Any
    file: str
    line: int
    function: str
    count: int = 0


@dataclass
class StandInLog:
    """What the dry run stood in for, by the script's line."""
    records: dict[tuple[str, int, str], _Record] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    assumed: list[str] = field(default_factory=list)    # what holds for the whole run, no line of the script's
    pipeline: dict[str, Any] | None = None              # a pipeline schedule's facts (dryrun_pipe.watch_schedules)

    def assume(self, what: str) -> None:
        """An assumption of the whole dry run (the profile lists it with the others), once."""
        with self.lock:
            if what not in self.assumed:
                self.assumed.append(what)

    def note(self, what: str, value: Any, where: tuple[str, int, str] | None = None) -> None:
        """Record one stand-in at ``where`` (file, line, function), else at the line that asked
        (``user_line``); nothing when that is torch's own code."""
        where = where or user_line()
        if where is None:
            return
        key = (where[0], where[1], what)
        with self.lock:
            rec = self.records.get(key)
            if rec is None:
                rec = self.records[key] = _Record(what, value, *where)
            rec.count += 1


# an integer or bool fake tensor of at most this many elements whose inputs all have known values
# gets its real value too (a "shadow"): indices sampled with randint, step counters, masks of them.
# Floating-point tensors never do: the model's arithmetic stays shapes only, whatever its size.
SHADOW_MAX_ELEMENTS = 1 << 16


class StandInMode(TorchDispatchMode):
    """Above FakeTensorMode: answers what the fake tensors cannot (a scalar read), marks tests
    for NaN/Inf, and stops with the script's line on an op whose output shape needs values.

    Small integer and bool tensors whose inputs have known values (real tensors, constants, other shadows, or no
    tensor input at all: ``torch.randint(n, (B,))``) are also computed for real, beside the fake:
    ``ix = torch.randint(len(data) - T, (B,)); torch.stack([data[i:i + T] for i in ix])`` then
    slices at the real ``i`` and ``i + T`` (a stand-in of 1 for both would give empty rows), and a
    ``nonzero`` of such a mask has its real shape. Values from the model's own arithmetic (a loss)
    have no shadow and get the stand-ins.
    """

    def __init__(self, log: StandInLog, fake_mode: Any = None, cuda: bool = False) -> None:
        super().__init__()
        self.log = log
        self.fake_mode = fake_mode
        self.cuda = cuda            # the script sees a GPU (dryrun_cuda): device="cuda" -> the CPU
        self.bad_test: "torch.utils.weak.WeakIdKeyDictionary" = torch.utils.weak.WeakIdKeyDictionary()
        self.shadow: "torch.utils.weak.WeakIdKeyDictionary" = torch.utils.weak.WeakIdKeyDictionary()

    def _real(self, x: Any) -> Any:
        """The real value behind ``x`` (a shadow, a fake's constant, a real tensor), or _UNKNOWN."""
        if not isinstance(x, torch.Tensor):
            return x
        if not is_fake(x):
            return x
        real = self.shadow.get(x)
        if real is not None:
            return real
        constant = getattr(x, "constant", None)
        return constant if constant is not None else _UNKNOWN

    def _compute_real(self, func, args, kwargs) -> Any:
        from torch.utils._python_dispatch import _disable_current_modes
        from torch.utils._pytree import tree_flatten, tree_map
        flat = tree_flatten((args, kwargs))[0]
        real = [self._real(x) for x in flat]
        if any(r is _UNKNOWN for r in real):
            return _UNKNOWN
        try:
            real_args, real_kwargs = tree_map(self._real, (args, kwargs))
            with _disable_current_modes(), torch.no_grad():
                return func(*real_args, **real_kwargs)
        except Exception:           # a device this build lacks, an op with no CPU kernel: no shadow
            return _UNKNOWN

    def _keep_shadow(self, func, args, kwargs, out: Any) -> None:
        outs = list(out) if isinstance(out, (tuple, list)) else [out]     # unbind, split, max.dim
        tensors = [o for o in outs if isinstance(o, torch.Tensor)]
        if not tensors:
            return
        if any(o.numel() > SHADOW_MAX_ELEMENTS or o.dtype.is_floating_point or o.dtype.is_complex for o in tensors):
            for o in tensors:
                self.shadow.pop(o, None)
            return
        real = self._compute_real(func, args, kwargs)
        reals = list(real) if isinstance(real, (tuple, list)) else [real]
        if len(reals) == len(outs) and all(
                isinstance(r, torch.Tensor) and r.shape == o.shape for r, o in zip(reals, outs)
                if isinstance(o, torch.Tensor)):
            for r, o in zip(reals, outs):
                if isinstance(o, torch.Tensor):
                    self.shadow[o] = r
        else:
            for o in tensors:
                self.shadow.pop(o, None)     # an in-place op on a shadow with an unknown input

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.cuda and "device" in kwargs:
            from ccprof.profiler.dryrun_cuda import ON_CPU, map_device
            from ccprof.profiler.dryrun_weights import _script_line
            kwargs = map_device(kwargs, lambda: self.log.note(ON_CPU, None, where=_script_line()))
        if self.cuda and func in FAST_PATH_OPS:
            from ccprof.profiler.dryrun_weights import _script_line
            self.log.note(FAST_PATH_OPS[func].note, None, where=_script_line())
        if func is _aten._local_scalar_dense.default:
            t = args[0]
            real = self.shadow.get(t)
            if real is not None:
                from torch.utils._python_dispatch import _disable_current_modes
                with _disable_current_modes():
                    return real.item()
            if self.bad_test.get(t, False) and not t.dtype == torch.bool:
                # a count of infs/NaNs (GradScaler's found_inf): none, as the run is assumed healthy
                if not _from_ccprof():
                    self.log.note("a NaN/Inf count read as a number", 0.0)
                return 0.0 if t.dtype.is_floating_point else 0
            if t.dtype == torch.bool:
                value = not self.bad_test.get(t, False)
                what = "a NaN/Inf test read as a bool" if not value else "a tensor read as a bool"
            elif t.dtype.is_floating_point or t.dtype.is_complex:
                value, what = 1.0, "a tensor read as a number (.item(), float())"
            else:
                value, what = 1, "an integer tensor read as a number (.item(), int())"
            if not _from_ccprof():
                self.log.note(what, value)
            return value
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException
            if isinstance(exc, (DynamicOutputShapeException, DataDependentOutputException)):
                real = self._compute_real(func, args, kwargs)
                if isinstance(real, torch.Tensor) and self.fake_mode is not None:
                    out = self.fake_mode.from_tensor(real)
                    self.shadow[out] = real
                    return out
                raise DryRunUnsupported(
                    f"--dry-run cannot follow {func.overloadpacket.__name__}: its output's shape depends on the "
                    f"tensor's values, which a dry run does not have") from None
            raise
        if func in _BAD_TESTS or (func in _CARRY and any(
                isinstance(a, torch.Tensor) and self.bad_test.get(a, False) for a in args)):
            if isinstance(out, torch.Tensor):
                self.bad_test[out] = True
        if func is _aten._amp_foreach_non_finite_check_and_unscale_.default and len(args) > 1:
            self.bad_test[args[1]] = True           # found_inf: what GradScaler.step reads
        self._keep_shadow(func, args, kwargs, out)
        if func._schema.is_mutable:
            for arg, value in zip(func._schema.arguments, args):
                if arg.alias_info is not None and arg.alias_info.is_write and isinstance(value, torch.Tensor):
                    key = value.untyped_storage()._cdata
                    _WRITES[key] = _WRITES.get(key, 0) + 1
        return out


_MISSING = object()


class Patches:
    """Attributes replaced while a dry run lasts, and put back by ``undo()``, last first: the one
    way dryrun, dryrun_cuda, dryrun_compat and dryrun_weights change torch and its libraries.

    Example: ``p = Patches(); p.set(torch, "save", skip); ...; p.undo()``.
    """

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        # a class's own attribute only: one it inherits is deleted again, not copied onto it
        old = owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)
        self._saved.append((owner, name, old))
        setattr(owner, name, value)

    def undo(self) -> None:
        while self._saved:
            owner, name, old = self._saved.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)


def _no_workers(log: StandInLog, patches: Patches) -> None:
    """DataLoader(num_workers=N) -> 0 under the dry run (fake tensors cannot cross processes)."""
    from torch.utils.data import DataLoader
    original = DataLoader.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if getattr(self, "num_workers", 0):
            log.note(f"DataLoader(num_workers={self.num_workers}) run with num_workers=0", 0)
            self._DataLoader__initialized = False       # persistent_workers is guarded after __init__
            self.num_workers, self.prefetch_factor, self.persistent_workers = 0, None, False
            self._DataLoader__initialized = True
    patches.set(DataLoader, "__init__", init)


def _no_saves(log: StandInLog, patches: Patches):
    """Checkpoint writes do nothing under the dry run: fake tensors have no values to write, and a
    half-written file must never replace the user's checkpoint of the same name (torch.save of a
    fake state dict starts the zip, then fails). ``torch.save``, safetensors' ``save_file`` and
    ``save_model``, and transformers' own import of ``save_file`` are replaced while it lasts.
    Returns what to run after ``patches.undo()``: a transformers imported during the dry run bound
    the stand-in save_file by name."""
    import importlib
    skips: set[int] = set()

    def skip(name: str):
        def save(obj: Any, f: Any = None, *args: Any, **kwargs: Any) -> None:
            if name == "torch.save":
                from ccprof.profiler.dryrun_weights import remember_save
                remember_save(obj, f)       # a torch.load of it later in the run gets it back
            target = f if isinstance(f, (str, os.PathLike)) else type(f).__name__
            log.note(f"{name}(..., {os.fspath(target) if isinstance(target, os.PathLike) else target!s}) not "
                     "written: fake tensors have no values", None)
        return save

    targets = [("torch", "save", "torch.save"), ("torch.serialization", "save", "torch.save"),
               ("safetensors.torch", "save_file", "safetensors.torch.save_file"),
               ("safetensors.torch", "save_model", "safetensors.torch.save_model"),
               ("transformers.modeling_utils", "safe_save_file", "safetensors.torch.save_file")]
    for module, attr, name in targets:
        try:
            # safetensors is imported now, so a transformers imported later binds the patched save_file
            mod = sys.modules.get(module) or (importlib.import_module(module)
                                              if module.startswith(("torch", "safetensors")) else None)
        except ImportError:
            mod = None
        if mod is not None and hasattr(mod, attr):
            stand_in = skip(name)
            skips.add(id(stand_in))
            patches.set(mod, attr, stand_in)

    # save_pretrained checks for shared storages by data pointer (all 0 on fake tensors) before it
    # writes: it would fail, so it writes nothing as well (transformers imported now when installed)
    import importlib.util
    if importlib.util.find_spec("transformers") is not None:
        try:
            mu = importlib.import_module("transformers.modeling_utils")
        except Exception:       # a broken install is the script's business, not the dry run's
            mu = None
        if mu is not None:
            def save_pretrained(self: Any, save_directory: Any, *args: Any, **kwargs: Any) -> None:
                log.note(f"{type(self).__name__}.save_pretrained({os.fspath(save_directory)}) not written: "
                         "fake tensors have no values", None)
            patches.set(mu.PreTrainedModel, "save_pretrained", save_pretrained)

    def rebind() -> None:
        late = sys.modules.get("transformers.modeling_utils")     # imported during the dry run
        if late is not None and id(getattr(late, "safe_save_file", None)) in skips:
            late.safe_save_file = sys.modules["safetensors.torch"].save_file
    return rebind


def _foreach_on_fakes():
    """torch picks its foreach kernels (clip_grad_norm_, the optimizers) only for tensors whose type
    is exactly Tensor or Parameter: a FakeTensor would take the per-tensor loop a real run does
    not take. FakeTensor joins those lists while the dry run lasts (the device test is unchanged)."""
    import torch.optim.optimizer as optim_mod
    import torch.utils._foreach_utils as foreach_mod
    from torch._subclasses.fake_tensor import FakeTensor
    added = []
    for mod in (foreach_mod, optim_mod):
        types = getattr(mod, "_foreach_supported_types", None)
        if isinstance(types, list) and FakeTensor not in types:
            types.append(FakeTensor)
            added.append(types)

    def undo() -> None:
        for types in added:
            types.remove(FakeTensor)
    return undo


def _swap_fallback(patches: Patches) -> None:
    """``module.to(dtype)`` on fake parameters: torch swaps each parameter for its converted copy
    (``torch.utils.swap_tensors``), which refuses a tensor that FakeTensorMode's converter holds a
    weak reference to. Setting ``.data`` instead keeps the same Parameter objects with the new
    dtype, as ``_apply`` does for real tensors."""
    original = torch.utils.swap_tensors

    def swap(t1: torch.Tensor, t2: torch.Tensor) -> None:
        try:
            original(t1, t2)
        except RuntimeError as exc:
            if not (is_fake(t1) and is_fake(t2) and "weakref" in str(exc)):
                raise
            with torch.no_grad():
                t1.data = t2.detach()
    patches.set(torch.utils, "swap_tensors", swap)


@contextlib.contextmanager
def dry_run(cuda: bool = False, world: tuple[int, int] | None = None, rank: int = 0, out: str | None = None,
            traced: list[int] | None = None, timeout_s: float | None = None) -> Iterator[StandInLog]:
    """Run the enclosed code on fake tensors; yields the log of stand-ins. ``cuda``: the code
    sees one CUDA GPU (``ccprof.profiler.dryrun_cuda``), as ``analyze --dry-run`` runs scripts.
    ``world``: (GPUs per node, nodes): the code runs as rank 0 of that many ranks on a fake
    process group (``ccprof.profiler.dryrun_dist``, ``--dry-run --nproc N --nnodes M``); with
    ``cuda`` it sees the node's GPUs. ``rank``, ``out``, ``traced``: the rank traced, the profile's path
    and the ranks traced together (a pipeline's stages: ``ccprof.profiler.dryrun_pipe``), whose objects
    are waited for up to ``timeout_s`` (the run's timeout; None: 24 hours).

    Example:
        >>> with dry_run() as log:
        ...     x = torch.randn(1 << 20, 1 << 20)      # a 4 TiB tensor with no storage
        ...     y = float((x @ x).sum())
        >>> y, [r.what for r in log.records.values()][:1]
        (1.0, ['a tensor read as a number (.item(), float())'])
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    log = StandInLog()
    from ccprof.profiler.pycount import SKIPPED_WHILE_DRY, SKIPPED_WITH_CALLEES
    patches = Patches()
    _no_workers(log, patches)
    _swap_fallback(patches)
    rebind = _no_saves(log, patches)
    unlist = _foreach_on_fakes()
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    SKIPPED_WITH_CALLEES.add(StandInMode.__torch_dispatch__.__code__)
    # and the weak dictionaries' callbacks when a fake tensor dies (StandInMode's shadows)
    import weakref
    glue = [os.path.join(_TORCH, "_ops.py"), os.path.join(_TORCH, "_library") + os.sep,
            os.path.join(_TORCH, "utils", "weak.py"), os.path.abspath(weakref.__file__)]
    SKIPPED_WHILE_DRY.extend(glue)
    try:
        from ccprof.profiler.dryrun_compat import compat
        from ccprof.profiler.dryrun_cuda import cuda_facade
        from ccprof.profiler.dryrun_dist import fake_world
        from ccprof.profiler.dryrun_files import guard_files
        from ccprof.profiler.dryrun_weights import shapes_only_loads
        facade = cuda_facade(log, devices=world[0] if world else 1) if cuda else contextlib.nullcontext()
        ranks = (fake_world(log, *world, rank=rank, out=out, traced=traced, timeout_s=timeout_s) if world and world[0] * world[1] > 1
                 else contextlib.nullcontext())
        with guard_files(log), fake, ranks, StandInMode(log, fake, cuda=cuda), shapes_only_loads(log), facade, \
                compat(log):
            yield log
    finally:
        SKIPPED_WITH_CALLEES.discard(StandInMode.__torch_dispatch__.__code__)
        _WRITES.clear()
        for path in glue:
            SKIPPED_WHILE_DRY.remove(path)
        patches.undo()
        rebind()
        unlist()


ASSUMPTIONS = [
    "The script ran on fake tensors (torch FakeTensorMode): every tensor had its shape, dtype and device "
    "but no storage, and no arithmetic ran. Ops, FLOPs and memory follow from the shapes; every time is "
    "the cost model's, nothing was measured.",
    "Where the script read a tensor's value, the stand-in listed with its line was used instead; a branch "
    "on such a value took the stand-in's side.",
]


def describe(log: StandInLog | None, world: tuple[int, int] = (1, 1), rank: int = 0):
    """The profile's DryRun section from the log (script lines first, by line); ``world``: the
    GPUs per node and nodes the script saw; ``rank``: the one traced."""
    from ccprof.artefacts.profile import DryRun, Pipeline, StandIn
    pipe = log.pipeline if log is not None else None
    pipeline = Pipeline(schedule=pipe["schedule"], microbatches=pipe["microbatches"], num_stages=pipe["num_stages"],
                        stage_rank=list(pipe["stage_rank"])) if pipe else None
    recs = sorted((log.records.values() if log is not None else ()), key=lambda r: (r.file, r.line, r.what))
    return DryRun(stand_ins=[StandIn(what=r.what, value=r.value, file=r.file, line=r.line, function=r.function,
                                     count=r.count) for r in recs],
                  assumptions=list(ASSUMPTIONS) + list(log.assumed if log is not None else ()),
                  nproc=world[0], nnodes=world[1], rank=rank, pipeline=pipeline)
