"""CloneDBInstance, and the extensions RestoreDatabase, VerifyBackup, DescribeRestoreTasks."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from rdsbackup.api.errors import ErrorCode, invalid
from rdsbackup.api.params import MAX_ID, Params
from rdsbackup.api.protocol import Call
from rdsbackup.service.restores import PAY_TYPES, CloneRequest, RestoreService, TaskView
from rdsbackup.timeutil import WIRE_SECONDS, to_wire

if TYPE_CHECKING:
    from rdsbackup.api.actions import Handler, Services


def _restores(svc: Services) -> RestoreService:
    assert svc.restores is not None
    return svc.restores


def _backup_id(p: Params, *, required: bool = True) -> int | None:
    return p.id("BackupId", code=ErrorCode.InvalidBackupSetIDNotFound, required=required)


def clone_db_instance(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    description = p.optional("DBInstanceDescription") or ""
    if description and not 2 <= len(description) <= 255:
        raise invalid("DBInstanceDescription", "2 to 255 characters.")
    p.choice("BackupType", ("FullBackup", "IncrementalBackup"))
    request = CloneRequest(
        source_instance_id=p.required("DBInstanceId"),
        backup_id=_backup_id(p, required=False),
        restore_time=p.timestamp(
            "RestoreTime", WIRE_SECONDS, code=ErrorCode.InvalidRestoreTimeFormat
        ),
        pay_type=p.choice("PayType", PAY_TYPES) or p.required("PayType"),
        db_names=tuple(p.csv("DbNames", max_items=256)),
        description=description,
    )
    instance_id = _restores(svc).clone(call.principal, request)
    return {"DBInstanceId": instance_id, "OrderId": str(10**14 + secrets.randbelow(9 * 10**14))}


def restore_database(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    restore_time = p.timestamp("RestoreTime", WIRE_SECONDS, code=ErrorCode.InvalidRestoreTimeFormat)
    task_id = _restores(svc).restore_database(
        call.principal,
        p.required("DBInstanceId"),
        _backup_id(p, required=restore_time is None),
        p.required("DBName"),
        p.optional("TargetDBInstanceId"),
        p.optional("TargetDBName"),
        restore_time=restore_time,
    )
    return {"TaskId": str(task_id)}


def verify_backup(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    task_id = _restores(svc).verify(call.principal, p.required("DBInstanceId"), _backup_id(p) or 0)
    return {"TaskId": str(task_id)}


def describe_restore_tasks(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    tasks = _restores(svc).tasks(
        call.principal, p.required("DBInstanceId"), p.integer("TaskId", minimum=1, maximum=MAX_ID)
    )
    return {"Items": {"RestoreTask": [_task(t) for t in tasks]}}


def _task(t: TaskView) -> dict[str, Any]:
    return {
        "TaskId": str(t.id),
        "TaskType": {
            "clone": "CloneDBInstance",
            "database": "RestoreDatabase",
            "verify": "VerifyBackup",
        }[t.kind],
        "Status": t.status,
        "BackupId": str(t.backup_id),
        "SourceDBInstanceId": t.source_instance_id,
        "TargetDBInstanceId": t.target_instance_id or "",
        "DBNames": ",".join(t.db_names),
        "TargetDBName": t.target_db_name,
        "FailedReason": t.failed_reason,
        "CreateTime": to_wire(t.created_at),
        "StartTime": to_wire(t.started_at),
        "EndTime": to_wire(t.finished_at),
    }


ACTIONS: dict[str, Handler] = {
    "CloneDBInstance": clone_db_instance,
    "RestoreDatabase": restore_database,
    "VerifyBackup": verify_backup,
    "DescribeRestoreTasks": describe_restore_tasks,
}
