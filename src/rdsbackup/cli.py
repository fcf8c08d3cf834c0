"""The ``rdsbackup`` command: the server, the demo, and the operator's admin commands."""

from __future__ import annotations

import getpass
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rdsbackup import logs
from rdsbackup.app import Core, Service, build_core, build_runners, build_service
from rdsbackup.catalog.db import Catalog
from rdsbackup.cli_check import check
from rdsbackup.cli_client import (
    api_call,
    backup_create,
    backup_fetch,
    backup_list,
    backup_show,
    instance_show,
    job_app,
    profile_app,
)
from rdsbackup.cli_retention import backup_pin, backup_unpin, retention_app
from rdsbackup.config import Settings, load_settings
from rdsbackup.instances.inventory import Registration
from rdsbackup.memory import bound_heap
from rdsbackup.service.auth import Principal
from rdsbackup.states import RESTORE_ENDED, InstanceStatus, RestoreStatus, StoreStatus

app = typer.Typer(no_args_is_help=True, help="Self-hosted Alibaba Cloud RDS backup service.")
key_app = typer.Typer(no_args_is_help=True, help="Access keys.")
instance_app = typer.Typer(
    no_args_is_help=True,
    help="Database instances (show: through the API and a profile; the others: local).",
)
backup_app = typer.Typer(
    no_args_is_help=True,
    help="Backup sets (create, list, show, fetch: through the API and a profile; the others:"
    " on the service host).",
)
schedule_app = typer.Typer(no_args_is_help=True, help="The scheduler of automated backups.")
app.add_typer(key_app, name="key")
app.add_typer(instance_app, name="instance")
app.add_typer(backup_app, name="backup")
app.add_typer(schedule_app, name="schedule")
app.add_typer(retention_app, name="retention")
backup_app.command("pin")(backup_pin)
backup_app.command("unpin")(backup_unpin)
# API clients (rdsbackup.cli_client): they sign requests with a profile's key.
backup_app.command("create")(backup_create)
backup_app.command("list")(backup_list)
backup_app.command("show")(backup_show)
backup_app.command("fetch")(backup_fetch)
instance_app.command("show")(instance_show)
app.add_typer(job_app, name="job")
app.add_typer(profile_app, name="profile")
app.command("check")(check)
app.command("api")(api_call)
console = Console()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file.", envvar="RDSBACKUP_CONFIG"),
]
AccountOpt = Annotated[str, typer.Option(help="Account name.")]
DEFAULT_ACCOUNT = "default"


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _core(config: Path | None) -> Core:
    return build_core(_settings(config))


def _logging(settings: Settings | None = None) -> None:
    logs.configure(logging.INFO, settings.log_format if settings else "json")


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    keep_local_servers: Annotated[
        bool, typer.Option(help="Leave local database servers running on exit.")
    ] = False,
) -> None:
    """Run the API and the job workers."""
    settings = _settings(config)
    _logging(settings)
    _serve(settings, host or settings.host, port or settings.port, keep_local_servers, config)


