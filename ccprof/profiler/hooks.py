"""Observe an unmodified training run through public hooks, and stop it after the measured steps.

A ``Session`` installs global hooks (optimizer step pre/post, module forward during discovery,
``Tensor.backward``/``torch.autograd.backward`` wrappers, DataLoader iteration,
``load_state_dict``, GradScaler), cuts the run into *steps* and drives the measurement
passes: warm-up steps, one FLOP step, one memory step, one step with its Python counted
(``pycount.PythonPass``), then at least ``steps`` plainly timed steps.
Forwards of the trained model under ``no_grad``/``inference_mode`` between optimizer steps
(validation, ``generate()``) are *evaluation*: timed and counted apart (``Profile.eval``) and left
out of the step time; the FLOP pass pauses over them, the memory pass goes on (no graph is kept),
and the kernel-timing pass they interrupt is redone on the next step.
After the last one it raises ``StopProfiling`` (a ``BaseException``, so ``except Exception``
in the user's loop cannot swallow it). ``Session.build_profile()`` turns what it saw into
a ``Profile``.

The Session is one class in several modules, one job each: ``session_data`` (DataLoader
watching, the data section), ``session_loads`` (weight loads, counted calls), ``session_eval``
(evaluation episodes), ``session_passes`` (the FLOP / memory / kernel passes, checkpoints),
``session_steps`` (the phase clock and the step boundaries), ``session_host`` (the batch clock),
``session_build`` (the Profile from recorded state) and ``session_base`` (shared constants and
helpers); this module keeps installing the hooks and watching modules, backward and the
optimizer. Each mixin's state is a typed record the Session holds (``session_state``:
``clock``, ``log``, ``data``, ``host``, ``loads``, ``measure``, ``eval``, ``model``, ``hooks``).

A step is one optimizer step of the *primary* optimizer (the first one that stepped), so a
GAN's two optimizers make one step per iteration. Without any torch.optim optimizer, a step
ends with each backward that is followed by a parameter change (scripts that update
parameters by hand).
"""
from __future__ import annotations

import importlib.util
import sys
import weakref
from collections import Counter
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.utils.checkpoint as ckpt_mod
from torch.amp import grad_scaler
from torch.nn.modules import module as module_mod
from torch.optim import optimizer as optim_mod
from torch.utils.data import dataloader as dl_mod

from ccprof.artefacts.profile import Finding
from ccprof.artefacts.vocab import MODEL_PHASES, dtype_name
from ccprof.profiler.clock import wall_s

# StopProfiling, _Timeout and _distinct_items are re-exported (the harness and tests import them here)
from ccprof.profiler.session_base import (  # noqa: F401
    _SKIP_ROOTS,
    MAX_INPUT_STEPS,
    PHASES,
    PROBE_ELEMENTS,
    PROBE_PARAMS,
    StopProfiling,
    _backward_site,
    _call_kwargs,
    _count_params,
    _distinct_items,
    _first_tensor,
    _loader_info,
    _sync,
    _Timeout,
    input_key,
)
from ccprof.profiler.session_build import ProfileBuilder
from ccprof.profiler.session_data import DataWatch
from ccprof.profiler.session_eval import EvalWatch
from ccprof.profiler.session_host import HostClock
from ccprof.profiler.session_loads import LoadWatch
from ccprof.profiler.session_passes import PassRunner
from ccprof.profiler.session_sites import SiteWatch
from ccprof.profiler.session_state import (
    DataState,
    EvalState,
    HookState,
    HostState,
    LoadState,
    ModelWatch,
    PassState,
    StepClock,
    StepLog,
)
from ccprof.profiler.session_steps import StepClockWatch
from ccprof.profiler.sites import SiteRecorder

__all__ = ["StopProfiling", "Session", "PHASES"]


class _AfterImport:
    """A ``sys.meta_path`` finder that calls ``patch(module)`` right after ``name`` is imported
    (transformers or safetensors may be imported by the script long after the hooks go in)."""

    def __init__(self, patches: dict[str, Callable[[Any], None]]):
        self.patches = dict(patches)
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.patches or fullname in self._busy:
            return None

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


def _unbatched(module: nn.Module, t: torch.Tensor) -> bool:
    """A 1-D floating input whose length is the in_features of the model's first nn.Linear: one
    sample with no batch dimension (a GAN's discriminator fed the 4 moments of a sample set),
    not a batch of that many samples."""
    if t.dim() != 1 or not t.is_floating_point():
        return False
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    return first is not None and first.in_features == int(t.shape[0])


