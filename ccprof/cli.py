"""ccprof's command line: parse, call ``ccprof.api``, render. Nothing else lives here.

Every refusal comes from the API as a ``CcprofError`` (its message in the user's terms, its
``ExitCode``); the commands print it as ``ccprof: <message>`` and exit with its code. Exit
codes: ``ccprof.exit_codes.ExitCode`` (listed in ``ccprof --help``; README's table says what
is kept on each). rich, jinja2 and plotly load only in the commands that print with them.
"""
from __future__ import annotations

import functools
import json
import math
import shlex
import sys
from pathlib import Path

import click

from ccprof import __version__, api
from ccprof.exit_codes import CcprofError, ExitCode
from ccprof.exit_codes import help_text as exit_codes_help


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="\b\nExit codes:\n" + exit_codes_help())
@click.version_option(__version__, prog_name="ccprof")
def cli() -> None:
    """Cost profiler and advisor for PyTorch training."""


def _fail(message: str, code: ExitCode) -> None:
    click.echo(f"ccprof: {message}", err=True)
    sys.exit(code)


def _says_errors(command):
    """A CcprofError from the API ends the command as ``ccprof: <message>``, with its exit code."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CcprofError as exc:
            _fail(str(exc), exc.exit_code)
    return run


def _complete_gpus(ctx, param, incomplete: str) -> list:
    """Shell completion of a GPU id: the catalog's ids (``--catalog`` on the command line counts)."""
    try:
        ids = sorted(api.gpu_catalog(ctx.params.get("catalog_path")))
    except Exception:          # completion must never print a traceback into the user's shell
        return []
    return [i for i in ids if i.startswith(incomplete)]


def _complete_tweaks(ctx, param, incomplete: str) -> list:
    """Shell completion of a tweak id (the tweak catalog's ids)."""
    from ccprof.artefacts.tweaks import TWEAKS  # here: the catalog loads only when completing

    return [t for t in TWEAKS if t.startswith(incomplete)]


def _positive(name: str):
    """A click callback: a finite number > 0 (click's FloatRange lets nan and inf through)."""
    def check(ctx, param, value):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise click.BadParameter(f"must be a positive number, not {value:g}", param_hint=name)
        return value
    return check


def _plan_limits(command):
    """``--budget`` and ``--deadline``, the limits the plan across configurations picks within
    (analyze and advise take them alike)."""
    command = click.option("--deadline", "deadline_h", default=None, type=float, callback=_positive("--deadline"),
                           help="Hours for the planned run: the advice names the cheapest configuration "
                                "within it.")(command)
    return click.option("--budget", "budget_usd", default=None, type=float, callback=_positive("--budget"),
                        help="USD for the planned run: the advice names the fastest configuration "
                             "within it.")(command)


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
@click.option("--gpu", default=None, shell_complete=_complete_gpus,
              help="Target GPU id for projections and dollars (see `ccprof gpus`).")
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
              help="Processes under torchrun (DDP/FSDP scripts); each rank profiles itself, rank 0 merges. "
                   "With --dry-run: the GPUs per node the script sees (one process traces rank 0).")
@click.option("--nnodes", default=1, show_default=True, type=click.IntRange(1, 4096),
              help="With --dry-run: the nodes the script sees (--nproc GPUs each); inter-node collectives "
                   "are costed over the catalog's network figure.")
@click.option("--host-speed", default=None, type=float, callback=_positive("--host-speed"),
              help="The GPU machine's host CPU against ccprof's reference host (an AMD EPYC Zen 3 "
                   "core): 1.5 = 1.5x as fast. Host work (dispatch, Python, batches) is priced on it.")
@click.option("--option", "option_texts", multiple=True, metavar="KEY=VALUE",
              help="A tweak option the advice and --verify use, as `ccprof apply --option` takes it "
                   "(lora_rank=16, accumulation_steps=8); repeatable.")
@_plan_limits
@click.option("--dry-run", is_flag=True,
              help="Run the script on fake tensors (shapes, no storage, no arithmetic): plan a model this "
                   "machine cannot hold. Nothing is measured; every second is the cost model's.")
