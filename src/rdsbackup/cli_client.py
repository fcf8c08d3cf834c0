"""The CLI commands that talk to the API like any client (signed requests, a profile
for endpoint and key), so they work against a remote service: ``backup create/list/
show``, ``job list/watch``, ``instance show`` and ``profile add/list``.

Exit codes: 0 done; 1 the service answered with an error, or the job failed; 2 usage
(bad option, no usable profile); 3 the endpoint could not be reached; 130 Ctrl-C while
following a job (which goes on). Errors are one line on stderr: ``error: <Alibaba
code> (<HTTP status>): <message>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table

from rdsbackup.api.errors import CATALOGUE, ErrorCode
from rdsbackup.client import ApiFailure, RdsClient, Unreachable
from rdsbackup.profiles import (
    DEFAULT_REGION,
    Profile,
    ProfileError,
    load_profile,
    profiles_path,
    read_profiles,
    save_profile,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
JOB_ENDED = ("Finished", "Failed")

out = Console()
err = Console(stderr=True)
job_app = typer.Typer(no_args_is_help=True, help="Backup jobs (API: DescribeBackupTasks).")
profile_app = typer.Typer(no_args_is_help=True, help="Profiles: endpoint and access key.")


class Output(StrEnum):
    table = "table"
    json = "json"


ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Profile name (default: RDSBACKUP_PROFILE or default)."),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json.")]
InstanceArg = Annotated[str, typer.Argument(help="DBInstanceId.", show_default=False)]


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def api(profile: str | None) -> Iterator[RdsClient]:
    """A client for ``profile``; every failure ends the command with one line and its
    exit code."""
    try:
        chosen = load_profile(profile)
    except ProfileError as e:
        fail(str(e), EXIT_USAGE)
    try:
        with RdsClient(chosen) as client:
            yield client
    except ApiFailure as e:
        fail(str(e))
    except Unreachable as e:
        fail(f"unreachable: {e}", EXIT_UNREACHABLE)


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


Columns = list[tuple[str, str]]
"""(header, field) pairs: short headers in a table, the API's field names in JSON."""
BYTE_FIELDS = frozenset({"BackupSize", "BytesDone", "BytesExpected"})
TIME_FIELDS = frozenset({"BackupStartTime", "BackupEndTime", "StartTime"})


def show_rows(rows: list[dict[str, Any]], columns: Columns, output: Output) -> None:
    if output == Output.json:
        emit_json(rows)
        return
    table = Table(
        *(
            Column(header, overflow="fold", min_width=20 if key in TIME_FIELDS else None)
            for header, key in columns
        )
    )
    for row in rows:
        table.add_row(*(_cell(key, row.get(key, "")) for _, key in columns))
    out.print(table)


def _cell(key: str, value: Any) -> str:
    if key in BYTE_FIELDS and str(value).isdigit():
        return decimal(int(value))
    return str(value)


def show_record(record: dict[str, Any], output: Output) -> None:
    if output == Output.json:
        emit_json(record)
        return
    table = Table("Field", Column("Value", overflow="fold"), show_header=False)
    for key, value in record.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    out.print(table)


# -- backups -----------------------------------------------------------------------------------


class Method(StrEnum):
    Physical = "Physical"
    Logical = "Logical"
    Snapshot = "Snapshot"


class CreateType(StrEnum):
    Auto = "Auto"
    FullBackup = "FullBackup"
    IncrementalBackup = "IncrementalBackup"


BACKUP_COLUMNS: Columns = [
    ("BackupId", "BackupId"),
    ("Status", "BackupStatus"),
    ("Method", "BackupMethod"),
    ("Type", "BackupType"),
    ("Mode", "BackupMode"),
    ("Start", "BackupStartTime"),
    ("Size", "BackupSize"),
    ("Verify", "VerifyStatus"),
]


