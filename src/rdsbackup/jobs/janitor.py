"""Housekeeping of jobs and sets: fail jobs whose worker died, expire sets past their
retention."""

from __future__ import annotations

import logging

from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet
from rdsbackup.jobs.leases import Leases
from rdsbackup.jobs.removal import delete_stored, drop_records
from rdsbackup.jobs.runner import record_failure
from rdsbackup.states import StoreStatus
from rdsbackup.storage.base import Storage
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)


class Janitor:
    def __init__(self, catalog: Catalog, leases: Leases, storage: Storage) -> None:
        self.catalog = catalog
        self.leases = leases
        self.storage = storage

    def reap_jobs(self) -> list[int]:
        dead = self.leases.reap()
        for job in dead:
            log.warning("job %s failed: %s", job.id, job.reason)
            with self.catalog.read() as s:
                prefix = s.get_one(BackupJob, job.id).storage_prefix
            if prefix:
                self.storage.delete_prefix(prefix)
            record_failure(self.catalog, job.id, job.reason, owner=None)
        return [j.id for j in dead]

    def expire_sets(self) -> list[int]:
        """Delete sets past their retention, never a set another set still depends on."""
        now = utcnow()
        removed: list[int] = []
        prefixes: list[str] = []
        with self.catalog.write() as s:
            expired = list(
                s.scalars(
                    select(BackupSet)
                    .where(
                        BackupSet.expire_time.is_not(None),
                        BackupSet.expire_time < now,
                        BackupSet.store_status == StoreStatus.ENABLED,
                    )
                    .order_by(BackupSet.id.desc())
                )
            )
            for backup in expired:
                child = s.scalar(select(BackupSet.id).where(BackupSet.parent_id == backup.id))
                if child is not None:
                    continue
                removed.append(backup.id)
                prefixes += drop_records(s, [backup])
        delete_stored(self.storage, prefixes)
        if removed:
            log.info("expired backup sets %s", removed)
        return removed
