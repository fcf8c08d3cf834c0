"""Leases: a job or task runs only while its worker keeps renewing its lease.

A lease owner is ``node:pid:incarnation``. Work whose lease expired, or whose owner was
a process on this node that no longer exists, is failed by :meth:`Leases.reap`: nothing
stays "running" after its worker died. The same mechanism serves backup jobs and
restore tasks (:data:`BACKUP_JOBS`, :data:`RESTORE_TASKS`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from rdsbackup.catalog.db import Catalog, affected
from rdsbackup.catalog.models import BackupJob, RestoreTask
from rdsbackup.processes import alive as process_alive
from rdsbackup.states import JOB_PROGRESSING, JobStatus, RestoreStatus
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)

STOPPED = "service stopped before this work ended"
"""The reason recorded for work the stopping service was running."""

PROGRESS_TICK = 0.2
"""Seconds between looks at the progress of work renewed with a ``process_step``."""


@dataclass(frozen=True)
class LeaseTable:
    model: Any
    pending: str
    running: tuple[str, ...]
    on_claim: dict[str, str] = field(default_factory=dict)
    on_fail: dict[str, str] = field(default_factory=dict)


BACKUP_JOBS = LeaseTable(
    BackupJob,
    JobStatus.NO_START,
    JOB_PROGRESSING,
    on_claim={"status": JobStatus.CHECKING, "progress_status": JobStatus.CHECKING},
    on_fail={"status": JobStatus.FAILED, "progress_status": JobStatus.FAILED},
)
RESTORE_TASKS = LeaseTable(
    RestoreTask,
    RestoreStatus.PENDING,
    (RestoreStatus.RUNNING,),
    on_claim={"status": RestoreStatus.RUNNING},
    on_fail={"status": RestoreStatus.FAILED},
)


@dataclass(frozen=True)
class DeadWork:
    id: int
    reason: str


class Leases:
    def __init__(
        self,
        catalog: Catalog,
        node_id: str,
        lease_seconds: float,
        table: LeaseTable = BACKUP_JOBS,
    ) -> None:
        self.catalog = catalog
        self.node_id = node_id
        self.pid = os.getpid()
        self.owner = f"{node_id}:{self.pid}:{uuid.uuid4().hex[:12]}"
        self.ttl = timedelta(seconds=lease_seconds)
        self.table = table
        self.stopping = threading.Event()
        """Set when this process stops: its workers then fail with :data:`STOPPED`."""

    def for_table(self, table: LeaseTable) -> Leases:
        """The same owner (this process), leasing another kind of work."""
        other = Leases(self.catalog, self.node_id, self.ttl.total_seconds(), table)
        other.owner = self.owner
        other.stopping = self.stopping
        return other

    def claim(self, work_id: int) -> bool:
        m, now = self.table.model, utcnow()
        with self.catalog.write() as s:
            result = s.execute(
                update(m)
                .where(m.id == work_id, m.status == self.table.pending, m.lease_owner.is_(None))
                .values(
                    lease_owner=self.owner,
                    lease_expires_at=now + self.ttl,
                    started_at=now,
                    **self.table.on_claim,
                )
            )
            return affected(result) == 1

    def renew(self, work_id: int, **values: object) -> bool:
        """Extend the lease (and record ``values``); False when the lease was lost."""
        m = self.table.model
        with self.catalog.write() as s:
            result = s.execute(
                update(m)
                .where(
                    m.id == work_id, m.lease_owner == self.owner, m.status.in_(self.table.running)
                )
                .values(lease_expires_at=utcnow() + self.ttl, **values)
            )
            return affected(result) == 1

    def pending(self) -> list[int]:
        """Work nobody has started (its dispatcher may have died before running it)."""
        m = self.table.model
        with self.catalog.read() as s:
            return list(
                s.scalars(
                    select(m.id)
                    .where(m.status == self.table.pending, m.lease_owner.is_(None))
                    .order_by(m.id)
                )
            )

    def reap(self) -> list[DeadWork]:
        """Fail all running work whose worker is gone; returns it for cleanup."""
        m, now = self.table.model, utcnow()
        dead: list[DeadWork] = []
        with self.catalog.write() as s:
            rows = s.scalars(
                select(m).where(
                    m.status.in_(self.table.running),
                    or_(m.lease_owner.is_(None), m.lease_owner != self.owner),
                )
            )
            for row in rows:
                reason = self._why_dead(row.lease_owner, row.lease_expires_at, now)
                if reason is None:
                    continue
                for name, value in self.table.on_fail.items():
                    setattr(row, name, value)
                row.failed_reason = reason
                row.finished_at = now
                row.lease_owner = None
                dead.append(DeadWork(row.id, reason))
        return dead

    def fail_own(self, reason: str = STOPPED) -> list[DeadWork]:
        """Fail all running work this process still holds (its workers did not end in
        time while it stops): nothing stays running, and a worker that still finishes
        later cannot mark it done (its lease is gone)."""
        m, now = self.table.model, utcnow()
        failed: list[DeadWork] = []
        with self.catalog.write() as s:
            rows = s.scalars(
                select(m).where(m.status.in_(self.table.running), m.lease_owner == self.owner)
            )
            for row in rows:
                for name, value in self.table.on_fail.items():
                    setattr(row, name, value)
                row.failed_reason = reason
                row.finished_at = now
                row.lease_owner = None
                failed.append(DeadWork(row.id, reason))
        return failed

    def _why_dead(self, owner: str | None, expires: datetime | None, now: datetime) -> str | None:
        if owner is None:
            return "the work lost its worker before it could record progress"
        node, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if node == self.node_id and pid_text.isdigit() and not _alive(int(pid_text), self.pid):
            return f"the worker process running this ({owner}) stopped"
        if expires is not None and expires < now:
            return f"the worker running this ({owner}) stopped renewing its lease"
        return None


def _alive(pid: int, my_pid: int) -> bool:
    if pid == my_pid:
        return False  # an earlier incarnation of this very pid cannot be running work now
    return process_alive(pid)


class Heartbeat:
    """Renews a lease every ``interval`` seconds while the work runs, recording what
    ``values()`` returns (progress) with each renewal. ``lost`` is set once the lease
    is gone.

    With ``process_step``, ``values()`` is also looked at every :data:`PROGRESS_TICK`
    seconds and recorded early once its ``process`` moved by that many points: a short
    backup (1 GiB takes 3 s here) then still shows a handful of Process values, while a
    long one writes no more often than the interval."""

    def __init__(
        self,
        leases: Leases,
        work_id: int,
        interval: float,
        values: Callable[[], dict[str, object]] = dict,
        *,
        process_step: int | None = None,
    ) -> None:
        self.leases, self.work_id, self.interval, self.values = leases, work_id, interval, values
        self.process_step = process_step
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"lease-{work_id}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        tick = self.interval if self.process_step is None else min(self.interval, PROGRESS_TICK)
        renewed_at, recorded = time.monotonic(), 0
        while not self._stop.wait(tick):
            values = self.values()
            process = values.get("process")
            moved = (
                self.process_step is not None
                and isinstance(process, int)
                and process - recorded >= self.process_step
            )
            if not moved and time.monotonic() - renewed_at < self.interval:
                continue
            try:
                if not self.leases.renew(self.work_id, **values):
                    self.lost.set()
                    return
            except Exception:
                log.exception("renewing the lease of %s failed", self.work_id)
                renewed_at = time.monotonic()  # retried at the next interval, not tick
                continue
            renewed_at = time.monotonic()
            if isinstance(process, int):
                recorded = process
