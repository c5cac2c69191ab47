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
import json
import math
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ccprof import advisors, hardware
from ccprof.applier.verify import RERUN_PLUGINS, VERIFY_SEED, Rerun, cwd_entries, verify_script
from ccprof.artefacts.profile import ErrorInfo, Profile
from ccprof.artefacts.tweaks import options_from_cli
from ccprof.exit_codes import CcprofError, ExitCode
from ccprof.outputs import archive_previous_run
from ccprof.profiler.clock import utc_now
from ccprof.profiler.runner import run_script
from ccprof.profiler.spec import RunSpec, run_environment

__all__ = ["Analysis", "analyze_script", "profile_model", "attach_costs", "advise", "apply",
           "write_artefacts", "StageError", "UsageError", "check_analyze_inputs", "load_artefact", "parse_tweak_options",
           "readvise", "save_output", "gpu_catalog", "gpu_rows", "tweak_rows", "last_two_runs",
           "ApplyOutcome", "apply_to_file", "with_op_seconds", "export_profile", "check_cost_options"]


class StageError(CcprofError):
    """A ccprof stage failed (a ccprof bug, not the user's); the message says what was kept."""

    exit_code = ExitCode.STAGE_FAILED


class UsageError(CcprofError):
    """Bad usage or input, found before anything runs (exit 2 unless it says otherwise)."""


@dataclass
class Analysis:
    profile: Profile | None
    advice: Any = None                       # AdviceSet
    exit_code: ExitCode = ExitCode.OK
    message: str | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    verified: list[Any] = field(default_factory=list)
    catalog: dict[str, Any] | None = None        # the hardware catalog the costs used (for the reports)


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
          argv: list[str] | None = None, sites: Any = ()):
    """The script's source rewritten to keep ``tweaks`` (a codemods ApplyResult); writes nothing.

        result = apply("train.py", ["mixed_precision", "checkpointing"])
        print(result.diff); result.skipped   # tweak -> why, naming the line looked for
        write_script("train_ccprof.py", result.source, like=result.script)   # same encoding/endings

    ``tweak_options``: each tweak's typed options (what advice.json projected,
    ``selection.tweaks_from_advice``); ``options``: by ``--option`` name, over them
    (``{"accumulation_steps": 8}``); ``to_path`` names the new file in the diff; ``argv``: the
    arguments of the run the advice came from (a tweak behind a flag that run left off is not
    "already applied"; ``selection.run_argv``); ``sites``: that run's ``CallSite`` records
    (``selection.run_sites``: where it built its loader, optimizer and models). Raises
    ``ScriptEncodingError`` (a ValueError) for a file Python could not read either,
    ``ScriptSyntaxError`` for one that does not parse, OSError when it cannot be read.
    """
    from ccprof.applier.codemods import apply_source, read_script  # here: keeps `import ccprof.api` from loading libcst

    path = Path(script)
    text = read_script(path)        # its encoding, BOM and line endings: result.script
    result = apply_source(text.source, list(tweaks), options=options, path=str(path),
                          to_path=str(to_path) if to_path is not None else None, like=text,
                          tweak_options=tweak_options, argv=argv, sites=sites)
    return replace(result, script=text)


# what the profiling harness runs besides the script, by name (the profiler imports no
# advisor or applier; DESIGN.md: stages only look down); --verify's re-runs add RERUN_PLUGINS
RUN_PLUGINS = {**RERUN_PLUGINS, "scan": "ccprof.advisors.data_scan:scan_dataset"}


