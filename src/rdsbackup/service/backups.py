"""Backup rules: creating jobs (with the seed document's preconditions), listing jobs and
sets, deleting sets.

The preconditions hold under concurrency because the database enforces them: the
partial unique index ``uq_backup_jobs_one_unfinished`` admits one unfinished job per
instance, the instance row is locked (PostgreSQL ``FOR UPDATE``; SQLite takes its
write lock at ``BEGIN IMMEDIATE``) while the day's jobs are counted, and
``uq_backup_jobs_client_token`` makes a ClientToken create at most one job.

Automated jobs (the scheduler's, ``job_mode=Automated``) go through the same rules but
two: the 20-a-day cap is CreateBackup's (it counts Manual jobs and applies to them only;
the policy bounds the automated ones), and ``manual_backup_enabled`` is about on-demand
backups only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupJob,
    BackupSet,
    Instance,
    join_names,
)
from rdsbackup.engines.base import BackupKind, BackupMethod, BackupPlan, BackupStrategy, EngineError
from rdsbackup.engines.base import UnsupportedPlan as EngineRefused
from rdsbackup.jobs.planning import NoParent, Planner
from rdsbackup.jobs.removal import finish_removals, mark_deleting
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import InstanceService, owned
from rdsbackup.service.views import BackupView, JobView, Page
from rdsbackup.states import (
    JOB_PROGRESSING,
    JOB_UNFINISHED,
    BackupMode,
    InstanceStatus,
    JobStatus,
    LockMode,
    StoreStatus,
    TaskAction,
)
from rdsbackup.storage.base import Storage
from rdsbackup.timeutil import utc_day, utcnow

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    def submit(self, job_id: int) -> None: ...


class InstanceState(Protocol):
    """What admitting a backup checks of an instance (a view, or a row of those columns)."""

    @property
    def status(self) -> str: ...
    @property
    def status_reason(self) -> str: ...
    @property
    def lock_mode(self) -> str: ...
    @property
    def manual_backup_enabled(self) -> bool: ...
    @property
    def read_only(self) -> bool: ...


@dataclass(frozen=True)
class BackupRules:
    daily_limit: int = 20
    client_token_hours: int = 24
    default_retention_days: int = 7


@dataclass(frozen=True)
class CreateBackupRequest:
    instance_id: str
    method: str = BackupMethod.PHYSICAL
    backup_type: str = "Auto"
    strategy: str | None = None
    db_names: tuple[str, ...] = ()
    retention_days: int | None = None
    resource_group_id: str | None = None
    client_token: str | None = None
    job_mode: str = BackupMode.MANUAL
    compression: str = ""


@dataclass(frozen=True)
class BackupFilter:
    backup_id: int | None = None
    status: str | None = None
    mode: str | None = None
    kind: str | None = None
    start: datetime | None = None
    end: datetime | None = None


class BackupService:
    def __init__(
        self,
        catalog: Catalog,
        instances: InstanceService,
        dispatcher: Dispatcher,
        storage: Storage,
        planner: Planner,
        rules: BackupRules,
    ) -> None:
        self.catalog = catalog
        self.instances = instances
        self.dispatcher = dispatcher
        self.storage = storage
        self.planner = planner
        self.rules = rules

    # -- CreateBackup -------------------------------------------------------------------

    def create_backup(self, who: Principal, req: CreateBackupRequest) -> int:
        if req.client_token and (job_id := self._job_for_token(who, req.client_token)):
            return job_id
        plan = self._plan(who, req)
        try:
            job_id = self._insert_job(who, req, plan)
        except (IntegrityError, errors.BackupJobExists):
            # A concurrent request won the race the unique indexes referee; with the same
            # ClientToken it was this very request, retried.
            if req.client_token and (job_id := self._job_for_token(who, req.client_token)):
                return job_id
            raise errors.BackupJobExists() from None
        self.dispatcher.submit(job_id)
        return job_id

    def _plan(self, who: Principal, req: CreateBackupRequest) -> BackupPlan:
        strategy = req.strategy or ("db" if req.db_names else "instance")
        if strategy == "db" and not req.db_names:
            raise errors.InvalidValue("DBName", "DBName is required with BackupStrategy=db.")
        if strategy == "instance" and req.db_names:
            raise errors.InvalidValue("DBName", "DBName applies only with BackupStrategy=db.")
        target = self.instances.target(who, req.instance_id)
        instance = target.instance
        if req.resource_group_id and req.resource_group_id != instance.resource_group_id:
            raise errors.InstanceNotFound()
        self._check_instance(instance, req.job_mode)  # before anything asks the server
        kind = BackupKind.INCREMENTAL if req.backup_type == "IncrementalBackup" else BackupKind.FULL
        plan = BackupPlan(
            method=BackupMethod(req.method),
            strategy=BackupStrategy(strategy),
            kind=kind,
            databases=req.db_names,
        )
        try:
            if plan.kind == BackupKind.INCREMENTAL:
                plan = self._with_parent(instance.id, plan)
            target.engine.check_plan(plan, target.access)
        except EngineRefused as e:
            raise _refusal(e) from None
        except EngineError as e:  # the server stopped answering since it was last probed
            raise errors.IncorrectInstanceState(e.reason) from None
        if req.db_names:
            self.instances.require_databases(instance.id, list(req.db_names))
        return plan

    def _with_parent(self, instance_id: str, plan: BackupPlan) -> BackupPlan:
        """An explicit IncrementalBackup needs a parent now, not when the job runs."""
        try:
            parent = self.planner.parent_for(instance_id, plan, window=None)
        except NoParent as e:
            raise errors.UnsupportedBackupType(str(e)) from None
        return replace(plan, parent=parent.manifest)

    def _insert_job(self, who: Principal, req: CreateBackupRequest, plan: BackupPlan) -> int:
        """The preconditions again and the job, in one write transaction. Core statements,
        not the ORM: this runs for every admission, and building and loading ORM objects
        was the larger part of its CPU."""
        now = utcnow()
        day = utc_day(now)
        with self.catalog.write() as s:
            state = s.execute(
                select(
                    Instance.status,
                    Instance.status_reason,
                    Instance.lock_mode,
                    Instance.manual_backup_enabled,
                    Instance.read_only,
                )
                .where(owned(who, req.instance_id))
                .with_for_update()
            ).one_or_none()
            if state is None:
                raise errors.InstanceNotFound()
            self._check_instance(state, req.job_mode)
            active, today = s.execute(
                select(
                    select(BackupJob.id)
                    .where(
                        BackupJob.instance_id == req.instance_id,
                        BackupJob.status.in_(JOB_UNFINISHED),
                    )
                    .exists(),
                    select(func.count(BackupJob.id))
                    .where(
                        BackupJob.instance_id == req.instance_id,
                        BackupJob.created_day == day,
                        BackupJob.status != JobStatus.FAILED,
                        BackupJob.job_mode == BackupMode.MANUAL,
                    )
                    .scalar_subquery(),
                )
            ).one()
            if active:
                raise errors.BackupJobExists()
            if req.job_mode == BackupMode.MANUAL and (today or 0) >= self.rules.daily_limit:
                raise errors.BackupQuotaExceeded()
            if req.client_token:
                self._release_old_token(s, who, req.client_token, now)
            return s.execute(
                insert(BackupJob)
                .values(
                    instance_id=req.instance_id,
                    account_id=who.account_id,
                    status=JobStatus.NO_START,
                    progress_status=JobStatus.NO_START,
                    process=0,
                    job_mode=req.job_mode,
                    task_action=_task_action(req.job_mode),
                    method=plan.method.value,
                    requested_type=req.backup_type,
                    kind=plan.kind.value,
                    strategy=plan.strategy.value,
                    db_names=join_names(list(plan.databases)),
                    retention_days=req.retention_days or self.rules.default_retention_days,
                    client_token=req.client_token,
                    compression=req.compression,
                    created_at=now,
                    created_day=day,
                )
                .returning(BackupJob.id)
            ).scalar_one()

    @staticmethod
    def _check_instance(instance: InstanceState, job_mode: str) -> None:
        if instance.status != InstanceStatus.RUNNING or instance.lock_mode != LockMode.UNLOCK:
            raise errors.IncorrectInstanceState(instance.status_reason)
        if job_mode == BackupMode.MANUAL and not instance.manual_backup_enabled:
            raise errors.OperationDenied("on-demand backups are disabled for this instance")
        if instance.read_only:
            raise errors.OperationDenied("the instance is read-only")

    def _job_for_token(self, who: Principal, token: str) -> int | None:
        since = utcnow() - timedelta(hours=self.rules.client_token_hours)
        with self.catalog.read() as s:
            return s.scalar(
                select(BackupJob.id).where(
                    BackupJob.account_id == who.account_id,
                    BackupJob.client_token == token,
                    BackupJob.created_at >= since,
                )
            )

    def _release_old_token(self, s: Session, who: Principal, token: str, now: datetime) -> None:
        """A token older than the idempotence window may be used again."""
        s.execute(
            update(BackupJob)
            .where(
                BackupJob.account_id == who.account_id,
                BackupJob.client_token == token,
                BackupJob.created_at < now - timedelta(hours=self.rules.client_token_hours),
            )
            .values(client_token=None)
        )

    # -- DescribeBackupTasks ---------------------------------------------------------------

    def describe_jobs(
        self,
        who: Principal,
        instance_id: str,
        *,
        job_id: int | None = None,
        job_status: str | None = None,
        mode: str | None = None,
    ) -> list[JobView]:
        self.instances.require(who, instance_id)
        query = select(BackupJob).where(
            BackupJob.instance_id == instance_id, BackupJob.account_id == who.account_id
        )
        if job_id is not None:
            query = query.where(BackupJob.id == job_id)
        else:
            wanted = {
                JobStatus.NO_START: (JobStatus.NO_START,),
                "Progressing": JOB_PROGRESSING,
            }.get(job_status or "", JOB_UNFINISHED)
            query = query.where(BackupJob.status.in_(wanted))
        if mode:
            query = query.where(BackupJob.job_mode == mode)
        with self.catalog.read() as s:
            return [JobView.of(j) for j in s.scalars(query.order_by(BackupJob.id))]

    # -- DescribeBackups -----------------------------------------------------------------

    def describe_backups(
        self, who: Principal, instance_id: str, filters: BackupFilter, page: int, size: int
    ) -> Page[BackupView]:
        self.instances.require(who, instance_id)
        # Core rows, not ORM objects: loading 30 objects of 45 columns was a fifth of
        # the call (a view reads the same names off a row).
        query = select(cast(Table, BackupSet.__table__)).where(
            BackupSet.instance_id == instance_id,
            BackupSet.account_id == who.account_id,
            BackupSet.deleting_at.is_(None),  # being removed (jobs/removal.py)
        )
        if filters.backup_id is not None:
            query = query.where(BackupSet.id == filters.backup_id)
        if filters.status:
            query = query.where(BackupSet.status == filters.status)
        if filters.mode:
            query = query.where(BackupSet.mode == filters.mode)
        if filters.kind:
            query = query.where(BackupSet.kind == filters.kind)
        if filters.start:
            query = query.where(BackupSet.start_time >= filters.start)
        if filters.end:
            query = query.where(BackupSet.start_time <= filters.end)
        with self.catalog.read() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.execute(
                query.order_by(BackupSet.start_time.desc(), BackupSet.id.desc())
                .offset((page - 1) * size)
                .limit(size)
            )
            return Page([BackupView.of(b) for b in rows], total, page, size)

    # -- DeleteBackup --------------------------------------------------------------------

    def delete_backups(self, who: Principal, instance_id: str, backup_ids: list[int]) -> None:
        """All or nothing: every named set must exist, be deletable, and take its
        dependants (incrementals built on it) along in the same call."""
        self.instances.require(who, instance_id)
        with self.catalog.write() as s:
            sets = list(
                s.scalars(
                    select(BackupSet).where(
                        BackupSet.id.in_(backup_ids),
                        BackupSet.instance_id == instance_id,
                        BackupSet.account_id == who.account_id,
                        BackupSet.deleting_at.is_(None),
                    )
                )
            )
            found = {b.id for b in sets}
            if missing := [i for i in backup_ids if i not in found]:
                raise errors.BackupNotFound(f"BackupId {missing[0]}")
            if locked := [b.id for b in sets if b.store_status != StoreStatus.ENABLED]:
                raise errors.BackupLocked(f"BackupId {locked[0]} has StoreStatus Disabled")
            dependants = s.scalars(
                select(BackupSet.id).where(
                    BackupSet.parent_id.in_(found),
                    BackupSet.id.not_in(found),
                    BackupSet.deleting_at.is_(None),
                )
            ).all()
            if dependants:
                raise errors.BackupLocked(
                    f"backup sets {', '.join(map(str, dependants))} depend on this set; "
                    "delete them in the same call"
                )
            ids = mark_deleting(s, sets)
        finish_removals(self.catalog, self.storage, ids)


def _task_action(job_mode: str) -> TaskAction:
    return TaskAction.TEMP if job_mode == BackupMode.MANUAL else TaskAction.NORMAL


def _refusal(e: EngineRefused) -> errors.ServiceError:
    if e.what == "method":
        return errors.UnsupportedBackupMethod(e.reason)
    if e.what == "kind":
        return errors.UnsupportedBackupType(e.reason)
    return errors.UnsupportedBackupStrategy(e.reason)
