"""The Session's measurement passes: discovery, the FLOP / memory / kernel passes, run-limit
probing, mid-run checkpoints and the memory ledger kept at an out-of-memory error."""
from __future__ import annotations

import sys
from dataclasses import replace

import torch
import torch.nn as nn

from ccprof.artefacts.profile import Finding, Memory
from ccprof.profiler.clock import wall_s


class PassRunner:
    """Mixin of ``Session``: scheduling and ending the measurement passes (state: ``measure``)."""

    def _probe_run_limits(self) -> None:
        """Read the run's own length from the live stack (ccprof.profiler.run_size)."""
        from ccprof.profiler.run_size import (  # here: nothing extra is imported into the user's process before it is needed
            epoch_steps,
            probe,
        )

        try:
            self.run_limits = probe(sys._getframe(1))
            self.epoch_loop = epoch_steps(sys._getframe(1))
        except Exception as exc:   # a bonus; never break the user's run for it
            self.findings.append(Finding("run_size", f"could not read the run's length: {exc!r}"))

    def _finish_discovery(self) -> None:
        """After the first full step: the roots are known (and the modules training beside them,
        ``_reach_trained_modules``), so drop the costly global hooks.

        On a GPU one more pass step follows the FLOP and memory steps: the kernels' device
        times under torch.profiler (``kernel_times``), which recalibrate the cost model.
        """
        self.hooks.discovery = False
        self._reach_trained_modules()
        if self.passes and self.model.device_type == "cuda" and "kernels" not in self.measure.queue:
            self.measure.queue.append("kernels")
            self.n_pass_steps += 1
            self.total_steps = self.warmup + self.n_pass_steps + self.steps_wanted
        for h in self.hooks.global_fwd:
            h.remove()
        self.hooks.global_fwd = []
        for key, module in self.model.roots.items():
            self.hooks.root_hooks[key] = module.register_forward_pre_hook(self._root_pre, with_kwargs=True)

    def _reach_trained_modules(self) -> None:
        """Modules whose parameters an optimizer holds but no root does (layers in a plain list,
        each with its optimizer): found from the roots and the live frames' variables."""
        from ccprof.profiler._run_size_eval import _frames, _user_frame
        from ccprof.profiler.model_info import (
            reached_roots,  # here: nothing extra is imported into the user's process before it is needed
        )

        try:
            starts: list = []
            for f in _frames(sys._getframe(1)):
                if _user_frame(f):
                    starts += list(f.f_locals.values())
            self.model.reached = reached_roots(list(self.model.roots.values()), starts, self._trained_ids())
            if any(p.is_cuda for m in self.model.reached.values() for p in m.parameters()):
                self.model.device_type = "cuda"     # no root was called (layer.forward(x)): their device
        except Exception as exc:   # a bonus; never break the user's run for it
            self.findings.append(Finding("model", f"could not look for modules outside the called roots: {exc!r}"))

    def _named_roots(self) -> dict[str, nn.Module]:
        if self.model.reached:
            return dict(self.model.reached)
        roots = list(self.model.roots.values())
        if not roots:
            return {}
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
                from ccprof.profiler.flops import (
                    FlopPass,  # here: nothing extra is imported into the user's process before it is needed
                )

                self.measure.current = FlopPass(self._named_roots())
            elif name == "python":
                from ccprof.profiler.pycount import (
                    PythonPass,  # here: nothing extra is imported into the user's process before it is needed
                )

                self.measure.current = PythonPass(lambda: self.clock.phase)
            elif name == "kernels":
                from ccprof.profiler.kernel_times import (
                    KernelPass,  # here: nothing extra is imported into the user's process before it is needed
                )

                self.measure.current = KernelPass(cuda=self.model.device_type == "cuda")
            else:
                from ccprof.profiler.memory import (
                    MemoryLedger,  # here: nothing extra is imported into the user's process before it is needed
                )

                self.measure.current = MemoryLedger(self._named_roots(), list(self.model.optimizers),
                                          torch.device(self.model.device_type))
            self.measure.current.start()
            self.measure.name = name
        except Exception as exc:  # a broken pass must not break the user's run
            self.findings.append(Finding("pass_failed", f"{name} pass could not start: {exc!r}"))
            self.measure.current = None
            self.measure.name = None

    def _end_pass(self, abort: bool = False) -> None:
        if self.measure.current is None:
            return
        p, name = self.measure.current, self.measure.name
        self.measure.current, self.measure.name = None, None
        try:
            result = p.stop()
        except Exception as exc:
            self.findings.append(Finding("pass_failed", f"{name} pass failed: {exc!r}"))
            return
        if abort:
            return      # the step did not finish: a partial count would mislead
        if name == "flops":
            self.measure.flops_result = result
            self.measure.forward_flops_by_module = dict(getattr(p, "forward_by_module", {}) or {})
            self.measure.op_bytes_by_module = dict(getattr(p, "bytes_by_module", {}) or {})
            self.measure.fusion = dict(getattr(p, "fusion", {}) or {})
            self.measure.module_calls_per_step = int(getattr(p, "module_calls", 0) or 0)
            for err in getattr(p, "errors", []) or []:
                self.findings.append(Finding("flop_count", f"FLOP bookkeeping: {err}"))
        elif name == "kernels":
            self.measure.kernel_result = dict(result or {})
        elif name == "python":
            self.measure.opcodes = dict(result or {})
            self.measure.opcode_step = self.log.index - 1
        else:
            self.measure.memory_result = result
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Hand what was measured so far to the harness (it writes a partial profile). DataLoader
        workers prefetch meanwhile, so the next timed step's data wait is left out of the wait
        and phase figures (``_clean_steps``)."""
        self.clock.last_checkpoint = wall_s()
        self.log.after_checkpoint.add(len(self.log.step_s))
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
        if self.measure.name == "memory":
            p = self.measure.current
            self.measure.current, self.measure.name = None, None
            try:
                memory, by_module = p.stop()
            except Exception as exc:
                self.findings.append(Finding("pass_failed", f"memory pass failed at the OOM: {exc!r}"))
            else:
                self.measure.memory_result = (replace(memory, method=memory.method + " (up to the out-of-memory error)"),
                                      by_module)
                return
        if self.measure.memory_result is not None or not self._named_roots():
            return
        from ccprof.profiler.memory import (  # here: nothing extra is imported into the user's process before it is needed
            optimizer_section,
            unique_storage_bytes,
        )

        params = [p for m in self._named_roots().values() for p in m.parameters()]
        params_bytes, _ = unique_storage_bytes(params)
        grads_bytes, _ = unique_storage_bytes([p.grad for p in params if p.grad is not None])
        opt_bytes = optimizer_section(self.model.optimizers).state_bytes if self.model.optimizers else 0
        cuda_peak = cuda_reserved = None
        if self.model.device_type == "cuda":
            cuda_peak, cuda_reserved = torch.cuda.max_memory_allocated(), torch.cuda.memory_reserved()
        known = params_bytes + grads_bytes + opt_bytes
        self.measure.memory_result = (Memory(
            peak_bytes=max(known, cuda_peak or 0), params_bytes=params_bytes, grads_bytes=grads_bytes,
            optimizer_state_bytes=opt_bytes, other_bytes=max(0, (cuda_peak or 0) - known),
            cuda_max_allocated_bytes=cuda_peak, cuda_reserved_bytes=cuda_reserved,
            method="model state at the out-of-memory error (activations not measured)"), {})