def write_artefacts(out_dir: str | Path, profile: Profile, advice: Any = None,
                    report: bool = True, catalog: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write profile.json, advice.json and report.html under ``out_dir``; return their paths
    (``catalog``: the hardware catalog the report reads what the profile lacks from)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"profile": out / "profile.json"}
    profile.to_json(paths["profile"])
    if advice is not None:
        paths["advice"] = out / "advice.json"
        advice.to_json(paths["advice"])
    if report:
        from ccprof.reports import write_report  # here: keeps `import ccprof.api` from loading jinja2, plotly, rich

        paths["report"] = Path(write_report(profile, advice, out, catalog=catalog))
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
                   on_verify: Callable[[str], None] | None = None, host_speed: float | None = None,
                   dry_run: bool = False, nnodes: int = 1) -> Analysis:
    """Profile ``script``, attach costs, advise and write the artefacts under ``out_dir``.

    ``dry_run``: the script runs on fake tensors (shapes, no storage, no arithmetic): a model
    larger than this machine is planned from its shapes, and nothing is measured. With it,
    ``nproc`` GPUs per node x ``nnodes`` nodes is the world the script sees (one process traces
    rank 0 on a fake process group; its collectives are costed over the catalog's links).

    Raises ``ScriptError`` (ccprof.profiler.runner) for bad input before anything runs.
    A script that fails mid-run still yields the partial profile (``exit_code`` != 0).
    ``verify``: K re-runs the top K applicable tweaks, one fresh process each, "plan" the
    combined plan once (``ccprof.applier.verify.verify_script``); the baseline run is then seeded.
    """
    out = Path(out_dir)
    seed = VERIFY_SEED if verify else None
    before_run = cwd_entries() if verify else set()
    run = run_script(script, list(args), steps=steps, warmup=warmup, timeout_s=timeout_s,
                     on_event=on_event, stdout=child_stdout, nproc=nproc, seed=seed, scan_data=scan_data,
                     plugins=RUN_PLUGINS, dry_run=dry_run, nnodes=nnodes)
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
    advice_options.setdefault("configurations", True)      # the plan across GPUs, counts, memory tweaks
    if catalog_path:
        advice_options.setdefault("catalog", catalog)
    advice = _stage("advice", out, lambda: advise(profile, **advice_options))
    exit_code, message = run.exit_code, run.message
    if verify and profile.error is None and run.exit_code not in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        rerun = Rerun(str(script), tuple(args), steps=steps, warmup=warmup, timeout_s=timeout_s, nproc=nproc,
                      stdout=child_stdout)
        outcome = _stage("verify", out, lambda: verify_script(rerun, profile, advice, verify, out_dir=out,
                                                              before_baseline=before_run, on_verify=on_verify))
        advice = outcome.advice
        if outcome.stopped is not None:
            exit_code, message = outcome.stopped, outcome.message
        elif advice.verification is not None and advice.verification.all_failed and exit_code == ExitCode.OK:
            exit_code = ExitCode.VERIFY_FAILED       # the baseline was measured; every re-run failed
    paths = _stage("report", out, lambda: write_artefacts(out, profile, advice, report=report, catalog=catalog))
    if previous is not None:
        paths = {**paths, "previous run": previous}
    return Analysis(profile, advice, exit_code, message, paths, catalog=catalog)