@_says_errors
def analyze_cmd(script: str, script_args: tuple[str, ...], steps: int, warmup: int, out_dir: str,
                timeout_s: float, as_json: bool, quiet: bool, gpu: str | None, catalog_path: str | None,
                price_usd: float | None, total_steps: int | None, epochs: float | None,
                history: str | None, scan_data: bool, verify: str | None, nproc: int, nnodes: int,
                host_speed: float | None, option_texts: tuple[str, ...], budget_usd: float | None,
                deadline_h: float | None, dry_run: bool) -> None:
    """Profile SCRIPT for a few steps, advise, and write a cost report.

    Arguments after `--` go to the script: ccprof analyze train.py -- --lr 3e-4
    """
    args = list(script_args)
    if args and args[0] == "--":
        args = args[1:]
    api.check_analyze_inputs(script, gpu=gpu, catalog_path=catalog_path, price_usd=price_usd,
                             history=history, verify=verify, out_dir=out_dir, scan_data=scan_data,
                             dry_run=dry_run, nproc=nproc, nnodes=nnodes)
    tweak_options = api.parse_tweak_options(option_texts)
    from rich.console import Console  # here: rich loads only on this path
    from rich.markup import escape  # here: rich loads only on this path

    err = Console(stderr=True)
    progress = None
    on_event = None
    if not quiet and not err.is_terminal:
        # a log (CI, `| tee`, a file): one line per event as it happens, not a live bar that shows
        # nothing until the end
        said: dict[str, int] = {}

        def on_event(event: dict) -> None:
            if event.get("event") == "step":
                loss = event.get("loss")
                click.echo(f"ccprof: {script}: step {event['done']}/{event['total']}, "
                           f"{event['step_s'] * 1e3:.1f} ms" + (f", loss {loss:.4g}" if loss is not None else ""),
                           err=True)
            elif event.get("event") == "scan" and event.get("total"):
                tenth = int(10 * event["done"] / event["total"])
                if tenth > said.get("scan", -1):
                    said["scan"] = tenth
                    click.echo(f"ccprof: scanning the dataset of {script}: {event['done']}/{event['total']}",
                               err=True)
    elif not quiet:
        from rich.progress import (  # here: rich loads only on this path
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

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
    advice_options.update({k: v for k, v in (("budget_usd", budget_usd), ("deadline_h", deadline_h)) if v})
    if tweak_options:
        advice_options["options"] = tweak_options

    def on_verify(what: str) -> None:
        if not quiet:
            err.print(f"[bold]ccprof[/] {escape(what)}")
    try:
        result = api.analyze_script(
            script, args, steps=steps, warmup=warmup, out_dir=out_dir, timeout_s=timeout_s, gpu=gpu,
            catalog_path=catalog_path, price_usd=price_usd, total_steps=total_steps, epochs=epochs,
            advice_options=advice_options, on_event=on_event,
            child_stdout=sys.stderr if as_json else None, nproc=nproc, scan_data=scan_data, verify=verify,
            on_verify=on_verify, host_speed=host_speed, dry_run=dry_run, nnodes=nnodes)
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

        terminal_summary(result.profile, result.advice, err, catalog=result.catalog)
        for name in ("profile", "advice", "report", "previous run"):
            if name in result.paths:
                err.print(f"[dim]{name}:[/] {escape(str(result.paths[name]))}")
    ver = result.advice.verification if result.advice is not None else None
    if ver is not None:
        for tweak, why in ver.not_measurable.items():
            err.print(f"[yellow]ccprof: --verify cannot measure {tweak}:[/] {escape(why)}", soft_wrap=True)
        for tweak, line in ver.failed.items():
            err.print(f"[red]ccprof: --verify re-run with {tweak} failed:[/] {escape(line)}", soft_wrap=True)
        if result.exit_code == ExitCode.VERIFY_FAILED:
            err.print(f"[red]ccprof: every --verify re-run failed ({', '.join(ver.failed)}); exit code "
                      f"{int(ExitCode.VERIFY_FAILED)}[/]", soft_wrap=True)
    sys.exit(result.exit_code)


@cli.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(dir_okay=True, path_type=str))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--steps", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Steps to measure (after warm-up and the FLOP/memory steps).")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0, 10_000),
              help="Unmeasured warm-up steps (at least 1 is always run).")
@click.option("--out", "out_dir", default="ccprof-report", show_default=True,
              type=click.Path(file_okay=False), help="Where rank 0 writes profile.json, advice.json, report.html.")
@click.option("--quiet", "-q", is_flag=True, help="No summary on rank 0.")
@click.option("--gpu", default=None, shell_complete=_complete_gpus,
              help="Target GPU id for projections and dollars (see `ccprof gpus`).")
@click.option("--catalog", "catalog_path", default=None, type=click.Path(dir_okay=False),
              help="TOML file with extra GPUs or price overrides.")
