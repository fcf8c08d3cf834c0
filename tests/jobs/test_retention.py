"""Retention (jobs/retention.py): which sets go when, and why; what stays past its expiry
(pinned, locked, in use, archived, GFS, needed by an incremental); a dry run changes
nothing. Sets are real catalog rows with stored objects; time is the plan's ``now``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet, RestoreTask, policy_for
from rdsbackup.jobs.retention import Retention
from rdsbackup.jobs.retention_rules import Reason
from rdsbackup.jobs.sets import SetStore
from rdsbackup.service import errors
from rdsbackup.service.backups import BackupFilter
from rdsbackup.storage.base import StorageError
from rdsbackup.storage.memory import MemoryStorage
from rdsbackup.timeutil import utcnow
from tests.fixtures.backup_sets import T0, add_instance, add_set, daily_sets, set_ids, stored_sets
from tests.jobs.conftest import Rig

INSTANCE = "rm-test1"


@dataclass
class Store:
    catalog: Catalog
    storage: MemoryStorage
    retention: Retention

    def policy(self, **fields: Any) -> None:
        with self.catalog.write() as s:
            policy = policy_for(s, INSTANCE)
            for name, value in fields.items():
                setattr(policy, name, value)
            s.add(policy)

    def update(self, backup_id: int, **fields: Any) -> None:
        with self.catalog.write() as s:
            backup = s.get_one(BackupSet, backup_id)
            for name, value in fields.items():
                setattr(backup, name, value)

    def reasons(self, now: datetime) -> dict[int, Reason]:
        return {d.backup_id: d.reason for d in self.retention.plan(now).decisions}


@pytest.fixture
def store(catalog: Catalog) -> Store:
    """On SQLite and on PostgreSQL (tests/fixtures/catalogs.py)."""
    add_instance(catalog, INSTANCE)
    storage = MemoryStorage()
    return Store(catalog, storage, Retention(catalog, storage))


def test_a_set_goes_with_its_objects_once_its_retention_ends(store: Store) -> None:
    week = add_set(store.catalog, store.storage, INSTANCE, T0, 7)
    month = add_set(store.catalog, store.storage, INSTANCE, T0, 30)
    forever = add_set(store.catalog, store.storage, INSTANCE, T0, None)  # -1: kept forever

    assert store.retention.plan(T0 + timedelta(days=7) - timedelta(minutes=1)).decisions == []
    plan = store.retention.plan(T0 + timedelta(days=7, minutes=1))
    assert [(d.backup_id, d.reason) for d in plan.decisions] == [(week, Reason.EXPIRED)]
    assert store.retention.apply(plan) == [week]
    assert set_ids(store.catalog) == stored_sets(store.storage, INSTANCE) == {month, forever}

    assert store.retention.run(T0 + timedelta(days=3650)) == [month]
    assert set_ids(store.catalog) == stored_sets(store.storage, INSTANCE) == {forever}


def test_a_pinned_set_stays_until_unpinned(store: Store) -> None:
    pinned = add_set(store.catalog, store.storage, INSTANCE, T0, 7)
    store.update(pinned, pinned=True)
    years_later = T0 + timedelta(days=3 * 365)
    assert store.reasons(years_later) == {pinned: Reason.PINNED}
    assert store.retention.run(years_later) == []
    assert stored_sets(store.storage, INSTANCE) == {pinned}

    store.update(pinned, pinned=False)
    assert store.retention.run(years_later) == [pinned]
    assert set_ids(store.catalog) == set()


def test_apply_keeps_a_set_pinned_after_the_plan_was_made(store: Store) -> None:
    a = add_set(store.catalog, store.storage, INSTANCE, T0, 7)
    b = add_set(store.catalog, store.storage, INSTANCE, T0, 7)
    plan = store.retention.plan(T0 + timedelta(days=8))
    assert {d.backup_id for d in plan.removals} == {a, b}
    store.update(a, pinned=True)
    assert store.retention.apply(plan) == [b]
    assert set_ids(store.catalog) == {a}


def test_a_full_and_three_incrementals_go_only_as_a_chain_and_incrementals_first(
    rig: Rig,
) -> None:
    """Real sets (memory engine): full 7 days, then incrementals of 10, 8 and 12 days,
    each built on the one before. While any incremental lives, everything it builds on
    stays (and still restores); once the last one expires, all four go, newest first."""
    full = rig.run(method="Physical", backup_type="FullBackup", retention_days=7).backup_id
    inc1 = rig.run(method="Physical", backup_type="IncrementalBackup", retention_days=10)
    inc2 = rig.run(method="Physical", backup_type="IncrementalBackup", retention_days=8)
    inc3 = rig.run(method="Physical", backup_type="IncrementalBackup", retention_days=12)
    ids = [full, inc1.backup_id, inc2.backup_id, inc3.backup_id]
    assert [rig.backup_set(i or 0).parent_id for i in ids[1:]] == ids[:3]
    retention = Retention(rig.catalog, rig.storage)
    now = utcnow()

    def reasons(days: int) -> list[Reason | None]:
        found = {
            d.backup_id: d.reason for d in retention.plan(now + timedelta(days=days)).decisions
        }
        return [found.get(i or 0) for i in ids]

    keep = Reason.NEEDED_BY_INCREMENTAL
    assert reasons(9) == [keep, None, keep, None]  # full and inc2 expired: inc1, inc3 live
    assert reasons(11) == [keep, keep, keep, None]  # only inc3 lives: it needs all three
    for days in (9, 11):
        assert retention.run(now + timedelta(days=days)) == []
        assert len(SetStore(rig.catalog, rig.storage).chain(ids[3] or 0)) == 4  # restorable

    assert reasons(13) == [Reason.EXPIRED] * 4
    assert retention.run(now + timedelta(days=13)) == list(reversed(ids))
    assert set_ids(rig.catalog) == set()
    assert list(rig.storage.list(rig.instance_id)) == []


def test_a_set_in_use_stays_past_its_expiry(store: Store) -> None:
    older = add_set(store.catalog, store.storage, INSTANCE, T0, 7)
    restoring = add_set(store.catalog, store.storage, INSTANCE, T0 + timedelta(hours=1), 7)
    newest = add_set(store.catalog, store.storage, INSTANCE, T0 + timedelta(hours=2), 7)
    failed = add_set(
        store.catalog, store.storage, INSTANCE, T0 + timedelta(hours=3), 7, status="Failed"
    )
    with store.catalog.write() as s:
        task = RestoreTask(
            account_id=1,
            kind="verify",
            backup_id=restoring,
            source_instance_id=INSTANCE,
            status="Running",
            created_at=T0,
        )
        job = BackupJob(
            instance_id=INSTANCE,
            account_id=1,
            status="Uploading",
            method="Physical",
            requested_type="Auto",
            created_at=T0,
            created_day="2025-01-08",
        )
        s.add_all([task, job])
    later = T0 + timedelta(days=8)
    # The running job may build an incremental on the newest full set, not on older ones.
    assert store.reasons(later) == {
        older: Reason.EXPIRED,
        restoring: Reason.IN_USE,
        newest: Reason.IN_USE,
        failed: Reason.EXPIRED,
    }
    with store.catalog.write() as s:
        s.get_one(BackupJob, job.id).status = "Finished"
    assert store.reasons(later)[newest] == Reason.EXPIRED
    assert store.reasons(later)[restoring] == Reason.IN_USE
    with store.catalog.write() as s:
        s.get_one(RestoreTask, task.id).status = "Finished"
    assert sorted(store.retention.run(later)) == [older, restoring, newest, failed]


def _year_then_apply(store: Store, kept: Callable[[datetime], bool]) -> None:
    """A year of daily sets (2025); the plan and its removal on 2026-01-01 03:00 must
    leave exactly the sets within their retention and those ``kept`` says."""
    made = daily_sets(store.catalog, store.storage, INSTANCE, T0, 365, retention_days=7)
    now = datetime(2026, 1, 1, 3, 0)
    store.retention.run(now)
    live = {i for i, start in made.items() if start + timedelta(days=7) > now}
    archived = {i for i, start in made.items() if kept(start)}
    assert archived - live and live
    assert set_ids(store.catalog) == stored_sets(store.storage, INSTANCE) == live | archived


def test_archive_by_month_keeps_the_first_sets_of_each_month_for_its_period(store: Store) -> None:
    store.policy(
        archive_backup_retention_period=365,
        archive_backup_keep_policy="ByMonth",
        archive_backup_keep_count=2,
    )
    now = datetime(2026, 1, 1, 3, 0)
    made = daily_sets(store.catalog, store.storage, INSTANCE, T0, 365, retention_days=7)
    reasons = {d.backup_id: d for d in store.retention.plan(now).decisions}
    jan1 = next(i for i, t in made.items() if t == T0)
    assert reasons[jan1].reason == Reason.ARCHIVE_ENDED  # 365 days after 2025-01-01 02:00
    jan2 = next(i for i, t in made.items() if t == T0 + timedelta(days=1))
    assert reasons[jan2].reason == Reason.ARCHIVED
    assert reasons[jan2].keep_until == datetime(2026, 1, 2, 2, 0)
    store.retention.apply(store.retention.plan(now))
    expected = {
        i
        for i, start in made.items()
        if (start.day <= 2 and start + timedelta(days=365) > now) or start + timedelta(days=7) > now
    }
    assert set_ids(store.catalog) == stored_sets(store.storage, INSTANCE) == expected
    assert len(expected) == 23 + 6  # Jan 2, two a month Feb-Dec; Dec 26-31


def test_archive_by_week_keeps_one_set_a_week_for_90_days(store: Store) -> None:
    store.policy(
        archive_backup_retention_period=90,
        archive_backup_keep_policy="ByWeek",
        archive_backup_keep_count=1,
    )
    now = datetime(2026, 1, 1, 3, 0)
    # 2025-01-01 is a Wednesday: its ISO week's first set is that day; later weeks' are
    # their Mondays.
    _year_then_apply(
        store,
        lambda start: (start.weekday() == 0 or start == T0) and start + timedelta(days=90) > now,
    )


def test_archive_keep_all_keeps_every_full_set_for_its_period(store: Store) -> None:
    store.policy(archive_backup_retention_period=30, archive_backup_keep_policy="KeepAll")
    now = datetime(2026, 1, 1, 3, 0)
    _year_then_apply(store, lambda start: start + timedelta(days=30) > now)


def test_archive_keeps_full_sets_only_and_off_by_default(store: Store) -> None:
    base = add_set(store.catalog, store.storage, INSTANCE, datetime(2025, 1, 28, 2), 7)
    inc = add_set(
        store.catalog,
        store.storage,
        INSTANCE,
        datetime(2025, 2, 1, 2),
        7,
        kind="IncrementalBackup",
        parent_id=base,
    )
    full = add_set(store.catalog, store.storage, INSTANCE, datetime(2025, 2, 2, 2), 7)
    later = datetime(2025, 3, 1)
    assert store.reasons(later) == dict.fromkeys((base, inc, full), Reason.EXPIRED)
    store.policy(archive_backup_retention_period=90, archive_backup_keep_count=1)
    # February's first full set is archived; the incremental of Feb 1 is not a candidate.
    assert store.reasons(later) == {
        base: Reason.ARCHIVED,  # January's first full set
        inc: Reason.EXPIRED,
        full: Reason.ARCHIVED,
    }


def test_gfs_keeps_the_first_set_of_the_newest_months_and_years(store: Store) -> None:
    """Two years of daily sets with no backups in November 2025; GFS monthly=6, yearly=2:
    the six newest months that have a set reach back to June, skipping November."""
    store.policy(gfs_monthly_count=6, gfs_yearly_count=2)
    first = datetime(2024, 1, 1, 2, 0)
    made = daily_sets(store.catalog, store.storage, INSTANCE, first, 731, retention_days=7)
    with store.catalog.write() as s:
        november = [i for i, t in made.items() if (t.year, t.month) == (2025, 11)]
        for backup_id in november:
            s.delete(s.get_one(BackupSet, backup_id))
            store.storage.delete_prefix(f"{INSTANCE}/{backup_id}/")
            del made[backup_id]
    now = datetime(2026, 1, 1, 3, 0)
    plan = store.retention.plan(now)
    gfs = {d.backup_id: d.detail for d in plan.decisions if d.reason == Reason.GFS}
    assert made[min(gfs)] == first and "yearly" in gfs[min(gfs)]
    store.retention.apply(plan)
    months = {(2025, m) for m in (6, 7, 8, 9, 10, 12)}
    expected = {
        i
        for i, t in made.items()
        if (t.day == 1 and ((t.year, t.month) in months or t.month == 1))
        or t + timedelta(days=7) > now
    }
    assert set_ids(store.catalog) == stored_sets(store.storage, INSTANCE) == expected
    assert len(expected) == 2 + 6 + 6  # Jan 1 of 2024 and 2025; six months; Dec 26-31


def test_a_dry_run_changes_nothing(store: Store) -> None:
    store.policy(archive_backup_retention_period=60, archive_backup_keep_count=1)
    daily_sets(store.catalog, store.storage, INSTANCE, T0, 120, retention_days=7)

    def snapshot() -> tuple[list[tuple[Any, ...]], list[str]]:
        with store.catalog.read() as s:
            rows = s.execute(
                select(
                    BackupSet.id, BackupSet.is_avail, BackupSet.deleting_at, BackupSet.pinned
                ).order_by(BackupSet.id)
            ).all()
        return [tuple(r) for r in rows], list(store.storage.list(INSTANCE))

    before = snapshot()
    plan = store.retention.plan(T0 + timedelta(days=200))
    assert len(plan.removals) > 100
    assert snapshot() == before


def test_the_janitor_and_describe_backups_agree(rig: Rig) -> None:
    """What retention removed is gone from DescribeBackups; a pinned set shows Pinned."""
    from rdsbackup.api.actions.backups import _backup
    from rdsbackup.jobs.janitor import Janitor

    old = rig.run(method="Logical", retention_days=7).backup_id or 0
    pinned = rig.run(method="Logical", retention_days=7).backup_id or 0
    with rig.catalog.write() as s:
        s.get_one(BackupSet, old).expire_time = utcnow() - timedelta(minutes=1)
        s.get_one(BackupSet, pinned).expire_time = utcnow() - timedelta(minutes=1)
        s.get_one(BackupSet, pinned).pinned = True
    assert Janitor(rig.catalog, rig.runner.leases, rig.storage).expire_sets() == [old]
    listed = rig.service.describe_backups(rig.who, rig.instance_id, BackupFilter(), 1, 30).items
    assert [b.id for b in listed] == [pinned]
    assert _backup(listed[0])["Pinned"] is True


class FlakyStorage(MemoryStorage):
    """Memory storage whose next ``failures`` prefix deletions fail."""

    failures = 0

    def delete_prefix(self, prefix: str) -> int:
        if self.failures:
            self.failures -= 1
            raise StorageError("the store is unreachable")
        return super().delete_prefix(prefix)


def test_a_failed_object_deletion_leaves_the_chain_marked_and_the_next_pass_ends_it(
    catalog: Catalog,
) -> None:
    add_instance(catalog, INSTANCE)
    storage = FlakyStorage()
    full = add_set(catalog, storage, INSTANCE, T0, 7)
    inc = add_set(catalog, storage, INSTANCE, T0, 7, kind="IncrementalBackup", parent_id=full)
    retention = Retention(catalog, storage)
    storage.failures = 1  # the incremental's objects (it goes first)
    assert retention.run(T0 + timedelta(days=8)) == []  # the full set waits for it
    with catalog.read() as s:
        rows = s.execute(
            select(BackupSet.id, BackupSet.is_avail, BackupSet.deleting_at).order_by(BackupSet.id)
        ).all()
    assert [(i, avail, when is not None) for i, avail, when in rows] == [
        (full, False, True),
        (inc, False, True),
    ]
    assert stored_sets(storage, INSTANCE) == {inc}  # the full set's objects are gone
    assert retention.plan(T0 + timedelta(days=8)).decisions == []  # nothing to decide again
    assert retention.run(T0 + timedelta(days=8)) == [inc, full]
    assert set_ids(catalog) == stored_sets(storage, INSTANCE) == set()


def test_delete_backup_still_takes_a_pinned_set_but_not_a_locked_one(rig: Rig) -> None:
    pinned = rig.run(method="Logical").backup_id or 0
    locked = rig.run(method="Logical").backup_id or 0
    with rig.catalog.write() as s:
        s.get_one(BackupSet, pinned).pinned = True
        s.get_one(BackupSet, locked).store_status = "Disabled"
    rig.service.delete_backups(rig.who, rig.instance_id, [pinned])
    with pytest.raises(errors.BackupLocked):
        rig.service.delete_backups(rig.who, rig.instance_id, [locked])
    assert set_ids(rig.catalog) == {locked}
    assert list(rig.storage.list(f"{rig.instance_id}/{pinned}")) == []