def run_launched(script: str | Path, args: Iterable[str] = (), *, steps: int = 10, warmup: int = 3,
                 out_dir: str | Path = "ccprof-report", gpu: str | None = None,
                 catalog_path: str | None = None, price_usd: float | None = None,
                 total_steps: int | None = None, epochs: float | None = None,
                 report: bool = True) -> Analysis:
    """``ccprof run``: profile this rank of a job a launcher started (torchrun, srun, accelerate
    launch) in this process; after the measured steps the ranks' profiles meet on rank 0 through
    ``torch.distributed`` (``ccprof.profiler.launched``), which costs, advises and writes the
    artefacts under ``out_dir`` with a row per rank. Returns the Analysis on rank 0; on the other
    ranks (they write nothing: no ``paths``) one with the rank's exit code and, when it failed,
    its own profile (its error). A run that fails before the end of its measured steps is
    not gathered (the other ranks may be inside a collective): rank 0 writes its own profile.
    """
    import os
    import shutil
    import tempfile

    from ccprof.outputs import check_out_dir
    from ccprof.profiler import harness  # here: the harness imports torch, only on this path
    from ccprof.profiler.launched import gather_profiles, launch_from_env, merge_profiles
    from ccprof.profiler.runner import check_script

    check_script(script)
    _check_cost_options(gpu, catalog_path, price_usd)
    launch = launch_from_env()
    if launch.rank == 0:
        check_out_dir(out_dir)      # the other ranks write nothing, not even the folder
    scratch = tempfile.mkdtemp(prefix="ccprof-run-")      # this node's own disk, this rank's own folder
    spec = RunSpec(script=str(script), args=list(args), steps=steps, warmup=warmup,
                   out=os.path.join(scratch, "profile.json"))
    done: dict[str, Any] = {}

    def finish(profile: Profile) -> None:
        out = Path(out_dir)
        write_artefacts(out, profile, report=False)      # keep the measurement first, whatever follows
        catalog = _stage("cost", out, lambda: hardware.load_catalog(catalog_path))
        profile = _stage("cost", out, lambda: attach_costs(profile, gpu=gpu, catalog=catalog, price_usd=price_usd,
                                                           total_steps=total_steps, epochs=epochs))
        options: dict[str, Any] = {"catalog": catalog} if catalog_path else {}
        advice = _stage("advice", out, lambda: advise(profile, **options))
        paths = _stage("report", out, lambda: write_artefacts(out, profile, advice, report=report, catalog=catalog))
        code = profile.error.exit_code if profile.error is not None else ExitCode.OK
        done["analysis"] = Analysis(profile, advice, code, profile.error.message if profile.error else None,
                                    paths, catalog=catalog)

    def on_final(profile: Profile) -> None:
        try:
            ranked = gather_profiles(profile, launch)
            if ranked is not None:
                finish(merge_profiles(ranked))
        except BaseException as exc:      # raised into the script it would read as the script's error
            done["error"] = exc
        finally:        # the script may be ended at its next module call (harness): clean up now
            shutil.rmtree(scratch, ignore_errors=True)

    try:
        code = harness.run(spec, on_final=on_final)
        if "error" in done:
            raise done["error"]
        if "analysis" in done:
            return done["analysis"]
        mine = f"{spec.out}.rank{launch.rank}" if "WORLD_SIZE" in os.environ else spec.out
        if launch.rank != 0:            # its own profile (its error, if any) for its own stderr; no files
            own = Profile.from_json(Path(mine)) if code and os.path.exists(mine) else None
            return Analysis(own, None, code)
        if not os.path.exists(mine):
            return Analysis(None, None, code or ExitCode.SCRIPT_ERROR, "rank 0 wrote no profile")
        finish(merge_profiles([(Profile.from_json(Path(mine)), launch)]))
        return done["analysis"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def profile_model(model: Any, optimizer: Any, batches: Iterable[Any], loss_fn: Callable | None = None,
                  *, steps: int = 10, warmup: int = 3, gpu: str | None = None) -> Profile:
    """Profile a training loop that is not a script: same hooks, same Profile.

    Runs ``warmup + 3 + steps`` optimizer steps over ``batches`` (cycled when it runs out):
    for a batch ``(x, y)`` the loss is ``loss_fn(model(x), y)``; for a dict batch it is
    ``loss_fn(model(**batch), batch)``, or ``model(**batch).loss`` with ``loss_fn=None``
    (Hugging Face models); any other batch: ``loss_fn(model(batch), batch)``.

        profile = profile_model(model, torch.optim.AdamW(model.parameters()),
                                loader, torch.nn.functional.cross_entropy, steps=5, gpu="h100-sxm")

    With ``gpu`` (a catalog id, ``ccprof gpus``) the profile comes back costed for it
    (``projection`` and ``cost``, as ``attach_costs`` fills them); without, as measured. To profile
    a loop of your own instead of this one, use ``ccprof.profile()``.
    """
    from ccprof.profiler.hooks import Session, StopProfiling  # here: keeps `import ccprof.api` from loading torch

    # the same run spec as a script's (runner.run_script), without a script
    spec = RunSpec(script="<profile_model>", steps=steps, warmup=warmup)
    session = Session(steps=spec.steps, warmup=spec.warmup)
    session.watch_inputs = False        # the batches repeat because this loop cycles them, not the data
    session.install()
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
            kind="ended", exit_code=ExitCode.NOTHING_MEASURED,
            message=f"only {session.step_index} of {session.total_steps} steps ran"))
    if gpu is not None:
        profile = attach_costs(profile, gpu=gpu)
    return profile


