"""Backup policies (DescribeBackupPolicy / ModifyBackupPolicy): what an instance's
automated backups should be, stored per instance (``catalog.models.BackupPolicy``).

A change is all or nothing: every given value is checked, then the combination
(log retention within data retention, archive keep counts, incrementals the engine can
take), and only then is the row written, in one transaction with the instance row
locked. ``None`` in :class:`PolicyChanges` means "unchanged".

``mode`` decides which values apply, as in RDS: ``DataBackupPolicy`` the data backup
fields (and LogBackupRetentionPeriod), ``LogBackupPolicy`` the log backup fields, and
no mode (what Terraform's delete sends: a reset) both. Values outside the mode are
still checked, but change nothing. A change never takes the instance out of
``Running``. The scheduler, retention and log shipping
(``jobs.logship``, for ``enable_backup_log``) read the stored row.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupPolicy,
    Instance,
    encrypts_backups,
    policy_for,
)
from rdsbackup.clock import Clock, SystemClock
from rdsbackup.compress_types import CODES, code_of, compression_of
from rdsbackup.engines.base import BackupMethod, BackupPlan, EngineError
from rdsbackup.engines.base import UnsupportedPlan as EngineRefused
from rdsbackup.engines.families import MARIADB, family_of
from rdsbackup.schedule import WEEKDAYS, next_backup_time
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import InstanceService, owned_instance
from rdsbackup.service.views import InstanceView
from rdsbackup.states import InstanceStatus, LockMode


class PolicyMode(enum.StrEnum):
    DATA = "DataBackupPolicy"
    LOG = "LogBackupPolicy"


RETENTION_DAYS = (7, 730)
ARCHIVE_DAYS = (30, 1095)
BACKUP_INTERVALS = (-1, 15, 30, 60, 120, 180, 240, 360, 480, 720)
INC_BACKUP_INTERVALS = (0, 60, 120, 240, 360, 720)
"""Minutes; ``0`` (extension): no incrementals between fulls."""
METHODS = (BackupMethod.PHYSICAL, BackupMethod.SNAPSHOT, BackupMethod.LOGICAL)
"""RDS knows Physical and Snapshot; Logical (extension) serves a registered server whose
data directory is not on this machine."""
KEEP_POLICIES = ("ByMonth", "ByWeek", "KeepAll")
KEEP_COUNTS = {"ByMonth": 31, "ByWeek": 7, "KeepAll": 31}
RELEASED_KEEP_POLICIES = ("None", "Lastest", "All")
CATEGORIES = ("Flash", "Standard")
SWITCHES = ("Enable", "Disable")
INCREMENTAL_FAMILIES = (MARIADB,)
"""Families whose engine takes incremental (Physical) sets: PostgreSQL 15 has none."""

_HH_MM = r"([01][0-9]|2[0-3]):([0-5][0-9])"
_WINDOW = re.compile(rf"{_HH_MM}Z-({_HH_MM}|24:00)Z")


@dataclass(frozen=True)
class PolicyChanges:
    """What ModifyBackupPolicy asks for; ``None``: unchanged (or not given)."""

    mode: PolicyMode | None = None
    # DataBackupPolicy
    preferred_backup_time: str | None = None
    preferred_backup_period: str | None = None
    backup_retention_period: int | None = None
    backup_log: str | None = None
    backup_interval: int | None = None
    backup_method: str | None = None
    compress_type: str | None = None
    category: str | None = None
    enable_increment_data_backup: bool | None = None
    inc_backup_interval: int | None = None
    archive_backup_retention_period: int | None = None
    archive_backup_keep_policy: str | None = None
    archive_backup_keep_count: int | None = None
    released_keep_policy: str | None = None
    log_backup_frequency: str | None = None
    enable_pitr_protection: bool | None = None
    # LogBackupPolicy (log_backup_retention_period: both)
    enable_backup_log: bool | None = None
    log_backup_retention_period: int | None = None
    local_log_retention_hours: int | None = None
    local_log_retention_space: int | None = None
    high_space_usage_protection: str | None = None
    log_backup_local_retention_number: int | None = None
    # Extension: grandfather-father-son counts (jobs/retention_rules.py), data mode
    gfs_weekly_count: int | None = None
    gfs_monthly_count: int | None = None
    gfs_yearly_count: int | None = None


LOG_FIELDS = frozenset(
    {
        "enable_backup_log",
        "log_backup_retention_period",
        "local_log_retention_hours",
        "local_log_retention_space",
        "high_space_usage_protection",
        "log_backup_local_retention_number",
    }
)
DATA_FIELDS = frozenset(
    f.name for f in fields(PolicyChanges) if f.name != "mode" and f.name not in LOG_FIELDS
) | {"log_backup_retention_period"}
REQUIRED: dict[PolicyMode | None, tuple[tuple[str, str], ...]] = {
    PolicyMode.DATA: (
        ("preferred_backup_time", "PreferredBackupTime"),
        ("preferred_backup_period", "PreferredBackupPeriod"),
        ("backup_retention_period", "BackupRetentionPeriod"),
    ),
    PolicyMode.LOG: (("enable_backup_log", "EnableBackupLog"),),
}
REQUIRED[None] = REQUIRED[PolicyMode.DATA]


@dataclass(frozen=True)
class PolicyView:
    """A stored policy (or the defaults) as the API reports it."""

    instance_id: str
    preferred_backup_time: str
    preferred_backup_period: str
    backup_retention_period: int
    backup_interval: str
    backup_method: str
    compress_type: str
    """The code in force: the stored one, else the one of the service's compression."""
    compression: str
    """The service's compression that code means (``zstd``, ``gzip``, ``none``)."""
    category: str
    enable_increment_data_backup: bool
    inc_backup_interval: int
    archive_backup_retention_period: int
    archive_backup_keep_policy: str
    archive_backup_keep_count: int
    released_keep_policy: str
    enable_pitr_protection: bool
    enable_backup_log: bool
    log_backup_retention_period: int
    local_log_retention_hours: int
    local_log_retention_space: int
    high_space_usage_protection: str
    log_backup_local_retention_number: int
    log_backup_frequency: str
    gfs_weekly_count: int
    gfs_monthly_count: int
    gfs_yearly_count: int
    next_backup_time: datetime
    backup_encryption: bool
    """Whether new sets are encrypted: the instance's switch, else the setting."""
    encryption_key_id: str
    """The key EnableBackupEncryption named; empty: the active one."""