@click.option("--price", "price_usd", default=None, type=float, help="USD per GPU-hour for the target GPU.")
@click.option("--total-steps", default=None, type=click.IntRange(1), help="Planned run size in steps.")
@click.option("--epochs", default=None, type=float, callback=_positive("--epochs"),
              help="Planned run size in epochs.")
@_says_errors
def run_cmd(script: str, script_args: tuple[str, ...], steps: int, warmup: int, out_dir: str, quiet: bool,
            gpu: str | None, catalog_path: str | None, price_usd: float | None, total_steps: int | None,
            epochs: float | None) -> None:
    """Profile SCRIPT in this process, on every rank of a job a launcher started.

    \b
      torchrun --nnodes 2 --nproc-per-node 4 ... -m ccprof run train.py ARGS
      srun python -m ccprof run train.py ARGS
      accelerate launch -m ccprof run train.py ARGS

    Each rank profiles itself where it runs; after the measured steps the ranks' profiles go
    to rank 0 through torch.distributed, and rank 0 alone writes one report with a row per rank.
    """
    import os

    args = list(script_args)
    if args and args[0] == "--":
        args = args[1:]
    result = api.run_launched(script, args, steps=steps, warmup=warmup, out_dir=out_dir, gpu=gpu,
                              catalog_path=catalog_path, price_usd=price_usd, total_steps=total_steps,
                              epochs=epochs)
    if result.profile is None:
        if result.message:
            click.echo(f"ccprof: {result.message}", err=True)
    elif not result.paths:          # another rank than 0: it writes nothing; its own error, if any
        error = result.profile.error
        if error is not None:
            if error.traceback:
                click.echo(error.traceback.rstrip(), err=True)
            click.echo(f"ccprof: rank {result.profile.rank}: {error.message}", err=True)
    else:
        from rich.console import Console  # here: rich loads only on this path
        from rich.markup import escape  # here: rich loads only on this path

        err = Console(stderr=True)
        error = result.profile.error
        if error is not None:
            if error.traceback:
                click.echo(error.traceback.rstrip(), err=True)
            click.echo(f"ccprof: {error.message}", err=True)
        if not quiet:
            from ccprof.reports import terminal_summary  # here: rich, jinja2, plotly load on this path only

            terminal_summary(result.profile, result.advice, err, catalog=result.catalog)
            for name in ("profile", "advice", "report"):
                if name in result.paths:
                    err.print(f"[dim]{name}:[/] {escape(str(result.paths[name]))}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(result.exit_code))     # the script's atexit work (workers, loggers) may hang: skip it


@cli.command("tweaks")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@_says_errors
def tweaks_cmd(as_json: bool) -> None:
    """The tweak catalog: every id ccprof advises on, what can apply it, and its options."""
    rows = api.tweak_rows()
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
@_says_errors
def gpus_cmd(catalog_path: str | None, as_json: bool) -> None:
    """The hardware catalog: dense peak TFLOP/s, memory, bandwidth, $/GPU-hour with source and date."""
    rows = api.gpu_rows(catalog_path)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console  # here: rich loads only on this path
    from rich.table import Table  # here: rich loads only on this path

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:,.4g}"

    table = Table(title="ccprof gpus (dense peaks, TFLOP/s)")
    for col in ("id", "name", "mem GB", "GB/s", "fp32", "tf32", "bf16", "fp16", "fp8", "link GB/s", "node",
                "$/h", "price date", "price source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        tf = r["tflops"]
        price = ("-" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:.2f}") + ("*" if "usd_per_hour" in r["unverified"] else "")
        node = (f"{r['gpus_per_node']} GPUs, {num(r['network_gbit_s_per_gpu'])} Gb/s per GPU"
                if r.get("gpus_per_node") and r.get("network_gbit_s_per_gpu") else "-")
        table.add_row(r["id"], r["name"], num(r["memory_gb"]), num(r["bandwidth_gb_s"]),
                      *(num(tf.get(k)) for k in ("fp32", "tf32", "bf16", "fp16", "fp8")),
                      num(r.get("interconnect_gb_s")), node, price, r["price_date"], r["price_source"])
    console = Console()
    console.print(table)
    from ccprof.hardware import user_catalog_path  # here: where the user's file is, for the footnote

    user = user_catalog_path()
    console.print("[dim]link: the GPUs' link within a node (both directions); node: the cloud node the price is "
                  "from and its network between nodes (--dry-run --nnodes; sources in --json).[/]")
    console.print("[dim]* price from a third party, not re-checked. Override prices with --catalog FILE, "
                  f"$CCPROF_CATALOG or ~/.config/ccprof/catalog.toml (in use: {user or 'none'}), "
                  "or --price USD on analyze.[/]")


def _save(out, content, inputs: list, force: bool, *, check_only: bool = False) -> None:
    """Write ``out`` under the one output policy (api.save_output); say where a backup went."""
    backup = api.save_output(out, content, inputs, force, check_only=check_only)
    if backup is not None:
        click.echo(f"backup: {backup}", err=True)


@cli.command("advise")
@click.argument("profile_path", metavar="PROFILE_JSON", type=click.Path(dir_okay=False))
@click.option("--gpu", default=None, shell_complete=_complete_gpus,
              help="Target catalog GPU id (default: the GPU the profile was costed on).")
@click.option("--total-steps", type=click.IntRange(1), default=None,
              help="Planned run size in optimizer steps (default: the profile's).")
@click.option("--price", "price_usd", type=float, default=None,
              help="USD per GPU-hour (default: the price the profile was costed at, on its GPU).")
@click.option("--catalog", "catalog_path", default=None, type=click.Path(dir_okay=False),
              help="A GPU catalog TOML adding or overriding GPUs (the one the profile was analyzed with).")
@click.option("--history", type=click.Path(exists=True), default=None,
              help="Validation-loss history: trainer_state.json, a step,val_loss CSV, or a TensorBoard log dir.")
@click.option("--lora-rank", type=click.IntRange(1), default=None, help="LoRA rank to project (default 8, peft's).")
@click.option("--finetune-budget", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Fine-tuning budget as a fraction of the planned run (default 1/6).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="advice.json to write (default: advice.json next to the profile).")
@click.option("--json", "as_json", is_flag=True, help="Print the advice JSON instead of a table.")
@click.option("--force", is_flag=True, help="Replace an -o file ccprof did not write (a .bak copy is kept).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A tweak option the advice projects with, as `ccprof apply --option` takes it "
                   "(lora_rank=16, accumulation_steps=8, pruning.amount=0.5); repeatable.")
@click.option("--host-speed", default=None, type=float, callback=_positive("--host-speed"),
              help="The GPU machine's host CPU against ccprof's reference host (1.5 = 1.5x as fast).")
@_plan_limits
@_says_errors
def advise_cmd(profile_path: str, gpu: str | None, total_steps: int | None, price_usd: float | None,
               history: str | None, lora_rank: int | None, finetune_budget: float | None,
               output: str | None, as_json: bool, force: bool, host_speed: float | None,
               options: tuple[str, ...], catalog_path: str | None, budget_usd: float | None,
               deadline_h: float | None) -> None:
    """Advise again on a saved profile (other GPU, run size, history), without re-running it. What
    is not named here (GPU, price, run size) stays as the profile was costed, and is said so."""

    profile, result = api.readvise(profile_path, gpu=gpu, total_steps=total_steps, price_usd=price_usd,
                                   history=history, lora_rank=lora_rank, finetune_budget_frac=finetune_budget,
                                   host_speed=host_speed, options=options, catalog_path=catalog_path,
                                   budget_usd=budget_usd, deadline_h=deadline_h)
    out = Path(output) if output else Path(profile_path).with_name("advice.json")
    _save(out, result.to_json() + "\n", [profile_path, history], force)
    if as_json:
        click.echo(result.to_json())
        return
    from rich.console import Console  # here: rich loads only on this path

    from ccprof.reports import advice_table  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich

    click.echo(api.costing_basis(profile, gpu=gpu, price_usd=price_usd, total_steps=total_steps))
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
@_says_errors
def report_cmd(profile_path: str, advice_path: str | None, output: str | None, quiet: bool,
               force: bool) -> None:
    """Re-render the HTML report from a saved profile (and advice), without re-running anything."""
    from ccprof.reports import (  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich
        render_html,
        terminal_summary,
    )

    profile = api.load_artefact("profile", profile_path)
    sibling = Path(profile_path).with_name("advice.json")
    if advice_path is None and sibling.is_file():
        advice_path = str(sibling)
    advice = api.load_artefact("advice", advice_path) if advice_path else None
    catalog = api.gpu_catalog()
    out = Path(output) if output else Path(profile_path).with_name("report.html")
    _save(out, render_html(profile, advice, catalog=catalog), [profile_path, advice_path], force)
    if not quiet:
        from rich.console import Console  # here: rich loads only on this path

        terminal_summary(profile, advice, Console(), catalog=catalog)
    click.echo(str(out))


@cli.command("export")
@click.argument("profile_path", metavar="PROFILE_JSON", type=click.Path(dir_okay=False))
@click.option("--csv", "csv_dir", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="Write ops.csv (one row per aten op row: calls, shapes, FLOPs, bytes, owning module, "
                   "projected seconds) and modules.csv (params, FLOPs, activations, projected seconds) in DIR.")
@click.option("--parquet", "parquet_dir", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="The same tables as ops.parquet and modules.parquet (needs pyarrow or fastparquet).")
@click.option("--trace", "trace_path", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="The projected GPU step as Chrome trace-event JSON: kernels by phase on a device track, "
                   "host work and the data wait on a host track. Open it in ui.perfetto.dev or chrome://tracing.")
@click.option("--gpu", default=None, shell_complete=_complete_gpus,
              help="GPU whose projected seconds to export (default: the GPU the profile was costed on).")
@click.option("--catalog", "catalog_path", default=None, type=click.Path(dir_okay=False),
              help="TOML file with extra GPUs or price overrides.")
@click.option("--force", is_flag=True, help="Replace files ccprof did not write (a .bak copy is kept).")
@_says_errors
def export_cmd(profile_path: str, csv_dir: str | None, parquet_dir: str | None, trace_path: str | None,
               gpu: str | None, catalog_path: str | None, force: bool) -> None:
    """Export a saved profile for pandas, spreadsheets and trace viewers.

    The seconds are projected by ccprof's cost model on the target GPU, not measured: each op
    row's seconds are its kernels' device time, and they sum to the step's modelled kernel time
    (host dispatch and the data wait are in no row). Prints each file written.

    \b
    ccprof export ccprof-report/profile.json --csv out/ --trace out/step.trace.json
    """
    for path, backup in api.export_profile(profile_path, csv_dir=csv_dir, parquet_dir=parquet_dir,
                                           trace_path=trace_path, gpu=gpu, catalog_path=catalog_path,
                                           force=force):
        if backup is not None:
            click.echo(f"backup: {backup}", err=True)
        click.echo(str(path))


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
@_says_errors
def compare_cmd(before_path: str | None, after_path: str | None, run_dir: str, output: str | None,
                quiet: bool, force: bool, as_json: bool) -> None:
    """Step time, memory, MFU and $ of two saved profiles side by side (terminal and HTML).

    With no profiles named, the last two runs of the --dir folder (ccprof analyze keeps every
    earlier run under <out>/runs/<time>/).
    """
    from ccprof.reports import (  # here: keeps `import ccprof.cli` from loading jinja2, plotly, rich
        compare_html,
        compare_table,
    )

    if before_path is None:
        before_path, after_path = (str(p) for p in api.last_two_runs(run_dir))
        click.echo(f"comparing {before_path} -> {after_path}", err=True)
    elif after_path is None:
        _fail("compare takes two profiles (BEFORE_JSON AFTER_JSON), or none for the last two runs of --dir", ExitCode.BAD_INPUT)
    before = api.load_artefact("profile", before_path)
    after = api.load_artefact("profile", after_path)
    out = Path(output) if output else Path(run_dir) / "compare.html"
    html = compare_html(before, after)
    _save(out, html, [before_path, after_path], force, check_only=True)
    if as_json:
        import dataclasses  # here: only --json needs it

        from ccprof.reports.compare import (
            build_compare_view,  # here: keeps `import ccprof.cli` from loading the reports
        )

        view = build_compare_view(before, after)
        click.echo(json.dumps({"before": before_path, "after": after_path, **dataclasses.asdict(view)}, indent=1))
    elif not quiet:
        from rich.console import Console  # here: rich loads only on this path

        compare_table(before, after, Console())
    _save(out, html, [before_path, after_path], force)
    if not as_json:
        click.echo(str(out))


@cli.command("apply", epilog="\b\nExit codes:\n"
             f"{int(ExitCode.OK):>5}  every tweak asked for is written or already in the script\n"
             f"{int(ExitCode.NOT_ALL_APPLIED):>5}  some could not be written (each is named with why; the rest is written)\n"
             f"{int(ExitCode.BAD_INPUT):>5}  bad usage or input: nothing written\n"
             f"{int(ExitCode.SCRIPT_ERROR):>5}  the script does not parse: nothing written")
@click.argument("script", type=click.Path(dir_okay=False, path_type=str))
@click.option("-t", "--tweak", "tweaks", multiple=True, shell_complete=_complete_tweaks,
              help="Tweak id to apply (repeatable); with --from, only these, with the options advice.json projected.")
@click.option("--from", "advice_path", default=None, type=click.Path(dir_okay=False),
              help="advice.json (ccprof.advice/1): apply its recommendations in the report's order, each with "
                   "its options; the ones without a rewrite or in conflict with one picked before are named and "
                   "passed over.")
@click.option("--top", default=None, type=click.IntRange(1, 50),
              help="With --from: the first K recommended tweaks that have a rewrite (default all).")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="File to write (default: <stem>_ccprof.py beside the script).")