# ---------------------------------------------------------------------------- what the commands need
# Each raises a CcprofError (UsageError, OutputError, ScriptError) whose message is in the
# user's terms and whose exit_code the CLI exits with; none prints.
def _check_cost_options(gpu: str | None, catalog_path: str | None, price_usd: float | None,
                        catalog: dict[str, Any] | None = None, nnodes: int = 1) -> None:
    """Bad --gpu/--catalog/--price fail in a second, before the script runs for minutes
    (``catalog``: the one already loaded from ``catalog_path``); so does a --gpu with no network
    figure for a dry run over ``nnodes`` > 1 nodes."""
    try:
        if catalog is None:
            catalog = hardware.load_catalog(catalog_path)
        if gpu is not None:
            spec = catalog[hardware.resolve_gpu(gpu, catalog)]
            if nnodes > 1 and not spec.network_bytes_per_s_per_gpu:
                raise UsageError(f"--gpu {gpu}: --nnodes {nnodes} needs the network between nodes, and the catalog "
                                 f"has no network figure for {spec.id}; add gpus_per_node and network_gbit_s_per_gpu "
                                 "for it with --catalog FILE, or pick another --gpu (`ccprof gpus --json` shows "
                                 "each GPU's network)")
    except (hardware.CatalogError, ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if price_usd is not None and not (math.isfinite(price_usd) and price_usd > 0):
        raise UsageError(f"--price must be a positive number of USD per GPU-hour, not {price_usd:g}")


def check_cost_options(gpu: str | None = None, price_usd: float | None = None) -> None:
    """A ``UsageError`` for a GPU id the catalog does not have or a price that is not a positive
    number, said before a measurement starts (``ccprof.profile()``, the Trainer callbacks)."""
    _check_cost_options(gpu, None, price_usd)


def _check_history(history: str | None) -> None:
    """A --history that cannot be read fails now, not after the whole run."""
    if not history:
        return
    from ccprof.advisors.history import HistoryError, load_history

    try:
        load_history(history)
    except HistoryError as exc:
        raise UsageError(f"--history {history}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise UsageError(f"--history {history}: cannot read it as trainer_state.json, a step,val_loss CSV or a "
                         f"TensorBoard log dir ({type(exc).__name__}: {exc})") from None


def check_analyze_inputs(script: str | Path, *, gpu: str | None = None, catalog_path: str | None = None,
                         price_usd: float | None = None, history: str | None = None,
                         verify: str | None = None, out_dir: str | Path = "ccprof-report",
                         scan_data: bool = False, dry_run: bool = False, nproc: int = 1,
                         nnodes: int = 1) -> None:
    """Everything ``analyze`` can refuse before the script runs: the script (ScriptError, exit 2
    or 3), --gpu/--catalog/--price, --history, --verify, --scan-data without its extra, what
    --dry-run cannot be combined with, and the --out folder (created here)."""
    from ccprof.applier.verify import parse_request
    from ccprof.extras import require
    from ccprof.outputs import check_out_dir
    from ccprof.profiler.runner import check_script

    check_script(script)
    if dry_run:
        for given, flag, why in ((verify is not None, "--verify", "re-runs measure the tweaks, a dry run measures nothing"),
                                 (scan_data, "--scan-data", "the dataset's values are not read in a dry run")):
            if given:
                raise UsageError(f"--dry-run cannot be combined with {flag}: {why}")
    elif nnodes > 1:
        raise UsageError("--nnodes needs --dry-run: a measured run on several nodes is launched by torchrun "
                         "(torchrun --nnodes M --nproc-per-node N ... -m ccprof run train.py)")
    if scan_data:
        require("dedup", "--scan-data")
    _check_cost_options(gpu, catalog_path, price_usd, nnodes=nnodes if dry_run else 1)
    _check_history(history)
    if verify is not None:
        try:
            parse_request(verify)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    check_out_dir(out_dir)


def load_artefact(kind: str, path: str | Path):
    """The Profile (``kind="profile"``) or AdviceSet (``"advice"``) in a JSON file; UsageError
    saying what to do next when it cannot be read."""
    from ccprof.artefacts.advice import AdviceSet

    cls = Profile if kind == "profile" else AdviceSet
    try:
        return cls.from_json(Path(path))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file (ccprof analyze writes ccprof-report/{kind}.json)") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder; give its {kind}.json") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except RecursionError:
        raise UsageError(f"{path}: not a ccprof {kind} file (JSON nested too deeply)") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a ccprof {kind} file ({exc})") from None


