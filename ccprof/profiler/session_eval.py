"""The Session's evaluation watching: forwards of a trained model outside training
(validation, ``generate()``) timed and counted apart, as ``Profile.eval``."""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch
import torch.nn as nn

from ccprof.artefacts.profile import EvalWork, Finding
from ccprof.profiler.session_base import (
    EVAL_MAX_ROWS,
    MAX_PASS_RETRIES,
    _sync,
)


class EvalWatch:
    """Mixin of ``Session``: evaluation episodes between optimizer steps (state: ``eval``)."""

    # ------------------------------------------------------------------ evaluation
    def _wrap_opt_init(self, orig: Callable) -> Callable:
        session = self

        def __init__(opt, *args, **kwargs):
            orig(opt, *args, **kwargs)
            session.model.known_opts.append(opt)
            session.site_rec.on_optimizer(opt, sys._getframe(1))

        __init__.__wrapped__ = orig
        return __init__

    def _trained_ids(self) -> set[int]:
        opts = list(self.model.known_opts) + [o for o in self.model.optimizers if o not in self.model.known_opts]
        key = sum(len(g["params"]) for o in opts for g in o.param_groups) + len(opts)
        if self.model.opt_param_ids[0] != key:
            ids = {id(p) for o in opts for g in o.param_groups for p in g["params"]}
            self.model.opt_param_ids = (key, ids)
        return self.model.opt_param_ids[1]

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
        if not self.eval.open:
            self._open_eval()
        self.eval.calls += 1

    def _open_eval(self) -> None:
        from ccprof.profiler import (
            run_size,  # here: nothing extra is imported into the user's process before it is needed
        )

        self._begin_step_if_needed()
        if self.measure.current is not None and self.measure.name == "flops":
            self.measure.current.pause()           # the FLOP step counts training work only
            self.eval.paused_pass = True
        elif self.measure.current is not None and self.measure.name == "kernels":
            # the kernels' device times must be one clean training step: redo it on the next one
            name = self.measure.name
            self._end_pass(abort=True)
            if self.measure.retries < MAX_PASS_RETRIES and name:
                self.measure.retries += 1
                self.measure.queue.insert(0, name)
                self.n_pass_steps += 1
                self.total_steps += 1
            else:
                self.findings.append(Finding("pass_failed", f"the {name} pass was interrupted by evaluation "
                                                            f"{MAX_PASS_RETRIES} times; left out"))
        if self.eval.period is None:
            try:
                self.eval.period = run_size.eval_period(sys._getframe(2))
                self.eval.where = run_size.call_site(sys._getframe(2))
            except Exception:
                self.eval.period = None
        if self.passes and not any(e.get("counted") for e in self.eval.episodes):
            try:
                from ccprof.profiler.flops import (
                    FlopPass,  # here: nothing extra is imported into the user's process before it is needed
                )

                fp = FlopPass(self._named_roots(), max_rows=EVAL_MAX_ROWS)
                fp.start()
                fp.set_phase("forward")
                self.eval.counter = fp
            except Exception as exc:
                self.eval.counter = None
                self.findings.append(Finding("eval_count", f"evaluation FLOPs could not be counted: {exc!r}"))
        self.eval.prev_phase = self.clock.phase if self.clock.phase != "eval" else "other"
        self._set_phase("eval")
        self.eval.open = True
        self.eval.calls = 0
        self.eval.t0 = self._now()

    def _close_eval(self, abort: bool = False) -> None:
        if not self.eval.open:
            return
        self.eval.open = False
        if not self.hooks.discovery:
            _sync(self.model.device_type)
        rec: dict[str, Any] = {"seconds": self._now() - self.eval.t0, "calls": self.eval.calls,
                               "counted": False, "step": self.log.index}
        fp, self.eval.counter = self.eval.counter, None
        if fp is not None:
            try:
                flops, ops = fp.stop()
                total = flops.per_step
                rec.update(counted=not abort, flops=int(total), ops=ops, module_calls=int(fp.module_calls),
                           frac=(1.0 - fp.dropped_flops / total) if total else 1.0)
            except Exception as exc:
                self.findings.append(Finding("eval_count", f"evaluation FLOP count failed: {exc!r}"))
        if self.eval.paused_pass and self.measure.current is not None:
            self.measure.current.resume()
        self.eval.paused_pass = False
        if not abort:
            self.eval.episodes.append(rec)
            self._set_phase(self.eval.prev_phase)

    def build_eval(self) -> EvalWork | None:
        eps = self.eval.episodes
        if not eps:
            return None
        counted = next((e for e in eps if e.get("counted")), None)
        timed = [e["seconds"] for e in eps if not e.get("counted")]
        seconds = sum(timed) / len(timed) if timed else eps[0]["seconds"]
        seen = max(self.log.index, 1)
        if self.eval.period is not None:
            every, extra, source, _ = self.eval.period
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
            extra_episodes=int(extra), where=self.eval.where)