def _serve(
    settings: Settings,
    host: str,
    port: int,
    keep_local_servers: bool,
    config: Path | None,
    prepare: Callable[[Service], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop as :mod:`rdsbackup.shutdown` says."""
    from rdsbackup.apiprocs import ApiProcesses
    from rdsbackup.shutdown import (
        StopRequested,
        StopSignals,
        exit_if_threads_stuck,
        serve_until_stopped,
    )

    settings = settings.model_copy(update={"host": host, "port": port})  # links name them
    bound_heap()
    shared = settings.api_processes > 1
    helpers = ApiProcesses(settings.api_processes - 1, host, port, config)
    with StopSignals(signal_servers=not keep_local_servers) as signals:
        service: Service | None = None
        try:
            service = build_service(settings)
            if prepare is not None:
                prepare(service)
            service.start()
            if shared:
                helpers.start()
            serve_until_stopped(signals, service.asgi, host, port, reuse_port=shared)
        except StopRequested:
            pass
        finally:
            helpers.stop()
            if service is not None:
                service.stop(stop_local_servers=not keep_local_servers)
    exit_if_threads_stuck()


@app.command("api-server")
def api_server(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
) -> None:
    """Serve only the API, on a port shared with serve (SO_REUSEPORT): no loops, jobs or
    local servers. serve starts these itself for api_processes > 1."""
    from rdsbackup.apiprocs import die_with_parent
    from rdsbackup.shutdown import StopRequested, StopSignals, serve_until_stopped

    die_with_parent()

    settings = _settings(config)
    _logging(settings)
    if settings.dispatcher != "celery":
        typer.echo('rdsbackup api-server: needs dispatcher = "celery"', err=True)
        raise typer.Exit(2)
    host, port = host or settings.host, port or settings.port
    settings = settings.model_copy(update={"host": host, "port": port})
    bound_heap()
    with StopSignals(signal_servers=False) as signals:
        service: Service | None = None
        try:
            service = build_service(settings)
            serve_until_stopped(signals, service.asgi, host, port, reuse_port=True)
        except StopRequested:
            pass
        finally:
            if service is not None:
                service.core.catalog.dispose()


@app.command()
def demo(config: ConfigOpt = None, port: Annotated[int | None, typer.Option()] = None) -> None:
    """Provision the demo instances (once), print how to call the API, and serve."""
    from rdsbackup.demo import ensure_demo, print_welcome

    settings = _settings(config)
    _logging(settings)

    def prepare(service: Service) -> None:
        info = ensure_demo(service.core)
        print_welcome(console, info, settings.host, port or settings.port)

    _serve(settings, settings.host, port or settings.port, False, config, prepare)


@app.command("worker")
def worker(
    queue: Annotated[
        list[str], typer.Option(help="Queue(s) to consume: the host_queue of instances here.")
    ],
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 2,
    config: ConfigOpt = None,
) -> None:
    """Run backup jobs and restores from Celery queues (settings dispatcher = celery)."""
    from rdsbackup.jobs.celery_dispatch import celery_app, run_worker

    settings = _settings(config)
    _logging(settings)
    runners = build_runners(build_core(settings))  # no API, console or loops of serve
    run_worker(
        celery_app(settings.broker_url),
        runners.runner.run,
        runners.restore_runner.run,
        queue,
        concurrency,
        settings.node_id,
    )


@app.command("migrate")
def migrate(config: ConfigOpt = None) -> None:
    """Create or migrate the catalog schema (run once per upgrade when nodes share a
    catalog and set ``auto_migrate = false``)."""
    settings = _settings(config)
    catalog = Catalog(settings.resolved_catalog_url)
    before = catalog.revision()
    catalog.upgrade()
    after = catalog.revision()
    catalog.dispose()
    console.print(f"catalog schema: {before or 'none'} -> {after}")


app.command("upgrade", help="The same as migrate (older name).")(migrate)


# -- keys ------------------------------------------------------------------------------------


@key_app.command("create")
def key_create(
    config: ConfigOpt = None,
    account: AccountOpt = DEFAULT_ACCOUNT,
    actions: Annotated[str, typer.Option(help="Comma-separated action patterns.")] = "*",
    read_only: Annotated[bool, typer.Option(help="Only Describe* actions.")] = False,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Create an access key; prints AccessKeyId and AccessKeySecret (shown once)."""
    core = _core(config)
    key_id, secret = core.accounts.create_key(
        account, actions="Describe*" if read_only else actions, description=description
    )
    typer.echo(json.dumps({"AccessKeyId": key_id, "AccessKeySecret": secret}))


@key_app.command("list")
def key_list(config: ConfigOpt = None) -> None:
    table = Table("AccessKeyId", "Account", "Status", "Actions", "Created")
    for k in _core(config).accounts.list_keys():
        table.add_row(k.access_key_id, k.account, k.status, k.actions, str(k.created_at))
    console.print(table)


@key_app.command("disable")
def key_disable(access_key_id: str, config: ConfigOpt = None) -> None:
    _core(config).accounts.set_key_status(access_key_id, active=False)
    console.print(f"{access_key_id} disabled")


@key_app.command("enable")
def key_enable(access_key_id: str, config: ConfigOpt = None) -> None:
    _core(config).accounts.set_key_status(access_key_id, active=True)
    console.print(f"{access_key_id} enabled")


# -- instances -------------------------------------------------------------------------------


@instance_app.command("add")
def instance_add(
    engine: Annotated[str, typer.Option(help="MariaDB, MySQL or PostgreSQL.")],
    host: Annotated[str, typer.Option()],
    port: Annotated[int, typer.Option()],
    user: Annotated[str, typer.Option(help="Admin user the backups run as.")],
    password_file: Annotated[
        Path | None, typer.Option(help="File holding the password (else prompted).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="The server's data directory, when on this machine.")
    ] = None,
    os_user: Annotated[str | None, typer.Option(help="OS user that may read data_dir.")] = None,
    account: AccountOpt = DEFAULT_ACCOUNT,
    description: Annotated[str, typer.Option()] = "",
    resource_group: Annotated[str, typer.Option()] = "",
    host_queue: Annotated[
        str, typer.Option(help="The worker queue that runs its jobs (dispatcher = celery).")
    ] = "",
    config: ConfigOpt = None,
) -> None:
    """Register an existing server."""
    core = _core(config)
    password = (
        password_file.read_text().rstrip("\n")
        if password_file
        else getpass.getpass(f"password for {user}@{host}:{port}: ")
    )
    instance_id = core.inventory.register(
        Registration(
            account_id=core.accounts.ensure_account(account),
            engine=engine,
            host=host,
            port=port,
            admin_user=user,
            admin_password=password,
            data_dir=data_dir,
            os_user=os_user,
            description=description,
            resource_group_id=resource_group,
            region_id=core.settings.region_id,
            zone_id=core.settings.zone_id,
            host_queue=host_queue,
        )
    )
    if core.inventory.probe(instance_id) is None:
        core.inventory.set_status(
            instance_id, InstanceStatus.UNAVAILABLE, "the server did not answer"
        )
    else:
        core.inventory.set_status(instance_id, InstanceStatus.RUNNING)
    typer.echo(
        json.dumps(
            {"DBInstanceId": instance_id, "DBInstanceStatus": core.inventory.status(instance_id)}
        )
    )


@instance_app.command("create")
def instance_create(
    engine: Annotated[str, typer.Option(help="MariaDB or PostgreSQL.")],
    account: AccountOpt = DEFAULT_ACCOUNT,
    description: Annotated[str, typer.Option()] = "",
    resource_group: Annotated[str, typer.Option()] = "",
    sample_data: Annotated[bool, typer.Option(help="Load the sample databases.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Provision a local server under the state folder (kept running by `serve`)."""
    from rdsbackup.instances.sample_data import load_sample

    core = _core(config)
    instance_id = core.supervisor.provision(
        engine,
        core.accounts.ensure_account(account),
        description=description,
        resource_group_id=resource_group,
        region_id=core.settings.region_id,
        zone_id=core.settings.zone_id,
    )
    if sample_data:
        load_sample(engine, core.inventory.access(instance_id))
        core.inventory.probe(instance_id)
    typer.echo(
        json.dumps({"DBInstanceId": instance_id, "DBInstanceStatus": InstanceStatus.RUNNING})
    )


@instance_app.command("list")
def instance_list(config: ConfigOpt = None) -> None:
    core = _core(config)
    table = Table("DBInstanceId", "Engine", "Version", "Endpoint", "Status", "Local")
    from sqlalchemy import select

    from rdsbackup.catalog.models import Instance

    with core.catalog.read() as s:
        for i in s.scalars(select(Instance).order_by(Instance.created_at)):
            table.add_row(
                i.id,
                i.engine,
                i.engine_version,
                f"{i.host}:{i.port}",
                f"{i.status} {i.status_reason}".strip(),
                "yes" if i.local else "no",
            )
    console.print(table)


@instance_app.command("stop")
def instance_stop(instance_id: str, config: ConfigOpt = None) -> None:
    """Stop a local server (the service marks it Unavailable until it is started)."""
    core = _core(config)
    core.supervisor.server(instance_id).stop()
    core.inventory.set_status(instance_id, InstanceStatus.STOPPED, "stopped by the operator")


@instance_app.command("start")
def instance_start(instance_id: str, config: ConfigOpt = None) -> None:
    core = _core(config)
    core.supervisor.server(instance_id).start()
    core.inventory.set_status(instance_id, InstanceStatus.RUNNING)


@instance_app.command("delete")
def instance_delete(
    instance_id: str,
    keep: Annotated[
        str,
        typer.Option(help="Backup sets to keep: None, Lastest (the newest) or All."),
    ] = "None",
    config: ConfigOpt = None,
) -> None:
    """Release an instance as DeleteDBInstance does: a local server is stopped and its
    folder removed; a registered server is only forgotten."""
    from rdsbackup.catalog.models import Account, Instance
    from rdsbackup.service.errors import ServiceError
    from rdsbackup.service.releases import ReleaseService

    core = _core(config)
    with core.catalog.read() as s:
        instance = s.get(Instance, instance_id)
        if instance is None:
            raise typer.BadParameter(f"no instance {instance_id}")
        account = s.get_one(Account, instance.account_id)
    releases = ReleaseService(core.catalog, core.supervisor, core.storage)
    try:
        releases.delete_instance(Principal(account.id, account.name, "cli"), instance_id, keep)
    except ServiceError as e:
        typer.echo(f"{instance_id}: {type(e).__name__}: {e.detail}", err=True)
        raise typer.Exit(1) from None
    console.print(f"instance {instance_id}: Deleted (ReleasedKeepPolicy={keep})")


@instance_app.command("set")
def instance_set(
    instance_id: str,
    manual_backups: Annotated[
        bool | None, typer.Option("--manual-backups/--no-manual-backups")
    ] = None,
    lock_mode: Annotated[str | None, typer.Option(help="Unlock or ManualLock.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Operator switches: allow or forbid on-demand backups, lock the instance."""
    from rdsbackup.catalog.models import Instance

    core = _core(config)
    with core.catalog.write() as s:
        instance = s.get_one(Instance, instance_id)
        if manual_backups is not None:
            instance.manual_backup_enabled = manual_backups
        if lock_mode is not None:
            instance.lock_mode = lock_mode


# -- backups ---------------------------------------------------------------------------------


@backup_app.command("verify")
def backup_verify(backup_id: int, config: ConfigOpt = None) -> None:
    """Restore a set into a throw-away server, check it, and record the outcome."""
    _run_restore(
        config, backup_id, lambda svc, who, instance: svc.restores.verify(who, instance, backup_id)
    )


@backup_app.command("restore-db")
def backup_restore_db(
    backup_id: int,
    database: Annotated[str, typer.Option(help="The database in the set.")],
    target: Annotated[
        str | None, typer.Option(help="Target instance (default: the set's).")
    ] = None,
    new_name: Annotated[
        str | None, typer.Option(help="Name on the target (default: same).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Restore one database of a set into a running instance; nothing else there changes."""
    _run_restore(
        config,
        backup_id,
        lambda svc, who, instance: svc.restores.restore_database(
            who, instance, backup_id, database, target, new_name
        ),
    )


def _run_restore(
    config: Path | None, backup_id: int, start: Callable[[Service, Principal, str], int]
) -> None:
    """Create the restore task as the API would, run it in this process, report it."""
    from rdsbackup.catalog.models import Account, BackupSet, RestoreTask

    _logging()
    service = build_service(_settings(config))
    try:
        with service.core.catalog.read() as s:
            backup = s.get(BackupSet, backup_id)
            if backup is None:
                raise typer.BadParameter(f"no backup set {backup_id}")
            account = s.get_one(Account, backup.account_id)
        who = Principal(account.id, account.name, "cli")
        task_id = start(service, who, backup.instance_id)
        while True:
            with service.core.catalog.read() as s:
                task = s.get_one(RestoreTask, task_id)
            if task.status in RESTORE_ENDED:
                break
            time.sleep(0.5)
    finally:
        service.stop()
    typer.echo(
        json.dumps(
            {"TaskId": str(task_id), "Status": task.status, "FailedReason": task.failed_reason}
        )
    )
    if task.status != RestoreStatus.FINISHED:
        raise typer.Exit(1)


@backup_app.command("lock")
def backup_lock(backup_id: int, config: ConfigOpt = None) -> None:
    """Protect a set from DeleteBackup and retention (StoreStatus=Disabled)."""
    _set_store_status(config, backup_id, StoreStatus.DISABLED)


@backup_app.command("unlock")
def backup_unlock(backup_id: int, config: ConfigOpt = None) -> None:
    _set_store_status(config, backup_id, StoreStatus.ENABLED)


@backup_app.command("download")
def backup_download(
    backup_id: int,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the set into.")],
    url: Annotated[
        str | None, typer.Option(help="The service's base URL (default: public_url).")
    ] = None,
    encrypted: Annotated[
        bool, typer.Option("--encrypted", help="Keep an encrypted set's objects encrypted.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Download a set through its download link and verify it against its manifest; an
    encrypted set's objects are decrypted with the settings' key (unless --encrypted)."""
    from rdsbackup.app import build_links
    from rdsbackup.service.fetch import FetchFailed, fetch_set

    core = _core(config)
    try:
        got = fetch_set(
            core.catalog,
            build_links(core),
            backup_id,
            out,
            base_url=url,
            keyring=core.keyring,
            decrypt=not encrypted,
        )
    except FetchFailed as e:
        typer.echo(f"backup set {backup_id}: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        json.dumps(
            {
                "BackupId": backup_id,
                "Directory": str(out),
                "Bytes": got.bytes,
                "Decrypted": got.decrypted,
            }
        )
    )


def _set_store_status(config: Path | None, backup_id: int, status: StoreStatus) -> None:
    from rdsbackup.catalog.models import BackupSet

    core = _core(config)
    with core.catalog.write() as s:
        s.get_one(BackupSet, backup_id).store_status = status
    console.print(f"backup set {backup_id}: StoreStatus={status}")


@schedule_app.command("list")
def schedule_list(
    config: ConfigOpt = None,
    instance: Annotated[str | None, typer.Option(help="Only this DBInstanceId.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """What the scheduler decided for each slot of the backup policies (UTC)."""
    from rdsbackup.service.scheduler import decisions
    from rdsbackup.timeutil import to_wire

    found = decisions(_core(config).catalog, instance)
    if as_json:
        for d in found:
            row = {
                "DBInstanceId": d.instance_id,
                "Slot": to_wire(d.slot_time),
                "Deadline": to_wire(d.deadline),
                "BackupType": d.kind,
                "Status": d.status,
                "CatchUp": d.catch_up,
                "Reason": d.reason,
                "BackupJobId": "" if d.job_id is None else str(d.job_id),
                "DecidedAt": to_wire(d.decided_at),
            }
            typer.echo(json.dumps(row))
        return
    table = Table("DBInstanceId", "Slot", "BackupType", "Status", "BackupJobId", "Reason")
    for d in found:
        job = "" if d.job_id is None else str(d.job_id)
        table.add_row(d.instance_id, to_wire(d.slot_time), d.kind, d.status, job, d.reason)
    console.print(table)


def main() -> None:
    from rdsbackup.instances.home import InstancesDirUnreachable

    try:
        app()
    except InstancesDirUnreachable as e:
        typer.echo(f"rdsbackup: {e}", err=True)
        raise SystemExit(2) from None