def parse_tweak_options(texts: Iterable[str]) -> dict[str, Any]:
    """Per tweak, the typed options ``--option KEY=VALUE`` texts set; UsageError naming a bad one."""
    try:
        return options_from_cli(list(texts))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def readvise(profile_path: str | Path, *, gpu: str | None = None, total_steps: int | None = None,
             price_usd: float | None = None, history: str | None = None, lora_rank: int | None = None,
             finetune_budget_frac: float | None = None, host_speed: float | None = None,
             options: list[str] | tuple[str, ...] = (), catalog_path: str | None = None,
             budget_usd: float | None = None, deadline_h: float | None = None):
    """``ccprof advise``: the saved profile, re-costed when a cost option is given, and its advice
    again, with the plan across configurations (``budget_usd``/``deadline_h`` pick within them). ``options``: ``--option KEY=VALUE`` texts, the tweak options the advisors project with
    (the same keys ``ccprof apply --option`` takes; ``lora_rank`` and ``finetune_budget_frac`` are
    two of them). Returns ``(profile, advice_set)``; writes nothing."""
    profile = load_artefact("profile", profile_path)
    _check_history(history)
    catalog = gpu_catalog(catalog_path)
    if gpu is None and profile.cost is not None and profile.cost.gpu and profile.cost.gpu not in catalog:
        raise UsageError(f"{profile_path} was costed on {profile.cost.gpu!r}, which is not in the GPU catalog "
                         "now: pass the --catalog file it was analyzed with, or --gpu ID")
    if gpu or total_steps or price_usd is not None or host_speed is not None or catalog_path:
        _check_cost_options(gpu, catalog_path, price_usd, catalog)
        try:
            # what the user does not name now stays as the profile was costed (hardware.cost_for:
            # the GPU, its price, a run size given then)
            profile = hardware.attach(profile, gpu=gpu, catalog=catalog, price_usd=price_usd,
                                      total_steps=total_steps, host_speed=host_speed)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    texts = [*([f"lora_rank={lora_rank}"] if lora_rank is not None else []),
             *([f"finetune_budget={finetune_budget_frac}"] if finetune_budget_frac is not None else []), *options]
    tweak_options = parse_tweak_options(texts)
    ctx = advisors.AdviceContext(history=history, options=tweak_options, configurations=True,
                                 budget_usd=budget_usd, deadline_h=deadline_h,
                                 **({"catalog": catalog} if catalog_path else {}))
    return profile, advisors.advise(profile, ctx)


