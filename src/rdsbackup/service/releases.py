"""DeleteDBInstance: releasing an instance, and what happens to its backup sets.

A released instance is gone from the API (every lookup answers
InvalidDBInstanceId.NotFound) but its catalog row stays, with status ``Deleted``, so that
retained sets keep their owner: they stay in storage until their retention ends, and
``rdsbackup backup download`` still fetches and checks them. A local instance's server
is stopped and its folder removed; a registered server is only forgotten, never
touched.

``ReleasedKeepPolicy`` decides which sets survive: ``None`` (the default, as in RDS)
none, ``Lastest`` (Alibaba's spelling) the newest successful set with the sets it is
built on, ``All`` every set. A set that would be deleted but is locked
(StoreStatus=Disabled) makes the whole call fail, so nothing is removed silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupJob,
    BackupSet,
    Instance,
    RestoreTask,
)
from rdsbackup.jobs.removal import finish_removals, mark_deleting
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import owned_instance
from rdsbackup.states import (
    JOB_UNFINISHED,
    BackupStatus,
    InstanceStatus,
    RestoreStatus,
    StoreStatus,
)
from rdsbackup.storage.base import Storage

log = logging.getLogger(__name__)

KEEP_POLICIES = ("None", "Lastest", "All")


class LocalServers(Protocol):
    def remove(self, instance_id: str) -> None:
        """Stop the local server and remove its folder."""


class ReleaseService:
    def __init__(self, catalog: Catalog, servers: LocalServers, storage: Storage) -> None:
        self.catalog = catalog
        self.servers = servers
        self.storage = storage

    def delete_instance(self, who: Principal, instance_id: str, keep: str = "None") -> None:
        if keep not in KEEP_POLICIES:
            raise errors.InvalidValue("ReleasedKeepPolicy", f"one of {', '.join(KEEP_POLICIES)}")
        with self.catalog.write() as s:
            instance = owned_instance(s, who, instance_id, lock=True)
            _check_idle(s, instance)
            sets = list(
                s.scalars(
                    select(BackupSet).where(
                        BackupSet.instance_id == instance_id, BackupSet.deleting_at.is_(None)
                    )
                )
            )
            dropped = _sets_to_drop(sets, keep)
            if locked := [b.id for b in dropped if b.store_status != StoreStatus.ENABLED]:
                raise errors.BackupLocked(
                    f"backup set {locked[0]} has StoreStatus Disabled; unlock it, or keep it "
                    "with ReleasedKeepPolicy=All"
                )
            marked = mark_deleting(s, dropped)
            instance.status, instance.status_reason = InstanceStatus.DELETING, ""
            local = instance.local
        reason = ""
        if local:
            try:
                self.servers.remove(instance_id)
            except Exception as e:
                log.exception("removing the local server of %s failed", instance_id)
                reason = f"its local server could not be removed: {e}"
        finish_removals(self.catalog, self.storage, marked)
        with self.catalog.write() as s:
            row = s.get_one(Instance, instance_id)
            row.status, row.status_reason = InstanceStatus.DELETED, reason
        log.info(
            "instance %s deleted (ReleasedKeepPolicy=%s, %d backup sets deleted)",
            instance_id,
            keep,
            len(dropped),
        )


def _check_idle(s: Session, instance: Instance) -> None:
    """Nothing may be working on the instance: it is not being created, no backup job
    is unfinished, no restore task reads from it or writes into it."""
    if instance.status in (InstanceStatus.CREATING, InstanceStatus.DELETING):
        raise errors.IncorrectInstanceState(f"the instance is {instance.status}")
    job = s.scalar(
        select(BackupJob.id).where(
            BackupJob.instance_id == instance.id, BackupJob.status.in_(JOB_UNFINISHED)
        )
    )
    if job is not None:
        raise errors.IncorrectInstanceState(f"backup job {job} is still running on it")
    task = s.scalar(
        select(RestoreTask.id).where(
            RestoreTask.status.in_((RestoreStatus.PENDING, RestoreStatus.RUNNING)),
            or_(
                RestoreTask.source_instance_id == instance.id,
                RestoreTask.target_instance_id == instance.id,
            ),
        )
    )
    if task is not None:
        raise errors.IncorrectInstanceState(f"restore task {task} is still using it")


def _sets_to_drop(sets: Sequence[BackupSet], keep: str) -> list[BackupSet]:
    if keep == "All":
        return []
    kept: set[int] = set()
    if keep == "Lastest":
        by_id = {b.id: b for b in sets}
        good = [b for b in sets if b.status == BackupStatus.SUCCESS and b.is_avail]
        newest = max(good, key=lambda b: b.id, default=None)
        while newest is not None:
            kept.add(newest.id)
            newest = by_id.get(newest.parent_id) if newest.parent_id else None
    return [b for b in sets if b.id not in kept]