class PolicyService:
    def __init__(
        self,
        catalog: Catalog,
        instances: InstanceService,
        default_compression: str = "zstd",
        clock: Clock | None = None,
        encrypt_default: bool = False,
    ) -> None:
        self.catalog = catalog
        self.instances = instances
        self.default_compression = default_compression
        self.encrypt_default = encrypt_default
        self.clock = clock or SystemClock()

    def describe(self, who: Principal, instance_id: str) -> PolicyView:
        """Any visible instance, whatever its state; nothing is written."""
        instance = self.instances.get(who, instance_id)
        with self.catalog.read() as s:
            return self._view(policy_for(s, instance.id))

    def modify(self, who: Principal, instance_id: str, changes: PolicyChanges) -> PolicyView:
        values = _checked(changes)
        instance = self.instances.get(who, instance_id)
        _check_state(instance)
        if "backup_method" in values:
            self._check_method(instance.id, values["backup_method"])
        with self.catalog.write() as s:
            row = owned_instance(s, who, instance_id, lock=True)
            _check_state(row)
            policy = policy_for(s, row.id)
            _combine(policy, values, row.engine)
            for name, value in values.items():
                setattr(policy, name, value)
            policy.updated_at = self.clock.now()
            s.add(policy)
            s.flush()
            return self._view(policy)

    def _view(self, policy: BackupPolicy) -> PolicyView:
        stored = {f.name: getattr(policy, f.name) for f in fields(PolicyView) if f.name in _COLUMNS}
        stored["compress_type"] = code_of(policy.compress_type, self.default_compression)
        stored["backup_encryption"] = encrypts_backups(policy, self.encrypt_default)
        return PolicyView(
            **stored,
            compression=compression_of(policy.compress_type, self.default_compression),
            next_backup_time=next_backup_time(policy, self.clock.now()),
        )

    def _check_method(self, instance_id: str, method: str) -> None:
        """The engine must be able to back the whole instance up that way (Physical and
        Snapshot need the data directory on this machine)."""
        try:
            self.instances.check_plan(instance_id, BackupPlan(method=BackupMethod(method)))
        except EngineRefused as e:
            raise errors.UnsupportedBackupMethod(e.reason) from None
        except EngineError as e:
            raise errors.IncorrectInstanceState(e.reason) from None


