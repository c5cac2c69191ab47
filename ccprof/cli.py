"""ccprof's command line: thin click commands that call the public API and render.

Exit codes (README's table says what is kept on each): 0 ok; 1 a ccprof stage failed after the
measurement; 2 bad usage or input, found before the script runs; 3 the user's script failed
(syntax error, exception, a rank under --nproc, a signal); 4 nothing to measure (ended, never
trained, timed out); 5 every ``--verify`` re-run failed; 130 Ctrl-C; 143 SIGTERM.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import click

from ccprof import __version__, api, hardware
from ccprof.advisors import AdviceContext, advise
from ccprof.advisors.history import HistoryError, load_history
from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS, describe, options_for, options_from_cli
from ccprof.hardware import CatalogError, attach, catalog_rows, load_catalog, user_catalog_path
from ccprof.outputs import OutputError, backup_path, check_out_dir, check_output, keep_backup, last_two_runs
from ccprof.profiler.runner import EXIT_VERIFY_FAILED, ScriptError, check_script


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccprof")
def cli() -> None:
    """Cost profiler and advisor for PyTorch training."""


def _fail(message: str, code: int) -> None:
    click.echo(f"ccprof: {message}", err=True)
    sys.exit(code)


def _check_cost_options(gpu: str | None, catalog_path: str | None, price_usd: float | None) -> None:
    """Bad --gpu/--catalog/--price fail in a second, before the script runs for minutes."""
    try:
        catalog = hardware.load_catalog(catalog_path)
        if gpu is not None:
            hardware.resolve_gpu(gpu, catalog)
    except (hardware.CatalogError, ValueError, OSError) as exc:
        _fail(str(exc), 2)
    if price_usd is not None and not (math.isfinite(price_usd) and price_usd > 0):
        _fail(f"--price must be a positive number of USD per GPU-hour, not {price_usd:g}", 2)


def _check_history(history: str | None) -> None:
    """A --history that cannot be read fails now, not after the whole run."""
    if not history:
        return

    try:
        load_history(history)
    except HistoryError as exc:
        _fail(f"--history {history}: {exc}", 2)
    except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        _fail(f"--history {history}: cannot read it as trainer_state.json, a step,val_loss CSV or a "
              f"TensorBoard log dir ({type(exc).__name__}: {exc})", 2)


def _positive(name: str):
    """A click callback: a finite number > 0 (click's FloatRange lets nan and inf through)."""
    def check(ctx, param, value):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise click.BadParameter(f"must be a positive number, not {value:g}", param_hint=name)
        return value
    return check


@cli.command("analyze", context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(dir_okay=True, path_type=str))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--steps", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Steps to measure (after warm-up and the FLOP/memory steps).")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0, 10_000),
              help="Unmeasured warm-up steps (at least 1 is always run).")
@click.option("--out", "out_dir", default="ccprof-report", show_default=True,
              type=click.Path(file_okay=False), help="Where profile.json, advice.json, report.html go.")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float,
              callback=_positive("--timeout"), help="Seconds for the whole run before it is stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--gpu", default=None, help="Target GPU id for projections and dollars (see `ccprof gpus`).")
@click.option("--catalog", "catalog_path", default=None, type=click.Path(dir_okay=False),
              help="TOML file with extra GPUs or price overrides.")
@click.option("--price", "price_usd", default=None, type=float, help="USD per GPU-hour for the target GPU.")
@click.option("--total-steps", default=None, type=click.IntRange(1), help="Planned run size in steps.")
@click.option("--epochs", default=None, type=float, callback=_positive("--epochs"),
              help="Planned run size in epochs.")
@click.option("--history", default=None, type=click.Path(exists=True),
              help="Loss history for early stopping: trainer_state.json, a CSV, or a TensorBoard log dir.")
@click.option("--scan-data", is_flag=True,
              help="After the measured steps, fingerprint the whole map-style dataset for duplicates.")
@click.option("--verify", default=None, metavar="K|plan",
              help="Re-run with each of the top K tweaks applied (or the whole plan) and measure them.")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Processes under torchrun (DDP/FSDP scripts); each rank profiles itself, rank 0 merges.")
