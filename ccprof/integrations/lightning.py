"""``CcprofCallback``: profile steps k..k+n of a Lightning ``Trainer`` run, inside it.

    from ccprof.integrations.lightning import CcprofCallback
    trainer = lightning.Trainer(max_steps=1000, callbacks=[CcprofCallback(steps=5, gpu="h100-sxm")])
    trainer.fit(module, loader)    # trains every step; ccprof-report/ holds profile.json, advice.json, report.html

The callback installs ccprof's profiler when fitting starts (before the sanity check); the first
``start`` steps count as warm-up too, then ``warmup`` warm-up steps, the FLOP, memory and Python
passes and ``steps`` timed steps are measured as ``ccprof analyze`` measures a script. The profiler then
detaches and training goes on. The headline figures (``ccprof/step_s``, ``ccprof/usd_per_step``,
``ccprof/mfu``, ``ccprof/peak_bytes``, the top tweak's dollars saved) go to every logger in
``trainer.loggers`` (TensorBoard, W&B, CSV, ...). Needs Lightning: ``pip install 'ccprof[lightning]'``.
"""
from __future__ import annotations

import math
from typing import Any

from ccprof.extras import install_hint

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:       # the extra is missing: say how to get it, in one line
    raise ImportError(f"ccprof.integrations.lightning needs lightning, which is not installed: "
                      f"{install_hint('lightning')}") from exc

from ccprof.integrations._common import CallbackCore

__all__ = ["CcprofCallback"]


class CcprofCallback(CallbackCore, Callback):
    """Profile ``steps`` timed steps after ``start`` skipped and ``warmup`` warm-up steps of the
    Trainer's run; write the report under ``out_dir`` (None: write nothing) on global rank 0;
    costs for ``gpu`` at ``price`` $/GPU-hour for ``total_steps`` (default: the Trainer's
    estimated optimizer steps). After the run, ``callback.result`` holds the measurement."""

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # here, not at on_train_start: Lightning makes the training DataLoader's iterator before
        # that hook, and the profiler must see it made (the loader's settings, the data wait)
        if self.result is not None:
            return
        planned = self.total_steps
        if planned is None:
            try:
                est = trainer.estimated_stepping_batches
                planned = int(est) if est and math.isfinite(est) else None
            except Exception:       # no length known (an iterable dataset): the script's reading stands
                planned = None
        self._measure(planned)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.result is not None and self.result.done and not self._published:
            self._publish(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.result is None:
            return
        self.result.finish("the Trainer's run ended")
        if not self._published:
            self._publish(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.result is not None:
            self.result.finish(f"the run raised {type(exception).__name__}")

    def _publish(self, trainer: Any) -> None:
        self._published = True
        if not trainer.is_global_zero:
            return
        self._write_figures()
        for logger in trainer.loggers:
            logger.log_metrics(dict(self.figures), step=trainer.global_step)