_COLUMNS = frozenset(c.key for c in BackupPolicy.__table__.columns)


def _check_state(instance: Instance | InstanceView) -> None:
    if instance.status != InstanceStatus.RUNNING or instance.lock_mode != LockMode.UNLOCK:
        raise errors.IncorrectInstanceState(instance.status_reason)
    if instance.read_only:
        raise errors.OperationDenied("a read-only instance has no backup policy of its own")


# -- single values ---------------------------------------------------------------------


def _checked(changes: PolicyChanges) -> dict[str, Any]:
    """The values that apply in the call's mode, each checked and normalised."""
    given = {
        f.name: getattr(changes, f.name)
        for f in fields(PolicyChanges)
        if f.name != "mode" and getattr(changes, f.name) is not None
    }
    if given.get("archive_backup_keep_policy") == "0":  # Terraform's "not set"
        del given["archive_backup_keep_policy"]
    for name, wire in REQUIRED[changes.mode]:
        if name not in given:
            raise errors.MissingValue(wire)
    checked = {name: _CHECKS[name](value) for name, value in given.items()}
    applies = {
        PolicyMode.DATA: DATA_FIELDS,
        PolicyMode.LOG: LOG_FIELDS,
        None: DATA_FIELDS | LOG_FIELDS,
    }[changes.mode]
    values = {k: v for k, v in checked.items() if k in applies}
    if "backup_log" in values:  # Data mode's switch for the same thing
        backup_log = values.pop("backup_log") == "Enable"
        values.setdefault("enable_backup_log", backup_log)
    return values


def backup_window(value: str) -> str:
    match = _WINDOW.fullmatch(value)
    if match is None:
        raise errors.InvalidBackupTime("It must be HH:mmZ-HH:mmZ (UTC), e.g. 02:00Z-03:00Z.")
    start, end = (_minutes(part) for part in value.split("-"))
    if (end - start) % (24 * 60) != 60:
        raise errors.InvalidBackupTime("The window must be one hour long.")
    return value


def _minutes(part: str) -> int:
    hours, minutes = part.removesuffix("Z").split(":")
    return int(hours) * 60 + int(minutes)


def backup_days(value: str) -> str:
    """Weekday names in any case, each at most once; stored in week order."""
    names = {d.lower(): d for d in WEEKDAYS}
    days = set()
    for item in value.split(","):
        day = names.get(item.strip().lower())
        if day is None:
            raise errors.InvalidBackupPeriod(f"Valid days: {', '.join(WEEKDAYS)}.")
        days.add(day)
    if len(days) < 2:
        raise errors.InvalidBackupPeriod("Data must be backed up on at least two days a week.")
    return ",".join(d for d in WEEKDAYS if d in days)


def _retention(value: int) -> int:
    if not RETENTION_DAYS[0] <= value <= RETENTION_DAYS[1]:
        raise errors.InvalidRetentionPeriod("It must be between 7 and 730.")
    return value


