"""The operator's retention commands: ``rdsbackup retention plan|apply|gfs`` and
``rdsbackup backup pin|unpin`` (registered by cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rdsbackup.app import Core, build_core
from rdsbackup.config import load_settings
from rdsbackup.jobs.retention import Retention, RetentionPlan
from rdsbackup.jobs.retention_rules import Decision
from rdsbackup.timeutil import WIRE_SECONDS, parse_wire, to_wire

retention_app = typer.Typer(
    no_args_is_help=True, help="Retention of backup sets: what expires, what stays, and why."
)
console = Console()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file.", envvar="RDSBACKUP_CONFIG"),
]
InstanceOpt = Annotated[
    str | None, typer.Option("--instance", help="Only this instance's sets (DBInstanceId).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per set.")]


def _core(config: Path | None, instance_id: str | None = None) -> Core:
    from rdsbackup.catalog.models import Instance

    core = build_core(load_settings(config))
    if instance_id is not None:
        with core.catalog.read() as s:
            if s.get(Instance, instance_id) is None:
                typer.echo(f"no instance {instance_id}", err=True)
                raise typer.Exit(1)
    return core


@retention_app.command("plan")
def retention_plan(
    instance: InstanceOpt = None,
    as_json: JsonOpt = False,
    at: Annotated[
        str | None, typer.Option(help="Plan as at this UTC time (yyyy-MM-ddTHH:mm:ssZ).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Dry run: list every set past its retention, whether it would go, and why.
    Changes nothing."""
    when = None
    if at is not None:
        try:
            when = parse_wire(at, WIRE_SECONDS)
        except ValueError:
            raise typer.BadParameter("expected yyyy-MM-ddTHH:mm:ssZ", param_hint="--at") from None
    core = _core(config, instance)
    _show(Retention(core.catalog, core.storage).plan(when, instance_id=instance), as_json)


@retention_app.command("apply")
def retention_apply(
    instance: InstanceOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None
) -> None:
    """Remove now what the plan removes (the janitor of `serve` does it every pass),
    after finishing removals an earlier process left half done."""
    core = _core(config, instance)
    retention = Retention(core.catalog, core.storage)
    resumed = retention.resume()
    plan = retention.plan(instance_id=instance)
    _show(plan, as_json)
    removed = retention.apply(plan)
    summary = {"Removed": [str(i) for i in sorted(removed)], "Resumed": [str(i) for i in resumed]}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        console.print(f"removed {len(removed)} sets; finished {len(resumed)} interrupted removals")


@retention_app.command("gfs")
def retention_gfs(
    instance_id: str,
    weekly: Annotated[int | None, typer.Option(min=0, max=520, help="Weeks.")] = None,
    monthly: Annotated[int | None, typer.Option(min=0, max=1200, help="Months.")] = None,
    yearly: Annotated[int | None, typer.Option(min=0, max=100, help="Years.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Keep the first full set of each of the N newest weeks / months / years past its
    retention (0: off). An extension of the instance's backup policy."""
    from rdsbackup.catalog.models import policy_for

    core = _core(config, instance_id)
    with core.catalog.write() as s:
        policy = policy_for(s, instance_id)
        for name, value in (("weekly", weekly), ("monthly", monthly), ("yearly", yearly)):
            if value is not None:
                setattr(policy, f"gfs_{name}_count", value)
        s.add(policy)
        counts = (policy.gfs_weekly_count, policy.gfs_monthly_count, policy.gfs_yearly_count)
    console.print(f"{instance_id}: GFS weekly={counts[0]} monthly={counts[1]} yearly={counts[2]}")


def backup_pin(backup_id: int, config: ConfigOpt = None) -> None:
    """Keep a set forever: retention never removes it (DeleteBackup still may)."""
    _set_pinned(config, backup_id, True)


def backup_unpin(backup_id: int, config: ConfigOpt = None) -> None:
    """Let retention remove the set again once it expires."""
    _set_pinned(config, backup_id, False)


def _set_pinned(config: Path | None, backup_id: int, pinned: bool) -> None:
    from rdsbackup.catalog.models import BackupSet

    core = _core(config)
    with core.catalog.write() as s:
        backup = s.get(BackupSet, backup_id)
        if backup is None or backup.deleting_at is not None:
            typer.echo(f"no backup set {backup_id}", err=True)
            raise typer.Exit(1)
        backup.pinned = pinned
    console.print(f"backup set {backup_id}: {'pinned' if pinned else 'not pinned'}")


def _show(plan: RetentionPlan, as_json: bool) -> None:
    rows = [_row(d) for d in plan.decisions]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table(
        "BackupId",
        "DBInstanceId",
        "Type",
        "Status",
        "Started",
        "Expired",
        "Action",
        "Why",
        title=f"retention plan at {to_wire(plan.now)}",
    )
    for row in rows:
        table.add_row(
            row["BackupId"],
            row["DBInstanceId"],
            row["BackupType"],
            row["BackupStatus"],
            row["BackupStartTime"],
            row["ExpectExpireTime"],
            row["Action"],
            f"{row['Reason']}: {row['Detail']}",
        )
    console.print(table)
    going = len(plan.removals)
    console.print(f"{going} sets would go, {len(plan.decisions) - going} stay past their expiry")


def _row(d: Decision) -> dict[str, str]:
    return {
        "BackupId": str(d.backup_id),
        "DBInstanceId": d.instance_id,
        "BackupType": d.kind,
        "BackupStatus": d.status,
        "BackupStartTime": to_wire(d.start_time),
        "ExpectExpireTime": to_wire(d.expire_time) if d.expire_time else "",
        "Action": "Remove" if d.remove else "Keep",
        "Reason": str(d.reason),
        "Detail": d.detail,
        "KeepUntil": to_wire(d.keep_until) if d.keep_until else "",
    }
