"""Backup policy rules at the service level (DescribeBackupPolicy / ModifyBackupPolicy),
on the memory engine and a real catalog: every bound, the modes, the combinations, all
or nothing, and account isolation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupPolicy, Instance, policy_for
from rdsbackup.clock import ManualClock
from rdsbackup.schedule import WINDOW, backup_days, window_start_minutes
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import InstanceService
from rdsbackup.service.policies import PolicyChanges, PolicyMode, PolicyService, PolicyView
from rdsbackup.testing import MemoryRig, memory_rig

NOW = datetime(2026, 12, 2, 15, 20)  # a Wednesday
DATA = PolicyMode.DATA
LOG = PolicyMode.LOG
BASE = PolicyChanges(
    mode=DATA,
    preferred_backup_time="02:00Z-03:00Z",
    preferred_backup_period="Tuesday,Thursday,Saturday",
    backup_retention_period=7,
)
"""A Data-mode call with the three values RDS requires in it, all at their defaults."""


@dataclass
class Policies:
    service: PolicyService
    catalog: Catalog
    who: Principal
    stranger: Principal
    instance_id: str
    rig: MemoryRig

    def describe(self) -> PolicyView:
        return self.service.describe(self.who, self.instance_id)

    def modify(self, changes: PolicyChanges = BASE, **values: Any) -> PolicyView:
        return self.service.modify(self.who, self.instance_id, replace(changes, **values))

    def rows(self) -> int:
        with self.catalog.read() as s:
            return s.scalar(select(func.count()).select_from(BackupPolicy)) or 0

    def set_instance(self, **values: object) -> None:
        with self.catalog.write() as s:
            s.execute(update(Instance).where(Instance.id == self.instance_id).values(**values))

    def add(self, engine: str) -> str:
        instance_id, _ = self.rig.add_instance(account="owner", engine=engine)
        return instance_id


def make_policies(catalog: Catalog) -> Policies:
    rig = memory_rig(catalog)
    instance_id, who = rig.add_instance(account="owner")
    stranger = Principal(rig.accounts.ensure_account("stranger"), "stranger", "AK2")
    service = PolicyService(
        catalog, InstanceService(catalog, rig.inventory), "zstd", clock=ManualClock(NOW)
    )
    return Policies(service, catalog, who, stranger, instance_id, rig)


@pytest.fixture
def policies(tmp_path: Path) -> Iterator[Policies]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield make_policies(catalog)
    catalog.dispose()


@pytest.fixture
def both_catalogs(catalog: Catalog) -> Policies:
    return make_policies(catalog)


# -- defaults and round trips ------------------------------------------------------------


def test_an_instance_without_a_policy_shows_the_defaults_and_nothing_is_written(
    policies: Policies,
) -> None:
    view = policies.describe()
    assert (view.preferred_backup_time, view.preferred_backup_period) == (
        "02:00Z-03:00Z",
        "Tuesday,Thursday,Saturday",
    )
    assert (view.backup_retention_period, view.log_backup_retention_period) == (7, 7)
    assert view.backup_method == "Physical" and view.backup_interval == "-1"
    assert view.enable_backup_log is False and view.enable_increment_data_backup is False
    assert (view.compress_type, view.compression) == ("4", "zstd")
    assert view.high_space_usage_protection == "Enable"
    assert view.log_backup_local_retention_number == 60
    assert view.released_keep_policy == "None" and view.archive_backup_keep_policy == "ByMonth"
    assert policies.rows() == 0


def test_the_next_backup_falls_inside_the_window_on_a_backup_day(policies: Policies) -> None:
    view = policies.modify(preferred_backup_time="15:00Z-16:00Z")
    start = view.next_backup_time
    assert start >= NOW
    assert start.weekday() in backup_days(view.preferred_backup_period)
    opens = start.replace(hour=0, minute=0) + timedelta(minutes=window_start_minutes("15:00Z"))
    assert opens <= start < opens + WINDOW
    assert start.date() == datetime(2026, 12, 3).date()  # Thursday: Wednesday is no backup day


def test_a_data_policy_round_trips_and_the_instance_stays_running(
    both_catalogs: Policies,
) -> None:
    p = both_catalogs
    p.modify(
        preferred_backup_time="23:00Z-24:00Z",
        preferred_backup_period="sunday, Monday,monday,Friday",
        backup_retention_period=30,
        backup_interval=120,
        compress_type="1",
        category="Flash",
        enable_increment_data_backup=True,
        inc_backup_interval=240,
        archive_backup_retention_period=365,
        archive_backup_keep_policy="ByWeek",
        archive_backup_keep_count=7,
        released_keep_policy="Lastest",
        log_backup_frequency="LogInterval",
        enable_pitr_protection=True,
    )
    view = p.describe()
    assert view.preferred_backup_time == "23:00Z-24:00Z"
    assert view.preferred_backup_period == "Monday,Friday,Sunday"
    assert view.backup_retention_period == 30 and view.backup_interval == "120"
    assert (view.compress_type, view.compression) == ("1", "gzip")
    assert view.category == "Flash"
    assert view.enable_increment_data_backup and view.inc_backup_interval == 240
    assert view.archive_backup_retention_period == 365
    assert (view.archive_backup_keep_policy, view.archive_backup_keep_count) == ("ByWeek", 7)
    assert view.released_keep_policy == "Lastest" and view.log_backup_frequency == "LogInterval"
    assert view.enable_pitr_protection
    assert p.rows() == 1
    with p.catalog.read() as s:
        row = s.get(Instance, p.instance_id)
        assert row is not None and row.status == "Running"


def test_a_log_policy_round_trips(policies: Policies) -> None:
    policies.modify(
        PolicyChanges(mode=LOG),
        enable_backup_log=True,
        local_log_retention_hours=168,
        local_log_retention_space=50,
        high_space_usage_protection="Disable",
        log_backup_local_retention_number=-1,
        log_backup_retention_period=7,
    )
    view = policies.describe()
    assert view.enable_backup_log
    assert (view.local_log_retention_hours, view.local_log_retention_space) == (168, 50)
    assert view.high_space_usage_protection == "Disable"
    assert view.log_backup_local_retention_number == -1


def test_codes_map_onto_the_service_compressions(policies: Policies) -> None:
    for code, compression in (("0", "none"), ("1", "gzip"), ("2", "gzip"), ("4", "zstd")):
        view = policies.modify(compress_type=code)
        assert (view.compress_type, view.compression) == (code, compression)
    assert policies.modify(compress_type="8").compression == "zstd"


def test_a_gzip_service_reports_the_zlib_code_by_default(policies: Policies) -> None:
    service = PolicyService(policies.catalog, policies.service.instances, "gzip")
    view = service.describe(policies.who, policies.instance_id)
    assert (view.compress_type, view.compression) == ("1", "gzip")


# -- every bound -------------------------------------------------------------------------

# field, values accepted, values refused, the error's class and parameter
BOUNDS: list[tuple[str, list[Any], list[Any], type[errors.InvalidValue], str]] = [
    (
        "backup_retention_period",
        [7, 730],
        [6, 731, 0, -1],
        errors.InvalidRetentionPeriod,
        "BackupRetentionPeriod",
    ),
    (
        "preferred_backup_time",
        ["00:00Z-01:00Z", "23:00Z-24:00Z", "23:30Z-00:30Z", "14:15Z-15:15Z"],
        [
            "02:00Z-04:00Z",
            "02:00-03:00",
            "2:00Z-3:00Z",
            "24:00Z-01:00Z",
            "02:00Z",
            "02:60Z-03:60Z",
            "02:00Z-02:00Z",
            "\uff10\uff12:00Z-03:00Z",
            "23:30Z-24:00Z",
        ],
        errors.InvalidBackupTime,
        "PreferredBackupTime",
    ),
    (
        "preferred_backup_period",
        ["Monday,Tuesday", "Monday,Tuesday,Wednesday,Thursday,Friday,Saturday,Sunday"],
        ["Monday", "Monday,Monday", "Monday,Funday", "Monday,,Tuesday", "Mon,Tue", ""],
        errors.InvalidBackupPeriod,
        "PreferredBackupPeriod",
    ),
    (
        "log_backup_retention_period",
        [7],
        [6, 731],
        errors.InvalidValue,
        "LogBackupRetentionPeriod",
    ),
    (
        "local_log_retention_hours",
        [0, 168],
        [-1, 169],
        errors.InvalidValue,
        "LocalLogRetentionHours",
    ),
    ("local_log_retention_space", [0, 50], [-1, 51], errors.InvalidValue, "LocalLogRetentionSpace"),
    (
        "log_backup_local_retention_number",
        [6, 100, -1],
        [5, 101, -2, 0],
        errors.InvalidValue,
        "LogBackupLocalRetentionNumber",
    ),
    (
        "backup_interval",
        [-1, 15, 30, 60, 120, 180, 240, 360, 480, 720],
        [0, 10, 45, 1440],
        errors.InvalidValue,
        "BackupInterval",
    ),
    (
        "inc_backup_interval",
        [0, 60, 120, 240, 360, 720],
        [30, 90, 1440, -1],
        errors.InvalidValue,
        "IncBackupInterval",
    ),
    (
        "compress_type",
        ["0", "1", "2", "4", "8"],
        ["3", "zstd", "16"],
        errors.InvalidValue,
        "CompressType",
    ),
    (
        "archive_backup_retention_period",
        [0, 30, 1095],
        [1, 29, 1096, -1],
        errors.InvalidValue,
        "ArchiveBackupRetentionPeriod",
    ),
    (
        "archive_backup_keep_policy",
        ["ByMonth", "ByWeek", "KeepAll"],
        ["ByYear", "bymonth"],
        errors.InvalidValue,
        "ArchiveBackupKeepPolicy",
    ),
    ("archive_backup_keep_count", [1, 7], [0, 32], errors.InvalidValue, "ArchiveBackupKeepCount"),
    (
        "released_keep_policy",
        ["None", "Lastest", "All"],
        ["Latest", "none"],
        errors.InvalidReleasedKeepPolicy,
        "ReleasedKeepPolicy",
    ),
    (
        "high_space_usage_protection",
        ["Enable", "Disable"],
        ["Disabled", "On"],
        errors.InvalidValue,
        "HighSpaceUsageProtection",
    ),
    ("category", ["Flash", "Standard"], ["Basic"], errors.InvalidValue, "Category"),
    (
        "backup_method",
        ["Physical", "Snapshot", "Logical"],
        ["Incremental", "physical"],
        errors.UnsupportedBackupMethod,
        "BackupMethod",
    ),
    ("backup_log", ["Enable", "Disabled"], ["Disable"], errors.InvalidValue, "BackupLog"),
    (
        "log_backup_frequency",
        ["LogInterval"],
        ["Hourly"],
        errors.InvalidValue,
        "LogBackupFrequency",
    ),
    ("gfs_weekly_count", [0, 1, 520], [-1, 521], errors.InvalidValue, "GfsWeeklyCount"),
    ("gfs_monthly_count", [0, 12, 1200], [-1, 1201], errors.InvalidValue, "GfsMonthlyCount"),
    ("gfs_yearly_count", [0, 5, 100], [-1, 101], errors.InvalidValue, "GfsYearlyCount"),
]


@pytest.mark.parametrize(
    ("field", "good", "bad", "error", "param"), BOUNDS, ids=[b[0] for b in BOUNDS]
)
def test_every_bound(
    policies: Policies,
    field: str,
    good: list[Any],
    bad: list[Any],
    error: type[errors.InvalidValue],
    param: str,
) -> None:
    base = replace(BASE, mode=None, backup_retention_period=730)
    for value in good:
        view = policies.modify(base, **{field: value})
        shown = getattr(view, field) if hasattr(view, field) else view.enable_backup_log
        if field == "backup_interval":
            assert shown == str(value)
        elif field == "backup_log":
            assert shown is (value == "Enable")
        elif field in ("backup_retention_period",):
            assert shown == value
        elif field != "preferred_backup_period":
            assert shown == value, (field, value)
    before = policies.describe()
    for value in bad:
        with pytest.raises(error) as caught:
            policies.modify(base, **{field: value})
        assert caught.value.param == param, (field, value)
        assert type(caught.value) is error, (field, value)
        assert caught.value.detail, "the error says what is valid"
        assert policies.describe() == before, (field, value)


def test_booleans_are_stored_as_given(policies: Policies) -> None:
    for flag in (True, False):
        view = policies.modify(
            replace(BASE, mode=None),
            enable_backup_log=flag,
            enable_increment_data_backup=flag,
            enable_pitr_protection=flag,
        )
        assert view.enable_backup_log is flag
        assert view.enable_increment_data_backup is flag
        assert view.enable_pitr_protection is flag


# -- modes and required values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "missing"),
    [
        (DATA, "PreferredBackupTime"),
        (DATA, "PreferredBackupPeriod"),
        (DATA, "BackupRetentionPeriod"),
        (None, "PreferredBackupTime"),
        (LOG, "EnableBackupLog"),
    ],
)
def test_each_mode_requires_its_values(
    policies: Policies, mode: PolicyMode | None, missing: str
) -> None:
    full = replace(BASE, mode=mode, enable_backup_log=True)
    name = {
        "PreferredBackupTime": "preferred_backup_time",
        "PreferredBackupPeriod": "preferred_backup_period",
        "BackupRetentionPeriod": "backup_retention_period",
        "EnableBackupLog": "enable_backup_log",
    }[missing]
    with pytest.raises(errors.MissingValue) as caught:
        policies.modify(full, **{name: None})
    assert caught.value.param == missing
    assert policies.rows() == 0


def test_a_log_call_needs_no_data_values(policies: Policies) -> None:
    view = policies.modify(PolicyChanges(mode=LOG, enable_backup_log=True))
    assert view.enable_backup_log and view.backup_retention_period == 7


def test_a_data_call_leaves_the_log_values_alone(policies: Policies) -> None:
    view = policies.modify(
        BASE,
        enable_backup_log=True,
        local_log_retention_hours=5,
        high_space_usage_protection="Disable",
    )
    assert view.enable_backup_log is False
    assert view.local_log_retention_hours == 18 and view.high_space_usage_protection == "Enable"


def test_a_log_call_leaves_the_data_values_alone(policies: Policies) -> None:
    view = policies.modify(
        PolicyChanges(mode=LOG, enable_backup_log=True),
        backup_retention_period=30,
        preferred_backup_time="05:00Z-06:00Z",
        compress_type="0",
    )
    assert view.backup_retention_period == 7 and view.preferred_backup_time == "02:00Z-03:00Z"
    assert view.compress_type == "4"


def test_values_outside_the_mode_are_still_checked(policies: Policies) -> None:
    with pytest.raises(errors.InvalidValue) as caught:
        policies.modify(BASE, local_log_retention_hours=500)
    assert caught.value.param == "LocalLogRetentionHours"
    assert policies.rows() == 0


def test_data_mode_backup_log_switches_log_backup(policies: Policies) -> None:
    assert policies.modify(backup_log="Enable").enable_backup_log is True
    assert policies.modify(backup_log="Disabled").enable_backup_log is False


def test_no_mode_is_terraforms_reset_of_data_and_log_values(policies: Policies) -> None:
    policies.modify(
        BASE, backup_retention_period=60, preferred_backup_period="Monday,Friday", compress_type="0"
    )
    policies.modify(
        PolicyChanges(mode=LOG, enable_backup_log=False, log_backup_retention_period=30)
    )
    view = policies.modify(
        PolicyChanges(
            preferred_backup_period="Tuesday,Thursday,Saturday",
            backup_retention_period=7,
            preferred_backup_time="02:00Z-03:00Z",
            enable_backup_log=True,
            log_backup_retention_period=7,
        )
    )
    assert view.preferred_backup_period == "Tuesday,Thursday,Saturday"
    assert (view.backup_retention_period, view.log_backup_retention_period) == (7, 7)
    assert view.enable_backup_log is True
    assert view.compress_type == "0"  # not part of the reset


def test_terraforms_unset_archive_keep_policy_changes_nothing(policies: Policies) -> None:
    policies.modify(archive_backup_keep_policy="ByWeek", archive_backup_keep_count=3)
    view = policies.modify(archive_backup_keep_policy="0", archive_backup_keep_count=1)
    assert (view.archive_backup_keep_policy, view.archive_backup_keep_count) == ("ByWeek", 1)


# -- combinations ------------------------------------------------------------------------


def test_log_retention_cannot_exceed_data_retention(policies: Policies) -> None:
    policies.modify(backup_retention_period=30)
    with pytest.raises(errors.InvalidValue) as caught:
        policies.modify(
            PolicyChanges(mode=LOG, enable_backup_log=True), log_backup_retention_period=31
        )
    assert caught.value.param == "LogBackupRetentionPeriod" and "30 days" in caught.value.detail
    assert policies.describe().log_backup_retention_period == 7
    view = policies.modify(
        PolicyChanges(mode=LOG, enable_backup_log=True), log_backup_retention_period=30
    )
    assert view.log_backup_retention_period == 30


def test_a_data_call_may_raise_both_retentions_at_once(policies: Policies) -> None:
    view = policies.modify(backup_retention_period=90, log_backup_retention_period=90)
    assert (view.backup_retention_period, view.log_backup_retention_period) == (90, 90)


def test_a_shorter_data_retention_shortens_a_longer_log_retention(policies: Policies) -> None:
    """Terraform lowering both sends the data call first: it must not fail for the log
    retention it is about to lower in its second call."""
    policies.modify(backup_retention_period=60, log_backup_retention_period=45)
    view = policies.modify(backup_retention_period=10)
    assert (view.backup_retention_period, view.log_backup_retention_period) == (10, 10)
    view = policies.modify(backup_retention_period=200)
    assert view.log_backup_retention_period == 10


def test_archive_keep_count_depends_on_the_keep_policy(policies: Policies) -> None:
    policies.modify(archive_backup_keep_policy="ByMonth", archive_backup_keep_count=31)
    with pytest.raises(errors.InvalidValue) as caught:
        policies.modify(archive_backup_keep_policy="ByWeek")  # 31 a week cannot be
    assert caught.value.param == "ArchiveBackupKeepCount"
    with pytest.raises(errors.InvalidValue):
        policies.modify(archive_backup_keep_policy="ByWeek", archive_backup_keep_count=8)
    view = policies.modify(archive_backup_keep_policy="ByWeek", archive_backup_keep_count=7)
    assert (view.archive_backup_keep_policy, view.archive_backup_keep_count) == ("ByWeek", 7)
    assert policies.modify(archive_backup_keep_policy="KeepAll").archive_backup_keep_policy == (
        "KeepAll"
    )


def test_incrementals_only_where_the_engine_takes_them(policies: Policies) -> None:
    postgres = policies.add("PostgreSQL")
    with pytest.raises(errors.InvalidValue) as caught:
        policies.service.modify(
            policies.who, postgres, replace(BASE, enable_increment_data_backup=True)
        )
    assert caught.value.param == "EnableIncrementDataBackup"
    assert "PostgreSQL" in caught.value.detail
    with pytest.raises(errors.InvalidValue):
        policies.modify(backup_method="Snapshot", enable_increment_data_backup=True)
    assert policies.modify(enable_increment_data_backup=True).enable_increment_data_backup
    with pytest.raises(errors.InvalidValue) as caught:
        policies.modify(backup_method="Logical")  # incrementals are on: Physical only
    assert "Logical" in caught.value.detail
    assert policies.describe().backup_method == "Physical"
    view = policies.modify(enable_increment_data_backup=False, backup_method="Snapshot")
    assert view.backup_method == "Snapshot"


# -- all or nothing, state, accounts -----------------------------------------------------


def test_one_bad_value_changes_nothing(policies: Policies) -> None:
    policies.modify(backup_retention_period=30, compress_type="0")
    before = policies.describe()
    with pytest.raises(errors.InvalidValue):
        policies.modify(
            replace(BASE, mode=None),
            backup_retention_period=100,
            preferred_backup_period="Monday,Wednesday",
            compress_type="1",
            enable_backup_log=True,
            local_log_retention_space=51,
        )
    assert policies.describe() == before


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"status": "Stopped"}, errors.IncorrectInstanceState),
        ({"status": "Creating"}, errors.IncorrectInstanceState),
        ({"lock_mode": "ManualLock"}, errors.IncorrectInstanceState),
        ({"read_only": True}, errors.OperationDenied),
    ],
)
def test_only_a_running_primary_instance_takes_a_change(
    policies: Policies, values: dict[str, object], error: type[errors.ServiceError]
) -> None:
    policies.set_instance(**values)
    with pytest.raises(error):
        policies.modify(backup_retention_period=30)
    assert policies.rows() == 0
    assert policies.describe().backup_retention_period == 7  # reading still works


def test_another_account_neither_sees_nor_changes_the_policy(policies: Policies) -> None:
    policies.modify(backup_retention_period=30)
    with pytest.raises(errors.InstanceNotFound):
        policies.service.describe(policies.stranger, policies.instance_id)
    with pytest.raises(errors.InstanceNotFound):
        policies.service.modify(policies.stranger, policies.instance_id, BASE)
    assert policies.describe().backup_retention_period == 30


def test_a_deleted_instance_has_no_policy(policies: Policies) -> None:
    policies.set_instance(status="Deleted")
    with pytest.raises(errors.InstanceNotFound):
        policies.describe()
    with pytest.raises(errors.InstanceNotFound):
        policies.modify()


def test_each_instance_has_its_own_policy(both_catalogs: Policies) -> None:
    other = both_catalogs.add("MariaDB")
    both_catalogs.modify(backup_retention_period=30)
    assert both_catalogs.service.describe(both_catalogs.who, other).backup_retention_period == 7
    both_catalogs.service.modify(both_catalogs.who, other, replace(BASE, backup_retention_period=9))
    assert both_catalogs.describe().backup_retention_period == 30
    assert both_catalogs.rows() == 2


def test_concurrent_changes_make_one_row_and_the_last_writer_wins(both_catalogs: Policies) -> None:
    p = both_catalogs
    failures: list[BaseException] = []
    barrier = threading.Barrier(12)

    def change(days: int) -> None:
        barrier.wait()
        try:
            p.modify(backup_retention_period=days)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=change, args=(10 + n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert p.rows() == 1
    assert p.describe().backup_retention_period in range(10, 22)


def test_encryption_shows_the_instance_switch_else_the_setting_and_a_reset_keeps_it(
    policies: Policies,
) -> None:
    encrypting = PolicyService(
        policies.catalog,
        policies.service.instances,
        "zstd",
        clock=ManualClock(NOW),
        encrypt_default=True,
    )
    assert policies.describe().backup_encryption is False
    assert encrypting.describe(policies.who, policies.instance_id).backup_encryption is True
    with policies.catalog.write() as s:
        row = policy_for(s, policies.instance_id)
        row.backup_encryption, row.encryption_key_id = True, "k2"
        s.add(row)
    policies.modify(
        PolicyChanges(
            preferred_backup_time="02:00Z-03:00Z",
            preferred_backup_period="Tuesday,Thursday,Saturday",
            backup_retention_period=7,
            enable_backup_log=True,
            log_backup_retention_period=7,
        )
    )  # Terraform's delete: no BackupPolicyMode
    view = policies.describe()
    assert (view.backup_encryption, view.encryption_key_id) == (True, "k2")