@click.option("--in-place", is_flag=True, help="Rewrite the script itself, keeping SCRIPT.bak.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--option", "option_texts", multiple=True, metavar="KEY=VALUE",
              help="A tweak's option: dtype=fp16, accumulation_steps=8, lora_rank=16, patience=5, or "
                   "<tweak>.<option>=VALUE (lora.alpha=32); `ccprof tweaks` lists them.")
@click.option("--json", "as_json", is_flag=True,
              help="Print what was done as JSON on stdout: each tweak's outcome (written, already_present, "
                   "turn_on, refused, skipped) and reason, the output, the exit code, the diff.")
@_says_errors
def apply_cmd(script: str, tweaks: tuple[str, ...], advice_path: str | None, top: int | None,
              output: str | None, in_place: bool, force: bool, option_texts: tuple[str, ...], as_json: bool) -> None:
    """Rewrite SCRIPT with libcst to keep tweaks; print the diff and what became of each tweak."""
    done = api.apply_to_file(script, tweaks, advice_path=advice_path, top=top, option_texts=option_texts,
                             output=output, in_place=in_place, force=force)
    result, out_path = done.result, done.out_path
    if as_json:
        click.echo(json.dumps(done.to_dict(), indent=2))
        sys.exit(done.exit_code)
    if done.backup is not None:
        click.echo(f"backup: {done.backup}", err=True)
    if result.diff:
        if sys.stdout.isatty():
            from rich.console import Console  # here: rich loads only on this path
            from rich.syntax import Syntax  # here: rich loads only on this path

            Console().print(Syntax(result.diff, "diff", theme="ansi_dark"))
        else:
            click.echo(result.diff, nl=False)
    for o in done.tweaks:
        click.echo(_outcome_line(o), err=True)
    asked = [o for o in done.tweaks if o.outcome != "skipped"]
    failed = [o.tweak for o in asked if not o.ok]
    if done.written:
        click.echo(f"wrote {out_path}", err=True)
    elif not failed and any(o.outcome == "turn_on" for o in asked):
        click.echo("no change; nothing written: the script has what was asked for; turn on what is off (above)",
                   err=True)
    elif not failed:
        click.echo("no change; nothing written: the script already has every tweak asked for", err=True)
    else:
        click.echo("nothing written", err=True)
    if done.command:
        click.echo(f"run it with: {shlex.join(done.command)}  (the run's command line sets what the rewrite "
                   "changes)", err=True)
    if failed:
        _fail(f"{len(failed)} of {len(asked)} tweaks asked for could not be written ({', '.join(failed)}): "
              "see why above", ExitCode.NOT_ALL_APPLIED)


