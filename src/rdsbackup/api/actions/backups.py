"""CreateBackup, DescribeBackupTasks, DescribeBackups, DeleteBackup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdsbackup.api.errors import ApiError, ErrorCode
from rdsbackup.api.params import MAX_ID, Params, parse_id
from rdsbackup.api.protocol import Call
from rdsbackup.service.backups import BackupFilter, CreateBackupRequest
from rdsbackup.service.views import BackupView, JobView
from rdsbackup.timeutil import WIRE_MINUTES, epoch_seconds, to_wire

if TYPE_CHECKING:
    from rdsbackup.api.actions import Handler, Services
    from rdsbackup.service.links import LinkMaker

METHODS = ("Physical", "Logical", "Snapshot")
CREATE_TYPES = ("Auto", "FullBackup", "IncrementalBackup")
SET_TYPES = ("FullBackup", "IncrementalBackup")
MODES = ("Automated", "Manual")
PAGE_SIZES = (30, 50, 100)
COMPRESSIONS = ("zstd", "gzip", "none")


def create_backup(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    retention = p.integer("BackupRetentionPeriod", minimum=-1, maximum=730)
    if retention is not None and 0 <= retention < 7:
        raise ApiError(
            ErrorCode.InvalidParameter,
            "It must be -1 or between 7 and 730.",
            param="BackupRetentionPeriod",
        )
    request = CreateBackupRequest(
        instance_id=p.required("DBInstanceId"),
        method=p.choice(
            "BackupMethod",
            METHODS,
            default="Physical",
            code=ErrorCode.InvalidBackupMethodValueNotSupport,
        )
        or "Physical",
        backup_type=p.choice(
            "BackupType", CREATE_TYPES, default="Auto", code=ErrorCode.BackupTypeNotSupport
        )
        or "Auto",
        strategy=p.choice("BackupStrategy", ("db", "instance")),
        db_names=tuple(p.csv("DBName", max_items=256)),
        retention_days=retention,
        resource_group_id=p.optional("ResourceGroupId"),
        client_token=_client_token(p),
        compression=p.choice("CompressType", COMPRESSIONS) or "",
    )
    job_id = svc.backups.create_backup(call.principal, request)
    return {"BackupJobId": str(job_id)}


def describe_backup_tasks(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    jobs = svc.backups.describe_jobs(
        call.principal,
        p.required("DBInstanceId"),
        job_id=p.integer("BackupJobId", minimum=1, maximum=MAX_ID),
        job_status=p.choice("BackupJobStatus", ("NoStart", "Progressing")),
        mode=p.choice("BackupMode", MODES),
    )
    return {"Items": {"BackupJob": [_job(j) for j in jobs]}}


def describe_backups(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    start = p.timestamp("StartTime", WIRE_MINUTES, code=ErrorCode.InvalidStartTimeFormat)
    end = p.timestamp("EndTime", WIRE_MINUTES, code=ErrorCode.InvalidEndTimeFormat)
    if start and end and end <= start:
        raise ApiError(ErrorCode.InvalidParameterCombination)
    backup_id = p.optional("BackupId")
    wanted = parse_id(backup_id) if backup_id is not None else None
    if backup_id is not None and wanted is None:
        return _backups_page([], 0, 1, 30)  # no set has such an id
    filters = BackupFilter(
        backup_id=wanted,
        status=p.choice("BackupStatus", ("Success", "Failed")),
        mode=p.choice("BackupMode", MODES),
        kind=p.choice("BackupType", SET_TYPES),
        start=start,
        end=end,
    )
    page_number = p.page_number(ErrorCode.InvalidPageNumbersMalformed)
    page_size = p.integer("PageSize", default=30, allowed=PAGE_SIZES) or 30
    page = svc.backups.describe_backups(
        call.principal, instance_id, filters, page_number, page_size
    )
    return _backups_page(
        [_backup(b, svc.links) for b in page.items], page.total, page_number, page_size
    )


def delete_backup(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    p.required("BackupId")
    ids = [parse_id(i) for i in p.csv("BackupId", max_items=100)]
    known = [i for i in ids if i is not None]
    if len(known) != len(ids):
        raise ApiError(ErrorCode.InvalidBackupSetIDNotFound)
    svc.backups.delete_backups(call.principal, instance_id, known)
    return {}


def _client_token(p: Params) -> str | None:
    token = p.optional("ClientToken")
    if token is not None and (len(token) > 64 or not token.isascii()):
        raise ApiError(
            ErrorCode.InvalidParameter, "At most 64 ASCII characters.", param="ClientToken"
        )
    return token


def _backups_page(items: list[dict[str, Any]], total: int, page: int, size: int) -> dict[str, Any]:
    return {
        "Items": {"Backup": items},
        "TotalRecordCount": str(total),
        "PageNumber": str(page),
        "PageRecordCount": str(len(items)),
        "TotalEcsSnapshotSize": 0,
    }


def _job(j: JobView) -> dict[str, Any]:
    body: dict[str, Any] = {
        "BackupJobId": str(j.id),
        "BackupStatus": j.status,
        "BackupProgressStatus": j.progress_status,
        "Process": str(j.process),
        "JobMode": j.job_mode,
        "TaskAction": j.task_action,
        "BackupId": str(j.backup_id) if j.backup_id is not None else "",
        # Extensions (not in the RDS 2014-08-15 model):
        "BackupMethod": j.method,
        "BackupType": j.kind,
        "BackupStrategy": j.strategy,
        "StartTime": to_wire(j.started_at or j.created_at),
        "BytesDone": j.bytes_done,
        "BytesExpected": j.bytes_expected,
    }
    if j.status == "Failed":
        body["FailedReason"] = j.failed_reason
    return body


def _backup(b: BackupView, links: LinkMaker | None = None) -> dict[str, Any]:
    urls = links.for_set(b) if links else None
    body: dict[str, Any] = {
        "BackupId": str(b.id),
        "DBInstanceId": b.instance_id,
        "BackupStatus": b.status,
        "BackupStartTime": to_wire(b.start_time),
        "BackupEndTime": to_wire(b.end_time),
        "BackupType": b.kind,
        "BackupMode": b.mode,
        "BackupMethod": b.method,
        "BackupInitiator": b.initiator,
        "BackupSize": b.size,
        "BackupScale": "Database" if b.strategy == "db" else "DBInstance",
        "BackupDBNames": ",".join(b.db_names),
        "BackupDownloadURL": urls.url if urls else "",
        "BackupIntranetDownloadURL": urls.intranet_url if urls else "",
        "StoreStatus": b.store_status,
        "IsAvail": 1 if b.is_avail else 0,
        "MetaStatus": b.meta_status,
        "ConsistentTime": epoch_seconds(b.consistent_time) if b.consistent_time else 0,
        "Checksum": b.checksum,
        "Engine": b.engine,
        "EngineVersion": b.engine_version,
        "HostInstanceID": b.host_instance_id,
        "Encryption": b.encryption,
        "StorageClass": "0",
        "ExpectExpireTime": to_wire(b.expire_time),
    }
    if b.status == "Failed":
        body["FailedReason"] = b.failed_reason
    if b.parent_id is not None:
        body["ParentBackupId"] = str(b.parent_id)
    if b.verify_status:
        body["VerifyStatus"] = b.verify_status
        body["VerifiedAt"] = to_wire(b.verified_at)
        body["VerifyReason"] = b.verify_reason
        if b.restore_seconds is not None:
            body["RestoreSeconds"] = b.restore_seconds
    if b.fingerprint_source:
        body["FingerprintSource"] = b.fingerprint_source
    if b.pinned:
        body["Pinned"] = True  # extension: retention never removes it
    if urls and urls.by_db:
        body["BackupDownloadLinkByDB"] = {
            "BackupDownloadLinkByDB": [
                {
                    "DataBase": d.database,
                    "DownloadLink": d.url,
                    "IntranetDownloadLink": d.intranet_url,
                }
                for d in urls.by_db
            ]
        }
    return body


ACTIONS: dict[str, Handler] = {
    "CreateBackup": create_backup,
    "DescribeBackupTasks": describe_backup_tasks,
    "DescribeBackups": describe_backups,
    "DeleteBackup": delete_backup,
}
