"""The Session's step clock: phases, step boundaries and the GPU sampler.

A step begins at the first forward, backward or optimizer step after the last one ended, and
ends when the primary optimizer's step returns (or a hand-written update is seen). Each phase's
wall seconds (``clock.wall_s``) and thread CPU seconds (``clock.cpu_s``) are summed in
``Session.clock``; each timed step's figures go to ``Session.log`` (``step_record.StepRecord``
reads them). After the last step ``StopProfiling`` is raised into the script, or, for a Session
with ``keep_running``, the Session detaches (``Session.detach``) and the run goes on.
"""
from __future__ import annotations

from collections import Counter

import torch

from ccprof.profiler.clock import cpu_s, wall_s
from ccprof.profiler.session_base import _TIMED, CHECKPOINT_S, StopProfiling, _sync


class StepClockWatch:
    """Mixin of ``Session``: the phase clock and the step boundaries (state: ``clock``, ``log``)."""

    # ------------------------------------------------------------------ phases
    def _now(self) -> float:
        return wall_s()

    def _set_phase(self, phase: str, sync: bool = True) -> None:
        if phase == self.clock.phase:
            return
        if sync and not self.hooks.discovery:
            _sync(self.model.device_type)
        t, tc = self._now(), cpu_s()
        if self.clock.step_t0 is not None:
            self.clock.cur_phase[self.clock.phase] += t - self.clock.phase_t
            self.clock.cur_phase_cpu[self.clock.phase] += tc - self.clock.phase_tc
        self.clock.phase_t, self.clock.phase_tc = t, tc
        self.clock.phase = phase
        if self.measure.current is not None and phase != "eval":
            self.measure.current.set_phase(phase)

    def _rest_phase(self) -> str:
        return "optimizer" if self.hooks.opt_depth > 0 else "other"


    # ------------------------------------------------------------------ steps
    def _timed_step(self) -> bool:
        return self.log.index >= self.warmup + self.n_pass_steps

    def _begin_step_if_needed(self) -> None:
        if self.clock.step_t0 is None:
            _sync(self.model.device_type) if not self.hooks.discovery else None
            self.clock.step_t0 = self._now()
            self.clock.phase_t = self.clock.step_t0
            self.clock.cur_phase = dict.fromkeys(_TIMED, 0.0)
            self.clock.step_tc0 = self.clock.phase_tc = cpu_s()
            self.clock.cur_phase_cpu = dict.fromkeys(_TIMED, 0.0)

    def _end_step(self) -> None:
        if self.clock.step_t0 is None:
            return
        if self.eval.open:
            self._close_eval()
        _sync(self.model.device_type)
        t, tc = self._now(), cpu_s()
        self.clock.cur_phase[self.clock.phase] += t - self.clock.phase_t
        self.clock.cur_phase_cpu[self.clock.phase] += tc - self.clock.phase_tc
        step_s = t - self.clock.step_t0 - self.clock.cur_phase.get("eval", 0.0)
        step_cpu_s = tc - self.clock.step_tc0 - self.clock.cur_phase_cpu.get("eval", 0.0)
        idx = self.log.index
        self.log.index += 1
        loss = self.log.step_losses[-1] if self.log.step_losses else None
        if self.measure.name is not None:
            self._end_pass()
        if idx >= self.warmup + self.n_pass_steps:
            self.log.step_s.append(step_s)
            self.log.phase_totals.append(dict(self.clock.cur_phase))
            self.log.step_cpu_s.append(step_cpu_s)
            self.log.phase_cpu_totals.append(dict(self.clock.cur_phase_cpu))
            # micro-batches: backwards per step; with several models or optimizers (a GAN) only
            # one backward call site run several times (an accumulation loop) counts: D's losses
            # on real and on fake data are two loss terms, not two micro-batches
            several = len(self.model.roots) > 1 or len(set(self.model.known_opts) | set(self.model.optimizers)) > 1
            self.log.micro_batches.append(max(self.log.cur_sites.values()) if (several and self.log.cur_sites)
                                      else self.log.cur_micro)
            self.log.closure_backwards.append(self.log.cur_closure)
            self.log.batches_per_step.append(self.log.cur_batches)
            if not self.log.cur_samples and self.log.cur_samples_in_opt:
                self.log.cur_samples, self.log.cur_tokens = self.log.cur_samples_in_opt
            self.log.samples.append(self.log.cur_samples)
            self.log.tokens.append(self.log.cur_tokens)
            if loss is not None:
                self.log.losses.append(loss)
        elif idx < self.warmup + self.n_pass_steps and loss is not None and idx >= self.warmup:
            self.log.losses.append(loss)
        if self.on_step is not None:
            try:
                self.on_step(self.log.index, self.total_steps, step_s, loss)
            except Exception:
                pass
        if self.log.cur_inputs:
            samples = self.log.cur_samples or (self.log.cur_samples_in_opt or (0, 0))[0]
            self.log.step_inputs.append((tuple(self.log.cur_inputs), samples))
            self.log.cur_inputs = []
        self.log.step_losses = []
        self.log.cur_micro = 0
        self.log.cur_closure = 0
        self.log.cur_sites = Counter()
        self.log.cur_batches = 0
        self.log.cur_samples = 0
        self.log.cur_tokens = 0
        self.log.cur_samples_in_opt = None
        if self.log.index == 1 and self.hooks.discovery:
            self._probe_run_limits()
            self._finish_discovery()
        if self.log.index >= self.total_steps and self._more_steps_needed():
            self.total_steps += 1           # the host figures' spread is not known yet: one more
        if self.log.index >= self.total_steps:
            self._stop_sampler()
            if self.keep_running:
                # inside someone else's run (a Trainer callback, ``ccprof.profile()``): stop
                # watching and let it train on; on_complete builds the profile from what was kept
                self.detach()
                if self.on_complete is not None:
                    self.on_complete()
                return
            if self.on_complete is not None:
                self.on_complete()
            raise StopProfiling()
        if idx >= self.warmup + self.n_pass_steps and wall_s() - self.clock.last_checkpoint > CHECKPOINT_S:
            self._checkpoint()
        if self.log.index == self.warmup + self.n_pass_steps:
            self._start_sampler()
        if self.passes and self.measure.current is None and self.measure.queue and self.log.index >= self.warmup:
            self._start_pass(self.measure.queue.pop(0))
        # the next step starts now: data fetching for it counts as its data phase
        _sync(self.model.device_type) if not self.hooks.discovery else None
        self.clock.step_t0 = self._now()
        self.clock.phase_t = self.clock.step_t0
        self.clock.phase = "other"
        self.clock.cur_phase = dict.fromkeys(_TIMED, 0.0)
        self.clock.step_tc0 = self.clock.phase_tc = cpu_s()
        self.clock.cur_phase_cpu = dict.fromkeys(_TIMED, 0.0)

    def _start_sampler(self) -> None:
        if self.model.device_type != "cuda":
            self.gpu_reason = {"gpu": "no NVIDIA GPU in use (the model trained on the CPU)"}
            return
        from ccprof.profiler.nvml import (
            NvmlSampler,  # here: nothing extra is imported into the user's process before it is needed
        )

        self._nvml = NvmlSampler(torch.cuda.current_device())
        if self._nvml.reason:
            self.gpu_reason = {"gpu": self._nvml.reason}
        self._nvml.start()

    def _stop_sampler(self) -> None:
        if self._nvml is not None:
            self.gpu_info = self._nvml.stop(len(self.log.step_s))
            self._nvml = None
