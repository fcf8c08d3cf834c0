"""Shared rig for job tests: a real catalog, storage folder, MariaDB fixture server and
runner; jobs are created through the service and run synchronously."""

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
from rdsbackup.engines.registry import default_registry
from rdsbackup.instances.inventory import Inventory, Registration
from rdsbackup.instances.servers import LocalServer
from rdsbackup.jobs.leases import Leases
from rdsbackup.jobs.planning import Planner
from rdsbackup.jobs.runner import JobRunner, RunOptions
from rdsbackup.service.auth import AccountAdmin, Principal
from rdsbackup.service.backups import BackupPolicy, BackupService, CreateBackupRequest
from rdsbackup.service.instances import InstanceService
from rdsbackup.storage.local import LocalStorage


class Recorder:
    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


@dataclass
class Rig:
    catalog: Catalog
    storage: LocalStorage
    service: BackupService
    runner: JobRunner
    who: Principal
    instance_id: str

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


def make_rig(tmp_path: Path, storage_root: Path, server: LocalServer) -> Rig:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    box = SecretBox(Fernet.generate_key())
    account = AccountAdmin(catalog, box).ensure_account("a")
    inventory = Inventory(catalog, box, default_registry())
    access = server.access()
    instance_id = inventory.register(
        Registration(
            account_id=account,
            engine="MariaDB",
            host=access.host,
            port=access.port,
            admin_user=access.user,
            admin_password=access.password,
            data_dir=access.data_dir,
            os_user=access.os_user,
        ),
        status="Running",
    )
    storage = LocalStorage(storage_root)
    planner = Planner(catalog, storage, timedelta(hours=24))
    leases = Leases(catalog, "test-node", 30)
    runner = JobRunner(
        catalog,
        inventory,
        default_registry(),
        storage,
        leases,
        planner,
        RunOptions(heartbeat_seconds=0.2),
    )
    service = BackupService(
        catalog, InstanceService(catalog, inventory), Recorder(), storage, planner, BackupPolicy()
    )
    return Rig(catalog, storage, service, runner, Principal(account, "a", "AK"), instance_id)


@pytest.fixture
def rig(tmp_path: Path, mariadb: LocalServer) -> Rig:
    return make_rig(tmp_path, tmp_path / "backups", mariadb)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)
