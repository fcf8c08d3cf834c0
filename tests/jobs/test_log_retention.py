"""Log retention on a real catalog and storage: files past LogBackupRetentionPeriod go,
unless a restore to a time inside the retention needs them (from the newest base set
at or before the cutoff on); their objects go with them; the restorable window still
begins at that base set."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet, LogFileRecord, policy_for
from rdsbackup.engines.mariadb.engine import MariaDBEngine
from rdsbackup.engines.registry import default_registry
from rdsbackup.jobs.logchain import window
from rdsbackup.jobs.logretention import LogRetention
from rdsbackup.storage.local import LocalStorage
from tests.fixtures.backup_sets import T0
from tests.fixtures.log_files import LOG_INSTANCE, binlog_name, log_rig

INSTANCE = LOG_INSTANCE
ENGINE = MariaDBEngine()
_file = binlog_name


def _rig(tmp_path: Path) -> tuple[Catalog, LocalStorage, dict[int, int]]:
    rig = log_rig(tmp_path)
    return rig.catalog, rig.storage, rig.sets


def _kept(catalog: Catalog) -> list[int]:
    with catalog.read() as s:
        return list(s.scalars(select(LogFileRecord.sequence).order_by(LogFileRecord.sequence)))


def test_logs_before_the_base_set_of_the_cutoff_go(tmp_path: Path) -> None:
    catalog, storage, sets = _rig(tmp_path)
    retention = LogRetention(catalog, storage, default_registry())
    now = T0 + timedelta(days=12, hours=1)  # cutoff: day 5, 01:00; its base set: day 5's

    removed = retention.run(now)

    assert removed == 10
    assert _kept(catalog) == list(range(11, 26))  # day 5's set is in file 11
    stored = set(storage.list(f"{INSTANCE}/logs/"))
    assert stored == {f"{INSTANCE}/logs/00000001/{_file(n)}.zst" for n in range(11, 26)}
    with catalog.read() as s:
        found = window(s, INSTANCE, ENGINE.base_log)
        assert found is not None
        begin = s.get_one(BackupSet, sets[5]).consistent_time
        assert found.begin == begin
    assert retention.run(now) == 0  # nothing more to do


def test_a_shorter_period_moves_the_anchor_and_no_base_set_means_only_age_counts(
    tmp_path: Path,
) -> None:
    catalog, storage, sets = _rig(tmp_path)
    retention = LogRetention(catalog, storage, default_registry())
    now = T0 + timedelta(days=12, hours=1)
    with catalog.write() as s:
        policy = policy_for(s, INSTANCE)
        policy.log_backup_retention_period = 1  # cutoff day 11, 01:00; base: day 10's
        s.add(policy)
    retention.run(now)
    assert _kept(catalog) == list(range(21, 26))

    with catalog.write() as s:
        for backup_id in sets.values():
            s.get_one(BackupSet, backup_id).is_avail = False
    retention.run(now + timedelta(days=1))  # cutoff day 12: only files ending before it go
    assert _kept(catalog) == [25]
