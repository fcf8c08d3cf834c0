"""Turning a job into the plan an engine runs: full or incremental, and on which parent.

``BackupType=Auto`` takes an incremental when the engine can build one for this plan and
the instance has a complete full set taken within the policy window; otherwise a full.
``IncrementalBackup`` (an extension value) requires such a parent. A parent counts only
when its manifest is in storage, matches the catalog's checksum, and every object it
lists is present with the recorded size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet, split_names
from rdsbackup.engines.base import (
    BackupKind,
    BackupMethod,
    BackupPlan,
    BackupStrategy,
    Engine,
    ServerAccess,
    UnsupportedPlan,
)
from rdsbackup.jobs.sets import SetUnavailable, checked_manifest
from rdsbackup.manifest import Manifest
from rdsbackup.states import BackupStatus
from rdsbackup.storage.base import Storage
from rdsbackup.timeutil import utcnow


class NoParent(Exception):
    pass


@dataclass(frozen=True)
class Parent:
    backup_id: int
    manifest: Manifest
    chain: list[str]
    """Backup ids of the chain up to and including the parent, full set first."""


@dataclass(frozen=True)
class ResolvedPlan:
    plan: BackupPlan
    parent: Parent | None


class Planner:
    def __init__(self, catalog: Catalog, storage: Storage, full_every: timedelta) -> None:
        self.catalog = catalog
        self.storage = storage
        self.full_every = full_every

    def resolve(
        self, job: BackupJob, engine: Engine, access: ServerAccess, parallel: int
    ) -> ResolvedPlan:
        full = BackupPlan(
            method=BackupMethod(job.method),
            strategy=BackupStrategy(job.strategy),
            kind=BackupKind.FULL,
            databases=tuple(split_names(job.db_names)),
            parallel=parallel,
        )
        if job.requested_type == "FullBackup" or full.method != BackupMethod.PHYSICAL:
            if job.requested_type == "IncrementalBackup":
                engine.check_plan(replace(full, kind=BackupKind.INCREMENTAL), access)
            return ResolvedPlan(full, None)
        explicit = job.requested_type == "IncrementalBackup"
        try:
            parent = self.parent_for(
                job.instance_id, full, window=None if explicit else self.full_every
            )
        except NoParent as e:
            if explicit:
                raise UnsupportedPlan("kind", str(e)) from None
            return ResolvedPlan(full, None)
        incremental = replace(full, kind=BackupKind.INCREMENTAL, parent=parent.manifest)
        try:
            engine.check_plan(incremental, access)
        except UnsupportedPlan:
            if explicit:
                raise
            return ResolvedPlan(full, None)
        return ResolvedPlan(incremental, parent)

    def parent_for(self, instance_id: str, plan: BackupPlan, window: timedelta | None) -> Parent:
        """The newest complete set of the newest full chain of this kind of plan."""
        with self.catalog.read() as s:
            sets = list(
                s.scalars(
                    select(BackupSet)
                    .where(
                        BackupSet.instance_id == instance_id,
                        BackupSet.status == BackupStatus.SUCCESS,
                        BackupSet.is_avail.is_(True),
                        BackupSet.method == plan.method.value,
                        BackupSet.strategy == plan.strategy.value,
                    )
                    .order_by(BackupSet.end_time.desc(), BackupSet.id.desc())
                )
            )
        fulls = [b for b in sets if b.kind == BackupKind.FULL.value]
        if not fulls:
            raise NoParent("an incremental needs a full physical backup set of this instance")
        root = fulls[0]
        if window is not None and root.end_time < utcnow() - window:
            raise NoParent("the newest full set is older than the full-backup interval")
        by_id = {b.id: b for b in sets}
        newest = next(b for b in sets if b.id == root.id or _descends(b, root.id, by_id))
        chain = _chain_ids(newest, by_id)
        manifest = self.load_manifest(newest)
        return Parent(newest.id, manifest, [str(i) for i in chain])

    def load_manifest(self, backup: BackupSet) -> Manifest:
        try:
            return checked_manifest(self.storage, backup)
        except SetUnavailable as e:
            raise NoParent(str(e)) from None


def _descends(b: BackupSet, root_id: int, by_id: dict[int, BackupSet]) -> bool:
    seen = 0
    while b.parent_id is not None and seen < 10_000:
        if b.parent_id == root_id:
            return True
        parent = by_id.get(b.parent_id)
        if parent is None:
            return False
        b, seen = parent, seen + 1
    return False


def _chain_ids(b: BackupSet, by_id: dict[int, BackupSet]) -> list[int]:
    chain = [b.id]
    while b.parent_id is not None:
        b = by_id[b.parent_id]
        chain.append(b.id)
    return list(reversed(chain))
