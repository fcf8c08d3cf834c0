"""Log retention: stored log files older than the policy's ``LogBackupRetentionPeriod``
go, except those a point-in-time restore inside the retention still needs.

The restorable window after a pass begins at the cutoff (now minus the period): a
restore to the cutoff starts from the newest base set consistent at or before it (the
*anchor*; else the oldest base set there is) and replays from that set's log file. So a
file goes only when both its newest commit (or, holding none, its storing) is before
the cutoff and it precedes the anchor's file. Timeline history files stay: they are
small and every later timeline's restore reads them.

Removal is crash-safe as for sets: rows are marked (``deleting_at``), which hides them
from restores and listings at once, then their objects are deleted, then the rows; a
pass first finishes what a killed process left marked.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import Instance, LogFileRecord, policy_for
from rdsbackup.engines.logs import LogEngine
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.jobs.logchain import base_of, usable_sets
from rdsbackup.jobs.logstore import HISTORY
from rdsbackup.storage.base import Storage
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)


class LogRetention:
    def __init__(self, catalog: Catalog, storage: Storage, engines: EngineRegistry) -> None:
        self.catalog = catalog
        self.storage = storage
        self.engines = engines

    def run(self, now: datetime | None = None) -> int:
        """One pass; returns how many log files were removed."""
        when = now or utcnow()
        removed = self._finish()
        with self.catalog.write() as s:
            instances = list(
                s.scalars(
                    select(LogFileRecord.instance_id)
                    .where(LogFileRecord.deleting_at.is_(None))
                    .distinct()
                )
            )
            marked = 0
            for instance_id in instances:
                expired = self._expired(s, instance_id, when)
                for record in expired:
                    record.deleting_at = when
                marked += len(expired)
        if marked:
            log.info("log retention: removing %d log files", marked)
        return removed + self._finish()

    def _expired(self, s: Session, instance_id: str, now: datetime) -> list[LogFileRecord]:
        cutoff = now - timedelta(days=policy_for(s, instance_id).log_backup_retention_period)
        old = list(
            s.scalars(
                select(LogFileRecord).where(
                    LogFileRecord.instance_id == instance_id,
                    LogFileRecord.deleting_at.is_(None),
                    LogFileRecord.kind != HISTORY,
                    func.coalesce(LogFileRecord.last_time, LogFileRecord.stored_at) < cutoff,
                )
            )
        )
        if not old:
            return []
        anchor = self._anchor(s, instance_id, cutoff)
        if anchor is None:
            return old
        timeline, sequence = anchor
        return [
            r
            for r in old
            if r.timeline < timeline or (r.timeline == timeline and r.sequence < sequence)
        ]

    def _anchor(self, s: Session, instance_id: str, cutoff: datetime) -> tuple[int, int] | None:
        """(timeline, sequence) of the file a restore to ``cutoff`` starts from."""
        engine = self.engines.for_engine(s.get_one(Instance, instance_id).engine)
        if not isinstance(engine, LogEngine):
            return None
        before = usable_sets(s, instance_id, cutoff)
        after = list(reversed(usable_sets(s, instance_id, None)))
        for backup in [*before, *after]:
            base = base_of(backup, engine.base_log)
            if base is None:
                continue
            sequence = s.scalar(
                select(LogFileRecord.sequence).where(
                    LogFileRecord.instance_id == instance_id,
                    LogFileRecord.timeline == base[0],
                    LogFileRecord.name == base[1],
                    LogFileRecord.deleting_at.is_(None),
                )
            )
            if sequence is not None:
                return base[0], sequence
        return None

    def _finish(self) -> int:
        with self.catalog.read() as s:
            going = [
                (r.id, r.object_key)
                for r in s.scalars(
                    select(LogFileRecord).where(LogFileRecord.deleting_at.is_not(None))
                )
            ]
        for record_id, key in going:
            if key:
                self.storage.delete(key)
            with self.catalog.write() as s:
                s.execute(delete(LogFileRecord).where(LogFileRecord.id == record_id))
        return len(going)
