"""The scheduler of automated backups: every instance's backup policy, turned into jobs.

Each tick (every ``scheduler_interval_seconds``, on the one node holding the catalog's
``scheduler`` lease) looks at every instance's policy (``rdsbackup.schedule`` says
which slots it has) and decides each slot that came due once, in a ``scheduled_backups``
row whose unique (instance, slot) key the database holds: a slot is decided once,
whatever the clock does or however many schedulers share the catalog.

The decisions (docs/architecture.md, "Scheduler"):

- a slot due and not past its deadline, instance Running, no unfinished job: its
  automated job is created through CreateBackup's own rules (``BackupService``, so the
  one-unfinished-job index, the engine's capabilities and the plan checks hold):
  ``Started``;
- another job unfinished, or the instance Unavailable or Rebooting (states a server
  leaves by itself): ``Deferred``, retried at each tick until the slot's deadline (the
  window's end or the next slot), then ``Missed`` with the reason;
- the instance otherwise not Running (Stopped, Creating, Deleted ...) or the rules
  refusing: ``Skipped`` with the reason (a released instance is recorded once, not
  every slot);
- slots whose deadlines all passed while no scheduler ran (downtime): one ``CaughtUp``
  backup for the newest of them (a full if any of them was), the count in its reason,
  never one per slot;
- an incremental slot without a full set to build on: a full instead (reason says so).

Only slots after the instance's last decision are considered, so a clock set back
cannot decide a slot again; with no decision yet (a new instance, a first start) only
slots still open count, and a policy changed after a slot's deadline does not fire it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rdsbackup import schedule
from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupJob,
    BackupPolicy,
    Instance,
    ScheduledBackup,
    policy_for,
)
from rdsbackup.clock import Clock
from rdsbackup.compress_types import compression_of
from rdsbackup.engines.base import BackupKind, BackupMethod, BackupPlan, BackupStrategy
from rdsbackup.jobs.planning import NoParent
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.backups import BackupService, CreateBackupRequest
from rdsbackup.service.lease import NamedLease
from rdsbackup.states import (
    JOB_UNFINISHED,
    SCHEDULE_OPEN,
    BackupMode,
    InstanceStatus,
    ScheduleStatus,
)

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
LOOKBACK = timedelta(days=8)
"""How far back missed slots are counted for a catch-up."""
RELEASED = "the instance was released"
TOKEN_PREFIX = "rdsbackup-scheduler-"  # noqa: S105 - a ClientToken, no secret
METHODS = {m.value for m in BackupMethod}
PASSING = (InstanceStatus.UNAVAILABLE, InstanceStatus.REBOOTING)
"""States a server leaves by itself (a failed probe, a restart): the slot waits for it."""


@dataclass(frozen=True)
class Decision:
    """One ``scheduled_backups`` row, as listed (``rdsbackup schedule list``)."""

    instance_id: str
    slot_time: datetime
    deadline: datetime
    kind: str
    status: str
    catch_up: bool
    reason: str
    job_id: int | None
    decided_at: datetime

    @classmethod
    def of(cls, row: ScheduledBackup) -> Decision:
        return cls(
            row.instance_id,
            row.slot_time,
            row.deadline,
            row.kind,
            row.status,
            row.catch_up,
            row.reason,
            row.job_id,
            row.decided_at,
        )


@dataclass(frozen=True)
class _Due:
    instance_id: str
    slot: schedule.Slot
    catch_up: bool
    reason: str


class Scheduler:
    def __init__(
        self, catalog: Catalog, backups: BackupService, lease: NamedLease, clock: Clock
    ) -> None:
        self.catalog = catalog
        self.backups = backups
        self.lease = lease
        self.clock = clock

    def tick(self) -> list[int]:
        """One pass (a no-op unless this node holds the lease); the jobs it created."""
        if not self.lease.hold():
            return []
        started: list[int] = []
        for row_id in self._open_rows():
            started += self._guarded(row_id)
        for due in self._due(self.clock.now()):
            claimed = self._claim(due)
            if claimed is not None:
                started += self._guarded(claimed)
        return started

    def _guarded(self, row_id: int) -> list[int]:
        """One slot's attempt; a failure (the catalog busy, a server refusing) is logged
        and the slot, still open, retried at the next tick, the other instances served."""
        try:
            return self._attempt(row_id)
        except Exception:
            log.exception("scheduler: slot %s could not be decided; retried next tick", row_id)
            return []

    def stop(self) -> None:
        self.lease.release()

    def decisions(self, instance_id: str | None = None) -> list[Decision]:
        return decisions(self.catalog, instance_id)

    # -- which slots came due ------------------------------------------------------------

    def _open_rows(self) -> list[int]:
        with self.catalog.read() as s:
            return list(
                s.scalars(
                    select(ScheduledBackup.id)
                    .where(ScheduledBackup.status.in_(SCHEDULE_OPEN))
                    .order_by(ScheduledBackup.id)
                )
            )

    def _due(self, now: datetime) -> list[_Due]:
        found: list[_Due] = []
        with self.catalog.read() as s:
            policies = {p.instance_id: p for p in s.scalars(select(BackupPolicy))}
            latest = _latest_decisions(s)
            for instance in s.scalars(select(Instance).order_by(Instance.id)):
                last = latest.get(instance.id)
                if instance.status == InstanceStatus.DELETED and (
                    last is None or last.reason == RELEASED
                ):
                    continue
                policy = policies.get(instance.id) or policy_for(s, instance.id)
                try:
                    due = _due_slot(policy, last, now)
                except ValueError:
                    log.exception("instance %s: its backup policy cannot be read", instance.id)
                    continue
                if due is not None:
                    found.append(due)
        return found

    # -- deciding one slot ---------------------------------------------------------------

    def _claim(self, due: _Due) -> int | None:
        """Insert the slot's row (Pending); None if it was decided already."""
        row = ScheduledBackup(
            instance_id=due.instance_id,
            slot_time=due.slot.due,
            deadline=due.slot.deadline,
            kind=due.slot.kind,
            status=ScheduleStatus.PENDING,
            catch_up=due.catch_up,
            reason=due.reason,
            decided_at=self.clock.now(),
        )
        try:
            with self.catalog.write() as s:
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            return None

    def _attempt(self, row_id: int) -> list[int]:
        """Start the slot's job if it may start now, else record why not."""
        now = self.clock.now()
        with self.catalog.read() as s:
            row = s.get_one(ScheduledBackup, row_id)
            instance = s.get_one(Instance, row.instance_id)
            policy = policy_for(s, instance.id)
            token = f"{TOKEN_PREFIX}{row.id}"
            made = s.scalar(
                select(BackupJob).where(
                    BackupJob.account_id == instance.account_id, BackupJob.client_token == token
                )
            )
            unfinished = s.scalar(
                select(BackupJob).where(
                    BackupJob.instance_id == instance.id, BackupJob.status.in_(JOB_UNFINISHED)
                )
            )
        if made is not None:  # created by an attempt that did not get to record it
            return self._started(row, made.id, made.kind, row.reason)
        if now >= row.deadline:
            why = f"its deadline passed: {row.reason}" if row.reason else "its deadline passed"
            self._decide(row, ScheduleStatus.MISSED, why)
            return []
        if instance.status in PASSING:  # it may answer again inside the slot
            self._decide(row, ScheduleStatus.DEFERRED, _state(instance))
            return []
        if instance.status != InstanceStatus.RUNNING:
            why = RELEASED if instance.status == InstanceStatus.DELETED else _state(instance)
            self._decide(row, ScheduleStatus.SKIPPED, why)
            return []
        if unfinished is not None:
            self._decide(
                row,
                ScheduleStatus.DEFERRED,
                f"backup job {unfinished.id} ({unfinished.job_mode}) was not finished",
            )
            return []
        return self._create(row, instance, policy, token)

    def _create(
        self, row: ScheduledBackup, instance: Instance, policy: BackupPolicy, token: str
    ) -> list[int]:
        method = policy.backup_method if policy.backup_method in METHODS else "Physical"
        kind, note = row.kind, row.reason
        if row.status == ScheduleStatus.DEFERRED:
            note = f"started late: {row.reason}"
        if kind == schedule.INCREMENTAL and (why := self._no_parent(instance.id, method)):
            kind, note = schedule.FULL, _join(note, f"a full backup instead: {why}")
        request = CreateBackupRequest(
            instance_id=instance.id,
            method=method,
            backup_type=kind,
            retention_days=policy.backup_retention_period,
            client_token=token,
            job_mode=BackupMode.AUTOMATED,
            compression=compression_of(policy.compress_type, ""),  # "": the setting's
        )
        who = Principal(instance.account_id, "", "scheduler")
        try:
            job_id = self.backups.create_backup(who, request)
        except errors.BackupJobExists:
            self._decide(row, ScheduleStatus.DEFERRED, "another backup job was not finished")
            return []
        except errors.InstanceNotFound:
            self._decide(row, ScheduleStatus.SKIPPED, RELEASED)
            return []
        except errors.ServiceError as e:
            self._decide(row, ScheduleStatus.SKIPPED, _join(note, f"{type(e).__name__}: {e}"))
            return []
        return self._started(row, job_id, kind, note)

    def _no_parent(self, instance_id: str, method: str) -> str:
        """Why an incremental cannot be built now ("" when it can)."""
        plan = BackupPlan(
            method=BackupMethod(method), strategy=BackupStrategy.INSTANCE, kind=BackupKind.FULL
        )
        try:
            self.backups.planner.parent_for(instance_id, plan, window=None)
        except NoParent as e:
            return str(e)
        return ""

    def _started(self, row: ScheduledBackup, job_id: int, kind: str, reason: str) -> list[int]:
        status = ScheduleStatus.CAUGHT_UP if row.catch_up else ScheduleStatus.STARTED
        self._decide(row, status, reason, job_id=job_id, kind=kind)
        log.info(
            "scheduler: %s backup job %s of %s for its slot at %s (%s)",
            kind,
            job_id,
            row.instance_id,
            row.slot_time,
            status,
        )
        return [job_id]

    def _decide(self, row: ScheduledBackup, status: str, reason: str, **values: object) -> None:
        with self.catalog.write() as s:
            s.execute(
                update(ScheduledBackup)
                .where(ScheduledBackup.id == row.id)
                .values(status=status, reason=reason, decided_at=self.clock.now(), **values)
            )


