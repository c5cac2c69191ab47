"""Observe an unmodified training run through public hooks, and stop it after the measured steps.

A ``Session`` installs global hooks (optimizer step pre/post, module forward during discovery,
``Tensor.backward``/``torch.autograd.backward`` wrappers, DataLoader iteration,
``load_state_dict``, GradScaler), cuts the run into *steps* and drives the measurement
passes: warm-up steps, one FLOP step, one memory step, then ``steps`` plainly timed steps.
Forwards of the trained model under ``no_grad``/``inference_mode`` between optimizer steps
(validation, ``generate()``) are *evaluation*: timed and counted apart (``Profile.eval``) and left
out of the step time; the FLOP pass pauses over them, the memory pass goes on (no graph is kept),
and the kernel-timing pass they interrupt is redone on the next step.
After the last one it raises ``StopProfiling`` (a ``BaseException``, so ``except Exception``
in the user's loop cannot swallow it). ``Session.build_profile()`` turns what it saw into
a ``Profile``.

A step is one optimizer step of the *primary* optimizer (the first one that stepped), so a
GAN's two optimizers make one step per iteration. Without any torch.optim optimizer, a step
ends with each backward that is followed by a parameter change (scripts that update
parameters by hand).
"""
from __future__ import annotations

import hashlib
import math
import sys
import time
import weakref
from collections import Counter
from dataclasses import replace
from typing import Any, Callable

import torch
import torch.nn as nn

from ccprof.profiler.host import measure_host
from ccprof.profiler.profile import (
    DataInfo, Device, EvalWork, Finding, Memory, Precision, Profile, Steps,
)

__all__ = ["StopProfiling", "Session", "PHASES"]

PHASES = ("data", "forward", "backward", "optimizer", "other")
# Forwards of the trained model under no_grad between optimizer steps (validation,
# generate()) are timed as "eval", outside the step; a pass step they land in is redone.
_TIMED = PHASES + ("eval",)
EVAL_MAX_ROWS = 4000         # op rows kept for the counted evaluation episode
MAX_PASS_RETRIES = 3
MAX_FINGERPRINTS = 4096     # sampled examples kept for duplicate detection
# With DataLoader workers, a wait above this share of the step means they are behind (their
# rate sets the step); below it the batch time is probed in the main process.
DATA_BOUND_FRAC = 0.05
PROBE_BUDGET_S = 2.0         # at most this long fetching samples for the batch-time probe
CHECKPOINT_S = 10.0          # during the timed steps, a partial profile at most this often
MAX_SHAPES = 8
PROBE_PARAMS, PROBE_ELEMENTS = 4, 4096   # what is compared to see a hand-written update


class _AfterImport:
    """A ``sys.meta_path`` finder that calls ``patch(module)`` right after ``name`` is imported
    (transformers or safetensors may be imported by the script long after the hooks go in)."""

    def __init__(self, patches: dict[str, Callable[[Any], None]]):
        self.patches = dict(patches)
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.patches or fullname in self._busy:
            return None
        import importlib.util

        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, patch = spec.loader, self.patches[fullname]

        class _Loader:
            def create_module(self, s):
                return loader.create_module(s)

            def exec_module(self, module):
                loader.exec_module(module)
                try:
                    patch(module)
                except Exception:
                    pass
        spec.loader = _Loader()
        return spec


class StopProfiling(BaseException):
    """Raised from a hook once the measured steps are done; not an ``Exception`` on purpose."""


class _Timeout(BaseException):
    """Raised in the main thread when the parent asks the run to stop (timeout)."""


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


def _first_tensor(obj: Any, depth: int = 0) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if depth > 3:
        return None
    if isinstance(obj, dict):
        for key in ("input_ids", "pixel_values", "input", "x", "inputs"):
            if isinstance(obj.get(key), torch.Tensor):
                return obj[key]
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for v in obj:
            t = _first_tensor(v, depth + 1)
            if t is not None:
                return t
    return None


