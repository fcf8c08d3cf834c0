"""CreateBackup's rules at the service level, on SQLite and PostgreSQL catalogs, against
an in-memory server (rdsbackup.testing). Jobs are recorded, not run (the dispatcher here
only records)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, Instance
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.backups import BackupService, CreateBackupRequest
from rdsbackup.testing import MemoryRig, Recorder, memory_rig


@dataclass
class Rules:
    service: BackupService
    catalog: Catalog
    who: Principal
    stranger: Principal
    instance_id: str
    dispatcher: Recorder
    server: MemoryServer
    rig: MemoryRig

    def finish_all(self, status: str = "Finished") -> None:
        with self.catalog.write() as s:
            s.execute(update(BackupJob).where(BackupJob.status == "NoStart").values(status=status))

    def set_instance(self, **values: object) -> None:
        with self.catalog.write() as s:
            s.execute(update(Instance).where(Instance.id == self.instance_id).values(**values))


@pytest.fixture
def rules(catalog: Catalog) -> Rules:
    """On both catalogs: for the rules the catalog referees (races, counting)."""
    return make_rules(catalog)


@pytest.fixture
def sqlite_rules(tmp_path: Path) -> Iterator[Rules]:
    """On SQLite only: for the rules the service code decides."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield make_rules(catalog)
    catalog.dispose()


def make_rules(catalog: Catalog) -> Rules:
    rig = memory_rig(catalog)
    server = MemoryServer()
    server.create_database("shop", {"orders": [[1, "pen"], [2, "ink"]]})
    instance_id, who = rig.add_instance(server, account="owner", resource_group_id="rg-1")
    stranger = Principal(rig.accounts.ensure_account("stranger"), "stranger", "AK2")
    assert isinstance(rig.dispatcher, Recorder)
    return Rules(rig.service, catalog, who, stranger, instance_id, rig.dispatcher, server, rig)


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


def test_instance_visibility(sqlite_rules: Rules) -> None:
    with pytest.raises(errors.InstanceNotFound):
        sqlite_rules.service.create_backup(
            sqlite_rules.stranger, CreateBackupRequest(sqlite_rules.instance_id)
        )
    with pytest.raises(errors.InstanceNotFound):
        sqlite_rules.service.create_backup(
            sqlite_rules.who,
            CreateBackupRequest(sqlite_rules.instance_id, resource_group_id="rg-other"),
        )
    with pytest.raises(errors.InstanceNotFound):
        sqlite_rules.service.create_backup(sqlite_rules.who, CreateBackupRequest("rm-doesnotexist"))
    assert (
        sqlite_rules.service.create_backup(
            sqlite_rules.who,
            CreateBackupRequest(sqlite_rules.instance_id, resource_group_id="rg-1"),
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
    sqlite_rules: Rules, values: dict[str, object], error: type[Exception]
) -> None:
    sqlite_rules.set_instance(**values)
    with pytest.raises(error):
        sqlite_rules.service.create_backup(
            sqlite_rules.who, CreateBackupRequest(sqlite_rules.instance_id)
        )
    with sqlite_rules.catalog.read() as s:
        assert s.scalars(select(BackupJob)).all() == []


def test_database_names_are_checked_against_the_server(sqlite_rules: Rules) -> None:
    with pytest.raises(errors.DatabaseNotFound) as e:
        sqlite_rules.service.create_backup(
            sqlite_rules.who,
            CreateBackupRequest(
                sqlite_rules.instance_id, method="Logical", db_names=("shop", "nope")
            ),
        )
    assert e.value.names == ["nope"]
    sqlite_rules.server.create_database("created_since_probe")
    job = sqlite_rules.service.create_backup(
        sqlite_rules.who,
        CreateBackupRequest(
            sqlite_rules.instance_id, method="Logical", db_names=("created_since_probe",)
        ),
    )
    assert job > 0


def test_engine_refusals_map_to_parameter_errors(sqlite_rules: Rules) -> None:
    with pytest.raises(errors.UnsupportedBackupStrategy):
        sqlite_rules.service.create_backup(
            sqlite_rules.who,
            CreateBackupRequest(
                sqlite_rules.instance_id, method="Snapshot", strategy="db", db_names=("shop",)
            ),
        )
    with pytest.raises(errors.InvalidValue):
        sqlite_rules.service.create_backup(
            sqlite_rules.who,
            CreateBackupRequest(sqlite_rules.instance_id, method="Logical", strategy="db"),
        )


def test_a_server_gone_since_the_last_probe_is_not_an_internal_error(
    sqlite_rules: Rules,
) -> None:
    """Some plan checks ask the server (PostgreSQL snapshots check the role, slots,
    tablespaces); a server that stopped answering gives IncorrectDBInstanceState."""
    server = MemoryServer()
    instance_id, _ = sqlite_rules.rig.add_instance(server, account="owner", engine="PostgreSQL")
    server.available = False
    with pytest.raises(errors.IncorrectInstanceState, match=r"127\.0\.0\.1"):
        sqlite_rules.service.create_backup(
            sqlite_rules.who, CreateBackupRequest(instance_id, method="Snapshot")
        )
    with sqlite_rules.catalog.read() as s:
        assert s.scalars(select(BackupJob).where(BackupJob.instance_id == instance_id)).all() == []