def costing_basis(profile: Profile, *, gpu: str | None = None, price_usd: float | None = None,
                  total_steps: int | None = None) -> str:
    """``ccprof advise``'s one line on what the dollars stand on, and which of it was kept from the
    saved profile: 'Priced on NVIDIA L4 at $5.00/GPU-hour (--price), 1,234 steps (--total-steps
    1234); kept from the profile: GPU, price, run size.'"""
    c = profile.cost
    if c is None:
        return "Not priced: " + str(profile.reasons.get("cost", "the profile has no cost"))
    kept = [what for what, given in (("GPU", gpu), ("price", price_usd), ("run size", total_steps)) if given is None]
    steps = f"{c.run_steps:,} steps ({c.run_steps_source})" if c.run_steps else f"run size {c.run_steps_source}"
    label = (c.detail or {}).get("label") or f"{c.gpu} at ${c.usd_per_hour:.2f}/GPU-hour"
    tail = (f"; kept from the profile: {', '.join(kept)} (--gpu, --price, --total-steps change them)"
            if kept else "")
    return f"Priced on {label}, {steps}{tail}."


def save_output(out: str | Path, content: Any, inputs: list, force: bool, *, option: str = "-o",
                check_only: bool = False) -> Path | None:
    """Write ``content`` (text, or a function writing the file) to ``out`` under the one output
    policy (``ccprof.outputs``: never over an input; over a file ccprof did not write only with
    ``force``, after a backup). Returns the backup made, or None; ``check_only``: refuse now,
    write nothing. Raises OutputError."""
    from ccprof.outputs import check_output, write_output

    backup = check_output(out, [p for p in inputs if p], force=force, option=option)
    if check_only:
        return None
    return write_output(out, content, backup, option=option)


def with_op_seconds(profile: Profile, *, gpu: str | None = None, catalog_path: str | None = None,
                    source: str | Path = "the profile") -> tuple[Profile, str]:
    """``(profile, gpu_id)`` where the profile holds each op row's and module's projected seconds
    on ``gpu`` (an id, prefix or name; default the GPU it was costed on): as saved when it holds
    them, else costed again by the hardware stage (``hardware.attach``, the saved price and run
    size kept). UsageError when there is nothing to project or the GPU is unknown."""
    from ccprof.artefacts.frames import projection_for

    catalog = None
    if gpu:
        catalog = gpu_catalog(catalog_path)
        try:
            gpu = hardware.resolve_gpu(gpu, catalog)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        return profile, projection_for(profile, gpu)[0]
    except ValueError:
        pass                 # not costed per op for that GPU (an older profile, another GPU): cost it now
    try:
        profile = hardware.attach(profile, gpu=gpu, catalog=catalog or gpu_catalog(catalog_path))
        return profile, projection_for(profile, gpu)[0]
    except ValueError as exc:
        why = profile.reasons.get("cost") or exc
        raise UsageError(f"{source}: no projected step to export ({why})") from None