def backup_create(
    instance: InstanceArg,
    method: Annotated[Method, typer.Option(help="BackupMethod.")] = Method.Physical,
    backup_type: Annotated[
        CreateType, typer.Option("--type", help="BackupType (Auto: incremental when it can).")
    ] = CreateType.Auto,
    db: Annotated[
        list[str] | None, typer.Option(help="Only this database (repeat); BackupStrategy=db.")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the job with a progress bar to its end.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Start a backup (API: CreateBackup); with --wait, follow it and show the set made."""
    with api(profile) as client:
        params: dict[str, str | int | None] = {
            "DBInstanceId": instance,
            "BackupMethod": method.value,
            "BackupType": backup_type.value,
        }
        if db:
            params |= {"BackupStrategy": "db", "DBName": ",".join(db)}
        job_id = str(client.call("CreateBackup", params)["BackupJobId"])
        if not wait:
            if output == Output.json:
                emit_json({"BackupJobId": job_id})
            else:
                out.print(
                    f"BackupJobId {job_id} started;"
                    f" follow it: rdsbackup job watch {instance} {job_id}"
                )
            return
        job = follow_job(client, instance, job_id, interval)
        if job["BackupStatus"] != "Finished":
            fail(f"backup job {job_id} Failed: {job.get('FailedReason') or 'no reason given'}")
        backup = find_backup(client, instance, job["BackupId"])
        show_record(backup, output)


def backup_list(
    instance: InstanceArg,
    status: Annotated[str | None, typer.Option(help="Success or Failed.")] = None,
    mode: Annotated[str | None, typer.Option(help="Automated or Manual.")] = None,
    backup_type: Annotated[
        str | None, typer.Option("--type", help="FullBackup or IncrementalBackup.")
    ] = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """The instance's backup sets, newest first, every page (API: DescribeBackups)."""
    with api(profile) as client:
        sets: list[dict[str, Any]] = []
        page = 1
        while True:
            body = client.call(
                "DescribeBackups",
                {
                    "DBInstanceId": instance,
                    "BackupStatus": status,
                    "BackupMode": mode,
                    "BackupType": backup_type,
                    "PageSize": 100,
                    "PageNumber": page,
                },
            )
            items = body["Items"]["Backup"]
            sets.extend(items)
            if not items or len(sets) >= int(body["TotalRecordCount"]):
                break
            page += 1
    show_rows(sets, BACKUP_COLUMNS, output)


def backup_show(
    instance: InstanceArg,
    backup_id: Annotated[str, typer.Argument(help="BackupId.", show_default=False)],
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """One backup set, every field DescribeBackups answers (download links included)."""
    with api(profile) as client:
        show_record(find_backup(client, instance, backup_id), output)


def backup_fetch(
    instance: InstanceArg,
    backup_id: Annotated[str, typer.Argument(help="BackupId.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the set into.")],
    profile: ProfileOpt = None,
) -> None:
    """Download a set through its BackupDownloadURL and verify it.

    The manifest is checked against the set's Checksum, every object against the
    manifest. An encrypted set's objects stay encrypted (`backup download`, on the
    service host, decrypts)."""
    from rdsbackup.manifest import MANIFEST_NAME, Manifest
    from rdsbackup.service.fetch import FetchFailed, fetch_url

    with api(profile) as client:
        backup = find_backup(client, instance, backup_id)
    url = backup.get("BackupDownloadURL") or ""
    if not url:
        fail(f"backup set {backup_id} has no download link (BackupStatus={backup['BackupStatus']})")
    try:
        got = fetch_url(url, backup["Checksum"], out_dir, int(backup_id), decrypt=False)
    except FetchFailed as e:
        fail(f"backup set {backup_id}: {e}")
    emit_json(
        {
            "BackupId": backup_id,
            "Directory": str(out_dir),
            "Files": got.files,
            "Bytes": got.bytes,
            "Encrypted": bool(
                Manifest.from_json((out_dir / MANIFEST_NAME).read_bytes()).encryption
            ),
        }
    )


def find_backup(client: RdsClient, instance: str, backup_id: str) -> dict[str, Any]:
    items = client.call("DescribeBackups", {"DBInstanceId": instance, "BackupId": backup_id})[
        "Items"
    ]["Backup"]
    if not items:
        # DescribeBackups answers an empty page; say it as DeleteBackup would.
        spec = CATALOGUE[ErrorCode.InvalidBackupSetIDNotFound]
        raise ApiFailure(
            ErrorCode.InvalidBackupSetIDNotFound.value,
            spec.status,
            f"{spec.message} (no backup set {backup_id} on {instance})",
        )
    return dict(items[0])


# -- jobs --------------------------------------------------------------------------------------

JOB_COLUMNS: Columns = [
    ("BackupJobId", "BackupJobId"),
    ("Status", "BackupStatus"),
    ("Process", "Process"),
    ("Method", "BackupMethod"),
    ("Type", "BackupType"),
    ("Mode", "JobMode"),
    ("Started", "StartTime"),
    ("Done", "BytesDone"),
    ("Expected", "BytesExpected"),
]


@job_app.command("list")
def job_list(
    instance: InstanceArg,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """The instance's unfinished backup jobs, with progress (API: DescribeBackupTasks)."""
    with api(profile) as client:
        jobs = client.call("DescribeBackupTasks", {"DBInstanceId": instance})["Items"]["BackupJob"]
    show_rows(list(jobs), JOB_COLUMNS, output)


@job_app.command("watch")
def job_watch(
    instance: InstanceArg,
    job_id: Annotated[str, typer.Argument(help="BackupJobId.", show_default=False)],
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Follow a backup job to its end with a progress bar; exit 1 if it fails."""
    with api(profile) as client:
        job = follow_job(client, instance, job_id, interval)
    if output == Output.json:
        emit_json(job)
    if job["BackupStatus"] != "Finished":
        fail(f"backup job {job_id} Failed: {job.get('FailedReason') or 'no reason given'}")
    if output == Output.table:
        out.print(f"backup job {job_id} Finished: BackupId {job['BackupId']}")


def get_job(client: RdsClient, instance: str, job_id: str) -> dict[str, Any]:
    jobs = client.call("DescribeBackupTasks", {"DBInstanceId": instance, "BackupJobId": job_id})[
        "Items"
    ]["BackupJob"]
    if not jobs:
        raise ApiFailure("InvalidParameter", 0, f"no backup job {job_id} on {instance}")
    return dict(jobs[0])


def follow_job(
    client: RdsClient,
    instance: str,
    job_id: str,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll DescribeBackupTasks until the job ends; a progress bar (on stderr) shows
    the phase, bytes done of bytes expected, rate and ETA."""
    progress = Progress(
        TextColumn("[bold]{task.fields[phase]:<12}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    with progress, _still_running(instance, job_id):
        task = progress.add_task(f"job {job_id}", total=None, phase="NoStart")
        while True:
            job = get_job(client, instance, job_id)
            done, expected = int(job.get("BytesDone") or 0), int(job.get("BytesExpected") or 0)
            phase = job.get("BackupProgressStatus") or job["BackupStatus"]
            if job["BackupStatus"] in JOB_ENDED:
                phase = job["BackupStatus"]
                expected = max(expected, done)
            progress.update(task, completed=done, total=max(expected, done) or None, phase=phase)
            if job["BackupStatus"] in JOB_ENDED:
                return job
            sleep(interval)


@contextmanager
def _still_running(instance: str, job_id: str) -> Iterator[None]:
    """Ctrl-C stops the watching, not the job: say so, and exit 130 as shells do."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(
            f"interrupted; backup job {job_id} goes on: rdsbackup job watch {instance} {job_id}",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None


# -- instances ---------------------------------------------------------------------------------


def instance_show(
    instance: InstanceArg,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """An instance's attributes and backup policy (API: DescribeDBInstanceAttribute)."""
    with api(profile) as client:
        body = client.call("DescribeDBInstanceAttribute", {"DBInstanceId": instance})
        attribute = dict(body["Items"]["DBInstanceAttribute"][0])
        policy = client.call("DescribeBackupPolicy", {"DBInstanceId": instance})
    policy.pop("RequestId", None)
    if output == Output.json:
        emit_json({"DBInstanceAttribute": attribute, "BackupPolicy": policy})
        return
    show_record(attribute, output)
    out.print("[bold]Backup policy[/bold]")
    show_record(policy, output)


# -- any action -------------------------------------------------------------------------------


def api_call(
    action: Annotated[str, typer.Argument(help="The API action, e.g. ModifyBackupPolicy.")],
    params: Annotated[
        list[str] | None, typer.Argument(help="Name=Value parameters.", show_default=False)
    ] = None,
    profile: ProfileOpt = None,
) -> None:
    """Call any API action with Name=Value parameters; prints the JSON answer.

    As `aliyun rds <Action> --Name Value` does, signed with the profile's key."""
    values: dict[str, str | int | None] = {}
    for pair in params or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"{pair!r} is not Name=Value", EXIT_USAGE)
        values[name] = value
    with api(profile) as client:
        emit_json(client.call(action, values))


# -- profiles ----------------------------------------------------------------------------------


@profile_app.command("add")
def profile_add(
    endpoint: Annotated[str, typer.Option(help="The service, e.g. http://host:8080/.")],
    access_key_id: Annotated[str, typer.Option(help="AccessKeyId.")],
    name: Annotated[str, typer.Argument(help="Profile name.")] = "default",
    region_id: Annotated[str, typer.Option(help="RegionId.")] = DEFAULT_REGION,
) -> None:
    """Add or replace a profile (file mode 0600).

    The AccessKeySecret is asked for, never an option: the shell history and ps would
    show it."""
    secret = typer.prompt("AccessKeySecret", hide_input=True)
    path = profiles_path()
    try:
        save_profile(Profile(name, endpoint, access_key_id, secret, region_id), path)
    except ProfileError as e:
        fail(str(e), EXIT_USAGE)
    out.print(f"profile {name} saved in {path} (mode 0600)")


@profile_app.command("list")
def profile_list(output: OutputOpt = Output.table) -> None:
    """The profiles (never their secrets)."""
    path = profiles_path()
    try:
        profiles = read_profiles(path)
    except ProfileError as e:
        fail(str(e), EXIT_USAGE)
    rows = [
        {
            "Profile": name,
            "Endpoint": p.get("endpoint", ""),
            "AccessKeyId": p.get("access_key_id", ""),
            "RegionId": p.get("region_id", DEFAULT_REGION),
        }
        for name, p in profiles.items()
    ]
    show_rows(rows, [(c, c) for c in ("Profile", "Endpoint", "AccessKeyId", "RegionId")], output)
