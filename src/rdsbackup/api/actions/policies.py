"""DescribeBackupPolicy, ModifyBackupPolicy.

Values arrive as strings (query or form); here they become numbers and booleans, and
the policy service checks their ranges and combinations. An empty value is "unchanged"
(Terraform sends ``CompressType=`` and ``ReleasedKeepPolicy=``). Booleans are
``True``/``False``/``1``/``0`` in any case (the Tea SDKs send ``True``, Terraform
``true``).

Response types are the SDK's (TS 15.4.0 / PY 16.0.2), which Terraform's provider
asserts: ``PreferredBackupPeriod`` and ``EnableBackupLog`` (``"1"``/``"0"``) are strings,
``EnableIncrementDataBackup`` is always there as a boolean, ``BackupRetentionPeriod`` a
number; several counts are strings where the SDK says string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rdsbackup.api.errors import ApiError, ErrorCode
from rdsbackup.api.params import Params
from rdsbackup.api.protocol import Call
from rdsbackup.service.policies import PolicyChanges, PolicyMode, PolicyView
from rdsbackup.timeutil import WIRE_MINUTES

if TYPE_CHECKING:
    from rdsbackup.api.actions import Handler, Services

MODES = tuple(m.value for m in PolicyMode)
_INTEGER = re.compile(r"-?[0-9]{1,30}")
_TRUE, _FALSE = ("true", "1"), ("false", "0")


def describe_backup_policy(call: Call, svc: Services) -> dict[str, Any]:
    """The whole policy in either mode (RDS documents one response shape).
    ``CompressType`` and ``ReleasedKeepPolicy`` are checked and otherwise ignored."""
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    p.choice("BackupPolicyMode", MODES)
    p.choice("CompressType", ("0", "1", "2", "4", "8"))
    p.choice(
        "ReleasedKeepPolicy",
        ("None", "Lastest", "All"),
        code=ErrorCode.InvalidReleasedKeepPolicyFormat,
    )
    assert svc.policies is not None
    return _describe_body(svc.policies.describe(call.principal, instance_id))


def modify_backup_policy(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    mode = p.choice("BackupPolicyMode", MODES)
    changes = PolicyChanges(
        mode=PolicyMode(mode) if mode else None,
        preferred_backup_time=p.optional("PreferredBackupTime"),
        preferred_backup_period=p.optional("PreferredBackupPeriod"),
        backup_retention_period=_integer(
            p, "BackupRetentionPeriod", ErrorCode.InvalidBackupRetentionPeriodMalformed
        ),
        backup_log=p.optional("BackupLog"),
        backup_interval=_integer(p, "BackupInterval"),
        backup_method=p.optional("BackupMethod"),
        compress_type=p.optional("CompressType"),
        category=p.optional("Category"),
        enable_increment_data_backup=_boolean(p, "EnableIncrementDataBackup"),
        inc_backup_interval=_integer(p, "IncBackupInterval"),
        archive_backup_retention_period=_integer(p, "ArchiveBackupRetentionPeriod"),
        archive_backup_keep_policy=p.optional("ArchiveBackupKeepPolicy"),
        archive_backup_keep_count=_integer(p, "ArchiveBackupKeepCount"),
        released_keep_policy=p.optional("ReleasedKeepPolicy"),
        log_backup_frequency=p.optional("LogBackupFrequency"),
        enable_pitr_protection=_boolean(p, "EnablePitrProtection"),
        enable_backup_log=_boolean(p, "EnableBackupLog"),
        log_backup_retention_period=_integer(p, "LogBackupRetentionPeriod"),
        local_log_retention_hours=_integer(p, "LocalLogRetentionHours"),
        local_log_retention_space=_integer(p, "LocalLogRetentionSpace"),
        high_space_usage_protection=p.optional("HighSpaceUsageProtection"),
        log_backup_local_retention_number=_integer(p, "LogBackupLocalRetentionNumber"),
        gfs_weekly_count=_integer(p, "GfsWeeklyCount"),
        gfs_monthly_count=_integer(p, "GfsMonthlyCount"),
        gfs_yearly_count=_integer(p, "GfsYearlyCount"),
    )
    assert svc.policies is not None
    view = svc.policies.modify(call.principal, instance_id, changes)
    return {
        "DBInstanceID": view.instance_id,
        "CompressType": view.compress_type,
        "EnableBackupLog": _one_zero(view.enable_backup_log),
        "HighSpaceUsageProtection": view.high_space_usage_protection,
        "LocalLogRetentionHours": view.local_log_retention_hours,
        "LocalLogRetentionSpace": str(view.local_log_retention_space),
        "LogBackupLocalRetentionNumber": view.log_backup_local_retention_number,
        "EnableIncrementDataBackup": view.enable_increment_data_backup,
        "EnablePitrProtection": view.enable_pitr_protection,
        "IncBackupInterval": view.inc_backup_interval,
    }


def _describe_body(v: PolicyView) -> dict[str, Any]:
    return {
        # DataBackupPolicy
        "BackupRetentionPeriod": v.backup_retention_period,
        "PreferredBackupTime": v.preferred_backup_time,
        "PreferredBackupPeriod": v.preferred_backup_period,
        "PreferredNextBackupTime": v.next_backup_time.strftime(WIRE_MINUTES),
        "BackupInterval": v.backup_interval,
        "BackupMethod": v.backup_method,
        "CompressType": v.compress_type,
        "Category": v.category,
        "EnableIncrementDataBackup": v.enable_increment_data_backup,
        "IncBackupInterval": v.inc_backup_interval,
        "ArchiveBackupRetentionPeriod": str(v.archive_backup_retention_period),
        "ArchiveBackupKeepPolicy": v.archive_backup_keep_policy,
        "ArchiveBackupKeepCount": str(v.archive_backup_keep_count),
        "ReleasedKeepPolicy": v.released_keep_policy,
        "EnablePitrProtection": v.enable_pitr_protection,
        "AdvancedBackupPolicyEnabled": False,
        # LogBackupPolicy
        "BackupLog": "Enable" if v.enable_backup_log else "Disabled",
        "EnableBackupLog": _one_zero(v.enable_backup_log),
        "LogBackupRetentionPeriod": v.log_backup_retention_period,
        "LocalLogRetentionHours": v.local_log_retention_hours,
        "LocalLogRetentionSpace": str(v.local_log_retention_space),
        "HighSpaceUsageProtection": v.high_space_usage_protection,
        "LogBackupLocalRetentionNumber": v.log_backup_local_retention_number,
        "LogBackupFrequency": v.log_backup_frequency,
        # Extensions: the service's compression the CompressType code stands for; the
        # grandfather-father-son counts (0: off); encryption of new sets (Enable/
        # DisableBackupEncryption, else the encrypt_backups setting) and its key.
        "Compression": v.compression,
        "GfsWeeklyCount": v.gfs_weekly_count,
        "GfsMonthlyCount": v.gfs_monthly_count,
        "GfsYearlyCount": v.gfs_yearly_count,
        "BackupEncryption": "Enabled" if v.backup_encryption else "Disabled",
        "EncryptionKey": v.encryption_key_id,
    }


def _one_zero(value: bool) -> str:
    return "1" if value else "0"


def _integer(p: Params, name: str, code: ErrorCode = ErrorCode.InvalidParameter) -> int | None:
    """Any integer: the policy service checks the range and names it in its error."""
    value = p.optional(name)
    if value is None:
        return None
    if not _INTEGER.fullmatch(value):
        raise ApiError(code, "It must be an integer.", param=name)
    return int(value)


def _boolean(p: Params, name: str) -> bool | None:
    value = p.optional(name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ApiError(ErrorCode.InvalidParameter, "Valid values: True, False, 1, 0.", param=name)


ACTIONS: dict[str, Handler] = {
    "DescribeBackupPolicy": describe_backup_policy,
    "ModifyBackupPolicy": modify_backup_policy,
}
