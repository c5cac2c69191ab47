"""One measurement inside a run that goes on: the machinery ``ccprof.profile()`` and the Trainer
and Lightning callbacks share.

``LiveProfile.start()`` installs a ``Session(keep_running=True)``; after ``warmup`` warm-up steps,
the FLOP, memory and Python passes and ``steps`` timed steps (the harness's plan) the Session
detaches and the raw profile is built at once, while the model and optimizer are as they trained.
``finish(reason)`` ends it early: a partial profile that says why. Costs (``ccprof.hardware.attach``)
and advice (the advisors) are computed when first asked for.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from ccprof.artefacts.profile import ErrorInfo, Profile
from ccprof.exit_codes import ExitCode
from ccprof.profiler.clock import utc_now

__all__ = ["LiveProfile", "headline", "main_script"]


def main_script() -> str | None:
    """The script this process runs (``python train.py``), when it is a Python file of the user's;
    None in a notebook, a REPL or under a test runner."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not str(path).endswith(".py") or not os.path.isfile(path):
        return None
    if "site-packages" in str(path) or os.path.basename(path) in ("pytest", "__main__.py"):
        return None
    return str(Path(path).resolve())


class LiveProfile:
    """One measurement of ``steps`` timed steps after ``skip`` + ``warmup`` warm-up steps (and the
    three measurement passes), inside whatever loop runs while it is installed.

    ``gpu``/``price``/``total_steps``: what the costs are for (``ccprof.hardware.attach``);
    ``script``: the file whose static facts go into the profile (None: none read);
    ``on_done``: called once the profile is built, complete or partial.
    """

    def __init__(self, *, steps: int = 5, warmup: int = 3, skip: int = 0, gpu: str | None = None,
                 price: float | None = None, total_steps: int | None = None, script: str | None = None,
                 argv: list[str] | None = None, on_done: Callable[["LiveProfile"], None] | None = None):
        from ccprof import api  # here: `import ccprof` stays free of the stages

        api.check_cost_options(gpu, price)      # a GPU id or price that is wrong: now, not after the steps
        self.steps, self.warmup, self.skip = int(steps), int(warmup), max(0, int(skip))
        self.gpu, self.price, self.total_steps = gpu, price, total_steps
        self.script, self.argv = script, list(argv or [])
        self.on_done = on_done
        self.raw: Profile | None = None         # as measured, before costs
        self.note: str | None = None            # what went wrong in ccprof's own stages, if anything
        self._session: Any = None
        self._started = ""
        self._costed: Profile | None = None
        self._advice: Any = None
        self._catalog: Any = None

    # ------------------------------------------------------------------ the measurement
    @property
    def done(self) -> bool:
        return self.raw is not None

    def start(self) -> "LiveProfile":
        from ccprof.profiler.hooks import Session  # here: `import ccprof` stays free of torch

        self._started = utc_now()
        self._session = Session(steps=self.steps, warmup=self.skip + self.warmup, keep_running=True,
                                on_complete=self._complete, script=self.script or "")
        self._session.install()
        return self

    def _complete(self) -> None:
        self._build(None)

    def finish(self, reason: str | None = None) -> None:
        """Stop watching (idempotent). Before the steps were all measured: a partial profile whose
        ``error`` says ``reason`` and how many steps ran."""
        session = self._session
        if session is None:
            return
        session.uninstall()
        if self.done:
            return
        seen = session.step_index
        why = reason or "the loop ended"
        self._build(ErrorInfo(kind="ended", exit_code=ExitCode.NOTHING_MEASURED,
                              message=f"{why} after {seen} of {session.total_steps} steps "
                                      f"({session.warmup} warm-up + measurement)"))

    def _build(self, error: ErrorInfo | None) -> None:
        """The profile from what the Session kept; it runs inside the user's optimizer step, so
        nothing it does may raise into their training."""
        session = self._session
        try:
            from ccprof.profiler._harness_io import _static
            from ccprof.profiler.spec import RunSpec, run_environment
            from ccprof.profiler.static import reconcile

            spec = RunSpec(script=self.script or "<ccprof.profile>", args=self.argv, steps=self.steps,
                           warmup=session.warmup)
            sections: dict[str, Any] = {"environment": run_environment(spec, started_at=self._started,
                                                                       finished_at=utc_now())}
            if self.script:
                static = _static(self.script, self.argv)     # never raises: a note when it cannot read
                if static.parsed and session.step_index >= session.warmup:
                    static = reconcile(static, session.runtime_facts())
                sections["static"] = static
            profile = session.build_profile(status="complete" if error is None else "partial", error=error,
                                            **sections)
        except Exception as exc:          # ccprof's fault: never the user's loop's
            self.note = f"ccprof could not build the profile ({type(exc).__name__}: {exc})"
            profile = Profile(status="partial", error=ErrorInfo(kind="ccprof_error", exit_code=ExitCode.STAGE_FAILED,
                                                                message=self.note))
        self.raw = profile
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception as exc:
                self.note = f"ccprof's on_done failed ({type(exc).__name__}: {exc})"

    # ------------------------------------------------------------------ costs, advice, files
    @property
    def profile(self) -> Profile | None:
        """The profile with costs for ``gpu`` (None before anything was measured)."""
        if self.raw is None:
            return None
        if self._costed is None:
            from ccprof import api  # here: the stages load when asked for

            try:
                self._catalog = api.gpu_catalog()
                self._costed = api.attach_costs(self.raw, gpu=self.gpu, catalog=self._catalog,
                                                price_usd=self.price, total_steps=self.total_steps)
            except Exception as exc:
                self.note = f"ccprof could not cost the profile ({type(exc).__name__}: {exc})"
                self._costed = self.raw
        return self._costed

    @property
    def advice(self) -> Any:
        """Every advisor's Advice for the profile, ranked (an ``AdviceSet``; None before a profile)."""
        profile = self.profile
        if profile is None:
            return None
        if self._advice is None:
            from ccprof import api

            try:
                self._advice = api.advise(profile)
            except Exception as exc:
                self.note = f"ccprof could not advise ({type(exc).__name__}: {exc})"
        return self._advice

    def write(self, out_dir: str | Path = "ccprof-report") -> dict[str, Path]:
        """profile.json, advice.json and report.html under ``out_dir``, as ``ccprof analyze`` writes them."""
        from ccprof import api

        if self.profile is None:
            raise RuntimeError("nothing measured yet: no training step ran inside ccprof.profile()")
        return api.write_artefacts(out_dir, self.profile, self.advice, catalog=self._catalog)

    def html(self) -> str:
        """The report as one self-contained HTML page."""
        from ccprof.reports import render_html

        if self.profile is None:
            return "<p>ccprof: nothing measured yet (no training step ran)</p>"
        return render_html(self.profile, self.advice, catalog=self._catalog)


def headline(profile: Profile | None, advice: Any = None) -> dict[str, float]:
    """The figures a Trainer's loggers receive: projected step seconds, dollars per step, MFU and
    peak memory on the target GPU, and the top tweak's projected dollars saved (keys under
    ``ccprof/``; the top tweak's id is in the key, loggers take numbers only)."""
    if profile is None:
        return {}
    out: dict[str, float] = {}
    cost = profile.cost
    if cost is not None:
        out["ccprof/step_s"] = float(cost.step_s)
        out["ccprof/usd_per_step"] = float(cost.usd_per_step)
        proj = (profile.projection or {}).get(cost.gpu)
        if proj is not None and proj.mfu is not None:
            out["ccprof/mfu"] = float(proj.mfu)
    if profile.memory is not None and profile.memory.peak_bytes:
        out["ccprof/peak_bytes"] = float(profile.memory.peak_bytes)
    top = next((a for a in (advice.advice if advice is not None else []) if a.status == "recommended"), None)
    if top is not None:
        out[f"ccprof/top_tweak/{top.tweak}/usd_saved"] = float(top.projected.usd_saved)
    return out
