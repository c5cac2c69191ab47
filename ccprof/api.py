"""ccprof's public API: what the CLI calls, and what notebooks use directly.

    from ccprof import analyze_script, profile_model, advise
    result = analyze_script("train.py", ["--lr", "3e-4"], steps=10)
    result.profile.memory.peak_bytes, result.advice.advice[0].tweak

Stages (DESIGN.md): profiler -> hardware (projection, cost) -> advisors -> reports. Each
stage is a function of the previous artefact; the CLI owns printing, this module owns the
files under ``out_dir``.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ccprof.outputs import archive_previous_run
from ccprof.artefacts.profile import ErrorInfo, Finding, Profile
from ccprof import advisors, hardware
from ccprof.applier.verify import VERIFY_SEED, verify as verify_advice
from ccprof.profiler.spec import RunSpec, run_environment, utc_now
from ccprof.profiler.runner import EXIT_INTERRUPTED, EXIT_TERMINATED, run_script

__all__ = ["Analysis", "analyze_script", "profile_model", "attach_costs", "advise", "apply",
           "write_artefacts", "StageError"]


class StageError(Exception):
    """A ccprof stage failed (a ccprof bug, not the user's); the message says what was kept."""


@dataclass
class Analysis:
    profile: Profile | None
    advice: Any = None                       # AdviceSet
    exit_code: int = 0
    message: str | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    verified: list[Any] = field(default_factory=list)


def attach_costs(profile: Profile, *, gpu: str | None = None, catalog_path: str | None = None,
                 price_usd: float | None = None, total_steps: int | None = None,
                 epochs: float | None = None, catalog: Any = None, host_speed: float | None = None) -> Profile:
    """The profile with ``projection`` and ``cost`` filled for the target GPU (``catalog``: one
    already loaded, else ``catalog_path`` and the user's files are read; ``host_speed``: the GPU
    machine's host CPU against ccprof's reference host)."""
    if catalog is None:
        catalog = hardware.load_catalog(catalog_path)
    return hardware.attach(profile, gpu=gpu, catalog=catalog, price_usd=price_usd,
                           total_steps=total_steps, epochs=epochs, num_gpus=max(1, profile.world_size),
                           host_speed=host_speed)


def advise(profile: Profile, ctx: Any = None, **options: Any):
    """Every advisor's Advice for ``profile``, ranked, with the combined plan (an AdviceSet)."""
    if ctx is None:
        if profile.data.scan and "scan" not in options:
            options["scan"] = profile.data.scan          # --scan-data ran in the harness
        ctx = advisors.AdviceContext(**options) if options else None
    return advisors.advise(profile, ctx)


def apply(script: str | Path, tweaks: list[str], options: dict[str, Any] | None = None, *,
          tweak_options: dict[str, Any] | None = None, to_path: str | Path | None = None,
          argv: list[str] | None = None):
    """The script's source rewritten to keep ``tweaks`` (a codemods ApplyResult); writes nothing.

        result = apply("train.py", ["mixed_precision", "checkpointing"])
        print(result.diff); result.skipped   # tweak -> why, naming the line looked for
        write_script("train_ccprof.py", result.source, like=result.script)   # same encoding/endings

    ``tweak_options``: each tweak's typed options (what advice.json projected,
    ``selection.tweaks_from_advice``); ``options``: by ``--option`` name, over them
    (``{"accumulation_steps": 8}``); ``to_path`` names the new file in the diff; ``argv``: the
    arguments of the run the advice came from (a tweak behind a flag that run left off is not
    "already applied"; ``selection.run_argv``). Raises
    ``ScriptEncodingError`` (a ValueError) for a file Python could not read either,
    ``ScriptSyntaxError`` for one that does not parse, OSError when it cannot be read.
    """
    from ccprof.applier.codemods import apply_source, read_script  # here: keeps `import ccprof.api` from loading libcst

    path = Path(script)
    text = read_script(path)        # its encoding, BOM and line endings: result.script
    result = apply_source(text.source, list(tweaks), options=options, path=str(path),
                          to_path=str(to_path) if to_path is not None else None, like=text,
                          tweak_options=tweak_options, argv=argv)
    return replace(result, script=text)


# what the profiling harness runs besides the script, by name (the profiler imports no
# advisor or applier; DESIGN.md: stages only look down)
RUN_PLUGINS = {"apply": "ccprof.applier.runtime", "scan": "ccprof.advisors.data_scan:scan_dataset"}


class _StopVerify(BaseException):
    """A --verify re-run was stopped by Ctrl-C or SIGTERM: stop verifying (BaseException, so
    the verify stage does not take it for a failure of its own)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def write_artefacts(out_dir: str | Path, profile: Profile, advice: Any = None,
                    report: bool = True) -> dict[str, Path]:
    """Write profile.json, advice.json and report.html under ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"profile": out / "profile.json"}
    profile.to_json(paths["profile"])
    if advice is not None:
        paths["advice"] = out / "advice.json"
        advice.to_json(paths["advice"])
    if report:
        from ccprof.reports import write_report  # here: keeps `import ccprof.api` from loading jinja2, plotly, rich

        paths["report"] = Path(write_report(profile, advice, out))
    return paths


