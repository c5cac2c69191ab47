"""ccprof's command line: thin click commands that call the public API and render.

Exit codes: 0 ok; 2 bad usage or input (missing file, not Python); 3 the user's script
failed (syntax error, exception); 4 nothing to measure (ended, hung, never trained).
"""
from __future__ import annotations

import sys

import click

from ccprof import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccprof")
def cli() -> None:
    """Cost profiler and advisor for PyTorch training."""


@cli.command("tweaks")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def tweaks_cmd(as_json: bool) -> None:
    """The tweak catalog: every id ccprof advises on."""
    from ccprof.advisors.catalog import TWEAKS

    if as_json:
        import json
        from dataclasses import asdict

        click.echo(json.dumps([asdict(t) for t in TWEAKS.values()], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ccprof tweaks")
    for col in ("id", "title", "risk"):
        table.add_column(col)
    for t in TWEAKS.values():
        table.add_row(t.id, t.title, t.risk)
    Console().print(table)


def main() -> None:
    cli(prog_name="ccprof")


if __name__ == "__main__":
    sys.exit(main())
