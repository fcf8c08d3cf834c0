"""Restore rules: CloneDBInstance, RestoreDatabase and VerifyBackup (extensions), and
listing restore tasks. Each creates a task the restore workers run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupSet,
    Instance,
    RestoreTask,
    join_names,
    policy_for,
    split_names,
)
from rdsbackup.engines.families import family_of, same_family
from rdsbackup.engines.logs import LogEngine
from rdsbackup.instances.inventory import Inventory
from rdsbackup.jobs.logchain import NoRecovery, durable_end
from rdsbackup.jobs.logchain import plan as recovery_plan
from rdsbackup.jobs.logchain import window as recovery_window
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import InstanceService
from rdsbackup.states import BackupStatus, InstanceStatus, RestoreKind, RestoreStatus
from rdsbackup.timeutil import to_wire, utcnow

PAY_TYPES = ("Postpaid", "Prepaid", "Serverless")


class Dispatcher(Protocol):
    def submit(self, job_id: int) -> None: ...


class Placement(Protocol):
    """Makes the record of a new local instance (its folder, port, credentials)."""

    def register_local(
        self,
        engine: str,
        account_id: int,
        admin_user: str,
        admin_password: str,
        *,
        description: str = "",
        resource_group_id: str = "",
        region_id: str = "",
        zone_id: str = "",
    ) -> tuple[str, object]: ...


@dataclass(frozen=True)
class CloneRequest:
    source_instance_id: str
    backup_id: int | None
    restore_time: datetime | None
    pay_type: str
    db_names: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class TaskView:
    id: int
    kind: str
    status: str
    backup_id: int
    source_instance_id: str
    target_instance_id: str | None
    db_names: list[str]
    target_db_name: str
    failed_reason: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, t: RestoreTask) -> TaskView:
        return cls(
            t.id,
            t.kind,
            t.status,
            t.backup_id,
            t.source_instance_id,
            t.target_instance_id,
            split_names(t.db_names),
            t.target_db_name,
            t.failed_reason,
            t.created_at,
            t.started_at,
            t.finished_at,
        )


class RestoreService:
    def __init__(
        self,
        catalog: Catalog,
        instances: InstanceService,
        inventory: Inventory,
        dispatcher: Dispatcher,
        placement: Placement,
    ) -> None:
        self.catalog = catalog
        self.instances = instances
        self.inventory = inventory
        self.dispatcher = dispatcher
        self.placement = placement

    def clone(self, who: Principal, req: CloneRequest) -> str:
        """A new local instance restored from the set; answers at once (Creating)."""
        source = self.instances.get(who, req.source_instance_id)
        if req.restore_time is not None:
            backup = self._base_set(who, source.id, req.restore_time, req.backup_id)
        elif req.backup_id is None:
            raise errors.MissingValue("BackupId")
        else:
            backup = self._usable_set(who, source.id, req.backup_id)
        missing = [d for d in req.db_names if d not in split_names(backup.db_names)]
        if missing and split_names(backup.db_names):
            raise errors.DatabaseNotInSet(missing)
        creds = self.inventory.access(source.id)
        instance_id, _ = self.placement.register_local(
            source.engine,
            who.account_id,
            creds.user,
            creds.password,
            description=req.description or _clone_description(source.id, backup.id, req),
            resource_group_id=source.resource_group_id,
            region_id=source.region_id,
            zone_id=source.zone_id,
        )
        with self.catalog.write() as s:
            row = s.get_one(Instance, instance_id)
            row.pay_type, row.source_instance_id = req.pay_type, source.id
            row.source_backup_id = backup.id
            row.engine_version = backup.engine_version
            task_id = self._task(
                s, who, RestoreKind.CLONE, backup, target=instance_id, db_names=list(req.db_names)
            )
            s.get_one(RestoreTask, task_id).restore_time = req.restore_time
        self.dispatcher.submit(task_id)
        return instance_id

    def _base_set(
        self, who: Principal, instance_id: str, when: datetime, backup_id: int | None
    ) -> BackupSet:
        """The set a clone to ``when`` starts from: the newest one whose stored logs
        reach ``when`` unbroken (or ``backup_id``, when given, if its logs do)."""
        engine = self.inventory.engines.for_engine(self.instances.get(who, instance_id).engine)
        if not isinstance(engine, LogEngine):
            raise errors.LogBackupOff("this engine keeps no log backups")
        with self.catalog.read() as s:
            keeps_logs = policy_for(s, instance_id).enable_backup_log
            if not keeps_logs and durable_end(s, instance_id) is None:
                raise errors.LogBackupOff(
                    "log backups are not enabled (ModifyBackupPolicy EnableBackupLog=1)"
                )
            try:
                chosen = recovery_plan(s, instance_id, when, engine.base_log, backup_id)
            except NoRecovery as e:
                found = recovery_window(s, instance_id, engine.base_log)
                span = (
                    f"{to_wire(found.begin)} to {to_wire(found.end)}"
                    if found
                    else "empty (no backup set with unbroken logs after it)"
                )
                raise errors.RestoreTimeUnavailable(
                    f"{to_wire(when)} cannot be restored to: {e}. The restorable window is {span}."
                ) from None
        return self._usable_set(who, instance_id, chosen.backup_id)

    def restore_database(
        self,
        who: Principal,
        source_instance_id: str,
        backup_id: int | None,
        name: str,
        target_instance_id: str | None,
        new_name: str | None,
        *,
        restore_time: datetime | None = None,
    ) -> int:
        """One database of a set (or, with ``restore_time``, as it was at that second)
        copied into a running instance under its own or a new name."""
        source = self.instances.get(who, source_instance_id)
        if restore_time is not None:
            backup = self._base_set(who, source.id, restore_time, backup_id)
        elif backup_id is None:
            raise errors.MissingValue("BackupId")
        else:
            backup = self._usable_set(who, source.id, backup_id)
        target = self.instances.get(who, target_instance_id or source.id)
        if not same_family(target.engine, source.engine):
            raise errors.InvalidValue("TargetDBInstanceId", "the target runs another engine")
        if target.status != InstanceStatus.RUNNING:
            raise errors.IncorrectInstanceState(target.status_reason)
        if split_names(backup.db_names) and name not in split_names(backup.db_names):
            raise errors.DatabaseNotInSet([name])
        new_name = new_name or name
        _check_database_name(target.engine, new_name)
        if new_name in {d.name for d in self.instances.databases(who, target.id)}:
            raise errors.DatabaseExists(new_name)
        with self.catalog.write() as s:
            task_id = self._task(
                s,
                who,
                RestoreKind.DATABASE,
                backup,
                target=target.id,
                db_names=[name],
                target_db_name=new_name,
            )
            s.get_one(RestoreTask, task_id).restore_time = restore_time
        self.dispatcher.submit(task_id)
        return task_id

    def verify(self, who: Principal, instance_id: str, backup_id: int) -> int:
        source = self.instances.get(who, instance_id)
        backup = self._usable_set(who, source.id, backup_id)
        with self.catalog.write() as s:
            task_id = self._task(s, who, RestoreKind.VERIFY, backup, target=None, db_names=[])
        self.dispatcher.submit(task_id)
        return task_id

    def tasks(self, who: Principal, instance_id: str, task_id: int | None) -> list[TaskView]:
        self.instances.require(who, instance_id)
        query = select(RestoreTask).where(
            RestoreTask.account_id == who.account_id,
            (RestoreTask.source_instance_id == instance_id)
            | (RestoreTask.target_instance_id == instance_id),
        )
        if task_id is not None:
            query = query.where(RestoreTask.id == task_id)
        with self.catalog.read() as s:
            return [TaskView.of(t) for t in s.scalars(query.order_by(RestoreTask.id))]

    def _usable_set(self, who: Principal, instance_id: str, backup_id: int) -> BackupSet:
        with self.catalog.read() as s:
            backup = s.scalar(
                select(BackupSet).where(
                    BackupSet.id == backup_id,
                    BackupSet.instance_id == instance_id,
                    BackupSet.account_id == who.account_id,
                )
            )
        if backup is None:
            raise errors.BackupNotFound(f"BackupId {backup_id}")
        if backup.status != BackupStatus.SUCCESS or not backup.is_avail:
            raise errors.BackupUnusable(f"backup set {backup_id} is not available for restore")
        return backup

    @staticmethod
    def _task(
        s: Session,
        who: Principal,
        kind: RestoreKind,
        backup: BackupSet,
        *,
        target: str | None,
        db_names: list[str],
        target_db_name: str = "",
    ) -> int:
        task = RestoreTask(
            account_id=who.account_id,
            kind=kind,
            backup_id=backup.id,
            source_instance_id=backup.instance_id,
            target_instance_id=target,
            db_names=join_names(db_names),
            target_db_name=target_db_name,
            status=RestoreStatus.PENDING,
            created_at=utcnow(),
        )
        s.add(task)
        s.flush()
        return task.id


def _clone_description(source_id: str, backup_id: int, req: CloneRequest) -> str:
    if req.restore_time is None:
        return f"clone of {source_id} from backup {backup_id}"
    return f"clone of {source_id} at {to_wire(req.restore_time)}"


def _check_database_name(engine: str, name: str) -> None:
    family = family_of(engine)
    size = len(name.encode()) if family.name_length_in_bytes else len(name)
    if "\0" in name or size > family.max_name_length:
        raise errors.InvalidValue(
            "TargetDBName", f"at most {family.max_name_length} characters, no NUL"
        )