def export_profile(profile_path: str | Path, *, csv_dir: str | Path | None = None,
                   parquet_dir: str | Path | None = None, trace_path: str | Path | None = None,
                   gpu: str | None = None, catalog_path: str | None = None,
                   force: bool = False) -> list[tuple[Path, Path | None]]:
    """``ccprof export``: the saved profile's op rows and modules with their projected seconds as
    ``ops.csv``/``modules.csv`` under ``csv_dir`` (``.parquet`` under ``parquet_dir``), and its
    projected GPU step as a Chrome trace-event JSON at ``trace_path`` (``reports.export.step_trace``).

    Every output is checked under the one output policy before any is written (never over an
    input; over a file ccprof did not write only with ``force``, after a backup). Parquet needs
    pyarrow or fastparquet: without either, a UsageError (exit 2) naming the install command
    before anything is read. Returns each path written with the backup made of what it replaced
    (None when none was), in that order.

    Example: ``export_profile("ccprof-report/profile.json", csv_dir="out", trace_path="step.json")``.
    """
    from ccprof.reports.export import parquet_engine, step_trace

    if csv_dir is None and parquet_dir is None and trace_path is None:
        raise UsageError("nothing to export: give --csv DIR, --parquet DIR or --trace FILE")
    engine = parquet_engine() if parquet_dir is not None else None
    if parquet_dir is not None and engine is None:
        raise UsageError("--parquet needs pyarrow or fastparquet, which is not installed: pip install pyarrow")
    for option, folder in (("--csv", csv_dir), ("--parquet", parquet_dir)):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise UsageError(f"{option} {folder}: is a file; give a folder")
    profile, gid = with_op_seconds(load_artefact("profile", profile_path), gpu=gpu, catalog_path=catalog_path,
                                   source=profile_path)
    outputs: list[tuple[Path, Any, str]] = []
    if csv_dir is not None or parquet_dir is not None:
        frames = {"ops": profile.ops_frame(gid), "modules": profile.modules_frame(gid)}
        for name, frame in frames.items():
            if csv_dir is not None:
                outputs.append((Path(csv_dir) / f"{name}.csv",
                                lambda path, f=frame: f.to_csv(path, index=False), "--csv"))
            if parquet_dir is not None:
                outputs.append((Path(parquet_dir) / f"{name}.parquet",
                                lambda path, f=frame: f.to_parquet(path, index=False, engine=engine), "--parquet"))
    if trace_path is not None:
        text = json.dumps(step_trace(profile, gid), separators=(",", ":"))
        outputs.append((Path(trace_path), text, "--trace"))
    for out, _, option in outputs:
        save_output(out, None, [profile_path], force, option=option, check_only=True)
    return [(out, save_output(out, content, [profile_path], force, option=option)) for out, content, option in outputs]


def gpu_catalog(catalog_path: str | None = None) -> dict[str, Any]:
    """The hardware catalog (built-in, the user's file, ``catalog_path``) by GPU id; UsageError
    naming the file at fault."""
    try:
        return hardware.load_catalog(catalog_path)
    except hardware.CatalogError as exc:
        raise UsageError(str(exc)) from None


def gpu_rows(catalog_path: str | None = None) -> list[dict[str, Any]]:
    """``ccprof gpus``: the catalog as JSON-able rows, and nothing else."""
    return hardware.catalog_rows(gpu_catalog(catalog_path))


def tweak_rows() -> list[dict[str, Any]]:
    """``ccprof tweaks``: every tweak of the catalog as a JSON-able row."""
    from ccprof.artefacts.tweaks import TWEAKS, describe

    return [describe(t) for t in TWEAKS]


def last_two_runs(run_dir: str | Path) -> tuple[Path, Path]:
    """``ccprof compare`` with no profiles: the two newest runs of ``run_dir`` (OutputError)."""
    from ccprof.outputs import last_two_runs as _last_two

    return _last_two(run_dir)


@dataclass
class ApplyOutcome:
    """What ``apply_to_file`` did: the codemods' ``ApplyResult``, where it wrote (or would
    have), the backup it kept, and per tweak considered what became of it
    (``selection.TweakOutcome``: written, already_present, refused or skipped, with the reason),
    in the ranking's order. ``exit_code``: ``ExitCode.OK`` when every requested tweak is written
    or already in the script, ``ExitCode.NOT_ALL_APPLIED`` when one could not be written."""
    result: Any
    out_path: Path
    backup: Path | None = None
    tweaks: list[Any] = field(default_factory=list)

    @property
    def written(self) -> bool:
        """A file was written (at least one tweak changed the script)."""
        return bool(self.result.applied)

    @property
    def command(self) -> list[str] | None:
        """What to run for the tweaks to take effect when the run's own arguments would not do
        (an option the run sets that the rewrite changes, a flag to turn on): ``["python",
        "train_ccprof.py", "--batch_size=32", ...]``; None when ``python <output>`` with the run's
        arguments does."""
        argv = getattr(self.result, "command", None)
        if argv is None:
            return None
        script = self.out_path if self.written else Path(self.result.script.path) \
            if getattr(self.result.script, "path", None) else self.out_path
        return ["python", str(script), *argv]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if all(o.ok for o in self.tweaks) else ExitCode.NOT_ALL_APPLIED

    def to_dict(self) -> dict[str, Any]:
        """``ccprof apply --json``: the output path, whether it was written, the exit code, each
        tweak's outcome and the diff."""
        return {"output": str(self.out_path), "written": self.written, "command": self.command,
                "backup": str(self.backup) if self.backup else None, "exit_code": int(self.exit_code),
                "tweaks": [o.to_dict() for o in self.tweaks], "diff": self.result.diff}