def _one_of(param: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise errors.InvalidValue(param, f"Valid values: {', '.join(allowed)}.")
        return value

    return check


def _released(value: str) -> str:
    if value not in RELEASED_KEEP_POLICIES:
        raise errors.InvalidReleasedKeepPolicy(
            f"Valid values: {', '.join(RELEASED_KEEP_POLICIES)}."
        )
    return value


def _method(value: str) -> str:
    if value not in METHODS:
        raise errors.UnsupportedBackupMethod(f"Valid values: {', '.join(METHODS)}.")
    return value


def _between(param: str, low: int, high: int, *also: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high and value not in also:
            extra = "".join(f" or {a}" for a in also)
            raise errors.InvalidValue(param, f"It must be between {low} and {high}{extra}.")
        return value

    return check


def _among(param: str, allowed: tuple[int, ...]) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value not in allowed:
            raise errors.InvalidValue(
                param, "Valid values: " + ", ".join(str(a) for a in allowed) + "."
            )
        return value

    return check


def _archive_days(value: int) -> int:
    if value != 0 and not ARCHIVE_DAYS[0] <= value <= ARCHIVE_DAYS[1]:
        raise errors.InvalidValue(
            "ArchiveBackupRetentionPeriod", "It must be 0 (no archive) or between 30 and 1095."
        )
    return value


def _flag(value: bool) -> bool:
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "preferred_backup_time": backup_window,
    "preferred_backup_period": backup_days,
    "backup_retention_period": _retention,
    "backup_log": _one_of("BackupLog", ("Enable", "Disabled")),
    "backup_interval": lambda v: str(_among("BackupInterval", BACKUP_INTERVALS)(v)),
    "backup_method": _method,
    "compress_type": _one_of("CompressType", tuple(CODES)),
    "category": _one_of("Category", CATEGORIES),
    "enable_increment_data_backup": _flag,
    "inc_backup_interval": _among("IncBackupInterval", INC_BACKUP_INTERVALS),
    "archive_backup_retention_period": _archive_days,
    "archive_backup_keep_policy": _one_of("ArchiveBackupKeepPolicy", KEEP_POLICIES),
    "archive_backup_keep_count": _between("ArchiveBackupKeepCount", 1, 31),
    "released_keep_policy": _released,
    "log_backup_frequency": _one_of("LogBackupFrequency", ("LogInterval",)),
    "enable_pitr_protection": _flag,
    "enable_backup_log": _flag,
    "log_backup_retention_period": _between("LogBackupRetentionPeriod", *RETENTION_DAYS),
    "local_log_retention_hours": _between("LocalLogRetentionHours", 0, 168),
    "local_log_retention_space": _between("LocalLogRetentionSpace", 0, 50),
    "high_space_usage_protection": _one_of("HighSpaceUsageProtection", SWITCHES),
    "log_backup_local_retention_number": _between("LogBackupLocalRetentionNumber", 6, 100, -1),
    "gfs_weekly_count": _between("GfsWeeklyCount", 0, 520),
    "gfs_monthly_count": _between("GfsMonthlyCount", 0, 1200),
    "gfs_yearly_count": _between("GfsYearlyCount", 0, 100),
}


# -- the combination -------------------------------------------------------------------


def _combine(policy: BackupPolicy, values: dict[str, Any], engine: str) -> None:
    """Check the policy the values would make; adds what follows from them to
    ``values`` (a shorter data retention shortens a longer log retention with it)."""

    def after(name: str) -> Any:
        return values.get(name, getattr(policy, name))

    data_days = after("backup_retention_period")
    if "log_backup_retention_period" in values:
        if values["log_backup_retention_period"] > data_days:
            raise errors.InvalidValue(
                "LogBackupRetentionPeriod",
                f"It cannot be longer than BackupRetentionPeriod ({data_days} days).",
            )
    elif policy.log_backup_retention_period > data_days:
        values["log_backup_retention_period"] = data_days
    keep_policy = after("archive_backup_keep_policy")
    if after("archive_backup_keep_count") > KEEP_COUNTS[keep_policy]:
        raise errors.InvalidValue(
            "ArchiveBackupKeepCount",
            f"With ArchiveBackupKeepPolicy={keep_policy} it must be between 1 and "
            f"{KEEP_COUNTS[keep_policy]}.",
        )
    if after("enable_increment_data_backup") and (
        "enable_increment_data_backup" in values or "backup_method" in values
    ):
        if family_of(engine) not in INCREMENTAL_FAMILIES:
            raise errors.InvalidValue(
                "EnableIncrementDataBackup", f"{engine} instances take no incremental backups."
            )
        if after("backup_method") != BackupMethod.PHYSICAL:
            raise errors.InvalidValue(
                "EnableIncrementDataBackup",
                f"Incremental backups build on Physical sets; BackupMethod is "
                f"{after('backup_method')}.",
            )