def _stage(name: str, out_dir: Path, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        out_dir.mkdir(parents=True, exist_ok=True)
        log = out_dir / "ccprof-error.log"
        log.write_text(traceback.format_exc())
        raise StageError(f"ccprof's {name} stage failed ({type(exc).__name__}: {exc}); "
                         f"details in {log}") from exc


def analyze_script(script: str | Path, args: Iterable[str] = (), *, steps: int = 10, warmup: int = 3,
                   out_dir: str | Path = "ccprof-report", timeout_s: float = 600.0,
                   gpu: str | None = None, catalog_path: str | None = None,
                   price_usd: float | None = None, total_steps: int | None = None,
                   epochs: float | None = None, advice_options: dict[str, Any] | None = None,
                   report: bool = True, on_event: Callable[[dict], None] | None = None,
                   child_stdout: Any = None, nproc: int = 1, scan_data: bool = False,
                   verify: int | str | None = None,
                   on_verify: Callable[[str], None] | None = None, host_speed: float | None = None) -> Analysis:
    """Profile ``script``, attach costs, advise and write the artefacts under ``out_dir``.

    Raises ``ScriptError`` (ccprof.profiler.runner) for bad input before anything runs.
    A script that fails mid-run still yields the partial profile (``exit_code`` != 0).
    ``verify``: K re-runs the top K applicable tweaks, one fresh process each, "plan" the
    combined plan once (ccprof.applier.verify); the baseline run is then seeded.
    """
    out = Path(out_dir)
    seed = VERIFY_SEED if verify else None
    before_run = _cwd_entries() if verify else set()
    run = run_script(script, list(args), steps=steps, warmup=warmup, timeout_s=timeout_s,
                     on_event=on_event, stdout=child_stdout, nproc=nproc, seed=seed, scan_data=scan_data,
                     plugins=RUN_PLUGINS)
    if run.profile is None:
        return Analysis(None, None, run.exit_code, run.message)
    profile = run.profile
    previous = archive_previous_run(out)     # an earlier run in --out is kept: runs/<time>/
    paths = write_artefacts(out, profile, report=False)      # keep the measurement first, whatever follows
    # one catalog for the costs and the advisors: the memory advisors judge the fit on the
    # target GPU, which may be one only --catalog names
    from ccprof.hardware import load_catalog

    catalog = _stage("cost", out, lambda: load_catalog(catalog_path))
    profile = _stage("cost", out, lambda: attach_costs(profile, gpu=gpu, catalog=catalog, price_usd=price_usd,
                                                       total_steps=total_steps, epochs=epochs,
                                                       host_speed=host_speed))
    advice_options = dict(advice_options or {})
    if catalog_path:
        advice_options.setdefault("catalog", catalog)
    advice = _stage("advice", out, lambda: advise(profile, **advice_options))
    exit_code, message = run.exit_code, run.message
    if verify and profile.error is None and run.exit_code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        made = sorted(_cwd_entries() - before_run - {out.resolve().name, "__pycache__"})

        def rerun(tweaks: list[str], options: dict[str, dict]) -> Profile | None:
            res = run_script(script, list(args), steps=steps, warmup=warmup, timeout_s=timeout_s,
                             stdout=child_stdout if child_stdout is not None else subprocess.DEVNULL,
                             nproc=nproc, seed=seed, tweak=tweaks, tweak_options=options, plugins=RUN_PLUGINS)
            if res.exit_code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
                raise _StopVerify(res.exit_code)     # Ctrl-C / SIGTERM ends --verify, not one re-run
            return res.profile

        def run_one(tweaks: list[str], options: dict[str, dict]) -> Profile | None:
            prof = rerun(tweaks, options)
            blocked = _blocked_by(prof, made)
            if blocked:
                # the baseline left an output the script refuses to find (run_clm's "Output
                # directory ... already exists"): set the baseline's aside, re-run, put it back
                with _set_aside(blocked, out / "verify-stash", "+".join(tweaks)):
                    prof = rerun(tweaks, options)
                if prof is not None:
                    prof = replace(prof, findings=[*prof.findings, _finding(
                        "verify", f"re-run after setting aside what the baseline wrote: {', '.join(blocked)} "
                                  f"(kept in {out / 'verify-stash'}, restored after)")])
            return prof

        plan = str(verify) == "plan"
        k = None if plan else int(verify)
        try:
            def on_start(picked: list[str], skipped: dict[str, str]) -> None:
                if on_verify is None:
                    return
                if skipped:
                    on_verify("--verify: not measurable here: "
                              + "; ".join(f"{t} ({why})" for t, why in skipped.items()))
                if not plan:
                    on_verify(f"--verify: {len(picked)} re-run(s): {', '.join(picked) or 'none'}")

            advice = _stage("verify", out, lambda: verify_advice(run_one, profile, advice, k=k, plan=plan,
                                                                 on_tweak=(lambda t: on_verify(f"verifying {t} ..."))
                                                                 if on_verify else None, on_start=on_start))
        except _StopVerify as stop:
            exit_code = stop.code
            message = ("--verify stopped by " + ("Ctrl-C" if stop.code == EXIT_INTERRUPTED else "SIGTERM")
                       + "; the baseline's profile, advice and report are written, unverified")
    paths = _stage("report", out, lambda: write_artefacts(out, profile, advice, report=report))
    if previous is not None:
        paths = {**paths, "previous run": previous}
    return Analysis(profile, advice, exit_code, message, paths)


def _cwd_entries() -> set[str]:
    try:
        return set(os.listdir("."))
    except OSError:
        return set()


def _blocked_by(prof: Profile | None, made: list[str]) -> list[str]:
    """Entries the baseline created that a failed re-run's error names as already existing."""
    e = prof.error if prof is not None else None
    if e is None or not made or (prof is not None and prof.steps.measured):
        return []
    text = f"{e.message}\n{e.traceback or ''}".lower()
    if "exist" not in text:
        return []
    return [m for m in made if m.lower() in text]


class _set_aside:
    """Move ``names`` (in the cwd) into ``stash/<label>/`` for a block, then move them back; what
    the block itself wrote under those names is kept next to them as ``<name>.verify-<label>``.
    Nothing is deleted."""

    def __init__(self, names: list[str], stash: Path, label: str):
        self.names, self.dir = list(names), Path(stash) / label

    def __enter__(self) -> "_set_aside":
        self.dir.mkdir(parents=True, exist_ok=True)
        for n in self.names:
            shutil.move(n, str(self.dir / n))
        return self

    def __exit__(self, *exc: Any) -> None:
        for n in self.names:
            if Path(n).exists():
                shutil.move(n, str(self.dir / f"{n}.verify-{self.dir.name}"))
            shutil.move(str(self.dir / n), n)


def _finding(kind: str, message: str):
    return Finding(kind, message)


def profile_model(model: Any, optimizer: Any, batches: Iterable[Any], loss_fn: Callable | None = None,
                  *, steps: int = 10, warmup: int = 3) -> Profile:
    """Profile a training loop that is not a script: same hooks, same Profile.

    Runs ``warmup + 2 + steps`` optimizer steps over ``batches`` (cycled when it runs out):
    for a batch ``(x, y)`` the loss is ``loss_fn(model(x), y)``; for a dict batch it is
    ``loss_fn(model(**batch), batch)``, or ``model(**batch).loss`` with ``loss_fn=None``
    (Hugging Face models); any other batch: ``loss_fn(model(batch), batch)``.

        profile = profile_model(model, torch.optim.AdamW(model.parameters()),
                                loader, torch.nn.functional.cross_entropy, steps=5)
    """
    from ccprof.profiler.hooks import Session, StopProfiling  # here: keeps `import ccprof.api` from loading torch

    # the same run spec as a script's (runner.run_script), without a script
    spec = RunSpec(script="<profile_model>", steps=steps, warmup=warmup)
    session = Session(steps=spec.steps, warmup=spec.warmup).install()
    started = utc_now()
    cache: list[Any] = []

    def cycled():
        for b in batches:
            cache.append(b)
            yield b
        if not cache:
            raise ValueError("profile_model: `batches` yielded nothing")
        yield from itertools.cycle(cache)

    limit = (session.total_steps + 2) * 64   # an upper bound on micro-batches; StopProfiling ends it
    try:
        for batch in itertools.islice(cycled(), limit):
            optimizer.zero_grad(set_to_none=True)
            if isinstance(batch, (tuple, list)) and len(batch) == 2:
                loss = loss_fn(model(batch[0]), batch[1])
            elif isinstance(batch, dict):
                out = model(**batch)
                loss = out.loss if loss_fn is None else loss_fn(out, batch)
            else:
                loss = loss_fn(model(batch), batch)
            loss.backward()
            optimizer.step()
    except StopProfiling:
        pass
    finally:
        session.uninstall()

    profile = session.build_profile(environment=run_environment(spec, started_at=started, finished_at=utc_now()))
    if session.step_index < session.total_steps:
        profile = replace(profile, status="partial", error=ErrorInfo(
            kind="ended", exit_code=4,
            message=f"only {session.step_index} of {session.total_steps} steps ran"))
    return profile
