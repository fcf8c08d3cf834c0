"""Job leases: a job runs only while its worker keeps renewing the lease.

A lease owner is ``node:pid:incarnation``. A job whose lease expired, or whose owner
was a process on this node that no longer exists, is failed by :meth:`Leases.reap`:
no job stays "running" after its worker died, and its instance is free at once.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import JOB_PROGRESSING as RUNNING
from rdsbackup.catalog.models import BackupJob
from rdsbackup.timeutil import utcnow


@dataclass(frozen=True)
class DeadJob:
    job_id: int
    storage_prefix: str
    reason: str


class Leases:
    def __init__(self, catalog: Catalog, node_id: str, lease_seconds: float) -> None:
        self.catalog = catalog
        self.node_id = node_id
        self.pid = os.getpid()
        self.owner = f"{node_id}:{self.pid}:{uuid.uuid4().hex[:12]}"
        self.ttl = timedelta(seconds=lease_seconds)

    def claim(self, job_id: int) -> bool:
        now = utcnow()
        with self.catalog.write() as s:
            result = s.execute(
                update(BackupJob)
                .where(
                    BackupJob.id == job_id,
                    BackupJob.status == "NoStart",
                    BackupJob.lease_owner.is_(None),
                )
                .values(
                    lease_owner=self.owner,
                    lease_expires_at=now + self.ttl,
                    status="Checking",
                    progress_status="Checking",
                    started_at=now,
                )
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def renew(self, job_id: int, **values: object) -> bool:
        """Extend the lease (and record ``values``); False when the lease was lost."""
        with self.catalog.write() as s:
            result = s.execute(
                update(BackupJob)
                .where(
                    BackupJob.id == job_id,
                    BackupJob.lease_owner == self.owner,
                    BackupJob.status.in_(RUNNING),
                )
                .values(lease_expires_at=utcnow() + self.ttl, **values)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def pending(self) -> list[int]:
        """Jobs nobody has started (their dispatcher may have died before running them)."""
        with self.catalog.read() as s:
            return list(
                s.scalars(
                    select(BackupJob.id)
                    .where(BackupJob.status == "NoStart", BackupJob.lease_owner.is_(None))
                    .order_by(BackupJob.id)
                )
            )

    def reap(self) -> list[DeadJob]:
        """Fail every running job whose worker is gone; returns them for cleanup."""
        now = utcnow()
        dead: list[DeadJob] = []
        with self.catalog.write() as s:
            jobs = s.scalars(
                select(BackupJob).where(
                    BackupJob.status.in_(RUNNING),
                    or_(BackupJob.lease_owner.is_(None), BackupJob.lease_owner != self.owner),
                )
            )
            for job in jobs:
                reason = self._why_dead(job.lease_owner, job.lease_expires_at, now)
                if reason is None:
                    continue
                job.status = job.progress_status = "Failed"
                job.failed_reason = reason
                job.finished_at = now
                job.lease_owner = None
                dead.append(DeadJob(job.id, job.storage_prefix, reason))
        return dead

    def _why_dead(self, owner: str | None, expires: object, now: object) -> str | None:
        if owner is None:
            return "the job lost its worker before it could record progress"
        node, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if node == self.node_id and pid_text.isdigit() and not _alive(int(pid_text), self.pid):
            return f"the worker process running this job ({owner}) stopped"
        if expires is not None and expires < now:  # type: ignore[operator]
            return f"the worker running this job ({owner}) stopped renewing its lease"
        return None


def _alive(pid: int, my_pid: int) -> bool:
    if pid == my_pid:
        return False  # an earlier incarnation of this very pid cannot be running jobs now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
