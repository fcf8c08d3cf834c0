"""The catalog collector after the scheduler ran two simulated days on the memory engine:
the scheduler's decisions and the automated jobs it started are what the catalog holds;
restore tasks by kind and status; deleted instances left out; a catalog it cannot read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from rdsbackup.api.metrics import metrics_registry
from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, Instance, RestoreTask, ScheduledBackup
from rdsbackup.clock import ManualClock
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.service.lease import NamedLease
from rdsbackup.service.metrics import CatalogCollector
from rdsbackup.service.scheduler import LEASE_NAME, Scheduler
from rdsbackup.states import BackupMode, InstanceStatus, JobStatus, ScheduleStatus
from rdsbackup.testing import memory_rig
from rdsbackup.timeutil import utcnow

MONDAY = datetime(2026, 3, 2)


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield catalog
    catalog.dispose()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_scheduler_decisions_and_automated_jobs_match_the_catalog(
    sqlite_catalog: Catalog,
) -> None:
    rig = memory_rig(sqlite_catalog)
    clock = ManualClock(MONDAY)
    lease = NamedLease(sqlite_catalog, LEASE_NAME, "node-a", 120, clock)
    scheduler = Scheduler(sqlite_catalog, rig.service, lease, clock)
    server = MemoryServer()
    server.create_database("shop", {"orders": [[1, "pen"]]})
    rig.add_instance(server, instance_id="rm-daily")  # default policy: Tue/Thu/Sat 02:00Z
    stopped = MemoryServer()
    stopped.available = False
    rig.add_instance(stopped, instance_id="rm-down")  # not answering: its slots are not run
    while clock.now() < MONDAY + timedelta(days=2, hours=12):
        clock.advance(timedelta(minutes=10))
        for job_id in scheduler.tick():
            rig.runner.run(job_id)

    registry = metrics_registry(CatalogCollector(sqlite_catalog))
    with sqlite_catalog.read() as s:
        decided = Counter(s.scalars(select(ScheduledBackup.status)))
        automated = Counter(
            s.scalars(select(BackupJob.status).where(BackupJob.job_mode == BackupMode.AUTOMATED))
        )
    assert decided[ScheduleStatus.STARTED] >= 1 and len(decided) >= 2, decided
    for status, count in decided.items():
        assert value(registry, "rdsbackup_scheduled_backups", status=status) == count
    labels = {"method": "Physical", "engine": "MariaDB", "mode": "Automated"}
    finished = value(registry, "rdsbackup_backup_jobs", status=JobStatus.FINISHED, **labels)
    assert finished == automated[JobStatus.FINISHED] >= 1
    daily = {"instance_id": "rm-daily", "engine": "MariaDB"}
    assert value(registry, "rdsbackup_backup_sets", **daily) == automated[JobStatus.FINISHED]
    assert value(registry, "rdsbackup_backup_last_success_timestamp_seconds", **daily)
    down = {"instance_id": "rm-down", "engine": "MariaDB"}
    assert value(registry, "rdsbackup_backup_last_success_timestamp_seconds", **down) == 0
    rig.close()


def test_restore_tasks_by_kind_and_status_and_deleted_instances_left_out(
    sqlite_catalog: Catalog,
) -> None:
    rig = memory_rig(sqlite_catalog)
    instance_id, who = rig.add_instance(MemoryServer(), instance_id="rm-gone")
    now = utcnow()
    with sqlite_catalog.write() as s:
        for kind, status in (("verify", "Finished"), ("verify", "Finished"), ("clone", "Failed")):
            s.add(
                RestoreTask(
                    account_id=who.account_id,
                    kind=kind,
                    backup_id=1,
                    source_instance_id=instance_id,
                    status=status,
                    created_at=now,
                )
            )
    registry = metrics_registry(CatalogCollector(sqlite_catalog))
    assert value(registry, "rdsbackup_restore_tasks", kind="verify", status="Finished") == 2
    assert value(registry, "rdsbackup_restore_tasks", kind="clone", status="Failed") == 1
    gone = {"instance_id": instance_id, "engine": "MariaDB"}
    assert value(registry, "rdsbackup_backup_last_success_timestamp_seconds", **gone) == 0

    with sqlite_catalog.write() as s:
        s.execute(
            update(Instance).where(Instance.id == instance_id).values(status=InstanceStatus.DELETED)
        )
    assert value(registry, "rdsbackup_backup_last_success_timestamp_seconds", **gone) is None
    assert value(registry, "rdsbackup_instances", engine="MariaDB", status="Deleted") == 1


def test_a_catalog_it_cannot_read_says_so_instead_of_failing_the_scrape(tmp_path: Path) -> None:
    broken = Catalog(f"sqlite:///{tmp_path / 'missing-dir' / 'catalog.db'}")
    registry = metrics_registry(CatalogCollector(broken))
    text = generate_latest(registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names == {"rdsbackup_catalog_up"}
    assert value(registry, "rdsbackup_catalog_up") == 0
    broken.dispose()
