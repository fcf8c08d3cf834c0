"""Job behaviour the memory engine lets a test steer: a tool that dies, a backup held
half way (progress, the one-job rule, leases), and sets that restore to the data the
server held when they were taken. Jobs run on the service's thread dispatcher."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.jobs.janitor import Janitor
from rdsbackup.jobs.sets import SetStore
from rdsbackup.service import errors
from rdsbackup.service.backups import CreateBackupRequest
from rdsbackup.testing import MemoryRig, memory_rig
from rdsbackup.timeutil import utcnow
from tests.jobs.conftest import shop_server


class Jobs:
    def __init__(self, rig: MemoryRig) -> None:
        self.rig = rig
        self.server = shop_server()
        self.instance_id, self.who = rig.add_instance(self.server)

    def create(self, **request: Any) -> int:
        req = CreateBackupRequest(self.instance_id, **request)
        return self.rig.service.create_backup(self.who, req)

    def job(self, job_id: int) -> BackupJob:
        with self.rig.catalog.read() as s:
            return s.get_one(BackupJob, job_id)

    def wait(
        self, job_id: int, done: Callable[[BackupJob], bool], timeout: float = 20
    ) -> BackupJob:
        deadline = time.monotonic() + timeout
        while not done(job := self.job(job_id)):
            assert time.monotonic() < deadline, (job.status, job.process)
            time.sleep(0.02)
        return job

    def finished(self, job_id: int) -> BackupJob:
        return self.wait(job_id, lambda j: j.status in ("Finished", "Failed"))

    def successes(self) -> list[BackupSet]:
        with self.rig.catalog.read() as s:
            return list(s.scalars(select(BackupSet).where(BackupSet.status == "Success")))


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    rig = memory_rig(Catalog(f"sqlite:///{tmp_path / 'catalog.db'}"), threaded=True)
    yield Jobs(rig)
    rig.close()
    rig.catalog.dispose()


def test_a_tool_that_dies_fails_the_job_and_stores_nothing(jobs: Jobs) -> None:
    jobs.server.fail_next_backup("Lost connection to server during query")
    job = jobs.finished(jobs.create(method="Logical"))
    assert job.status == "Failed"
    assert "Lost connection to server during query" in job.failed_reason
    with jobs.rig.catalog.read() as s:
        record = s.get_one(BackupSet, job.backup_id)
    assert (record.status, record.is_avail) == ("Failed", False)
    assert jobs.successes() == []
    assert list(jobs.rig.storage.list(f"{jobs.instance_id}/")) == []
    assert jobs.finished(jobs.create(method="Logical")).status == "Finished"


def test_a_held_job_shows_progress_and_keeps_the_one_job_rule(jobs: Jobs) -> None:
    gate = jobs.server.block_next_backup()
    job_id = jobs.create(method="Physical")
    try:
        assert gate.wait_reached()
        running = jobs.wait(job_id, lambda j: j.process > 0)
        assert running.status == "Uploading" and 0 < running.process < 100
        assert running.bytes_done > 0 and running.lease_owner == jobs.rig.runner.leases.owner
        with pytest.raises(errors.BackupJobExists):
            jobs.create(method="Logical")
        jobs.rig.runner.run(job_id)  # a second worker: the lease keeps it out
        assert jobs.server.backups_started == 1
    finally:
        gate.release()
    assert jobs.finished(job_id).status == "Finished"
    assert jobs.finished(jobs.create(method="Logical")).status == "Finished"
    assert jobs.server.backups_started == 2


def test_a_job_whose_lease_was_taken_never_finishes_as_a_success(jobs: Jobs) -> None:
    gate = jobs.server.block_next_backup()
    job_id = jobs.create(method="Physical")
    try:
        assert gate.wait_reached()
        with jobs.rig.catalog.write() as s:  # another node took the job over
            s.execute(
                update(BackupJob)
                .where(BackupJob.id == job_id)
                .values(lease_owner="other-node", lease_expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        gate.release()
    time.sleep(0.5)  # the worker runs to its end and must not finish the job
    assert jobs.job(job_id).status not in ("Finished", "Failed")
    assert jobs.successes() == []
    janitor = Janitor(jobs.rig.catalog, jobs.rig.runner.leases, jobs.rig.storage)
    assert janitor.reap_jobs() == [job_id]  # the other node died too: its lease expired
    job = jobs.job(job_id)
    assert job.status == "Failed" and job.failed_reason
    assert list(jobs.rig.storage.list(f"{jobs.instance_id}/")) == []


def test_sets_restore_to_the_data_the_server_held_when_taken(jobs: Jobs, tmp_path: Path) -> None:
    engine, sets = jobs.rig.engine, SetStore(jobs.rig.catalog, jobs.rig.storage)
    at_full = jobs.server.contents()
    full = jobs.finished(jobs.create(method="Physical")).backup_id or 0
    jobs.server.insert("shop", "orders", [1000, 7, 3.0, "2026-02-01"])
    jobs.server.drop_database("crm")
    at_inc = jobs.server.contents()
    inc_job = jobs.finished(jobs.create(method="Physical"))
    assert inc_job.kind == "IncrementalBackup"
    logical = jobs.finished(jobs.create(method="Logical")).backup_id or 0
    jobs.server.put_rows("shop", "orders", [])  # changes after the sets: not in them

    *chain, last = sets.chain(inc_job.backup_id or 0)
    engine.restore_physical(last.manifest, last.source, tmp_path / "inc", chain)
    assert MemoryServer.load(tmp_path / "inc").contents() == at_inc
    (only,) = sets.chain(full)
    engine.restore_physical(only.manifest, only.source, tmp_path / "full", [])
    assert MemoryServer.load(tmp_path / "full").contents() == at_full

    target = MemoryServer()
    stored = sets.open(logical)
    engine.restore_logical(stored.manifest, stored.source, engine.serve(target))
    assert target.contents() == at_inc
