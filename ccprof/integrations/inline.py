"""``with ccprof.profile(steps=5, gpu="h100-sxm") as prof:`` around a training loop of your own.

    import ccprof
    with ccprof.profile(steps=5, warmup=3, gpu="h100-sxm") as prof:
        for batch in loader:
            loss = model(batch).loss
            loss.backward(); opt.step(); opt.zero_grad()
    prof.profile.cost.usd_per_step, prof.advice.advice[0].tweak
    prof.write("ccprof-report")       # profile.json, advice.json, report.html
    prof                              # in a notebook: the report inline

It measures the loop's steps ``warmup+1 .. warmup+3+steps`` (warm-up, the FLOP, memory and Python
passes, then the timed steps) as ``ccprof analyze`` measures a script's, then detaches: the loop
runs every iteration it would have run, untouched. A loop that ends first leaves a partial
profile that says why; nothing ccprof does raises out of the ``with`` block.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ccprof.integrations._live import LiveProfile, main_script

__all__ = ["Profiling", "profile"]


class Profiling(LiveProfile):
    """What ``ccprof.profile()`` returns: a context manager, then the measurement
    (``profile``, ``advice``, ``write(out_dir)``, ``_repr_html_``)."""

    def __enter__(self) -> "Profiling":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        reason = None
        if exc_type is not None:
            reason = f"the loop raised {exc_type.__name__}"
        try:
            self.finish(reason)
        except Exception as err:       # ccprof's own failure never replaces the loop's outcome
            self.note = f"ccprof could not finish ({type(err).__name__}: {err})"
        return False                   # the loop's own exception, if any, goes on

    def _repr_html_(self) -> str:
        # notebooks show the report inline; the report page is self-contained (its scripts inline)
        return self.html()

    def __repr__(self) -> str:
        p = self.raw
        if p is None:
            return "<ccprof.profile: measuring>" if self._session is not None else "<ccprof.profile: not started>"
        return f"<ccprof.profile: {p.status}, {len(p.steps.step_s)} timed steps>"


def profile(steps: int = 5, warmup: int = 3, gpu: str | None = None, price: float | None = None,
            total_steps: int | None = None, script: str | Path | None = None) -> Profiling:
    """A context manager that profiles the training loop run inside it, then lets it go on.

    Inputs: ``steps`` timed steps after ``warmup`` warm-up steps (plus 3 measurement passes, as
    ``ccprof analyze``); ``gpu`` the catalog id costs are for (``ccprof gpus``; default the GPU in
    use, else a100-80gb); ``price`` $/GPU-hour over the catalog's; ``total_steps`` the planned run
    for the run's dollars; ``script`` the file whose static facts are read (default: the script
    Python runs, none in a notebook).
    Output: a ``Profiling`` whose ``profile`` (costed), ``advice`` and ``write(out_dir)`` are ready
    once the steps are measured or the block ends.
    Example: ``with ccprof.profile(steps=5, gpu="h100-sxm") as prof: train()``.
    """
    where = str(Path(script).resolve()) if script is not None else main_script()
    argv = sys.argv[1:] if where is not None and script is None else []
    return Profiling(steps=steps, warmup=warmup, gpu=gpu, price=price, total_steps=total_steps,
                     script=where, argv=argv)
