"""Local instances: provisioned under the state folder, started with the service,
restarted when their server dies, and probed so that ``DBInstanceStatus`` stays true."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import Instance
from rdsbackup.config import new_password
from rdsbackup.engines.base import EngineError
from rdsbackup.instances.inventory import Inventory, Registration, new_instance_id
from rdsbackup.instances.ports import free_port
from rdsbackup.instances.servers import LocalServer, local_server
from rdsbackup.states import InstanceStatus

log = logging.getLogger(__name__)

ADMIN_USER = "rdsadmin"
SUPERVISED = (InstanceStatus.RUNNING, InstanceStatus.UNAVAILABLE, InstanceStatus.REBOOTING)
"""States in which the supervisor keeps a local server up (not Creating: a restore owns it)."""


class Supervisor:
    def __init__(self, catalog: Catalog, inventory: Inventory, instances_dir: Path) -> None:
        self.catalog = catalog
        self.inventory = inventory
        self.instances_dir = instances_dir
        self._lock = threading.Lock()
        self._stopped = False

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
    ) -> tuple[str, LocalServer]:
        """Record a new local instance (Creating) with its folder and a free port; the
        caller fills its data directory and starts it."""
        instance_id = new_instance_id(engine)
        base = self.base_dir(instance_id)
        server = local_server(engine, base, free_port(), admin_user, admin_password)
        self.inventory.register(
            Registration(
                account_id=account_id,
                engine=engine,
                host="127.0.0.1",
                port=server.port,
                admin_user=admin_user,
                admin_password=admin_password,
                data_dir=server.data_dir,
                os_user=server.os_user,
                local=True,
                base_dir=base,
                description=description,
                resource_group_id=resource_group_id,
                region_id=region_id,
                zone_id=zone_id,
                instance_id=instance_id,
            )
        )
        return instance_id, server

    def provision(
        self,
        engine: str,
        account_id: int,
        *,
        description: str = "",
        resource_group_id: str = "",
        region_id: str = "",
        zone_id: str = "",
    ) -> str:
        """Create a new local server and register it; returns its instance id."""
        instance_id, server = self.register_local(
            engine,
            account_id,
            ADMIN_USER,
            new_password(),
            description=description,
            resource_group_id=resource_group_id,
            region_id=region_id,
            zone_id=zone_id,
        )
        try:
            server.initialize()
            server.start()
        except EngineError as e:
            self.inventory.set_status(instance_id, InstanceStatus.UNAVAILABLE, e.reason)
            raise
        self.inventory.set_status(instance_id, InstanceStatus.RUNNING)
        self.inventory.probe(instance_id)
        return instance_id

    def base_dir(self, instance_id: str) -> Path:
        return self.instances_dir / instance_id

    def server(self, instance_id: str) -> LocalServer:
        with self.catalog.read() as s:
            i = s.get_one(Instance, instance_id)
            if not i.local or not i.base_dir:
                raise ValueError(f"{instance_id} is not a local instance")
            access = self.inventory.access(instance_id)
            return local_server(
                i.engine, Path(i.base_dir), i.port, i.admin_user, access.password, i.os_user
            )

    def local_ids(self, states: tuple[str, ...] = SUPERVISED) -> list[str]:
        with self.catalog.read() as s:
            return list(
                s.scalars(
                    select(Instance.id).where(Instance.local.is_(True), Instance.status.in_(states))
                )
            )

    def ensure_running(self, instance_id: str) -> None:
        """Start the server if its process is gone (status Rebooting while it starts)."""
        with self._lock:
            if self._stopped or self.inventory.status(instance_id) not in SUPERVISED:
                return  # the service is stopping, it is being deleted, or a restore owns it
            server = self.server(instance_id)
            if server.is_running():
                return
            self.inventory.set_status(
                instance_id, InstanceStatus.REBOOTING, "the local server was not running"
            )
            try:
                server.start()
            except EngineError as e:
                self.inventory.set_status(instance_id, InstanceStatus.UNAVAILABLE, e.reason)
                return
            self.inventory.set_status(instance_id, InstanceStatus.RUNNING)

    def start_all(self) -> None:
        for instance_id in self.local_ids():
            self.ensure_running(instance_id)

    def stop_all(self, timeout: float = 60) -> None:
        """Stop every local server; none is restarted by this supervisor afterwards."""
        with self._lock:  # a health check starting a server finishes first
            self._stopped = True
        for instance_id in self.local_ids((*SUPERVISED, InstanceStatus.CREATING)):
            try:
                server = self.server(instance_id)
                pid = server.pid()
                if pid is None:
                    continue
                log.info(
                    "stopping the %s server of %s (pid %s, port %s)",
                    server.engine,
                    instance_id,
                    pid,
                    server.port,
                )
                server.stop(timeout)
            except EngineError as e:
                log.warning("stopping %s failed: %s", instance_id, e.reason)

    def remove(self, instance_id: str) -> None:
        with self._lock:  # not while ensure_running may be starting it
            server = self.server(instance_id)
            server.stop()
            shutil.rmtree(server.base_dir, ignore_errors=True)


class HealthMonitor:
    """Every interval: restart dead local servers, probe every Running/Unavailable one."""

    def __init__(self, inventory: Inventory, supervisor: Supervisor) -> None:
        self.inventory = inventory
        self.supervisor = supervisor

    def check_all(self) -> None:
        local = set(self.supervisor.local_ids())
        for instance_id in self.inventory.ids():
            try:
                if instance_id in local:
                    self.supervisor.ensure_running(instance_id)
                if self.inventory.status(instance_id) in (
                    InstanceStatus.RUNNING,
                    InstanceStatus.UNAVAILABLE,
                ):
                    self.inventory.probe(instance_id)
            except Exception:
                log.exception("health check of %s failed", instance_id)

    def loop(self, interval: float, stop: threading.Event) -> None:
        while not stop.wait(interval):
            self.check_all()