def apply_to_file(script: str | Path, tweaks: Iterable[str] = (), *, advice_path: str | None = None,
                  top: int | None = None, option_texts: Iterable[str] = (), output: str | None = None,
                  in_place: bool = False, force: bool = False) -> ApplyOutcome:
    """``ccprof apply``: pick the tweaks (``-t``, or the top ``top`` of advice.json's ranking,
    ``selection.select_tweaks``), rewrite the script and write the result under the one output
    policy (``--in-place`` and ``--force`` keep a ``.bak``). Writes only when a tweak applied;
    a tweak that could not be written does not stop the others (``ApplyOutcome.tweaks`` says
    why, ``ApplyOutcome.exit_code`` is then ``ExitCode.NOT_ALL_APPLIED``).

    Example: ``apply_to_file("train.py", advice_path="ccprof-report/advice.json", top=2).out_path``
    -> ``train_ccprof.py``.
    """
    from ccprof.applier.codemods import (  # here: keeps `import ccprof.api` from loading libcst
        ScriptSyntaxError,
        write_script,
    )
    from ccprof.applier.codemods.selection import (
        default_output_path,
        parse_option,
        run_argv,
        run_sites,
        select_tweaks,
        tweak_outcomes,
    )
    from ccprof.artefacts.tweaks import options_for
    from ccprof.outputs import check_output, write_output

    src = Path(script)
    if not src.is_file():
        raise UsageError(f"{script}: no such file")
    advice_set = load_artefact("advice", advice_path) if advice_path else None
    try:
        sel = select_tweaks(list(tweaks), advice_set, top)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    per_tweak = dict(sel.options)
    for text in option_texts:
        try:
            tweak, name, value = parse_option(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if tweak not in sel.tweaks:
            raise UsageError(f"--option {text}: that is an option of {tweak}, which is not being applied "
                             f"(add -t {tweak})")
        per_tweak[tweak] = options_for(tweak, per_tweak.get(tweak)).merged({name: value})   # --option wins
    if in_place and output:
        raise UsageError("--in-place and -o/--output exclude each other")
    out_path = src if in_place else Path(output) if output else default_output_path(src)
    if not in_place and out_path.resolve() == src.resolve():
        if not force:
            raise UsageError(f"-o {output}: that is the script itself; pass --in-place (a .bak copy is kept) "
                             "or write elsewhere")
        in_place = True        # --force over the script: as --in-place, with its backup
    backup = check_output(out_path, [] if in_place else [src], force=force, in_place=in_place,
                          make_parents=False)
    try:
        result = apply(src, sel.tweaks, tweak_options=per_tweak, to_path=out_path,
                       argv=run_argv(advice_path) if advice_path else None,    # the advice's run: its flags
                       sites=run_sites(advice_path) if advice_path else ())    # ... and where it took its values
    except ScriptSyntaxError as exc:
        raise UsageError(f"{exc.path}:{exc.line}: syntax error, fix the script first "
                         f"({exc.message.splitlines()[0]})", ExitCode.SCRIPT_ERROR) from None
    except ValueError as exc:       # ScriptEncodingError names the file and the encoding tried
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{script}: cannot read it ({exc.strerror or exc})") from None
    made = None
    if result.applied:
        made = write_output(out_path, lambda p: write_script(p, result.source, like=result.script), backup)
    return ApplyOutcome(result, out_path, made, tweak_outcomes(sel, result))
