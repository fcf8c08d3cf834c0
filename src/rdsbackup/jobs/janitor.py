"""Housekeeping of jobs, sets and logs: fail jobs whose worker died, expire sets and log
files past their retention."""

from __future__ import annotations

import logging

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob
from rdsbackup.jobs.leases import STOPPED, DeadWork, Leases
from rdsbackup.jobs.logretention import LogRetention
from rdsbackup.jobs.retention import Retention
from rdsbackup.jobs.runner import record_failure
from rdsbackup.storage.base import Storage

log = logging.getLogger(__name__)


class Janitor:
    def __init__(
        self,
        catalog: Catalog,
        leases: Leases,
        storage: Storage,
        log_retention: LogRetention | None = None,
    ) -> None:
        self.catalog = catalog
        self.leases = leases
        self.storage = storage
        self.retention = Retention(catalog, storage)
        self.log_retention = log_retention

    def reap_jobs(self) -> list[int]:
        return self._cleanup(self.leases.reap())

    def fail_running(self, reason: str = STOPPED) -> list[int]:
        """Fail the jobs this process still runs (it is stopping), each with a Failed set."""
        return self._cleanup(self.leases.fail_own(reason))

    def remove_partial(self, job_ids: list[int]) -> None:
        """Remove again what failed jobs wrote: a worker may have written on after its
        job was failed."""
        for job_id in job_ids:
            self._delete_written(job_id)

    def _cleanup(self, dead: list[DeadWork]) -> list[int]:
        for job in dead:
            log.warning("job %s failed: %s", job.id, job.reason)
            self._delete_written(job.id)
            record_failure(self.catalog, job.id, job.reason, owner=None)
        return [j.id for j in dead]

    def _delete_written(self, job_id: int) -> None:
        with self.catalog.read() as s:
            prefix = s.get_one(BackupJob, job_id).storage_prefix
        if prefix:
            self.storage.delete_prefix(prefix)

    def expire_sets(self) -> list[int]:
        """Remove sets past their retention as jobs/retention.py decides (never a set a
        live incremental needs), finishing interrupted removals first."""
        removed = self.retention.run()
        if removed:
            log.info("removed backup sets %s", removed)
        return removed

    def expire_logs(self) -> int:
        """Remove log files past LogBackupRetentionPeriod that no restore inside it needs
        (jobs/logretention.py)."""
        return self.log_retention.run() if self.log_retention is not None else 0

    def resume_removals(self) -> list[int]:
        return self.retention.resume()