_OUTCOME_VERB = {"written": "applied", "already_present": "already applied", "turn_on": "turn on",
                 "refused": "could not write", "skipped": "skipped"}


def _outcome_line(o) -> str:
    """``skipped right_size_gpu (#1 in advice.json's ranking): no rewrite: rent the GPU it names``."""
    place = f" (#{o.place} in advice.json's ranking)" if o.place is not None else ""
    text = "; ".join(x for x in (o.reason, o.note) if x)
    return f"{_OUTCOME_VERB[o.outcome]} {o.tweak}{place}" + (f": {text}" if text else "")


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL: commands, options, GPU ids and tweak ids.

    \b
    bash:  eval "$(ccprof completion bash)"      (or add that line to ~/.bashrc)
    zsh:   eval "$(ccprof completion zsh)"       (in ~/.zshrc, after compinit)
    fish:  ccprof completion fish > ~/.config/fish/completions/ccprof.fish
    """
    from click.shell_completion import get_completion_class  # here: only this command needs it

    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "ccprof", "_CCPROF_COMPLETE").source())


def main() -> None:
    try:
        cli(prog_name="ccprof", standalone_mode=True)
    except KeyboardInterrupt:      # Ctrl-C outside a run (a long apply, a report): no traceback
        click.echo("ccprof: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