def _describe_batch(batch: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(batch, torch.Tensor):
        dtype = str(batch.dtype).replace("torch.", "")
        out.append(f"{prefix or 'batch'}: {dtype}{list(batch.shape)}")
    elif isinstance(batch, dict):
        for k, v in batch.items():
            out += _describe_batch(v, str(k))
    elif isinstance(batch, (list, tuple)):
        for i, v in enumerate(batch):
            out += _describe_batch(v, f"{prefix}[{i}]" if prefix else f"[{i}]")
    return out[:MAX_SHAPES]


def _row_fingerprints(t: torch.Tensor) -> list[str]:
    if t.dim() == 0:
        return []
    rows = t.detach().to("cpu").contiguous().reshape(t.shape[0], -1)
    if rows.dtype == torch.bfloat16:
        rows = rows.view(torch.int16)
    arr = rows.numpy()
    return [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() for r in arr]


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_MODULE_FILE = nn.modules.module.__file__


def _call_kwargs(module: nn.Module) -> dict:
    """The keyword arguments of ``module``'s call in progress ({} when they cannot be found).

    torch calls a *global* forward pre-hook as ``hook(module, args)``, without the kwargs
    (only per-module hooks can ask for them), so ``model(**batch)`` -- the Hugging Face
    Trainer's call and most HF loops -- looked argument-less at discovery: the first-forward
    tweaks saw no labels and the example input was empty. The kwargs dict is read (never
    written) from torch's ``Module._call_impl`` frame a few levels up.
    """
    frame = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            break
        if frame.f_code.co_filename == _MODULE_FILE:
            local = frame.f_locals
            if local.get("self") is module and isinstance(local.get("kwargs"), dict):
                return local["kwargs"]
        frame = frame.f_back
    return {}


class Session:
    """Watches one training run. ``install()`` before it starts, ``uninstall()`` after."""

    def __init__(self, steps: int = 10, warmup: int = 3, passes: bool = True,
                 on_step: Callable[[int, int, float, float | None], None] | None = None,
                 on_first_forward: Callable[["Session", nn.Module, tuple, dict], None] | None = None,
                 on_loader_iter: Callable[[Any], None] | None = None,
                 on_checkpoint: Callable[[], None] | None = None,
                 on_complete: Callable[[], None] | None = None):
        self.steps_wanted = max(1, int(steps))
        # the harness writes what was measured so far after each pass and every few timed
        # seconds (a later death still leaves a partial profile), and the whole profile the
        # moment the last step ends, before StopProfiling is raised into the script
        self.on_checkpoint = on_checkpoint
        self.on_complete = on_complete
        self._last_checkpoint = time.perf_counter()
        self._after_checkpoint: set[int] = set()      # indices into step_s of steps after one
        self.warmup = max(1, int(warmup))      # discovery needs one full step
        self.passes = passes
        self.on_step = on_step                  # (done, total, step_s, loss)
        self.on_first_forward = on_first_forward
        self.on_loader_iter = on_loader_iter      # --verify: DataLoader settings before iterating
        self.n_pass_steps = 2 if passes else 0
        self.total_steps = self.warmup + self.n_pass_steps + self.steps_wanted

        self.device_type = "cpu"
        self.roots: dict[int, nn.Module] = {}          # id -> module, trained roots in call order
        self.optimizers: list[torch.optim.Optimizer] = []
        self.primary_opt: torch.optim.Optimizer | None = None
        self.step_kind: str | None = None               # "optimizer" | "backward"
        self.step_index = 0                              # completed steps
        self.counters: Counter[str] = Counter()
        self.step_s: list[float] = []
        self.losses: list[float] = []
        self.step_losses: list[float] = []
        self.phase_totals: list[dict[str, float]] = []
        self.micro_batches: list[int] = []
        self.samples: list[int] = []
        self.tokens: list[int] = []
        self.findings: list[Finding] = []
        self.loaded: list[tuple[str, int]] = []         # (module class, keys) from load_state_dict
        self.loaded_ids: set[int] = set()
        self.pretrained_models: dict[int, str] = {}     # id(model) -> checkpoint, from from_pretrained
        self._file_storages: set[int] = set()           # storages of tensors read by torch.load / safetensors
        self.autocast_dtype: str | None = None
        self.grad_scaler = False
        self.loaders: list[weakref.ref] = []
        self.dataset: Any = None
        self.loader_info: dict[str, Any] = {}
        self.batch_shapes: list[str] = []
        self.fingerprints: list[str] = []
        self.example_input: tuple[tuple, dict] | None = None
        self.flops_result = None
        self.forward_flops_by_module: dict[str, int] = {}
        self.memory_result = None
        self.started_at = time.time()
        self.first_forward_done = False

        self._handles: list[Any] = []
        self._patched: list[tuple[Any, str, Any]] = []
        self._depth = 0
        self._opt_depth = 0
        self._in_backward = False
        self._phase = "other"
        self._phase_t = 0.0
        self._cur_phase: dict[str, float] = dict.fromkeys(_TIMED, 0.0)
        self._step_t0: float | None = None
        self._cur_micro = 0
        self._cur_sites: Counter[tuple] = Counter()
        self._cur_samples = 0
        self._cur_tokens = 0
        self._root_hooks: dict[int, Any] = {}
        self._main_root_cache: nn.Module | None = None
        self._discovery = True
        self._pass: Any = None
        self._pass_name: str | None = None
        self._awaiting_update = False
        self._probe: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        self._cur_samples_in_opt: tuple[int, int] | None = None
        self._data_wait_s = 0.0
        self.batches_per_step: list[int] = []
        self._cur_batches = 0
        self.batch_bytes: int | None = None
        self._train_loader: weakref.ref | None = None
        self.fusion: dict[str, dict[str, int]] = {}
        self.module_calls_per_step = 0
        self.kernel_result: dict[str, float] = {}
        self.run_limits: list = []
        self.eval_episodes: list[dict[str, Any]] = []
        self.eval_period: tuple | None = None
        self.eval_where = ""
        self._eval_open = False
        self._eval_t0 = 0.0
        self._eval_calls = 0
        self._eval_pass: Any = None
        self._eval_prev_phase = "other"
        self._paused_pass = False
        # strong: the profile is built after the script's frames (and its locals) are gone
        self._known_opts: list[torch.optim.Optimizer] = []
        self._opt_param_ids: tuple[int, set[int]] = (-1, set())
        self._pass_queue: list[str] = ["flops", "memory"] if passes else []
        self._pass_retries = 0
        self._opt_calls: dict[int, int] = {}
        self._it_batches: dict[int, int] = {}
        self._pending_fp: dict[int, list[str]] = {}
        self._last_it: int | None = None
        self._last_loader: weakref.ref | None = None
        self._loader_from_backward = False
        self._nvml = None
        self.gpu_info = None
        self.gpu_reason: dict[str, str] = {}

    # ------------------------------------------------------------------ install
    def install(self) -> "Session":
        from torch.nn.modules import module as module_mod
        from torch.optim import optimizer as optim_mod

        self._handles.append(optim_mod.register_optimizer_step_pre_hook(self._opt_pre))
        self._patch(optim_mod.Optimizer, "__init__", self._wrap_opt_init(optim_mod.Optimizer.__init__))
        self._patch(optim_mod.Optimizer, "load_state_dict",
                    self._counting("optimizer_state_loads", optim_mod.Optimizer.load_state_dict))
        self._handles.append(optim_mod.register_optimizer_step_post_hook(self._opt_post))
        self._global_fwd = [module_mod.register_module_forward_pre_hook(self._global_pre),
                            module_mod.register_module_forward_hook(self._global_post)]
        self._patch(torch.Tensor, "backward", self._wrap_tensor_backward(torch.Tensor.backward))
        self._patch(torch.autograd, "backward", self._wrap_autograd_backward(torch.autograd.backward))
        from torch.utils.data import dataloader as dl_mod

        self._patch(dl_mod._BaseDataLoaderIter, "__next__",
                    self._wrap_next(dl_mod._BaseDataLoaderIter.__next__))
        self._patch(dl_mod.DataLoader, "__iter__", self._wrap_iter(dl_mod.DataLoader.__iter__))
        self._patch(nn.Module, "load_state_dict", self._wrap_load(nn.Module.load_state_dict))
        self._patch(torch, "load", self._wrap_file_load(torch.load))
        patches = {"transformers.modeling_utils": self._patch_from_pretrained,
                   "safetensors.torch": self._patch_safetensors}
        later = {}
        for name, fn in patches.items():
            if name in sys.modules:
                fn(sys.modules[name])
            else:
                later[name] = fn
        if later:
            self._finder = _AfterImport(later)
            sys.meta_path.insert(0, self._finder)
        from torch.amp import grad_scaler

        self._patch(grad_scaler.GradScaler, "scale", self._wrap_scale(grad_scaler.GradScaler.scale))
        import torch.utils.checkpoint as ckpt_mod

        self._patch(torch, "compile", self._counting("compile_calls", torch.compile))
        self._patch(nn.Module, "compile", self._counting("compile_calls", nn.Module.compile))
        self._patch(ckpt_mod, "checkpoint", self._counting("checkpoint_calls", ckpt_mod.checkpoint))
        return self

    def uninstall(self) -> None:
        self._close_eval(abort=True)
        self._end_pass(abort=True)
        self._stop_sampler()
        for h in self._handles + getattr(self, "_global_fwd", []) + list(self._root_hooks.values()):
            h.remove()
        self._handles.clear()
        self._root_hooks.clear()
        for owner, name, orig in reversed(self._patched):
            setattr(owner, name, orig)
        self._patched.clear()
        finder = getattr(self, "_finder", None)
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        self._patched.append((owner, name, owner.__dict__.get(name, getattr(owner, name))))
        setattr(owner, name, new)

    # ------------------------------------------------------------------ phases
    def _now(self) -> float:
        return time.perf_counter()

    def _set_phase(self, phase: str, sync: bool = True) -> None:
        if phase == self._phase:
            return
        if sync and not self._discovery:
            _sync(self.device_type)
        t = self._now()
        if self._step_t0 is not None:
            self._cur_phase[self._phase] += t - self._phase_t
        self._phase_t = t
        self._phase = phase
        if self._pass is not None and phase != "eval":
            self._pass.set_phase(phase)

    def _rest_phase(self) -> str:
        return "optimizer" if self._opt_depth > 0 else "other"

    # ------------------------------------------------------------------ modules
    def _global_pre(self, module: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
        if self._depth == 0 and not isinstance(module, _SKIP_ROOTS):
            self._on_root_forward(module, args, kwargs if kwargs is not None else _call_kwargs(module))
        if self.autocast_dtype is None:
            for dev in ("cuda", "cpu"):
                try:
                    if torch.is_autocast_enabled(dev):
                        self.autocast_dtype = str(torch.get_autocast_dtype(dev)).replace("torch.", "")
                        break
                except Exception:
                    pass
        self._depth += 1

    def _global_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def _root_pre(self, module: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
        self._on_root_forward(module, args, kwargs or {})

    def _on_root_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        key = id(module)
        if key not in self.roots:
            if not self._discovery:
                return      # a new root after discovery is not timed; the FLOP pass still sees it
            if not any(p.requires_grad for p in module.parameters()):
                self.counters["forward_calls_untrained"] += 1
                return
            self.roots[key] = module
            if next(module.parameters()).is_cuda:
                self.device_type = "cuda"
        if not self.first_forward_done:
            self.first_forward_done = True
            if self.on_first_forward is not None:
                self.on_first_forward(self, module, args, kwargs)
        if self._opt_depth == 0 and not self._in_backward and self._is_eval_call(module):
            self._eval_forward()
            return
        if self._eval_open:
            self._close_eval()
        self.counters["forward_calls"] += 1
        if self._awaiting_update and not self.optimizers and self._params_changed():
            # parameters changed after backward with no torch.optim optimizer: a hand-written update
            self._awaiting_update = False
            self.step_kind = "backward"
            self._end_step()
        if self._opt_depth == 0 and self._phase not in ("forward", "backward"):
            self._begin_step_if_needed()
        if self._phase != "backward":
            self._set_phase("forward")
        if module is self._main_root() and torch.is_grad_enabled():
            t = _first_tensor((args, kwargs))
            if t is not None and t.dim() >= 1:
                n_tokens = int(t.numel()) if (not t.is_floating_point() and t.dim() == 2) else 0
                if self._opt_depth == 0:
                    self._cur_samples += int(t.shape[0])
                    self._cur_tokens += n_tokens
                elif not self._cur_samples_in_opt:      # closure optimizers: one forward's batch
                    self._cur_samples_in_opt = (int(t.shape[0]), n_tokens)
            if self.example_input is None:
                self.example_input = (args, kwargs)

    def _param_probe(self) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        """A few small parameters that just got gradients, with copies of their values.

        Hand-written updates often go through ``p.data`` (pytorch/examples), which does not
        bump ``p._version``, so values are compared; small tensors (biases, norms) are picked
        because every batch moves them, unlike an embedding row a batch never touched.
        """
        root = self._main_root()
        if root is None:
            return []
        with_grad = [p for p in root.parameters() if p.grad is not None]
        with_grad.sort(key=lambda p: p.numel())
        return [(p, p._version, p.detach().reshape(-1)[:PROBE_ELEMENTS].clone()) for p in with_grad[:PROBE_PARAMS]]

    def _params_changed(self) -> bool:
        for p, version, values in self._probe:
            if p._version != version or not torch.equal(p.detach().reshape(-1)[:PROBE_ELEMENTS], values):
                return True
        return False

    def _main_root(self) -> nn.Module | None:
        """The trained root with the most parameters (cached once discovery is over)."""
        if self._main_root_cache is not None:
            return self._main_root_cache
        if not self.roots:
            return None
        root = max(self.roots.values(), key=_count_params)
        if not self._discovery:
            self._main_root_cache = root
        return root

    # ------------------------------------------------------------------ backward
    def _wrap_tensor_backward(self, orig: Callable) -> Callable:
        session = self

        def backward(tensor, *args, **kwargs):
            if session._in_backward:
                return orig(tensor, *args, **kwargs)
            return session._run_backward(lambda: orig(tensor, *args, **kwargs), tensor)

        backward.__wrapped__ = orig
        return backward

    def _wrap_autograd_backward(self, orig: Callable) -> Callable:
        session = self

        def backward(tensors, *args, **kwargs):
            if session._in_backward:
                return orig(tensors, *args, **kwargs)
            first = tensors if isinstance(tensors, torch.Tensor) else (
                tensors[0] if isinstance(tensors, (list, tuple)) and tensors else None)
            return session._run_backward(lambda: orig(tensors, *args, **kwargs), first)

        backward.__wrapped__ = orig
        return backward

    def _run_backward(self, call: Callable, loss: torch.Tensor | None) -> Any:
        if self._eval_open:
            self._close_eval()
        self._begin_step_if_needed()
        if self._last_it is not None:
            self._flush_fingerprints(self._last_it)     # its batch reached a backward: training data
        if not self._loader_from_backward and self._last_loader is not None:
            # the training loader is the one whose batch reaches a backward (not, say, Lightning's
            # sanity-check validation loader that ran first)
            loader = self._last_loader()
            if loader is not None:
                self.loader_info = _loader_info(loader)
                self.dataset = getattr(loader, "dataset", self.dataset)
            self._loader_from_backward = True
        self.counters["backward_calls"] += 1
        self._cur_micro += 1
        self._cur_sites[_backward_site(sys._getframe(2))] += 1
        if loss is not None and loss.numel() == 1:
            try:
                self.step_losses.append(float(loss.detach().float().item()))
            except Exception:
                pass
        self._set_phase("backward")
        self._in_backward = True
        try:
            result = call()
        finally:
            self._in_backward = False
            self._set_phase(self._rest_phase())
        if not self.optimizers:
            self._awaiting_update = True
            self._probe = self._param_probe()
        return result

    # ------------------------------------------------------------------ optimizer
    def _opt_pre(self, opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        inner = getattr(opt, "optimizer", None)
        if isinstance(inner, torch.optim.Optimizer):
            return      # a wrapper (accelerate's AcceleratedOptimizer): the inner one counts
        if opt not in self.optimizers:
            self.optimizers.append(opt)
        if self.primary_opt is None:
            self.primary_opt = opt
            if self.step_kind is None:
                self.step_kind = "optimizer"
            elif self.step_kind == "backward":
                self.step_kind = "optimizer"     # an optimizer appeared late: it defines steps now
        self._awaiting_update = False
        if self._eval_open:
            self._close_eval()
        self._begin_step_if_needed()
        self._opt_depth += 1
        self._set_phase("optimizer")

    def _opt_post(self, opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if isinstance(getattr(opt, "optimizer", None), torch.optim.Optimizer):
            return
        self.counters["optimizer_steps"] += 1
        self._opt_calls[id(opt)] = self._opt_calls.get(id(opt), 0) + 1
        self._opt_depth = max(0, self._opt_depth - 1)
        self._set_phase(self._rest_phase())
        if opt is self.primary_opt and self._opt_depth == 0:
            self._end_step()

    # ------------------------------------------------------------------ data
    def _wrap_iter(self, orig: Callable) -> Callable:
        session = self

        def __iter__(loader):
            if session.on_loader_iter is not None:
                session.on_loader_iter(loader)
            it = orig(loader)
            try:
                it._ccprof_loader = weakref.ref(loader)
            except Exception:
                pass
            # a new iterator (its id may be a dead one's): nothing pending from before
            session._pending_fp.pop(id(it), None)
            session._it_batches.pop(id(it), None)
            if not any(r() is loader for r in session.loaders):
                session.loaders.append(weakref.ref(loader))
            if session.dataset is None:
                # strong: loops that build a DataLoader per epoch drop it before --scan-data runs
                session.dataset = getattr(loader, "dataset", None)
            return it

        __iter__.__wrapped__ = orig
        return __iter__

    def _wrap_next(self, orig: Callable) -> Callable:
        session = self

        def __next__(it):
            if session._in_data:
                return orig(it)
            session._in_data = True
            prev = session._phase
            if session._step_t0 is not None:
                session._set_phase("data", sync=False)
            t0 = time.perf_counter()
            try:
                batch = orig(it)
            finally:
                session._in_data = False
                session._data_wait_s += time.perf_counter() - t0
                if session._step_t0 is not None:
                    session._set_phase(prev, sync=False)
            session._cur_batches += 1
            session._on_batch(it, batch)
            return batch

        __next__.__wrapped__ = orig
        return __next__

    _in_data = False

    def _on_batch(self, it: Any, batch: Any) -> None:
        self.counters["batches"] += 1
        loader = getattr(it, "_ccprof_loader", lambda: None)()
        if loader is not None:
            self._last_loader = weakref.ref(loader)
            if not self.loader_info:
                self.loader_info = _loader_info(loader)
        if not self.batch_shapes:
            self.batch_shapes = _describe_batch(batch)
        if self.batch_bytes is None:
            self.batch_bytes = _batch_bytes(batch)
        if loader is not None and self._step_t0 is not None:
            self._train_loader = weakref.ref(loader)
        key = id(it)
        self._it_batches[key] = self._it_batches.get(key, 0) + 1
        self._last_it = key
        if self._timed_step() or len(self.fingerprints) + self._pending_count() >= MAX_FINGERPRINTS:
            return      # hashing costs time: only in warm-up and pass steps
        t = _first_tensor(batch)
        if t is not None:
            try:
                self._pending_fp.setdefault(key, []).extend(_row_fingerprints(t))
            except Exception:
                pass

    def _pending_count(self) -> int:
        return sum(len(v) for v in self._pending_fp.values())

    def _flush_fingerprints(self, key: int) -> None:
        """Keep an iterator's sampled rows once its batch fed a backward: training data.

        ``next(iter(loader))`` to peek at one batch (the DDP tutorial prints its shapes) and the
        batches an evaluation reads (llama2.c's estimate_loss re-reads the train split) never
        do, and their rows would count as duplicates of the epoch that follows."""
        rows = self._pending_fp.pop(key, [])
        self._pending_fp.clear()            # other iterators' rows did not reach this backward
        room = MAX_FINGERPRINTS - len(self.fingerprints)
        if rows and room > 0:
            self.fingerprints.extend(rows[:room])

    # ------------------------------------------------------------------ misc wrappers
    def _wrap_load(self, orig: Callable) -> Callable:
        """``load_state_dict`` that notes a module receiving weights read from a file (torch.load,
        safetensors): pretrained. A state dict copied from another live model (a DQN target
        network, an EMA copy) is not."""
        session = self

        def load_state_dict(module, state_dict, *args, **kwargs):
            result = orig(module, state_dict, *args, **kwargs)
            try:
                if session._from_file(state_dict):
                    session.loaded.append((type(module).__name__, len(state_dict)))
                    session.loaded_ids.add(id(module))
            except Exception:
                pass
            return result

        load_state_dict.__wrapped__ = orig
        return load_state_dict

    def _note_file_tensors(self, obj: Any) -> None:
        from torch.utils._pytree import tree_flatten

        try:
            leaves = tree_flatten(obj)[0] if not isinstance(obj, dict) else list(obj.values())
            for t in leaves:
                if isinstance(t, dict):
                    self._note_file_tensors(t)
                elif isinstance(t, torch.Tensor) and t.device.type != "meta":
                    self._file_storages.add(t.untyped_storage().data_ptr())
        except Exception:
            pass

    def _from_file(self, state_dict: Any) -> bool:
        for v in list(getattr(state_dict, "values", lambda: [])())[:64]:
            if isinstance(v, torch.Tensor) and v.device.type != "meta":
                try:
                    if v.untyped_storage().data_ptr() in self._file_storages:
                        return True
                except Exception:
                    continue
        return False

    def _wrap_file_load(self, orig: Callable) -> Callable:
        session = self

        def load(*args, **kwargs):
            out = orig(*args, **kwargs)
            session._note_file_tensors(out)
            return out

        load.__wrapped__ = orig
        return load

    def _patch_safetensors(self, module: Any) -> None:
        for name in ("load_file", "load"):
            fn = getattr(module, name, None)
            if fn is not None:
                self._patch(module, name, self._wrap_file_load(fn))

    def _patch_from_pretrained(self, module: Any) -> None:
        """``PreTrainedModel.from_pretrained`` marks the model it returns as pretrained, with the
        checkpoint's name; ``from_config`` and constructors are from scratch."""
        cls = getattr(module, "PreTrainedModel", None)
        raw = cls.__dict__.get("from_pretrained") if cls is not None else None
        if not isinstance(raw, classmethod):
            return
        func = raw.__func__
        session = self

        def from_pretrained(klass, *args, **kwargs):
            model = func(klass, *args, **kwargs)
            try:
                target = model[0] if isinstance(model, tuple) else model
                name = args[0] if args else kwargs.get("pretrained_model_name_or_path", "")
                session.pretrained_models[id(target)] = str(name)
            except Exception:
                pass
            return model

        from_pretrained.__wrapped__ = func
        self._patch(cls, "from_pretrained", classmethod(from_pretrained))

    def _counting(self, counter: str, orig: Callable) -> Callable:
        """``orig`` that counts its calls (torch.compile, checkpoint: facts for static.reconcile)."""
        import functools

        counters = self.counters

        @functools.wraps(orig)
        def counted(*args, **kwargs):
            counters[counter] += 1
            return orig(*args, **kwargs)

        return counted

    def runtime_facts(self) -> dict[str, bool]:
        """What the run showed of the facts static analysis also reads (static.RUNTIME_FACTS)."""
        classes = {type(m).__name__ for m in self.roots.values()}
        model_ckpt = any(getattr(m, "is_gradient_checkpointing", False) for m in self.roots.values())
        loaded_hf = any(id(sub) in self.pretrained_models for m in self.roots.values() for sub in m.modules())
        return {
            "autocast": self.autocast_dtype is not None,
            "grad_scaler": self.grad_scaler,
            "checkpointing": self.counters["checkpoint_calls"] > 0 or model_ckpt,
            "accumulation": bool(self.micro_batches) and max(self.micro_batches) > 1
                            and (self.step_kind == "optimizer"),
            "from_pretrained": loaded_hf,
            "load_state_dict": bool(self.loaded),
            "ddp": "DistributedDataParallel" in classes,
            "fsdp": "FullyShardedDataParallel" in classes or any(
                "FSDP" in c for c in classes),
            "data_parallel": "DataParallel" in classes,
            "compile": self.counters["compile_calls"] > 0 or "OptimizedModule" in classes,
        }

    def _wrap_scale(self, orig: Callable) -> Callable:
        session = self

        def scale(scaler, outputs):
            if scaler.is_enabled():
                session.grad_scaler = True
            return orig(scaler, outputs)

        scale.__wrapped__ = orig
        return scale

    # ------------------------------------------------------------------ steps
    def _timed_step(self) -> bool:
        return self.step_index >= self.warmup + self.n_pass_steps

    def _begin_step_if_needed(self) -> None:
        if self._step_t0 is None:
            _sync(self.device_type) if not self._discovery else None
            self._step_t0 = self._now()
            self._phase_t = self._step_t0
            self._cur_phase = dict.fromkeys(_TIMED, 0.0)

    def _end_step(self) -> None:
        if self._step_t0 is None:
            return
        if self._eval_open:
            self._close_eval()
        _sync(self.device_type)
        t = self._now()
        self._cur_phase[self._phase] += t - self._phase_t
        step_s = t - self._step_t0 - self._cur_phase.get("eval", 0.0)
        idx = self.step_index
        self.step_index += 1
        loss = self.step_losses[-1] if self.step_losses else None
        if self._pass_name is not None:
            self._end_pass()
        if idx >= self.warmup + self.n_pass_steps:
            self.step_s.append(step_s)
            self.phase_totals.append(dict(self._cur_phase))
            # micro-batches: backwards per step; with several models or optimizers (a GAN) only
            # one backward call site run several times (an accumulation loop) counts: D's losses
            # on real and on fake data are two loss terms, not two micro-batches
            several = len(self.roots) > 1 or len(set(self._known_opts) | set(self.optimizers)) > 1
            self.micro_batches.append(max(self._cur_sites.values()) if (several and self._cur_sites)
                                      else self._cur_micro)
            self.batches_per_step.append(self._cur_batches)
            if not self._cur_samples and self._cur_samples_in_opt:
                self._cur_samples, self._cur_tokens = self._cur_samples_in_opt
            self.samples.append(self._cur_samples)
            self.tokens.append(self._cur_tokens)
            if loss is not None:
                self.losses.append(loss)
        elif idx < self.warmup + self.n_pass_steps and loss is not None and idx >= self.warmup:
            self.losses.append(loss)
        if self.on_step is not None:
            try:
                self.on_step(self.step_index, self.total_steps, step_s, loss)
            except Exception:
                pass
        self.step_losses = []
        self._cur_micro = 0
        self._cur_sites = Counter()
        self._cur_batches = 0
        self._cur_samples = 0
        self._cur_tokens = 0
        self._cur_samples_in_opt = None
        if self.step_index == 1 and self._discovery:
            self._probe_run_limits()
            self._finish_discovery()
        if self.step_index >= self.total_steps:
            self._stop_sampler()
            if self.on_complete is not None:
                self.on_complete()
            raise StopProfiling()
        if idx >= self.warmup + self.n_pass_steps and time.perf_counter() - self._last_checkpoint > CHECKPOINT_S:
            self._checkpoint()
        if self.step_index == self.warmup + self.n_pass_steps:
            self._start_sampler()
        if self.passes and self._pass is None and self._pass_queue and self.step_index >= self.warmup:
            self._start_pass(self._pass_queue.pop(0))
        # the next step starts now: data fetching for it counts as its data phase
        _sync(self.device_type) if not self._discovery else None
        self._step_t0 = self._now()
        self._phase_t = self._step_t0
        self._phase = "other"
        self._cur_phase = dict.fromkeys(_TIMED, 0.0)

    def _start_sampler(self) -> None:
        if self.device_type != "cuda":
            self.gpu_reason = {"gpu": "no NVIDIA GPU in use (the model trained on the CPU)"}
            return
        from ccprof.profiler.nvml import NvmlSampler

        self._nvml = NvmlSampler(torch.cuda.current_device())
        if self._nvml.reason:
            self.gpu_reason = {"gpu": self._nvml.reason}
        self._nvml.start()

    def _stop_sampler(self) -> None:
        if self._nvml is not None:
            self.gpu_info = self._nvml.stop(len(self.step_s))
            self._nvml = None

    # ------------------------------------------------------------------ evaluation
    def _wrap_opt_init(self, orig: Callable) -> Callable:
        session = self

        def __init__(opt, *args, **kwargs):
            orig(opt, *args, **kwargs)
            session._known_opts.append(opt)

        __init__.__wrapped__ = orig
        return __init__

    def _trained_ids(self) -> set[int]:
        opts = list(self._known_opts) + [o for o in self.optimizers if o not in self._known_opts]
        key = sum(len(g["params"]) for o in opts for g in o.param_groups) + len(opts)
        if self._opt_param_ids[0] != key:
            ids = {id(p) for o in opts for g in o.param_groups for p in g["params"]}
            self._opt_param_ids = (key, ids)
        return self._opt_param_ids[1]

    def _is_eval_call(self, module: nn.Module) -> bool:
        """A forward of a model being trained, with no graph built for a backward: evaluation.

        A frozen teacher (no parameter of it in an optimizer) is training work, not evaluation."""
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return False
        ids = self._trained_ids()
        params = list(module.parameters())
        if ids:
            return any(id(p) in ids for p in params)
        return any(p.requires_grad for p in params)

    def _eval_forward(self) -> None:
        self.counters["eval_forward_calls"] += 1
        if not self._eval_open:
            self._open_eval()
        self._eval_calls += 1

    def _open_eval(self) -> None:
        from ccprof.profiler import run_size

        self._begin_step_if_needed()
        if self._pass is not None and self._pass_name == "flops":
            self._pass.pause()           # the FLOP step counts training work only
            self._paused_pass = True
        elif self._pass is not None and self._pass_name == "kernels":
            # the kernels' device times must be one clean training step: redo it on the next one
            name = self._pass_name
            self._end_pass(abort=True)
            if self._pass_retries < MAX_PASS_RETRIES and name:
                self._pass_retries += 1
                self._pass_queue.insert(0, name)
                self.n_pass_steps += 1
                self.total_steps += 1
            else:
                self.findings.append(Finding("pass_failed", f"the {name} pass was interrupted by evaluation "
                                                            f"{MAX_PASS_RETRIES} times; left out"))
        if self.eval_period is None:
            try:
                self.eval_period = run_size.eval_period(sys._getframe(2))
                self.eval_where = run_size.call_site(sys._getframe(2))
            except Exception:
                self.eval_period = None
        if self.passes and not any(e.get("counted") for e in self.eval_episodes):
            try:
                from ccprof.profiler.flops import FlopPass

                fp = FlopPass(self._named_roots(), max_rows=EVAL_MAX_ROWS)
                fp.start()
                fp.set_phase("forward")
                self._eval_pass = fp
            except Exception as exc:
                self._eval_pass = None
                self.findings.append(Finding("eval_count", f"evaluation FLOPs could not be counted: {exc!r}"))
        self._eval_prev_phase = self._phase if self._phase != "eval" else "other"
        self._set_phase("eval")
        self._eval_open = True
        self._eval_calls = 0
        self._eval_t0 = self._now()

    def _close_eval(self, abort: bool = False) -> None:
        if not self._eval_open:
            return
        self._eval_open = False
        if not self._discovery:
            _sync(self.device_type)
        rec: dict[str, Any] = {"seconds": self._now() - self._eval_t0, "calls": self._eval_calls,
                               "counted": False, "step": self.step_index}
        fp, self._eval_pass = self._eval_pass, None
        if fp is not None:
            try:
                flops, ops = fp.stop()
                total = flops.per_step
                rec.update(counted=not abort, flops=int(total), ops=ops, module_calls=int(fp.module_calls),
                           frac=(1.0 - fp.dropped_flops / total) if total else 1.0)
            except Exception as exc:
                self.findings.append(Finding("eval_count", f"evaluation FLOP count failed: {exc!r}"))
        if self._paused_pass and self._pass is not None:
            self._pass.resume()
        self._paused_pass = False
        if not abort:
            self.eval_episodes.append(rec)
            self._set_phase(self._eval_prev_phase)

    def build_eval(self) -> EvalWork | None:
        eps = self.eval_episodes
        if not eps:
            return None
        counted = next((e for e in eps if e.get("counted")), None)
        timed = [e["seconds"] for e in eps if not e.get("counted")]
        seconds = sum(timed) / len(timed) if timed else eps[0]["seconds"]
        seen = max(self.step_index, 1)
        if self.eval_period is not None:
            every, extra, source, _ = self.eval_period
        else:
            every, extra = seen / len(eps), 0
            source = (f"observed: {len(eps)} evaluation episode{'s' if len(eps) > 1 else ''} in {seen} "
                      "profiled steps (no condition around it was read; the real interval may be longer)")
        ref = counted or eps[0]
        return EvalWork(
            episodes=len(eps), steps_seen=seen, forward_calls=int(ref.get("calls", 0)),
            module_calls=int(ref.get("module_calls", 0)), seconds=float(seconds),
            seconds_counted=not timed and bool(eps[0].get("counted")),
            flops=int(counted["flops"]) if counted else 0,
            ops=list(counted["ops"]) if counted else [],
            ops_flops_frac=float(counted.get("frac", 1.0)) if counted else 1.0,
            every_steps=float(every) if every else None, every_source=source,
            extra_episodes=int(extra), where=self.eval_where)

    def _probe_run_limits(self) -> None:
        """Read the run's own length from the live stack (ccprof.profiler.run_size)."""
        from ccprof.profiler.run_size import probe

        try:
            self.run_limits = probe(sys._getframe(1))
        except Exception as exc:   # a bonus; never break the user's run for it
            self.findings.append(Finding("run_size", f"could not read the run's length: {exc!r}"))

    def _finish_discovery(self) -> None:
        """After the first full step: the roots are known, so drop the costly global hooks.

        On a GPU one more pass step follows the FLOP and memory steps: the kernels' device
        times under torch.profiler (``kernel_times``), which recalibrate the cost model.
        """
        self._discovery = False
        if self.passes and self.device_type == "cuda" and "kernels" not in self._pass_queue:
            self._pass_queue.append("kernels")
            self.n_pass_steps += 1
            self.total_steps = self.warmup + self.n_pass_steps + self.steps_wanted
        for h in self._global_fwd:
            h.remove()
        self._global_fwd = []
        for key, module in self.roots.items():
            self._root_hooks[key] = module.register_forward_pre_hook(self._root_pre, with_kwargs=True)

    def _named_roots(self) -> dict[str, nn.Module]:
        roots = list(self.roots.values())
        if len(roots) == 1:
            return {"": roots[0]}
        named: dict[str, nn.Module] = {}
        for i, m in enumerate(roots):
            name = type(m).__name__
            named[name if name not in named else f"{name}_{i}"] = m
        return named

    def _start_pass(self, name: str) -> None:
        try:
            if name == "flops":
                from ccprof.profiler.flops import FlopPass

                self._pass = FlopPass(self._named_roots())
            elif name == "kernels":
                from ccprof.profiler.kernel_times import KernelPass

                self._pass = KernelPass(cuda=self.device_type == "cuda")
            else:
                from ccprof.profiler.memory import MemoryLedger

                self._pass = MemoryLedger(self._named_roots(), list(self.optimizers),
                                          torch.device(self.device_type))
            self._pass.start()
            self._pass_name = name
        except Exception as exc:  # a broken pass must not break the user's run
            self.findings.append(Finding("pass_failed", f"{name} pass could not start: {exc!r}"))
            self._pass = None
            self._pass_name = None

    def _end_pass(self, abort: bool = False) -> None:
        if self._pass is None:
            return
        p, name = self._pass, self._pass_name
        self._pass, self._pass_name = None, None
        try:
            result = p.stop()
        except Exception as exc:
            self.findings.append(Finding("pass_failed", f"{name} pass failed: {exc!r}"))
            return
        if abort:
            return      # the step did not finish: a partial count would mislead
        if name == "flops":
            self.flops_result = result
            self.forward_flops_by_module = dict(getattr(p, "forward_by_module", {}) or {})
            self.fusion = dict(getattr(p, "fusion", {}) or {})
            self.module_calls_per_step = int(getattr(p, "module_calls", 0) or 0)
            for err in getattr(p, "errors", []) or []:
                self.findings.append(Finding("flop_count", f"FLOP bookkeeping: {err}"))
        elif name == "kernels":
            self.kernel_result = dict(result or {})
        else:
            self.memory_result = result
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Hand what was measured so far to the harness (it writes a partial profile). DataLoader
        workers prefetch meanwhile, so the next timed step's data wait is left out of the wait
        and phase figures (``_clean_steps``)."""
        self._last_checkpoint = time.perf_counter()
        self._after_checkpoint.add(len(self.step_s))
        if self.on_checkpoint is not None:
            try:
                self.on_checkpoint()
            except Exception as exc:   # a checkpoint is insurance; it must not break the run
                self.findings.append(Finding("checkpoint_failed", f"partial profile not written: {exc!r}"))

    def keep_memory_at_failure(self) -> None:
        """After an out-of-memory error: keep what the ledger saw up to it, or what is known.

        If the memory step was running, its ledger up to the failure is kept (the peak is a
        lower bound). Otherwise the model state that existed is counted (parameters, their
        gradients, optimizer state), with the CUDA allocator's own peak when on a GPU.
        """
        if self._pass_name == "memory":
            p = self._pass
            self._pass, self._pass_name = None, None
            try:
                memory, by_module = p.stop()
            except Exception as exc:
                self.findings.append(Finding("pass_failed", f"memory pass failed at the OOM: {exc!r}"))
            else:
                self.memory_result = (replace(memory, method=memory.method + " (up to the out-of-memory error)"),
                                      by_module)
                return
        if self.memory_result is not None or not self.roots:
            return
        from ccprof.profiler.memory import optimizer_section, unique_storage_bytes

        params = [p for m in self.roots.values() for p in m.parameters()]
        params_bytes, _ = unique_storage_bytes(params)
        grads_bytes, _ = unique_storage_bytes([p.grad for p in params if p.grad is not None])
        opt_bytes = optimizer_section(self.optimizers).state_bytes if self.optimizers else 0
        cuda_peak = cuda_reserved = None
        if self.device_type == "cuda":
            cuda_peak, cuda_reserved = torch.cuda.max_memory_allocated(), torch.cuda.memory_reserved()
        known = params_bytes + grads_bytes + opt_bytes
        self.memory_result = (Memory(
            peak_bytes=max(known, cuda_peak or 0), params_bytes=params_bytes, grads_bytes=grads_bytes,
            optimizer_state_bytes=opt_bytes, other_bytes=max(0, (cuda_peak or 0) - known),
            cuda_max_allocated_bytes=cuda_peak, cuda_reserved_bytes=cuda_reserved,
            method="model state at the out-of-memory error (activations not measured)"), {})

    # ------------------------------------------------------------------ results
    def _clean_steps(self) -> tuple[list[float], list[dict[str, float]]]:
        """(step_s, phase_totals) without the steps right after a checkpoint when DataLoader
        workers ran (they prefetched during it), as long as two steps remain."""
        skip = self._after_checkpoint if self.loader_info.get("num_workers") else set()
        keep = [i for i in range(len(self.step_s)) if i not in skip]
        if len(keep) < 2 or len(keep) == len(self.step_s):
            return list(self.step_s), list(self.phase_totals)
        return [self.step_s[i] for i in keep], [self.phase_totals[i] for i in keep]

    def build_steps(self) -> Steps:
        n = len(self.step_s)
        clean_s, clean_phases = self._clean_steps()
        phase_s = {}
        if n:
            for ph in PHASES:
                phase_s[ph] = sum(d[ph] for d in clean_phases) / len(clean_s)
        mean = lambda xs: (sum(xs) / len(xs)) if xs else None  # noqa: E731
        samples = mean(self.samples)
        tokens = mean(self.tokens)
        return Steps(
            warmup=self.warmup, measured=n, step_s=list(self.step_s), phase_s=phase_s,
            loss=[x for x in self.losses if math.isfinite(x)] if self.losses else [],
            micro_batches=self._micro_batches(),
            samples_per_step=round(samples) if samples else None,
            tokens_per_step=round(tokens) if tokens else None,
            kind=self.step_kind or "optimizer",
        )

    def _micro_batches(self) -> int:
        """Micro-batches per optimizer step: the batches a DataLoader fed each step when one did
        (a GAN's several backwards on one batch are not accumulation), else backwards per step."""
        if not self.micro_batches:
            return 1
        backwards = round(sum(self.micro_batches) / len(self.micro_batches))
        if self.loaders and self.batches_per_step and min(self.batches_per_step) >= 1:
            batches = round(sum(self.batches_per_step) / len(self.batches_per_step))
            return max(1, min(backwards, batches))
        return max(1, backwards)

    def _host(self, cheap: bool = False) -> Any:
        """Host dispatch timing; measured for the final profile after ccprof's hooks are off
        (a checkpoint's figure, with them on, is not kept)."""
        if cheap:
            return measure_host(self.module_calls_per_step, repeats=1)
        if getattr(self, "_host_info", None) is None:
            self._host_info = measure_host(self.module_calls_per_step)
        return self._host_info

    def build_data(self, probe: bool = True) -> DataInfo:
        info = self.loader_info
        fps = self.fingerprints
        dup = None
        scope = "sampled"
        if len(fps) >= 2:
            dup = 1.0 - len(set(fps)) / len(fps)
            n_data = info.get("dataset_len")
            if info.get("replacement") and n_data:
                # a sampler drawing with replacement repeats rows by itself (minGPT's adder): the
                # duplicates are the rows the data lacks, from how many distinct ones the draws saw
                n, k, N = len(fps), len(set(fps)), int(n_data)
                q1, q2 = (1 - 1 / N) ** n, (1 - 2 / N) ** n
                expect = N * (1 - q1)
                sd = max(N * (N - 1) * q2 + N * q1 - N * N * q1 * q1, 1e-9) ** 0.5
                # fewer distinct rows than N distinct items would give, beyond chance (3.5 sd):
                # only then are there duplicates, and D distinct items explain what was seen
                dup = 0.0 if (expect - k) / sd < 3.5 else max(0.0, 1.0 - _distinct_items(n, k, N) / N)
                scope = "sampled with replacement (the sampler's own repeats discounted)"
        wait = None
        clean_s, clean_phases = self._clean_steps()
        if clean_s and clean_phases:
            wait = sum(d["data"] for d in clean_phases) / sum(clean_s)
        seq_len = None
        token_inputs = False
        ex = _first_tensor(self.example_input) if self.example_input else None
        if ex is not None and not ex.is_floating_point() and ex.dim() == 2:
            token_inputs = True
            seq_len = int(ex.shape[1])
        batch_size = info.get("batch_size")
        if batch_size is None and ex is not None and ex.dim() >= 1:
            batch_size = int(ex.shape[0])
        shapes = self.batch_shapes
        if not shapes and self.example_input is not None:
            shapes = _describe_batch(list(self.example_input[0]) + list(self.example_input[1].values()))
        bps = (sum(self.batches_per_step) / len(self.batches_per_step)) if self.batches_per_step else None
        batch_s, batch_how = self._batch_time(bps, info.get("num_workers"), wait, probe)
        return DataInfo(
            batch_size=batch_size, shapes=shapes,
            num_workers=info.get("num_workers"), pin_memory=info.get("pin_memory"),
            persistent_workers=info.get("persistent_workers"), dataset_len=info.get("dataset_len"),
            steps_per_epoch=info.get("steps_per_epoch"), wait_frac=wait,
            fingerprints=fps[:512], duplicate_frac=dup, duplicate_scope=scope,
            token_inputs=token_inputs, seq_len=seq_len, dataloader_seen=bool(self.loaders),
            batch_s=batch_s, batch_s_method=batch_how, batches_per_step=bps, batch_bytes=self.batch_bytes,
            finite=info.get("finite"),
        )

    def _batch_time(self, bps: float | None, workers: int | None, wait_frac: float | None,
                    probe: bool = True) -> tuple[float | None, str | None]:
        """Seconds to make one batch in one process, and how it was found (see DataInfo.batch_s)."""
        clean_s, clean_phases = self._clean_steps()
        if not bps or not clean_s or not clean_phases:
            return None, None
        n = len(clean_s)
        wait_s = sum(d["data"] for d in clean_phases) / n
        step = sum(clean_s) / n
        if not workers:
            return wait_s / bps, "measured wait (num_workers=0): the main process makes each batch"
        if wait_frac is not None and wait_frac >= DATA_BOUND_FRAC:
            # workers are behind: they deliver bps batches per step, w at a time
            return workers * step / bps, (f"the {workers} workers were behind (wait {wait_frac:.0%} of the step): "
                                          "batch time = workers x step / batches per step")
        return self._probe_batch_time() if probe else (None, "not probed in a mid-run checkpoint")

    def _probe_batch_time(self) -> tuple[float | None, str | None]:
        """Time one batch made in this process from the training loader's dataset (its RNG restored)."""
        loader = self._train_loader() if self._train_loader is not None else None
        if loader is None:
            return None, "unknown: the workers hid the wait and no training loader was kept to probe"
        return probe_batch_s(loader)

    def build_precision(self) -> Precision:
        dtypes: Counter[str] = Counter()
        for m in self.roots.values():
            for p in m.parameters():
                dtypes[str(p.dtype).replace("torch.", "")] += p.numel()
        return Precision(
            autocast=self.autocast_dtype is not None, autocast_dtype=self.autocast_dtype,
            grad_scaler=self.grad_scaler,
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32) and self.device_type == "cuda",
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
            param_dtype=dtypes.most_common(1)[0][0] if dtypes else "float32",
        )

    def build_device(self) -> Device:
        if self.device_type == "cuda" and torch.cuda.is_available():
            idx = torch.cuda.current_device()
            props = torch.cuda.get_device_properties(idx)
            return Device(type="cuda", name=props.name, memory_bytes=int(props.total_memory),
                          count=torch.cuda.device_count(), capability=f"{props.major}.{props.minor}")
        import platform

        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return Device(type="cpu", name=name, memory_bytes=None,
                      count=torch.cuda.device_count() if torch.cuda.is_available() else 0)

    def _fvcore_cross_check(self, flops: Any, ops: list | None = None) -> Any:
        """fvcore's jit-traced forward count beside ours (one extra forward, after the run)."""
        from ccprof.profiler.flops import fvcore_forward_flops

        ops = ops or []
        root = self._main_root()
        args, kwargs = self.example_input
        was_training = root.training
        try:
            root.eval()      # no BatchNorm statistics updated, no dropout: same FLOPs
            with torch.no_grad():
                count, note = fvcore_forward_flops(root, tuple(args), dict(kwargs))
        except Exception as exc:
            count, note = None, f"fvcore failed: {type(exc).__name__}: {exc}"
        finally:
            root.train(was_training)
        if count and flops.forward:
            from ccprof.hardware.kernels import op_class

            # per forward of the model, and without what fvcore does not count (attention, RNNs)
            mb = max(self._micro_batches(), 1)
            unseen = sum(o.flops for o in ops if o.phase == "forward"
                         and op_class(o.op) in ("attention", "rnn"))
            ours = (flops.forward - unseen) / mb
            # only the low side means something: fvcore skips whole layer types (attention, RNNs,
            # custom ops), so counting more than it is normal; counting less than half of what it
            # sees means ccprof's count misses part of the model
            if 0 < ours < 0.5 * count:
                self.findings.append(Finding(
                    "flop_mismatch",
                    f"one forward in the FLOP step counts {ours:.3g} FLOPs, {ours / count:.2g}x fvcore's count "
                    f"for {type(root).__name__} ({count:.3g}): ccprof's FLOP count misses part of the model; "
                    "treat FLOP-based figures (MFU, FLOP-scaled projections) with care"))
        return replace(flops, fvcore_forward=count, fvcore_note=note)

    def build_profile(self, cheap: bool = False, **sections: Any) -> Profile:
        """Everything seen so far as a Profile; ``sections`` override (static, environment...).

        ``cheap`` (a mid-run checkpoint): no fvcore forward, no batch-time probe of the loader
        (both would run the user's model or data again while the run goes on), the host timing
        measured once and reused.
        """
        from ccprof.profiler.flops import FlopPass  # noqa: F401  (import errors surface early)
        from ccprof.profiler.memory import optimizer_section
        from ccprof.profiler.model_info import describe_model

        named = self._named_roots() if self.roots else {}
        flops, ops = (self.flops_result if self.flops_result else (None, []))
        memory, act_by_module = (self.memory_result if self.memory_result else (None, {}))
        model = describe_model(
            named,
            flops_by_module=flops.by_module if flops else None,
            forward_flops_by_module=self.forward_flops_by_module or None,
            activation_bytes_by_module=act_by_module or None,
        ) if named else None
        if flops is not None and self.example_input is not None and len(named) == 1 and not cheap:
            flops = self._fvcore_cross_check(flops, ops or [])
        reasons: dict[str, str] = dict(sections.pop("reasons", {}) or {})
        reasons.update(self.gpu_reason)
        if self.gpu_info is None:
            reasons.setdefault("gpu", "no GPU samples: the timed steps were not reached")
        if model is not None:
            loaded_ids = self.loaded_ids
            pretrained_from = None
            for m in named.values():
                # weights came from a checkpoint only when from_pretrained built the model: a
                # config read with AutoConfig.from_pretrained(dir) then from_config is from scratch
                hit = next((self.pretrained_models[id(sub)] for sub in m.modules()
                            if id(sub) in self.pretrained_models), None)
                if hit is not None:
                    pretrained_from = f"from_pretrained:{hit}"
                    break
            if pretrained_from is None:
                for m in named.values():
                    if any(id(sub) in loaded_ids for sub in m.modules()):
                        pretrained_from = "load_state_dict"
                        break
            resumed = self.counters["optimizer_state_loads"] > 0 and pretrained_from == "load_state_dict"
            if resumed:
                # weights and optimizer state from a checkpoint: the run continues its own
                # training (llama2.c --init_from=resume), it does not fine-tune someone's model
                pretrained_from = "resume (model and optimizer state from a checkpoint)"
            model = replace(model, pretrained=pretrained_from is not None and not resumed,
                            loaded_from=pretrained_from, resumed=resumed)
        # every optimizer the script built that holds a trained model's parameters, stepped or not
        # (a GAN's G optimizer may not step in the profiled window: 20 D steps come first)
        trained = {id(p) for m in self.roots.values() for p in m.parameters()}
        opts = list(self.optimizers) + [o for o in self._known_opts if o not in self.optimizers and any(
            id(p) in trained for g in o.param_groups for p in g["params"])]
        opt = optimizer_section(opts, calls=self._opt_calls) if opts else None
        if opt is None:
            reasons.setdefault("optimizer", "no torch.optim optimizer stepped: parameters were "
                                            "updated by hand after backward()" if self.counters["backward_calls"]
                               else "no torch.optim optimizer stepped")
        kwargs: dict[str, Any] = dict(
            device=self.build_device(), steps=self.build_steps(), data=self.build_data(probe=not cheap),
            precision=self.build_precision(), optimizer=opt, ops=ops or [],
            findings=list(self.findings), counters=dict(self.counters), reasons=reasons,
            gpu=self.gpu_info, fusion=dict(self.fusion), kernel_s=dict(self.kernel_result),
            run_limits=list(self.run_limits), eval=self.build_eval(),
            host=self._host(cheap),
        )
        if model is not None:
            kwargs["model"] = model
        if flops is not None:
            kwargs["flops"] = flops
        if memory is not None:
            kwargs["memory"] = memory
        else:
            reasons.setdefault("memory", "the memory step was not reached")
        if flops is None:
            reasons.setdefault("flops", "the FLOP step was not reached")
        kwargs.update(sections)
        return Profile(**kwargs)


def _distinct_items(draws: int, seen: int, population: int) -> float:
    """Distinct items D in a dataset of ``population`` rows such that ``draws`` uniform draws with
    replacement are expected to see ``seen`` distinct ones: D (1 - (1 - 1/D)^draws) = seen."""
    def expected(d: float) -> float:
        return d * (1.0 - (1.0 - 1.0 / d) ** draws)

    lo, hi = float(max(seen, 1)), float(max(population, seen, 1))
    if expected(hi) <= seen:
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected(mid) < seen:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _backward_site(frame: Any) -> tuple:
    """Where a backward was called from: the (file, line) chain of the user's frames on the stack,
    so one accumulation loop is one site and two loss terms (a GAN's D on real and fake) are two."""
    from ccprof.profiler.run_size import _user_frame

    chain = []
    while frame is not None and len(chain) < 8:
        if _user_frame(frame):
            chain.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return tuple(chain)


def _loader_info(loader: Any) -> dict[str, Any]:
    """Batch size, workers, dataset length, steps per epoch, and whether its epochs end."""
    info: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "num_workers": loader.num_workers,
        "pin_memory": bool(loader.pin_memory),
        "persistent_workers": bool(getattr(loader, "persistent_workers", False)),
    }
    try:
        info["dataset_len"] = len(loader.dataset)
    except Exception:
        info["dataset_len"] = None
    try:
        info["steps_per_epoch"] = len(loader)
    except Exception:
        info["steps_per_epoch"] = None
    finite = info["steps_per_epoch"] is not None
    sampler = getattr(loader, "sampler", None)
    info["replacement"] = bool(isinstance(sampler, torch.utils.data.RandomSampler)
                               and getattr(sampler, "replacement", False))
    n = info["dataset_len"]
    if isinstance(sampler, torch.utils.data.RandomSampler) and getattr(sampler, "replacement", False) and n:
        # minGPT's RandomSampler(replacement=True, num_samples=int(1e10)): an endless stream
        if getattr(sampler, "num_samples", 0) > 10 * n:
            finite = False
    if isinstance(getattr(loader, "dataset", None), torch.utils.data.IterableDataset):
        finite = finite and info["steps_per_epoch"] is not None
    if info["steps_per_epoch"] and info["steps_per_epoch"] > 10**8:
        finite = False
    info["finite"] = finite
    return info


def _batch_bytes(batch: Any) -> int:
    """Bytes of every tensor in a batch (what a host-to-device copy moves)."""
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(batch)
    return int(sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor)))


def probe_batch_s(loader: Any, budget_s: float = PROBE_BUDGET_S) -> tuple[float | None, str]:
    """Seconds to make one batch of ``loader`` in this process: fetch samples of its map-style
    dataset through its ``collate_fn`` until a batch or ``budget_s``, and scale to the batch size.

    The global RNGs (torch, Python, NumPy) are restored afterwards, so the user's random stream
    is untouched. An iterable dataset cannot be indexed: (None, why).
    """
    import random

    ds = getattr(loader, "dataset", None)
    bs = getattr(loader, "batch_size", None) or 1
    collate = getattr(loader, "collate_fn", None)
    if ds is None or not hasattr(ds, "__getitem__") or isinstance(ds, torch.utils.data.IterableDataset):
        return None, "unknown: the workers hid the wait and the dataset cannot be indexed to probe"
    try:
        n = len(ds)
    except TypeError:
        return None, "unknown: the workers hid the wait and the dataset has no length to probe"
    py_state = random.getstate()
    try:
        import numpy as np
        np_state = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy comes with torch
        np, np_state = None, None
    fetched = []
    try:
        with torch.random.fork_rng(devices=[]):
            t0 = time.perf_counter()
            for i in range(min(bs, n)):
                fetched.append(ds[i])
                if time.perf_counter() - t0 > budget_s:
                    break
            if collate is not None and fetched:
                collate(fetched)
            took = time.perf_counter() - t0
    except Exception as exc:  # the probe must never break the profile
        return None, f"unknown: probing the dataset failed ({type(exc).__name__}: {exc})"
    finally:
        random.setstate(py_state)
        if np is not None:
            np.random.set_state(np_state)
    if not fetched:
        return None, "unknown: the dataset is empty"
    per_batch = took / len(fetched) * bs
    return per_batch, f"probe: {len(fetched)} sample(s) fetched and collated in the main process"


# Loss modules and containers are called at depth 0 in most loops but are not the model.
_SKIP_ROOTS = (nn.modules.loss._Loss,)
