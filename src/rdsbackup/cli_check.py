"""``rdsbackup check``: the readiness report of :mod:`rdsbackup.checks` as a table or
JSON; exit 1 when any check fails, so a cron job or a deploy script can rely on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rdsbackup.app import build_core
from rdsbackup.checks import FAIL, check_all
from rdsbackup.cli_client import EXIT_FAILED, Output, OutputOpt, emit_json, out
from rdsbackup.config import load_settings


def check(
    instance: Annotated[
        str | None, typer.Argument(help="Only this DBInstanceId (default: every instance).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file.", envvar="RDSBACKUP_CONFIG"),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Can each instance be backed up now: server, tools, methods, rights, space.

    Runs on the service host with its settings and changes nothing; exit 1 if any
    check fails."""
    findings = check_all(build_core(load_settings(config)), instance)
    if instance is not None and not findings:
        typer.echo(f"error: InvalidDBInstanceId.NotFound: no instance {instance}", err=True)
        raise typer.Exit(EXIT_FAILED)
    if output == Output.json:
        emit_json([f.row() for f in findings])
    else:
        table = Table("DBInstanceId", "Check", "Status", "Detail")
        for f in findings:
            status = "[red]fail[/red]" if f.status == FAIL else "[green]ok[/green]"
            table.add_row(f.instance_id, f.check, status, f.detail)
        out.print(table)
    if any(f.status == FAIL for f in findings):
        raise typer.Exit(EXIT_FAILED)
