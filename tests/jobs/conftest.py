"""Shared rig for job tests: a real catalog and job runner on the in-memory engine
(rdsbackup.testing); jobs are created through the service and run synchronously."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.engines.registry import default_registry
from rdsbackup.instances.inventory import Inventory
from rdsbackup.instances.servers import LocalServer
from rdsbackup.jobs.leases import Leases
from rdsbackup.jobs.planning import Planner
from rdsbackup.jobs.runner import JobRunner, RunOptions
from rdsbackup.service.auth import AccountAdmin, Principal
from rdsbackup.service.backups import BackupRules, BackupService, CreateBackupRequest
from rdsbackup.service.instances import InstanceService
from rdsbackup.storage.base import Storage
from rdsbackup.storage.local import LocalStorage
from rdsbackup.testing import Recorder, memory_rig, register


def shop_server() -> MemoryServer:
    server = MemoryServer()
    server.create_database(
        "shop",
        {
            "customers": [[i, f"customer {i}", f"c{i}@example.com"] for i in range(200)],
            "orders": [[i, i % 200, i * 1.5, "2026-01-01"] for i in range(1000)],
        },
    )
    server.create_database("crm", {"contacts": [[1, "Ada"], [2, "Grace"]]})
    return server


@dataclass
class Rig:
    catalog: Catalog
    storage: Storage
    service: BackupService
    runner: JobRunner
    who: Principal
    instance_id: str
    server: MemoryServer

    def run(self, **request: Any) -> BackupJob:
        job_id = self.service.create_backup(
            self.who, CreateBackupRequest(self.instance_id, **request)
        )
        self.runner.run(job_id)
        with self.catalog.read() as s:
            return s.get_one(BackupJob, job_id)

    def backup_set(self, backup_id: int) -> BackupSet:
        with self.catalog.read() as s:
            return s.get_one(BackupSet, backup_id)


def make_rig(
    tmp_path: Path, storage: Storage | None = None, server: MemoryServer | None = None
) -> Rig:
    built = memory_rig(Catalog(f"sqlite:///{tmp_path / 'catalog.db'}"), storage)
    server = server or shop_server()
    instance_id, who = built.add_instance(server)
    return Rig(built.catalog, built.storage, built.service, built.runner, who, instance_id, server)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path)


@dataclass
class MariaDBRig:
    """The job runner on a real MariaDB server and local storage: for tests whose point
    is a real tool process (killed, stopped)."""

    catalog: Catalog
    storage: LocalStorage
    service: BackupService
    runner: JobRunner
    who: Principal
    instance_id: str


@pytest.fixture
def mariadb_rig(tmp_path: Path, mariadb: LocalServer) -> MariaDBRig:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    box = SecretBox(Fernet.generate_key())
    registry = default_registry()
    inventory = Inventory(catalog, box, registry)
    account_id = AccountAdmin(catalog, box).ensure_account("a")
    access = mariadb.access()
    instance_id = register(
        inventory, account_id, access, data_dir=access.data_dir, os_user=access.os_user
    )
    storage = LocalStorage(tmp_path / "backups")
    planner = Planner(catalog, storage, timedelta(hours=24))
    leases = Leases(catalog, "test-node", 30)
    options = RunOptions(heartbeat_seconds=0.2)
    runner = JobRunner(catalog, inventory, registry, storage, leases, planner, options)
    service = BackupService(
        catalog, InstanceService(catalog, inventory), Recorder(), storage, planner, BackupRules()
    )
    who = Principal(account_id, "a", "AK")
    return MariaDBRig(catalog, storage, service, runner, who, instance_id)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)