@click.option("--host-speed", default=None, type=float, callback=_positive("--host-speed"),
              help="The GPU machine's host CPU against ccprof's reference host (an AMD EPYC Zen 3 "
                   "core): 1.5 = 1.5x as fast. Host work (dispatch, Python, batches) is priced on it.")
def analyze_cmd(script: str, script_args: tuple[str, ...], steps: int, warmup: int, out_dir: str,
                timeout_s: float, as_json: bool, quiet: bool, gpu: str | None, catalog_path: str | None,
                price_usd: float | None, total_steps: int | None, epochs: float | None,
                history: str | None, scan_data: bool, verify: str | None, nproc: int,
                host_speed: float | None) -> None:
    """Profile SCRIPT for a few steps, advise, and write a cost report.

    Arguments after `--` go to the script: ccprof analyze train.py -- --lr 3e-4
    """
    args = list(script_args)
    if args and args[0] == "--":
        args = args[1:]
    try:
        check_script(script)
    except ScriptError as exc:
        _fail(str(exc), exc.exit_code)
    _check_cost_options(gpu, catalog_path, price_usd)
    _check_history(history)
    if verify is not None and verify != "plan" and not (verify.isdigit() and int(verify) > 0):
        _fail(f"--verify takes a number of tweaks (e.g. 3) or 'plan', not {verify!r}", 2)

    try:
        check_out_dir(out_dir)
    except OutputError as exc:
        _fail(str(exc), 2)
    from rich.console import Console  # here: rich loads only on this path
    from rich.markup import escape  # here: rich loads only on this path

    err = Console(stderr=True)
    progress = None
    on_event = None
    if not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # here: rich loads only on this path

        progress = Progress(TextColumn("[bold]ccprof[/] {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=err, transient=True)
        task = progress.add_task(f"profiling {escape(script)}", total=None, info="")

        def on_event(event: dict) -> None:
            if event.get("event") == "step":
                loss = event.get("loss")
                info = f"step {event['step_s'] * 1e3:.1f} ms" + (f", loss {loss:.4g}" if loss is not None else "")
                progress.update(task, completed=event["done"], total=event["total"], info=info)
            elif event.get("event") == "scan":
                progress.update(task, description=f"scanning the dataset of {escape(script)}",
                                completed=event["done"], total=event["total"], info="")

        progress.start()
    advice_options = {"history": history} if history else {}

    def on_verify(what: str) -> None:
        if not quiet:
            err.print(f"[bold]ccprof[/] {escape(what)}")
    try:
        result = api.analyze_script(
            script, args, steps=steps, warmup=warmup, out_dir=out_dir, timeout_s=timeout_s, gpu=gpu,
            catalog_path=catalog_path, price_usd=price_usd, total_steps=total_steps, epochs=epochs,
            advice_options=advice_options, on_event=on_event,
            child_stdout=sys.stderr if as_json else None, nproc=nproc, scan_data=scan_data, verify=verify,
            on_verify=on_verify, host_speed=host_speed)
    except ScriptError as exc:
        _fail(str(exc), exc.exit_code)
    except api.StageError as exc:
        if progress:
            progress.stop()
        _fail(str(exc), 1)
    finally:
        if progress:
            progress.stop()
    if result.profile is None:
        _fail(result.message or "nothing was measured", result.exit_code)
    if as_json:
        click.echo(result.profile.to_json())
    error = result.profile.error
    if error is not None:
        if error.traceback:
            click.echo(error.traceback.rstrip(), err=True)
        click.echo(f"ccprof: {error.message}", err=True)
        click.echo(f"ccprof: what was measured is in {result.paths.get('profile')}", err=True)
    elif result.exit_code and result.message:       # --verify stopped by Ctrl-C / SIGTERM
        click.echo(f"ccprof: {result.message}", err=True)
    if not quiet and not as_json:
        from ccprof.reports import terminal_summary  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich

        terminal_summary(result.profile, result.advice, err)
        for name in ("profile", "advice", "report", "previous run"):
            if name in result.paths:
                err.print(f"[dim]{name}:[/] {escape(str(result.paths[name]))}")
    ver = result.advice.verification if result.advice is not None else None
    if ver is not None:
        for tweak, why in ver.not_measurable.items():
            err.print(f"[yellow]ccprof: --verify cannot measure {tweak}:[/] {escape(why)}", soft_wrap=True)
        for tweak, line in ver.failed.items():
            err.print(f"[red]ccprof: --verify re-run with {tweak} failed:[/] {escape(line)}", soft_wrap=True)
        if ver.all_failed and result.exit_code == 0:
            err.print(f"[red]ccprof: every --verify re-run failed ({', '.join(ver.failed)}); exit code "
                      f"{EXIT_VERIFY_FAILED}[/]", soft_wrap=True)
            sys.exit(EXIT_VERIFY_FAILED)
    sys.exit(result.exit_code)


@cli.command("tweaks")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def tweaks_cmd(as_json: bool) -> None:
    """The tweak catalog: every id ccprof advises on, what can apply it, and its options."""
    rows = [describe(t) for t in TWEAKS]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console  # here: rich loads only on this path
    from rich.markup import escape  # here: rich loads only on this path
    from rich.table import Table  # here: rich loads only on this path

    table = Table(title="ccprof tweaks")
    for col in ("id", "title", "risk", "--verify", "apply", "options"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["title"], r["risk"], "yes" if r["runtime"] else "no",
                      "yes" if r["codemod"] else "no", escape(", ".join(o["name"] for o in r["options"])) or "-")
    console = Console()
    console.print(table)
    console.print("Set an option with `ccprof apply --option <id>.<option>=VALUE` (short keys such as "
                  "accumulation_steps=8: `ccprof tweaks --json`).")


@cli.command("gpus")
@click.option("--catalog", "catalog_path", default=None, type=click.Path(dir_okay=False),
              help="TOML file with extra GPUs or price overrides (merged over the built-in catalog).")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def gpus_cmd(catalog_path: str | None, as_json: bool) -> None:
    """The hardware catalog: dense peak TFLOP/s, memory, bandwidth, $/GPU-hour with source and date."""
    try:
        rows = catalog_rows(load_catalog(catalog_path))
    except CatalogError as exc:
        _fail(str(exc), 2)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console  # here: rich loads only on this path
    from rich.table import Table  # here: rich loads only on this path

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:,.4g}"

    table = Table(title="ccprof gpus (dense peaks, TFLOP/s)")
    for col in ("id", "name", "mem GB", "GB/s", "fp32", "tf32", "bf16", "fp16", "fp8", "$/h", "price date",
                "price source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        tf = r["tflops"]
        price = ("-" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:.2f}") + ("*" if "usd_per_hour" in r["unverified"] else "")
        table.add_row(r["id"], r["name"], num(r["memory_gb"]), num(r["bandwidth_gb_s"]),
                      *(num(tf.get(k)) for k in ("fp32", "tf32", "bf16", "fp16", "fp8")),
                      price, r["price_date"], r["price_source"])
    console = Console()
    console.print(table)
    user = user_catalog_path()
    console.print("[dim]* price from a third party, not re-checked. Override prices with --catalog FILE, "
                  f"$CCPROF_CATALOG or ~/.config/ccprof/catalog.toml (in use: {user or 'none'}), "
                  "or --price USD on analyze.[/]")


def _write_output(out, text: str, inputs: list, force: bool, *, option: str = "-o",
                  check_only: bool = False) -> None:
    """Write ``text`` to ``out`` under ccprof.outputs' rules (not over an input; not over a file
    ccprof did not write unless --force, and then after a .bak copy), or exit 2 saying why."""

    try:
        backup = check_output(out, [p for p in inputs if p], force=force, option=option)
    except OutputError as exc:
        _fail(str(exc), 2)
    if check_only:
        return
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if keep_backup(out, backup):
            click.echo(f"backup: {backup}", err=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"{option} {out}: cannot write it ({exc.strerror or exc})", 2)


def _load_artefact(kind: str, path: str):
    """Profile or AdviceSet from a JSON file, or exit 2 with what to do next."""
    cls = Profile if kind == "profile" else AdviceSet
    try:
        return cls.from_json(Path(path))
    except FileNotFoundError:
        _fail(f"{path}: no such file (ccprof analyze writes ccprof-report/{kind}.json)", 2)
    except IsADirectoryError:
        _fail(f"{path}: is a folder; give its {kind}.json", 2)
    except OSError as exc:
        _fail(f"{path}: cannot read it ({exc.strerror or exc})", 2)
    except RecursionError:
        _fail(f"{path}: not a ccprof {kind} file (JSON nested too deeply)", 2)
    except (ValueError, json.JSONDecodeError, TypeError) as exc:
        _fail(f"{path}: not a ccprof {kind} file ({exc})", 2)


@cli.command("advise")
@click.argument("profile_path", metavar="PROFILE_JSON", type=click.Path(dir_okay=False))
@click.option("--gpu", default=None, help="Target catalog GPU id (default: the profile's cost GPU).")
@click.option("--total-steps", type=click.IntRange(1), default=None, help="Planned run size in optimizer steps.")
@click.option("--price", "price_usd", type=float, default=None, help="Override the target's USD per GPU-hour.")
@click.option("--history", type=click.Path(exists=True), default=None,
              help="Validation-loss history: trainer_state.json, a step,val_loss CSV, or a TensorBoard log dir.")
@click.option("--lora-rank", type=click.IntRange(1), default=None, help="LoRA rank to project (default 8, peft's).")
@click.option("--finetune-budget", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Fine-tuning budget as a fraction of the planned run (default 1/6).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="advice.json to write (default: advice.json next to the profile).")
@click.option("--json", "as_json", is_flag=True, help="Print the advice JSON instead of a table.")
@click.option("--force", is_flag=True, help="Replace an -o file ccprof did not write (a .bak copy is kept).")
@click.option("--host-speed", default=None, type=float, callback=_positive("--host-speed"),
              help="The GPU machine's host CPU against ccprof's reference host (1.5 = 1.5x as fast).")
def advise_cmd(profile_path: str, gpu: str | None, total_steps: int | None, price_usd: float | None,
               history: str | None, lora_rank: int | None, finetune_budget: float | None,
               output: str | None, as_json: bool, force: bool, host_speed: float | None) -> None:
    """Advise again on a saved profile (other GPU, run size, history), without re-running it."""

    profile = _load_artefact("profile", profile_path)
    _check_history(history)
    if gpu or total_steps or price_usd is not None or host_speed is not None:
        _check_cost_options(gpu, None, price_usd)
        profile = attach(profile, gpu=gpu, price_usd=price_usd, total_steps=total_steps, host_speed=host_speed)
    # the tweak options the advice projects with: the same options `ccprof apply --option` sets
    given = [f"lora_rank={lora_rank}"] * (lora_rank is not None) + [f"finetune_budget={finetune_budget}"] * (
        finetune_budget is not None)
    try:
        options = options_from_cli(given)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    ctx = AdviceContext(history=history, options=options)
    result = advise(profile, ctx)
    out = Path(output) if output else Path(profile_path).with_name("advice.json")
    _write_output(out, result.to_json() + "\n", [profile_path, history], force)
    if as_json:
        click.echo(result.to_json())
        return
    from rich.console import Console  # here: rich loads only on this path

    from ccprof.reports import advice_table  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich

    advice_table(result, Console())
    click.echo(str(out))


@cli.command("report")
@click.argument("profile_path", metavar="PROFILE_JSON", type=click.Path(dir_okay=False))
@click.option("--advice", "advice_path", default=None, type=click.Path(dir_okay=False),
              help="advice.json to show (default: advice.json next to the profile, if present).")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write (default: report.html next to the profile).")
@click.option("--quiet", "-q", is_flag=True, help="No terminal summary; print only the report path.")
@click.option("--force", is_flag=True, help="Replace an -o file ccprof did not write (a .bak copy is kept).")
def report_cmd(profile_path: str, advice_path: str | None, output: str | None, quiet: bool,
               force: bool) -> None:
    """Re-render the HTML report from a saved profile (and advice), without re-running anything."""
    from ccprof.reports import render_html, terminal_summary  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich

    profile = _load_artefact("profile", profile_path)
    sibling = Path(profile_path).with_name("advice.json")
    if advice_path is None and sibling.is_file():
        advice_path = str(sibling)
    advice = _load_artefact("advice", advice_path) if advice_path else None
    out = Path(output) if output else Path(profile_path).with_name("report.html")
    _write_output(out, render_html(profile, advice), [profile_path, advice_path], force)
    if not quiet:
        from rich.console import Console  # here: rich loads only on this path

        terminal_summary(profile, advice, Console())
    click.echo(str(out))


@cli.command("compare")
@click.argument("before_path", metavar="[BEFORE_JSON", required=False, type=click.Path(dir_okay=False))
@click.argument("after_path", metavar="AFTER_JSON]", required=False, type=click.Path(dir_okay=False))
@click.option("--dir", "run_dir", default="ccprof-report", show_default=True, type=click.Path(file_okay=False),
              help="With no profiles named: compare the last two runs of this --out folder.")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write (default: compare.html in the --dir folder).")
@click.option("--quiet", "-q", is_flag=True, help="No terminal table; print only the HTML path.")
@click.option("--force", is_flag=True, help="Replace an -o file ccprof did not write (a .bak copy is kept).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the comparison as JSON (runs, rows with their noise band, verdict) instead of a table.")
def compare_cmd(before_path: str | None, after_path: str | None, run_dir: str, output: str | None,
                quiet: bool, force: bool, as_json: bool) -> None:
    """Step time, memory, MFU and $ of two saved profiles side by side (terminal and HTML).

    With no profiles named, the last two runs of the --dir folder (ccprof analyze keeps every
    earlier run under <out>/runs/<time>/).
    """
    from ccprof.reports import compare_html, compare_table  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich

    if before_path is None:
        try:
            before_path, after_path = (str(p) for p in last_two_runs(run_dir))
        except OutputError as exc:
            _fail(str(exc), 2)
        click.echo(f"comparing {before_path} -> {after_path}", err=True)
    elif after_path is None:
        _fail("compare takes two profiles (BEFORE_JSON AFTER_JSON), or none for the last two runs of --dir", 2)
    before = _load_artefact("profile", before_path)
    after = _load_artefact("profile", after_path)
    out = Path(output) if output else Path(run_dir) / "compare.html"
    html = compare_html(before, after)
    _write_output(out, html, [before_path, after_path], force, check_only=True)
    if as_json:
        import dataclasses  # here: only --json needs it

        from ccprof.reports.compare import build_compare_view  # here: keeps `import ccprof.cli` from loading the reports

        view = build_compare_view(before, after)
        click.echo(json.dumps({"before": before_path, "after": after_path, **dataclasses.asdict(view)}, indent=1))
    elif not quiet:
        from rich.console import Console  # here: rich loads only on this path

        compare_table(before, after, Console())
    _write_output(out, html, [before_path, after_path], force)
    if not as_json:
        click.echo(str(out))


@cli.command("apply")
@click.argument("script", type=click.Path(dir_okay=False, path_type=str))
@click.option("-t", "--tweak", "tweaks", multiple=True, help="Tweak id to apply (repeatable).")
@click.option("--from", "advice_path", default=None, type=click.Path(dir_okay=False),
              help="advice.json (ccprof.advice/1): apply its top recommendations.")
@click.option("--top", default=None, type=click.IntRange(1, 50), help="With --from: how many (default all).")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="File to write (default: <stem>_ccprof.py beside the script).")
@click.option("--in-place", is_flag=True, help="Rewrite the script itself, keeping SCRIPT.bak.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--option", "option_texts", multiple=True, metavar="KEY=VALUE",
              help="A tweak's option: dtype=fp16, accumulation_steps=8, lora_rank=16, patience=5, or "
                   "<tweak>.<option>=VALUE (lora.alpha=32); `ccprof tweaks` lists them.")
def apply_cmd(script: str, tweaks: tuple[str, ...], advice_path: str | None, top: int | None,
              output: str | None, in_place: bool, force: bool, option_texts: tuple[str, ...]) -> None:
    """Rewrite SCRIPT with libcst to keep tweaks; print the diff and what was skipped."""
    from ccprof.applier.codemods import ScriptSyntaxError, write_script  # here: keeps `import ccprof.cli` from loading libcst
    from ccprof.applier.codemods.selection import default_output_path, parse_option, run_argv, tweaks_from_advice  # here: keeps `import ccprof.cli` from loading libcst

    src_path = Path(script)
    if not src_path.is_file():
        _fail(f"{script}: no such file", 2)
    wanted, per_tweak = list(tweaks), {}
    if advice_path:
        picked, per_tweak = tweaks_from_advice(_load_artefact("advice", advice_path), top)
        wanted += [t for t in picked if t not in wanted]
    if not wanted:
        _fail("nothing to apply: name tweaks with -t ID or give --from advice.json", 2)
    from ccprof.applier.codemods import codemod_ids  # here: keeps `import ccprof.cli` from loading libcst

    have = codemod_ids()
    for t in wanted:
        if t not in have:
            what = ("ccprof has no codemod for it (it is advice or a run-time change only)" if t in TWEAKS
                    else "no such tweak (see `ccprof tweaks`)")
            _fail(f"-t {t}: {what}; codemods exist for: {', '.join(have)}", 2)
    for text in option_texts:
        try:
            tweak, name, value = parse_option(text)
        except ValueError as exc:
            _fail(str(exc), 2)
        if tweak not in wanted:
            _fail(f"--option {text}: that is an option of {tweak}, which is not being applied "
                  f"(add -t {tweak})", 2)
        per_tweak[tweak] = options_for(tweak, per_tweak.get(tweak)).merged({name: value})   # --option wins
    if in_place and output:
        _fail("--in-place and -o/--output exclude each other", 2)
    out_path = src_path if in_place else Path(output) if output else default_output_path(src_path)
    if not in_place and out_path.resolve() == src_path.resolve():
        if not force:
            _fail(f"-o {output}: that is the script itself; pass --in-place (a .bak copy is kept) "
                  "or write elsewhere", 2)
        in_place = True        # --force over the script: as --in-place, with its backup
    if out_path.is_dir():
        _fail(f"-o {out_path}: is a folder; give a file name", 2)
    backup = None
    if in_place:
        backup = backup_path(src_path)
    elif out_path.exists():
        if not force:
            _fail(f"{out_path} exists; pass --force to overwrite it (a .bak copy is kept) or -o to write elsewhere", 2)
        backup = backup_path(out_path)
    target_dir = out_path.parent if str(out_path.parent) else Path(".")
    if not target_dir.is_dir():
        _fail(f"-o {out_path}: the folder {target_dir} does not exist", 2)
    if (out_path.exists() and not os.access(out_path, os.W_OK)) or not os.access(target_dir, os.W_OK):
        _fail(f"{out_path}: not writable; nothing written", 2)
    try:
        result = api.apply(src_path, wanted, tweak_options=per_tweak, to_path=out_path,
                           argv=run_argv(advice_path) if advice_path else None)   # the advice's run: its flags
    except ScriptSyntaxError as exc:
        _fail(f"{exc.path}:{exc.line}: syntax error, fix the script first ({exc.message.splitlines()[0]})", 3)
    except ValueError as exc:       # ScriptEncodingError names the file and the encoding tried
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"{script}: cannot read it ({exc.strerror or exc})", 2)
    if result.applied:
        try:
            if backup is not None:
                shutil.copy2(out_path, backup)
                click.echo(f"backup: {backup}", err=True)
            write_script(out_path, result.source, like=result.script)
        except OSError as exc:
            _fail(f"{out_path}: cannot write it ({exc.strerror or exc}); "
                  + (f"the original is unchanged, backup in {backup}" if backup else "nothing written"), 2)
    if result.diff:
        if sys.stdout.isatty():
            from rich.console import Console  # here: rich loads only on this path
            from rich.syntax import Syntax  # here: rich loads only on this path

            Console().print(Syntax(result.diff, "diff", theme="ansi_dark"))
        else:
            click.echo(result.diff, nl=False)
    for tweak in result.applied:
        click.echo(f"applied {tweak}" + (f": {result.notes[tweak]}" if tweak in result.notes else ""), err=True)
    for tweak, reason in result.skipped.items():
        click.echo(f"skipped {tweak}: {reason}", err=True)
    click.echo(f"wrote {out_path}" if result.applied else "no change; nothing written", err=True)


def main() -> None:
    try:
        cli(prog_name="ccprof", standalone_mode=True)
    except KeyboardInterrupt:      # Ctrl-C outside a run (a long apply, a report): no traceback
        click.echo("ccprof: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
