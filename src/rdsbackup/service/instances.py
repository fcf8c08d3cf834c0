"""Instance rules as the API sees them: every lookup is scoped to the caller's account."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import Database, Instance
from rdsbackup.engines.base import BackupPlan, Engine, ServerAccess
from rdsbackup.instances.access import server_access
from rdsbackup.instances.inventory import Inventory
from rdsbackup.ratelimit import Throttle
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.views import DatabaseView, InstanceView, Page
from rdsbackup.states import InstanceStatus


def owned(who: Principal, instance_id: str) -> ColumnElement[bool]:
    """The condition on ``instances`` rows: the caller's instance, not released."""
    return and_(
        Instance.id == instance_id,
        Instance.account_id == who.account_id,
        Instance.status != InstanceStatus.DELETED,
    )


def owned_instance(s: Session, who: Principal, instance_id: str, *, lock: bool = False) -> Instance:
    """The caller's instance (not released) in ``s``, else InstanceNotFound. ``lock``
    takes its row (``FOR UPDATE`` on PostgreSQL; on SQLite the write transaction is the
    lock): the writers that check an instance's state before they change what hangs on
    it (CreateBackup, ModifyBackupPolicy, DeleteDBInstance) serialise on this row."""
    query = select(Instance).where(owned(who, instance_id))
    instance = s.scalar(query.with_for_update() if lock else query)
    if instance is None:
        raise errors.InstanceNotFound()
    return instance


PROBE_BURST = 3


@dataclass(frozen=True)
class Target:
    instance: InstanceView
    engine: Engine
    access: ServerAccess = field(repr=False)


@dataclass(frozen=True)
class InstanceFilter:
    instance_ids: tuple[str, ...] = ()
    engine: str | None = None
    status: str | None = None
    resource_group_id: str | None = None


class InstanceService:
    def __init__(
        self,
        catalog: Catalog,
        inventory: Inventory,
        probe_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.inventory = inventory
        rate = 1 / probe_seconds if probe_seconds > 0 else float("inf")
        self._probes = Throttle(rate, PROBE_BURST, clock)

    def get(self, who: Principal, instance_id: str) -> InstanceView:
        with self.catalog.read() as s:
            instance = owned_instance(s, who, instance_id)
            return InstanceView.of(instance, _databases(s, instance.id))

    def require(self, who: Principal, instance_id: str) -> None:
        """InstanceNotFound unless the caller has this instance."""
        with self.catalog.read() as s:
            owned_instance(s, who, instance_id)

    def target(self, who: Principal, instance_id: str) -> Target:
        """The caller's instance with its engine and access, read once (the admission of
        a backup needs all three; its databases are not read)."""
        with self.catalog.read() as s:
            instance = owned_instance(s, who, instance_id)
            return Target(InstanceView.of(instance), *self._engine_and_access(instance))

    def find(
        self, who: Principal, filters: InstanceFilter, page: int, size: int
    ) -> Page[InstanceView]:
        query = select(Instance).where(
            Instance.account_id == who.account_id, Instance.status != InstanceStatus.DELETED
        )
        if filters.instance_ids:
            query = query.where(Instance.id.in_(filters.instance_ids))
        if filters.engine:
            query = query.where(Instance.engine == filters.engine)
        if filters.status:
            query = query.where(Instance.status == filters.status)
        if filters.resource_group_id:
            query = query.where(Instance.resource_group_id == filters.resource_group_id)
        with self.catalog.read() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(
                query.order_by(Instance.created_at, Instance.id)
                .offset((page - 1) * size)
                .limit(size)
            )
            return Page([InstanceView.of(i) for i in rows], total, page, size)

    def databases(
        self, who: Principal, instance_id: str, name: str | None = None
    ) -> list[DatabaseView]:
        self.get(who, instance_id)
        if name and name not in self.inventory.database_names(instance_id):
            self._refresh(instance_id)
        with self.catalog.read() as s:
            return [d for d in _databases(s, instance_id) if name is None or d.name == name]

    def check_plan(self, instance_id: str, plan: BackupPlan) -> None:
        with self.catalog.read() as s:
            engine, access = self._engine_and_access(s.get_one(Instance, instance_id))
        engine.check_plan(plan, access)

    def _engine_and_access(self, instance: Instance) -> tuple[Engine, ServerAccess]:
        engine = self.inventory.engines.for_engine(instance.engine)
        return engine, server_access(instance, self.inventory.box)

    def require_databases(self, instance_id: str, names: list[str]) -> None:
        """Every name must be a database of the instance; asks the server when the
        catalog does not know a name yet (it may have been created since the last probe)."""
        known = self.inventory.database_names(instance_id)
        if not set(names) <= known:
            self._refresh(instance_id)
            known = self.inventory.database_names(instance_id)
        if missing := [n for n in names if n not in known]:
            raise errors.DatabaseNotFound(missing)

    def _refresh(self, instance_id: str) -> None:
        """Ask the server for its databases (the probe records them in the catalog):
        a few probes at once, then one per ``probe_seconds``, per instance. A client
        sending unknown names must not turn each request into a connection to the
        server; one who just created a database still finds it."""
        if self._probes.allow(instance_id):
            self.inventory.probe(instance_id)


def _databases(s: Session, instance_id: str) -> list[DatabaseView]:
    rows = s.scalars(
        select(Database).where(Database.instance_id == instance_id).order_by(Database.name)
    )
    return [DatabaseView.of(d) for d in rows]
