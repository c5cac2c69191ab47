"""``CcprofCallback``: profile steps k..k+n of a Hugging Face ``Trainer`` run, inside it.

    from ccprof.integrations.hf import CcprofCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[CcprofCallback(steps=5, warmup=3, start=0, out_dir="ccprof-report",
                                                gpu="h100-sxm")])
    trainer.train()       # trains every step; ccprof-report/ has profile.json, advice.json, report.html

The callback installs ccprof's profiler when training begins; the first ``start`` steps count as
warm-up too, then ``warmup`` warm-up steps, the FLOP, memory and Python passes and ``steps`` timed
steps are measured as ``ccprof analyze`` measures a script. The profiler then detaches and training goes
on. The headline figures (``ccprof/step_s``, ``ccprof/usd_per_step``, ``ccprof/mfu``,
``ccprof/peak_bytes``, the top tweak's dollars saved) go through ``Trainer.log``, so the loggers
``report_to`` names (TensorBoard, W&B, ...) receive them, and into ``state.log_history``.
Needs transformers: ``pip install 'ccprof[hf]'``.
"""
from __future__ import annotations

import sys
from typing import Any

from ccprof.extras import install_hint

try:
    from transformers import Trainer, TrainerCallback
except ImportError as exc:       # the extra is missing: say how to get it, in one line
    raise ImportError(f"ccprof.integrations.hf needs transformers, which is not installed: "
                      f"{install_hint('hf')}") from exc

from ccprof.integrations._common import CallbackCore

__all__ = ["CcprofCallback"]


def _calling_trainer() -> Any:
    """The ``Trainer`` whose callback handler called us (callbacks are not handed the Trainer;
    its ``log`` is the path every configured logger listens on)."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None


class CcprofCallback(CallbackCore, TrainerCallback):
    """Profile ``steps`` timed steps after ``start`` skipped and ``warmup`` warm-up steps of the
    Trainer's run; write the report under ``out_dir`` (None: write nothing) on the main process;
    costs for ``gpu`` at ``price`` $/GPU-hour for ``total_steps`` (default: the Trainer's max_steps).
    After the run, ``callback.result`` holds the measurement (``.profile``, ``.advice``)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.result is not None:
            if self.result.done:
                return                        # a second train() on the same callback: measured once
            # the last train() raised before its end (the Trainer has no exception hook): keep
            # what it measured, partial, and measure this run afresh
            self.result.finish("the Trainer's previous run stopped before its end")
            self._published = False
        planned = self.total_steps or (state.max_steps if state.max_steps and state.max_steps > 0 else None)
        self._measure(planned)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.result is not None and self.result.done and not self._published:
            self._publish(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.result is None:
            return
        self.result.finish("the Trainer's run ended")
        if not self._published:
            self._publish(args, state)

    def _publish(self, args: Any, state: Any) -> None:
        self._published = True
        if not state.is_world_process_zero:
            return
        if not self._write_figures():
            return
        trainer = _calling_trainer()
        if trainer is not None:
            trainer.log(dict(self.figures))      # every logger's on_log, and state.log_history
        else:
            state.log_history.append({**self.figures, "step": state.global_step})
