"""CreateBackup's rules at the service level, on SQLite and PostgreSQL catalogs, against a
real MariaDB server. Jobs are recorded, not run (the dispatcher here only records)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, Instance
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.engines.registry import default_registry
from rdsbackup.instances.inventory import Inventory, Registration
from rdsbackup.instances.servers import LocalServer, free_port
from rdsbackup.jobs.planning import Planner
from rdsbackup.service import errors
from rdsbackup.service.auth import AccountAdmin, Principal
from rdsbackup.service.backups import BackupPolicy, BackupService, CreateBackupRequest
from rdsbackup.service.instances import InstanceService
from rdsbackup.storage.local import LocalStorage


@dataclass
class Recorder:
    submitted: list[int] = field(default_factory=list)

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


@dataclass
class Rules:
    service: BackupService
    catalog: Catalog
    who: Principal
    stranger: Principal
    instance_id: str
    dispatcher: Recorder

    def finish_all(self, status: str = "Finished") -> None:
        with self.catalog.write() as s:
            s.execute(update(BackupJob).where(BackupJob.status == "NoStart").values(status=status))

    def set_instance(self, **values: object) -> None:
        with self.catalog.write() as s:
            s.execute(update(Instance).where(Instance.id == self.instance_id).values(**values))


@pytest.fixture
def rules(catalog: Catalog, mariadb: LocalServer, tmp_path: Path) -> Rules:
    box = SecretBox(Fernet.generate_key())
    admin = AccountAdmin(catalog, box)
    owner, stranger = admin.ensure_account("owner"), admin.ensure_account("stranger")
    inventory = Inventory(catalog, box, default_registry())
    access = mariadb.access()
    instance_id = inventory.register(
        Registration(
            account_id=owner,
            engine="MariaDB",
            host=access.host,
            port=access.port,
            admin_user=access.user,
            admin_password=access.password,
            data_dir=access.data_dir,
            os_user=access.os_user,
            resource_group_id="rg-1",
        ),
        status="Running",
    )
    inventory.probe(instance_id)
    recorder = Recorder()
    storage = LocalStorage(tmp_path / "backups")
    service = BackupService(
        catalog,
        InstanceService(catalog, inventory),
        recorder,
        storage,
        Planner(catalog, storage, timedelta(hours=24)),
        BackupPolicy(),
    )
    return Rules(
        service,
        catalog,
        Principal(owner, "owner", "AK1"),
        Principal(stranger, "stranger", "AK2"),
        instance_id,
        recorder,
    )


def test_fifty_concurrent_creates_make_exactly_one_job(rules: Rules) -> None:
    results: list[object] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def create() -> None:
        barrier.wait()
        try:
            outcome: object = rules.service.create_backup(
                rules.who, CreateBackupRequest(rules.instance_id, method="Logical")
            )
        except errors.ServiceError as e:
            outcome = type(e)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=create) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    job_ids = [r for r in results if isinstance(r, int)]
    assert len(job_ids) == 1
    assert results.count(errors.BackupJobExists) == 49
    assert rules.dispatcher.submitted == job_ids
    with rules.catalog.read() as s:
        assert len(s.scalars(select(BackupJob)).all()) == 1


def test_twenty_sets_a_utc_day_and_failed_jobs_do_not_count(rules: Rules) -> None:
    for _ in range(3):
        rules.service.create_backup(rules.who, CreateBackupRequest(rules.instance_id))
        rules.finish_all("Failed")
    for _ in range(20):
        rules.service.create_backup(rules.who, CreateBackupRequest(rules.instance_id))
        rules.finish_all()
    with pytest.raises(errors.BackupQuotaExceeded):
        rules.service.create_backup(rules.who, CreateBackupRequest(rules.instance_id))
    with rules.catalog.write() as s:  # move one of today's sets to yesterday (UTC)
        job = s.scalars(select(BackupJob).where(BackupJob.status == "Finished")).first()
        assert job is not None
        job.created_day = "2000-01-01"
    assert rules.service.create_backup(rules.who, CreateBackupRequest(rules.instance_id)) > 0


def test_client_token_returns_the_same_job_even_concurrently(rules: Rules) -> None:
    request = CreateBackupRequest(rules.instance_id, client_token="token-1")
    ids: list[int] = []
    threads = [
        threading.Thread(target=lambda: ids.append(rules.service.create_backup(rules.who, request)))
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 10
    rules.finish_all()
    assert rules.service.create_backup(rules.who, request) == ids[0]
    assert rules.dispatcher.submitted == [ids[0]]


def test_instance_visibility(rules: Rules) -> None:
    with pytest.raises(errors.InstanceNotFound):
        rules.service.create_backup(rules.stranger, CreateBackupRequest(rules.instance_id))
    with pytest.raises(errors.InstanceNotFound):
        rules.service.create_backup(
            rules.who, CreateBackupRequest(rules.instance_id, resource_group_id="rg-other")
        )
    with pytest.raises(errors.InstanceNotFound):
        rules.service.create_backup(rules.who, CreateBackupRequest("rm-doesnotexist"))
    assert (
        rules.service.create_backup(
            rules.who, CreateBackupRequest(rules.instance_id, resource_group_id="rg-1")
        )
        > 0
    )


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"status": "Stopped"}, errors.IncorrectInstanceState),
        ({"lock_mode": "ManualLock"}, errors.IncorrectInstanceState),
        ({"manual_backup_enabled": False}, errors.OperationDenied),
    ],
)
def test_instance_state_rules(
    rules: Rules, values: dict[str, object], error: type[Exception]
) -> None:
    rules.set_instance(**values)
    with pytest.raises(error):
        rules.service.create_backup(rules.who, CreateBackupRequest(rules.instance_id))
    with rules.catalog.read() as s:
        assert s.scalars(select(BackupJob)).all() == []


def test_database_names_are_checked_against_the_server(rules: Rules, mariadb: LocalServer) -> None:
    with pytest.raises(errors.DatabaseNotFound) as e:
        rules.service.create_backup(
            rules.who,
            CreateBackupRequest(rules.instance_id, method="Logical", db_names=("shop", "nope")),
        )
    assert e.value.names == ["nope"]
    import pymysql

    access = mariadb.access()
    conn = pymysql.connect(
        host=access.host, port=access.port, user=access.user, password=access.password
    )
    try:
        conn.cursor().execute("CREATE DATABASE IF NOT EXISTS created_since_probe")
        job = rules.service.create_backup(
            rules.who,
            CreateBackupRequest(
                rules.instance_id, method="Logical", db_names=("created_since_probe",)
            ),
        )
        assert job > 0
    finally:
        conn.cursor().execute("DROP DATABASE IF EXISTS created_since_probe")
        conn.close()


def test_engine_refusals_map_to_parameter_errors(rules: Rules) -> None:
    with pytest.raises(errors.UnsupportedBackupStrategy):
        rules.service.create_backup(
            rules.who,
            CreateBackupRequest(
                rules.instance_id, method="Snapshot", strategy="db", db_names=("shop",)
            ),
        )
    with pytest.raises(errors.InvalidValue):
        rules.service.create_backup(
            rules.who, CreateBackupRequest(rules.instance_id, method="Logical", strategy="db")
        )


def test_a_server_gone_since_the_last_probe_is_not_an_internal_error(
    rules: Rules, postgres: LocalServer
) -> None:
    """Some plan checks ask the server (PostgreSQL snapshots check the role, slots,
    tablespaces); a server that stopped answering gives IncorrectDBInstanceState."""
    access = postgres.access()
    inventory = rules.service.instances.inventory
    instance_id = inventory.register(
        Registration(
            account_id=rules.who.account_id,
            engine="PostgreSQL",
            host=access.host,
            port=free_port(),
            admin_user=access.user,
            admin_password=access.password,
            data_dir=access.data_dir,
            os_user=access.os_user,
        ),
        status="Running",
    )
    with pytest.raises(errors.IncorrectInstanceState, match=r"127\.0\.0\.1"):
        rules.service.create_backup(rules.who, CreateBackupRequest(instance_id, method="Snapshot"))
    with rules.catalog.read() as s:
        assert s.scalars(select(BackupJob).where(BackupJob.instance_id == instance_id)).all() == []
