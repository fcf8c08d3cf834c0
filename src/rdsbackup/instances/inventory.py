"""The instances the service knows: registering them, and keeping their recorded state
(status, version, databases, size) true by probing the servers."""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import Database, Instance
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.engines.base import EngineError, ServerAccess, ServerInfo
from rdsbackup.engines.families import API_ENGINES, family_of
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.instances.access import server_access
from rdsbackup.states import DatabaseStatus, InstanceStatus
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    account_id: int
    engine: str
    host: str
    port: int
    admin_user: str
    admin_password: str
    data_dir: Path | None = None
    os_user: str | None = None
    local: bool = False
    base_dir: Path | None = None
    description: str = ""
    resource_group_id: str = ""
    region_id: str = ""
    zone_id: str = ""
    instance_id: str | None = None
    host_queue: str = ""


def new_instance_id(engine: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return family_of(engine).id_prefix + "".join(secrets.choice(alphabet) for _ in range(13))


class Inventory:
    def __init__(self, catalog: Catalog, box: SecretBox, engines: EngineRegistry) -> None:
        self.catalog = catalog
        self.box = box
        self.engines = engines

    def register(self, reg: Registration, *, status: str = InstanceStatus.CREATING) -> str:
        if reg.engine not in API_ENGINES:
            raise ValueError(f"unsupported engine {reg.engine!r}: one of {', '.join(API_ENGINES)}")
        instance_id = reg.instance_id or new_instance_id(reg.engine)
        with self.catalog.write() as s:
            s.add(
                Instance(
                    id=instance_id,
                    account_id=reg.account_id,
                    engine=reg.engine,
                    host=reg.host,
                    port=reg.port,
                    admin_user=reg.admin_user,
                    password_ciphertext=self.box.seal(reg.admin_password),
                    data_dir=str(reg.data_dir) if reg.data_dir else None,
                    os_user=reg.os_user,
                    local=reg.local,
                    base_dir=str(reg.base_dir) if reg.base_dir else None,
                    status=status,
                    status_reason="",
                    description=reg.description,
                    resource_group_id=reg.resource_group_id,
                    region_id=reg.region_id,
                    zone_id=reg.zone_id,
                    host_queue=reg.host_queue,
                    created_at=utcnow(),
                )
            )
        return instance_id

    def access(self, instance_id: str) -> ServerAccess:
        with self.catalog.read() as s:
            instance = s.get_one(Instance, instance_id)
            return server_access(instance, self.box)

    def status(self, instance_id: str) -> str:
        with self.catalog.read() as s:
            return s.get_one(Instance, instance_id).status

    def engine_name(self, instance_id: str) -> str:
        with self.catalog.read() as s:
            return s.get_one(Instance, instance_id).engine

    def probe(self, instance_id: str) -> ServerInfo | None:
        """Probe the server and record what it said; None (and a reason) when it is down."""
        engine_name = self.engine_name(instance_id)
        try:
            info = self.engines.for_engine(engine_name).probe(self.access(instance_id))
        except EngineError as e:
            self.set_status(
                instance_id,
                InstanceStatus.UNAVAILABLE,
                e.reason,
                only_from=(InstanceStatus.RUNNING,),
            )
            return None
        self.record(instance_id, info)
        return info

    def record(self, instance_id: str, info: ServerInfo) -> None:
        with self.catalog.write() as s:
            instance = s.get_one(Instance, instance_id)
            instance.engine_version = info.version
            instance.data_bytes = info.data_bytes
            instance.read_only = info.read_only
            instance.probed_at = utcnow()
            if instance.status == InstanceStatus.UNAVAILABLE:
                instance.status, instance.status_reason = InstanceStatus.RUNNING, ""
            current = {
                d.name: d
                for d in s.scalars(select(Database).where(Database.instance_id == instance_id))
            }
            seen = {d.name for d in info.databases}
            for gone in set(current) - seen:
                s.execute(
                    delete(Database).where(
                        Database.instance_id == instance_id, Database.name == gone
                    )
                )
            for db in info.databases:
                row = current.get(db.name) or Database(instance_id=instance_id, name=db.name)
                row.character_set, row.collation, row.status = (
                    db.character_set,
                    db.collation,
                    DatabaseStatus.RUNNING,
                )
                s.add(row)

    def set_status(
        self,
        instance_id: str,
        status: InstanceStatus,
        reason: str = "",
        *,
        only_from: tuple[str, ...] | None = None,
    ) -> None:
        with self.catalog.write() as s:
            instance = s.get_one(Instance, instance_id)
            if only_from is not None and instance.status not in only_from:
                return
            if (instance.status, instance.status_reason) != (status, reason):
                log.info("instance %s: %s -> %s %s", instance_id, instance.status, status, reason)
            instance.status, instance.status_reason = status, reason

    def ids(self) -> list[str]:
        with self.catalog.read() as s:
            return list(s.scalars(select(Instance.id).order_by(Instance.id)))

    def database_names(self, instance_id: str) -> set[str]:
        with self.catalog.read() as s:
            return set(s.scalars(select(Database.name).where(Database.instance_id == instance_id)))