def decisions(catalog: Catalog, instance_id: str | None = None) -> list[Decision]:
    """What the scheduler decided, oldest slot first."""
    query = select(ScheduledBackup).order_by(ScheduledBackup.slot_time, ScheduledBackup.id)
    if instance_id is not None:
        query = query.where(ScheduledBackup.instance_id == instance_id)
    with catalog.read() as s:
        return [Decision.of(r) for r in s.scalars(query)]


def _latest_decisions(s: Session) -> dict[str, ScheduledBackup]:
    newest = (
        select(ScheduledBackup.instance_id, func.max(ScheduledBackup.slot_time).label("slot_time"))
        .group_by(ScheduledBackup.instance_id)
        .subquery()
    )
    rows = s.scalars(
        select(ScheduledBackup).join(
            newest,
            and_(
                ScheduledBackup.instance_id == newest.c.instance_id,
                ScheduledBackup.slot_time == newest.c.slot_time,
            ),
        )
    )
    return {r.instance_id: r for r in rows}


def _due_slot(policy: BackupPolicy, last: ScheduledBackup | None, now: datetime) -> _Due | None:
    """The one slot to decide now for this policy, if any (see the module's rules)."""
    since = max(last.slot_time if last else now - schedule.DAY, now - LOOKBACK)
    floor = now if last is None else datetime.min
    if policy.updated_at is not None:
        floor = max(floor, policy.updated_at)
    candidates = [x for x in schedule.slots(policy, since, now) if x.deadline > floor]
    if not candidates:
        return None
    newest, missed = candidates[-1], len(candidates) - 1
    # A full slot missed makes the backup taken now a full (no chain grows past it).
    full = any(x.kind == schedule.FULL for x in candidates)
    kind = schedule.FULL if full else newest.kind
    if newest.deadline > now:
        note = f"{missed} earlier slot(s) missed while no scheduler ran" if missed else ""
        return _Due(policy.instance_id, replace(newest, kind=kind), False, note)
    # Every candidate's deadline passed while no scheduler ran: one catch-up, now.
    upcoming = schedule.slots(policy, now, now + schedule.DAY)
    deadline = min([now + schedule.WINDOW] + [x.due for x in upcoming[:1]])
    slot = schedule.Slot(newest.due, deadline, kind)
    note = f"catch-up: {len(candidates)} slot(s) since {candidates[0].due:%Y-%m-%dT%H:%MZ} missed"
    return _Due(policy.instance_id, slot, True, note)


def _state(instance: Instance) -> str:
    reason = f": {instance.status_reason}" if instance.status_reason else ""
    return f"the instance was {instance.status}{reason}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