class Session(StepClockWatch, DataWatch, LoadWatch, EvalWatch, PassRunner, HostClock, SiteWatch, ProfileBuilder):
    """Watches one training run. ``install()`` before it starts, ``uninstall()`` after."""

    dry_run: bool = False       # the run is on fake tensors (--dry-run, ccprof.profiler.dryrun): set by the harness

    def __init__(self, steps: int = 10, warmup: int = 3, passes: bool = True,
                 on_step: Callable[[int, int, float, float | None], None] | None = None,
                 on_first_forward: Callable[["Session", nn.Module, tuple, dict], None] | None = None,
                 on_loader_iter: Callable[[Any], None] | None = None,
                 on_checkpoint: Callable[[], None] | None = None,
                 on_complete: Callable[[], None] | None = None,
                 scratch_dir: str | None = None, deadline: float | None = None, script: str = "",
                 keep_running: bool = False):
        # settings
        self.steps_wanted = max(1, int(steps))
        self.warmup = max(1, int(warmup))      # discovery needs one full step
        self.passes = passes
        self.n_pass_steps = 3 if passes else 0
        self.total_steps = self.warmup + self.n_pass_steps + self.steps_wanted
        self.deadline = deadline                # no extra timed steps after this clock.wall_s() time
        self.on_step = on_step                  # (done, total, step_s, loss)
        self.on_first_forward = on_first_forward
        self.on_loader_iter = on_loader_iter      # --verify: DataLoader settings before iterating
        # the harness writes what was measured so far after each pass and every few timed
        # seconds (a later death still leaves a partial profile), and the whole profile the
        # moment the last step ends, before StopProfiling is raised into the script
        self.on_checkpoint = on_checkpoint
        self.on_complete = on_complete
        # False (the harness): StopProfiling after the last step; True (a callback, ccprof.profile()):
        # detach after it and let the run train on (``detach``)
        self.keep_running = keep_running

        # each mixin's state, in its record (session_state)
        self.clock = StepClock(last_checkpoint=wall_s())
        self.log = StepLog()
        self.data = DataState()
        self.host = HostState(scratch_dir=scratch_dir)   # where workers write their batch times
        self.loads = LoadState()
        self.measure = PassState(queue=["flops", "memory", "python"] if passes else [])
        self.eval = EvalState()
        self.model = ModelWatch()
        self.hooks = HookState()
        self.site_rec = SiteRecorder(script)      # where each knob is (Profile.sites); script: its path

        # what every mixin adds to
        self.counters: Counter[str] = Counter()
        self.findings: list[Finding] = []
        self.run_limits: list = []
        # hash each step's model input (DataInfo.same_inputs); off where ccprof itself repeats the
        # batches (api.profile_model cycles the ones it is given)
        self.watch_inputs = True
        self.epoch_loop: tuple[int, str] | None = None   # (steps, loops) of one epoch, no DataLoader
        self._nvml = None                       # the GPU sampler over the timed steps
        self.gpu_info = None
        self.gpu_reason: dict[str, str] = {}

    # what the harness and api read
    @property
    def step_index(self) -> int:
        """Steps completed so far."""
        return self.log.index

    @property
    def loaders(self) -> list[weakref.ref]:
        return self.data.loaders

    @property
    def dataset(self) -> Any:
        return self.data.dataset

    # ------------------------------------------------------------------ install
    def install(self) -> "Session":
        self.hooks.handles.append(optim_mod.register_optimizer_step_pre_hook(self._opt_pre))
        self._patch(optim_mod.Optimizer, "__init__", self._wrap_opt_init(optim_mod.Optimizer.__init__))
        self._patch(optim_mod.Optimizer, "load_state_dict",
                    self._counting("optimizer_state_loads", optim_mod.Optimizer.load_state_dict))
        self.hooks.handles.append(optim_mod.register_optimizer_step_post_hook(self._opt_post))
        self.hooks.global_fwd = [module_mod.register_module_forward_pre_hook(self._global_pre),
                            module_mod.register_module_forward_hook(self._global_post)]
        self._patch(torch.Tensor, "backward", self._wrap_tensor_backward(torch.Tensor.backward))
        self._patch(torch.autograd, "backward", self._wrap_autograd_backward(torch.autograd.backward))

        self._patch(dl_mod._BaseDataLoaderIter, "__next__",
                    self._wrap_next(dl_mod._BaseDataLoaderIter.__next__))
        self._patch(dl_mod.DataLoader, "__iter__", self._wrap_iter(dl_mod.DataLoader.__iter__))
        self._patch(nn.Module, "load_state_dict", self._wrap_load(nn.Module.load_state_dict))
        self._patch(nn.Module, "__getstate__", self._wrap_getstate(nn.Module.__getstate__))
        self._patch(torch, "load", self._wrap_file_load(torch.load))
        patches = {"transformers.modeling_utils": self._patch_from_pretrained,
                   "safetensors.torch": self._patch_safetensors, **self._install_sites()}
        later = {}
        for name, fn in patches.items():
            if name in sys.modules:
                fn(sys.modules[name])
            else:
                later[name] = fn
        if later:
            self.hooks.finder = _AfterImport(later)
            sys.meta_path.insert(0, self.hooks.finder)

        self._patch(grad_scaler.GradScaler, "scale", self._wrap_scale(grad_scaler.GradScaler.scale))

        self._patch(torch, "compile", self._counting("compile_calls", torch.compile))
        self._patch(nn.Module, "compile", self._counting("compile_calls", nn.Module.compile))
        self._patch(ckpt_mod, "checkpoint", self._counting("checkpoint_calls", ckpt_mod.checkpoint))
        self._install_batch_clock()
        return self

    def detach(self) -> None:
        """Stop watching a run that goes on (``keep_running``): every hook is a no-op from now on;
        patched functions and module hooks go at once (torch calls module hooks from a copy of its
        hook dicts); the optimizer step hooks, which torch calls while iterating its live dicts
        (this may run inside one of them), are removed at the next module forward, or by
        ``uninstall``. What was measured is kept for ``build_profile``."""
        if self.hooks.detached:
            return
        self.hooks.detached = True
        self._close_eval(abort=True)
        self._end_pass(abort=True)
        self._stop_sampler()
        for h in self.hooks.global_fwd + list(self.hooks.root_hooks.values()):
            h.remove()
        self.hooks.global_fwd = []
        self.hooks.root_hooks.clear()
        self._restore_patches()
        session = self

        def janitor(module: nn.Module, args: tuple) -> None:
            for h in session.hooks.handles:
                h.remove()
            session.hooks.handles.clear()
            if session.hooks.janitor is not None:
                session.hooks.janitor.remove()
                session.hooks.janitor = None
        if self.hooks.handles:
            self.hooks.janitor = module_mod.register_module_forward_pre_hook(janitor)

    def _restore_patches(self) -> None:
        for owner, name, orig in reversed(self.hooks.patched):
            setattr(owner, name, orig)
        self.hooks.patched.clear()
        finder = self.hooks.finder
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)
        self.hooks.finder = None
        self._close_batch_clock()

    def uninstall(self) -> None:
        """Remove every hook and patch (again after ``detach``: what it left is removed now)."""
        if self.hooks.janitor is not None:
            self.hooks.janitor.remove()
            self.hooks.janitor = None
        if self.hooks.detached:
            for h in self.hooks.handles:
                h.remove()
            self.hooks.handles.clear()
            return
        self._close_eval(abort=True)
        self._end_pass(abort=True)
        self._stop_sampler()
        for h in self.hooks.handles + self.hooks.global_fwd + list(self.hooks.root_hooks.values()):
            h.remove()
        self.hooks.handles.clear()
        self.hooks.root_hooks.clear()
        self._restore_patches()

    def _wrap_getstate(self, orig: Callable) -> Callable:
        """A module pickled or deep-copied while ccprof watches (``torch.save(model)``, an EMA
        copy) leaves out ccprof's root hook: the user's file holds no ccprof state (the hook's
        Session and its closures cannot be pickled at all)."""
        session = self

        def __getstate__(module):
            state = orig(module)
            ours = {h.id for h in session.hooks.root_hooks.values()}
            hooks = state.get("_forward_pre_hooks")
            if ours and hooks and not ours.isdisjoint(hooks):
                state["_forward_pre_hooks"] = type(hooks)((k, v) for k, v in hooks.items() if k not in ours)
                kw = state.get("_forward_pre_hooks_with_kwargs")
                if kw is not None:
                    state["_forward_pre_hooks_with_kwargs"] = {k: v for k, v in kw.items() if k not in ours}
            return state
        return __getstate__

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        self.hooks.patched.append((owner, name, owner.__dict__.get(name, getattr(owner, name))))
        setattr(owner, name, new)

    # ------------------------------------------------------------------ modules
    def _global_pre(self, module: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
        if self.hooks.detached:
            return
        # a forward while backward runs is activation checkpointing recomputing a block of a
        # model already seen, not the loop calling a model: no new root, no forward call counted
        if self.hooks.depth == 0 and not isinstance(module, _SKIP_ROOTS) and not self.hooks.in_backward:
            self._on_root_forward(module, args, kwargs if kwargs is not None else _call_kwargs(module))
        if self.model.autocast_dtype is None:
            for dev in ("cuda", "cpu"):
                try:
                    if torch.is_autocast_enabled(dev):
                        self.model.autocast_dtype = dtype_name(torch.get_autocast_dtype(dev))
                        break
                except Exception:
                    pass
        self.hooks.depth += 1

    def _global_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.hooks.detached:
            return
        self.hooks.depth = max(0, self.hooks.depth - 1)

    def _root_pre(self, module: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
        if self.hooks.detached:
            return
        self._on_root_forward(module, args, kwargs or {})

    def _on_root_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        key = id(module)
        if key not in self.model.roots:
            if not self.hooks.discovery:
                return      # a new root after discovery is not timed; the FLOP pass still sees it
            if not any(p.requires_grad for p in module.parameters()):
                self.counters["forward_calls_untrained"] += 1
                return
            self.model.roots[key] = module
            if next(module.parameters()).is_cuda:
                self.model.device_type = "cuda"
        if not self.model.first_forward_done:
            self.model.first_forward_done = True
            if self.on_first_forward is not None:
                self.on_first_forward(self, module, args, kwargs)
        if self.hooks.opt_depth == 0 and not self.hooks.in_backward and self._is_eval_call(module):
            self.site_rec.on_forward(module, sys._getframe(1), "eval")
            self.site_rec.on_batch(self.site_rec.pending_loader, grad=False)
            self._eval_forward()
            return
        self.site_rec.on_forward(module, sys._getframe(1), "train")
        if self.eval.open:
            self._close_eval()
        self.counters["forward_calls"] += 1
        if self.hooks.awaiting_update and not self.model.optimizers and self._params_changed():
            # parameters changed after backward with no torch.optim optimizer: a hand-written update
            self.hooks.awaiting_update = False
            self.log.kind = "backward"
            self._end_step()
        if self.hooks.opt_depth == 0 and self.clock.phase not in MODEL_PHASES:
            self._begin_step_if_needed()
        if self.clock.phase != "backward":
            self._set_phase("forward")
        if module is self._main_root() and torch.is_grad_enabled():
            t = _first_tensor((args, kwargs))
            if t is not None and self.data.example_input is None:
                self.data.unbatched = _unbatched(module, t)
            if t is not None and t.dim() >= 1:
                n_tokens = int(t.numel()) if (not t.is_floating_point() and t.dim() == 2) else 0
                n = 1 if self.data.unbatched else int(t.shape[0])
                if self.hooks.opt_depth == 0:
                    self.log.cur_samples += n
                    self.log.cur_tokens += n_tokens
                elif not self.log.cur_samples_in_opt:      # closure optimizers: one forward's batch
                    self.log.cur_samples_in_opt = (n, n_tokens)
            if self.data.example_input is None:
                self.data.example_input = (args, kwargs)
            # did every step feed the same samples (a batch made once)? Not in the timed steps, nor
            # under the passes that would count the reads (bytecodes, a device-to-host copy's kernel)
            if (t is not None and self.watch_inputs and not self._timed_step()
                    and self.measure.name not in ("python", "kernels")
                    and len(self.log.step_inputs) < MAX_INPUT_STEPS):
                key = input_key((args, kwargs))
                if key is not None:
                    self.log.cur_inputs.append(key)

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
        return [(p, p._version, _probe_values(p)) for p in with_grad[:PROBE_PARAMS]]

    def _params_changed(self) -> bool:
        for p, version, values in self.hooks.probe:
            if p._version != version:
                return True
            if isinstance(values, int):         # a --dry-run's fake parameter: its storage's writes
                if _probe_values(p) != values:
                    return True
            elif not torch.equal(p.detach().reshape(-1)[:PROBE_ELEMENTS], values):
                return True
        return False

    def _main_root(self) -> nn.Module | None:
        """The trained root with the most parameters (cached once discovery is over)."""
        if self.model.main_root_cache is not None:
            return self.model.main_root_cache
        if not self.model.roots:
            return None
        root = max(self.model.roots.values(), key=_count_params)
        if not self.hooks.discovery:
            self.model.main_root_cache = root
        return root

    # ------------------------------------------------------------------ backward
    def _wrap_tensor_backward(self, orig: Callable) -> Callable:
        session = self

        def backward(tensor, *args, **kwargs):
            if session.hooks.in_backward:
                return orig(tensor, *args, **kwargs)
            return session._run_backward(lambda: orig(tensor, *args, **kwargs), tensor)

        backward.__wrapped__ = orig
        return backward

    def _wrap_autograd_backward(self, orig: Callable) -> Callable:
        session = self

        def backward(tensors, *args, **kwargs):
            if session.hooks.in_backward:
                return orig(tensors, *args, **kwargs)
            first = tensors if isinstance(tensors, torch.Tensor) else (
                tensors[0] if isinstance(tensors, (list, tuple)) and tensors else None)
            return session._run_backward(lambda: orig(tensors, *args, **kwargs), first)

        backward.__wrapped__ = orig
        return backward

    def _run_backward(self, call: Callable, loss: torch.Tensor | None) -> Any:
        if self.eval.open:
            self._close_eval()
        self._begin_step_if_needed()
        # ccprof's own bookkeeping below (the loss's value, the call site) is not the loop's glue
        self._set_phase("backward")
        if self.data.last_it is not None:
            self._flush_fingerprints(self.data.last_it)     # its batch reached a backward: training data
            self._note_training_iterator(self.data.last_it)
        if not self.data.loader_from_backward and self.data.last_loader is not None:
            # the training loader is the one whose batch reaches a backward (not, say, Lightning's
            # sanity-check validation loader that ran first)
            loader = self.data.last_loader()
            if loader is not None:
                self.data.loader_info = _loader_info(loader)
                self.data.dataset = getattr(loader, "dataset", self.data.dataset)
            self.data.loader_from_backward = True
        self.counters["backward_calls"] += 1
        self.site_rec.on_backward()
        if self.hooks.opt_depth > 0:
            # inside optimizer.step(closure) (LBFGS): a re-evaluation of the same batch, not a micro-batch
            self.log.cur_closure += 1
        else:
            self.log.cur_micro += 1
            self.log.cur_sites[_backward_site(sys._getframe(2))] += 1
        if loss is not None and loss.numel() == 1:
            try:
                self.log.step_losses.append(float(loss.detach().float().item()))
            except Exception:
                pass
        self.hooks.in_backward = True
        try:
            result = call()
        finally:
            self.hooks.in_backward = False
            self._set_phase(self._rest_phase())
        if not self.model.optimizers:
            self.hooks.awaiting_update = True
            self.hooks.probe = self._param_probe()
        return result

    # ------------------------------------------------------------------ optimizer
    def _opt_pre(self, opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if self.hooks.detached:
            return
        inner = getattr(opt, "optimizer", None)
        if isinstance(inner, torch.optim.Optimizer):
            return      # a wrapper (accelerate's AcceleratedOptimizer): the inner one counts
        if opt not in self.model.optimizers:
            self.model.optimizers.append(opt)
        if self.model.primary_opt is None:
            self.model.primary_opt = opt
            if self.log.kind is None:
                self.log.kind = "optimizer"
            elif self.log.kind == "backward":
                self.log.kind = "optimizer"     # an optimizer appeared late: it defines steps now
        self.hooks.awaiting_update = False
        if self.eval.open:
            self._close_eval()
        self._begin_step_if_needed()
        if self.hooks.opt_depth == 0:
            _note_grads(self.model.grad_presence.setdefault(id(opt), {}), opt)
        self.hooks.opt_depth += 1
        self._set_phase("optimizer")

    def _opt_post(self, opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if self.hooks.detached:
            return
        if isinstance(getattr(opt, "optimizer", None), torch.optim.Optimizer):
            return
        self.counters["optimizer_steps"] += 1
        self.model.opt_calls[id(opt)] = self.model.opt_calls.get(id(opt), 0) + 1
        self.hooks.opt_depth = max(0, self.hooks.opt_depth - 1)
        self._set_phase(self._rest_phase())
        if opt is self.model.primary_opt and self.hooks.opt_depth == 0:
            self._end_step()


def _note_grads(presence: dict[int, list[int]], opt: torch.optim.Optimizer) -> None:
    """Count, for each parameter of ``opt``, the steps it had a gradient and the steps it had none:
    a parameter with both is one a step can leave out (a branch of the model not taken), which
    some fused updates cannot follow (``OptimizerInfo.grad_gaps``)."""
    for group in opt.param_groups:
        for p in group["params"]:
            row = presence.get(id(p))
            if row is None:
                row = presence[id(p)] = [0, 0]
            row[0 if p.grad is not None else 1] += 1


def _probe_values(p: torch.Tensor) -> torch.Tensor | int:
    """What ``_params_changed`` compares: a copy of the first values, or for a --dry-run's fake
    parameter (no values) the in-place writes its storage has had (``dryrun.writes_to``)."""
    from ccprof.profiler.dryrun import is_fake, writes_to
    if is_fake(p):
        return writes_to(p)
    return p.detach().reshape(-1)[:PROBE_ELEMENTS].clone()
