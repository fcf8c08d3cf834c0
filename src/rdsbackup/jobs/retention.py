"""Retention: plan which expired sets go and why (jobs/retention_rules.py), then remove
them crash-safely (jobs/removal.py). The janitor runs it every pass; ``rdsbackup
retention plan`` shows a plan without changing anything."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet, RestoreTask, policy_for
from rdsbackup.jobs.removal import finish_removals, mark_deleting
from rdsbackup.jobs.retention_rules import Busy, Decision, KeepRules, SetFacts, decide
from rdsbackup.states import JOB_UNFINISHED, RestoreStatus, StoreStatus
from rdsbackup.storage.base import Storage
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPlan:
    now: datetime
    instance_id: str | None
    decisions: list[Decision]

    @property
    def removals(self) -> list[Decision]:
        """The sets to remove, incrementals before the sets they build on."""
        return sorted((d for d in self.decisions if d.remove), key=lambda d: -d.backup_id)

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if not d.remove]


class Retention:
    def __init__(self, catalog: Catalog, storage: Storage) -> None:
        self.catalog = catalog
        self.storage = storage

    def plan(self, now: datetime | None = None, instance_id: str | None = None) -> RetentionPlan:
        """What would go now, and what past its expiry stays, with reasons. Reads only."""
        when = now or utcnow()
        with self.catalog.read() as s:
            return RetentionPlan(when, instance_id, _decisions(s, when, instance_id))

    def apply(self, plan: RetentionPlan) -> list[int]:
        """Remove the plan's sets that a fresh plan, made in the same transaction as the
        marking, still removes (a set pinned or put to use since is kept). Returns the
        ids whose removal finished."""
        wanted = {d.backup_id for d in plan.removals}
        if not wanted:
            return []
        with self.catalog.write() as s:
            if not self.catalog.is_sqlite:  # SQLite's write lock is taken at BEGIN
                instances = {d.instance_id for d in plan.removals}
                s.execute(  # a pin racing this waits, and sees the set being removed
                    select(BackupSet.id)
                    .where(BackupSet.instance_id.in_(instances))
                    .with_for_update()
                )
            fresh = _decisions(s, plan.now, plan.instance_id)
            going = [d.backup_id for d in fresh if d.remove and d.backup_id in wanted]
            marked = mark_deleting(
                s, s.scalars(select(BackupSet).where(BackupSet.id.in_(going))), utcnow()
            )
        for d in plan.removals:
            if d.backup_id in marked:
                log.info("backup set %s (%s) goes: %s", d.backup_id, d.instance_id, d.detail)
        return finish_removals(self.catalog, self.storage, marked)

    def resume(self) -> list[int]:
        """Finish removals a killed process or a storage failure left half done."""
        done = finish_removals(self.catalog, self.storage)
        if done:
            log.info("finished the interrupted removal of backup sets %s", done)
        return done

    def run(self, now: datetime | None = None) -> list[int]:
        """One janitor pass: finish interrupted removals, then remove what expired."""
        return self.resume() + self.apply(self.plan(now))


def _decisions(s: Session, now: datetime, instance_id: str | None) -> list[Decision]:
    query = select(BackupSet).where(BackupSet.deleting_at.is_(None))
    if instance_id is not None:
        query = query.where(BackupSet.instance_id == instance_id)
    rows = list(s.scalars(query.order_by(BackupSet.id)))
    sets = [
        SetFacts(
            id=b.id,
            instance_id=b.instance_id,
            status=b.status,
            kind=b.kind,
            strategy=b.strategy,
            start_time=b.start_time,
            expire_time=b.expire_time,
            parent_id=b.parent_id,
            pinned=b.pinned,
            locked=b.store_status != StoreStatus.ENABLED,
            method=b.method,
            end_time=b.end_time,
        )
        for b in rows
    ]
    instances = sorted({b.instance_id for b in sets})
    return decide(sets, {i: _rules(s, i) for i in instances}, _busy(s), now)


def _rules(s: Session, instance_id: str) -> KeepRules:
    p = policy_for(s, instance_id)
    return KeepRules(
        archive_days=p.archive_backup_retention_period or 0,
        archive_policy=p.archive_backup_keep_policy or "ByMonth",
        archive_count=p.archive_backup_keep_count or 1,
        gfs_weekly=p.gfs_weekly_count or 0,
        gfs_monthly=p.gfs_monthly_count or 0,
        gfs_yearly=p.gfs_yearly_count or 0,
    )


def _busy(s: Session) -> Busy:
    reading = s.scalars(
        select(RestoreTask.backup_id).where(
            RestoreTask.status.in_((RestoreStatus.PENDING, RestoreStatus.RUNNING))
        )
    )
    backing_up = s.scalars(
        select(BackupJob.instance_id).where(BackupJob.status.in_(JOB_UNFINISHED))
    )
    return Busy(frozenset(reading), frozenset(backing_up))
